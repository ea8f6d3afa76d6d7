"""Claim throughput and latency: concurrent claimers empty a queue of cases with the
application's claim_next (one statement on PostgreSQL, the ORM on SQLite), on PostgreSQL and
SQLite; the database then shows whether any case was claimed twice or lost."""

# Run: .venv/bin/python benchmarks/queue_bench.py [--postgres-url URL] [--cases 10000]
#      [--claimers 16] [--processes 1 2 4] [--backends postgres sqlite] [--profile]
#      [--experiment no-pre-ping]

from __future__ import annotations

import argparse
import cProfile
import io
import logging
import multiprocessing
import os
import platform
import pstats
import resource
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root

import psycopg
import sqlalchemy
import structlog
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from config.categories import REQUIRED_CATEGORIES
from storage import actions
from storage.db import make_engine
from storage.errors import CaseConflict
from storage.migrate import upgrade
from storage.models import Case, CaseEvent, CaseStatus, Role, Staff
from storage.permissions import Actor, units_in_scope
from tests.factories import make_retiree, make_staff, make_unit_tree
from tests.pg_server import PostgresServer, server_for_benchmark

# A Monday in Beijing, 10:00 (the working-day calendar covers 2026 only).
NOW = datetime(2026, 6, 1, 2, 0, tzinfo=UTC)
CLAIM_AT = NOW + timedelta(hours=1)
TARGET_PG_CLAIMS_PER_S = 1_000
WAIT_S = 1_800.0

# A change that is NOT in the application, measured to show what it would save.
EXPERIMENTS = {
    "no-pre-ping": "engine without pool_pre_ping (one round trip less per transaction)",
}


def quiet_logs() -> None:
    """file_case and claim_next log each case at INFO: keep them out of the figures."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


@dataclass(frozen=True)
class Options:
    experiments: frozenset[str] = frozenset()

    def engine(self, url: str, pool_size: int = 5) -> Engine:
        return make_engine(
            url,
            pool_size=pool_size,
            max_overflow=0,
            pool_pre_ping="no-pre-ping" not in self.experiments,
        )


# --- databases ----------------------------------------------------------------------------


class Backend:
    """Makes fresh copies of one filled, migrated database."""

    name: str = ""

    def template_url(self) -> str:
        raise NotImplementedError

    def copy(self) -> str:
        """The URL of a new copy of the filled template."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class PostgresBackend(Backend):
    name = "postgresql"

    def __init__(self, server: PostgresServer) -> None:
        self.server = server
        self.prefix = f"queue_bench_{uuid.uuid4().hex[:8]}"
        self.databases: list[str] = []
        self.template = self._create(None)

    def _create(self, template: str | None) -> str:
        name = f"{self.prefix}_{len(self.databases)}"
        url = self.server.create_database(name, template=template)
        self.databases.append(name)
        return url

    def template_url(self) -> str:
        return self.template

    def copy(self) -> str:
        return self._create(self.databases[0])

    def close(self) -> None:
        for name in reversed(self.databases):
            self.server.drop_database(name)


class SqliteBackend(Backend):
    name = "sqlite"

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="queue-bench-"))
        self.template = self.folder / "template.db"
        self.copies = 0

    def template_url(self) -> str:
        return f"sqlite:///{self.template}"

    def copy(self) -> str:
        self.copies += 1
        path = self.folder / f"run{self.copies}.db"
        shutil.copyfile(self.template, path)  # the template's engine is disposed: no WAL left
        return f"sqlite:///{path}"

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def fill(url: str, cases: int, claimers: int) -> tuple[list[int], float]:
    """Migrate, add a unit tree, ``claimers`` staff of station A and ``cases`` open cases in
    station A's queues (staff may take every category). Returns (staff ids, seconds spent
    filing the cases)."""
    engine = make_engine(url)
    try:
        upgrade(engine)
        with Session(engine, expire_on_commit=False) as session:
            units = make_unit_tree(session)
            people = [
                make_retiree(session, units.community_a1, age=70),
                make_retiree(session, units.community_a2, age=85),
                make_retiree(session, units.community_a1, age=66, lives_alone=True),
                None,
            ]
            staff_ids = [
                make_staff(session, Role.STAFF, [units.station_a]).id for _ in range(claimers)
            ]
            session.commit()
            started = time.perf_counter()
            for i in range(cases):
                retiree = people[i % len(people)]
                actions.file_case(
                    session,
                    category=REQUIRED_CATEGORIES[i % len(REQUIRED_CATEGORIES)],
                    channel="phone",
                    actor=Actor.system(),
                    retiree=retiree,
                    unit=units.community_a2 if retiree is None else None,
                    now=NOW + timedelta(seconds=i // 3),
                )
                if (i + 1) % 1_000 == 0:
                    session.commit()
            session.commit()
            filing_s = time.perf_counter() - started
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(text("ANALYZE"))
        return staff_ids, filing_s
    finally:
        engine.dispose()


# --- claimers -----------------------------------------------------------------------------


def app_claim(session: Session, actor: Actor) -> int | None:
    """storage.actions.claim_next (one statement on PostgreSQL, the ORM on SQLite)."""
    case = actions.claim_next(session, actor, now=CLAIM_AT)
    return None if case is None else case.id


@dataclass
class ClaimerResult:
    staff_id: int
    claimed: list[int] = field(default_factory=list)
    latencies_s: list[float] = field(default_factory=list)
    conflicts: int = 0
    error: str | None = None


def claim_until_empty(
    factory: sessionmaker[Session],
    staff_id: int,
    start: Any,
    max_claims: int | None = None,
) -> ClaimerResult:
    """One claimer: a transaction per claim (begin → claim → commit) until none is left."""
    result = ClaimerResult(staff_id)
    try:
        with factory() as session:
            staff = session.get(Staff, staff_id)
            assert staff is not None and staff.units
            units_in_scope(session, staff)  # reads the unit tree once per session
            session.commit()
            actor = Actor.person(staff)
            start.wait(timeout=300)
            while max_claims is None or len(result.claimed) < max_claims:
                began = time.perf_counter()
                try:
                    case_id = app_claim(session, actor)
                    if case_id is None:
                        session.rollback()
                        break
                    session.commit()
                except CaseConflict:
                    session.rollback()
                    result.conflicts += 1
                    continue
                result.latencies_s.append(time.perf_counter() - began)
                result.claimed.append(case_id)
    except BaseException as exc:
        start.abort()
        result.error = repr(exc)
    return result


def claim_with_threads(
    url: str, staff_ids: list[int], start: Any, options: Options
) -> list[ClaimerResult]:
    """Run one claimer thread per staff id, each with its own session, in this process."""
    engine = options.engine(url, pool_size=len(staff_ids) + 2)
    factory = sessionmaker(engine, expire_on_commit=False)
    results = [ClaimerResult(staff_id) for staff_id in staff_ids]

    def run(i: int) -> None:
        results[i] = claim_until_empty(factory, staff_ids[i], start)

    threads = [
        threading.Thread(target=run, args=(i,), name=f"claimer-{s}")
        for i, s in enumerate(staff_ids)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    engine.dispose()
    return results


def _claimer_process(
    url: str, staff_ids: list[int], start: Any, out: Any, options: Options
) -> None:
    """A spawned process running len(staff_ids) claimer threads; puts its results on ``out``."""
    quiet_logs()
    try:
        out.put(claim_with_threads(url, staff_ids, start, options))
    except BaseException as exc:
        start.abort()
        out.put([ClaimerResult(staff_ids[0], error=repr(exc))])


def run_claimers(
    url: str, staff_ids: list[int], processes: int, options: Options
) -> tuple[float, float, list[ClaimerResult]]:
    """All claimers start together. Returns (wall seconds until the last one is done, CPU
    seconds the claimers used, results)."""
    if processes <= 1:
        start = threading.Barrier(len(staff_ids) + 1)
        box: list[list[ClaimerResult]] = []
        runner = threading.Thread(
            target=lambda: box.append(claim_with_threads(url, staff_ids, start, options))
        )
        runner.start()
        start.wait(timeout=300)
        began, cpu = time.perf_counter(), time.process_time()
        runner.join()
        return time.perf_counter() - began, time.process_time() - cpu, box[0]

    context = multiprocessing.get_context("spawn")
    start = context.Barrier(len(staff_ids) + 1)
    out = context.Queue()
    workers = [
        context.Process(
            target=_claimer_process, args=(url, staff_ids[i::processes], start, out, options)
        )
        for i in range(processes)
    ]
    children_cpu = _children_cpu_s()
    for worker in workers:
        worker.start()
    start.wait(timeout=300)
    began = time.perf_counter()
    results = [result for _ in workers for result in out.get(timeout=WAIT_S)]
    wall = time.perf_counter() - began
    for worker in workers:
        worker.join()
    return wall, _children_cpu_s() - children_cpu, results  # includes start-up (imports)


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class ServerCpu:
    """CPU seconds used by a local PostgreSQL server (its postmaster's reaped children, i.e.
    backends that have disconnected, plus itself); None when the server is not local."""

    def __init__(self, url: str) -> None:
        self.postmaster: int | None = None
        engine = make_engine(url)
        try:
            with engine.connect() as conn:
                if engine.dialect.name == "postgresql":
                    backend = int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())
                    self.postmaster = _parent_pid(backend)
        except Exception:
            self.postmaster = None
        finally:
            engine.dispose()

    def seconds(self) -> float | None:
        if self.postmaster is None:
            return None
        try:
            fields = Path(f"/proc/{self.postmaster}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
        return (utime + stime + cutime + cstime) / os.sysconf("SC_CLK_TCK")


def _parent_pid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None  # the server runs elsewhere
    if "(postgres)" not in stat:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


# --- checks and figures -------------------------------------------------------------------


@dataclass
class Check:
    claimed_in_db: int
    still_open: int
    duplicates: int  # cases recorded twice by the claimers, or with more than one claim event
    wrong_assignee: int


def check(url: str, results: list[ClaimerResult]) -> Check:
    """What the database says: each case claimed once, by the claimer that recorded it."""
    recorded: dict[int, int] = {}
    duplicates = 0
    for result in results:
        for case_id in result.claimed:
            duplicates += case_id in recorded
            recorded[case_id] = result.staff_id
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            rows = session.execute(select(Case.id, Case.status, Case.assignee_id)).all()
            events_per_case = session.execute(
                select(CaseEvent.case_id, func.count())
                .where(CaseEvent.action == "claim")
                .group_by(CaseEvent.case_id)
            ).all()
    finally:
        engine.dispose()
    duplicates += sum(1 for _, n in events_per_case if n != 1)
    return Check(
        claimed_in_db=sum(1 for _, status, _ in rows if status == CaseStatus.CLAIMED),
        still_open=sum(1 for _, status, _ in rows if status == CaseStatus.OPEN),
        duplicates=duplicates,
        wrong_assignee=sum(
            1
            for case_id, status, assignee in rows
            if status == CaseStatus.CLAIMED and recorded.get(case_id) != assignee
        ),
    )


@dataclass
class Run:
    backend: str
    cases: int
    claimers: int
    processes: int
    wall_s: float
    client_cpu_s: float
    server_cpu_s: float | None
    results: list[ClaimerResult]
    check: Check

    @property
    def claims(self) -> int:
        return sum(len(r.claimed) for r in self.results)

    @property
    def ok(self) -> bool:
        return (
            not any(r.error for r in self.results)
            and self.check.duplicates == 0
            and self.check.still_open == 0
            and self.check.wrong_assignee == 0
            and self.check.claimed_in_db == self.cases == self.claims
        )


def percentile_ms(values: list[float], pct: int) -> float:
    if len(values) < 2:
        return values[0] * 1_000 if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1] * 1_000


def report(run: Run) -> None:
    latencies = [s for r in run.results for s in r.latencies_s]
    rate = run.claims / run.wall_s if run.wall_s else float("nan")
    layout = (
        f"{run.claimers} threads in 1 process"
        if run.processes <= 1
        else f"{run.processes} processes x {run.claimers // run.processes} threads"
    )
    if run.backend == "postgresql":
        met = "met" if rate >= TARGET_PG_CLAIMS_PER_S else "NOT met"
        target = f"target >= {TARGET_PG_CLAIMS_PER_S:,}/s: {met}"
    else:
        target = "no target: SQLite has one writer at a time"
    cores = os.cpu_count() or 1
    if run.backend == "sqlite":
        server = "none (SQLite runs inside the claimers)"
    elif run.server_cpu_s is None:
        server = "unknown (not a local server)"
    else:
        server = f"{run.server_cpu_s:.1f} s"
    errors = [r.error for r in run.results if r.error]
    print(f"  {run.backend}, {layout}")
    print(f"    cases:        {run.cases:,}")
    print(f"    claimers:     {run.claimers}")
    print(f"    wall:         {run.wall_s:.2f} s")
    print(f"    claims/s:     {rate:,.0f}   ({target})")
    print(
        f"    latency:      p50 {percentile_ms(latencies, 50):.1f} ms, "
        f"p99 {percentile_ms(latencies, 99):.1f} ms, max {max(latencies, default=0) * 1000:.0f} ms"
        " (begin → commit)"
    )
    print(
        f"    CPU:          claimers {run.client_cpu_s:.1f} s, database server {server}, "
        f"of {cores} cores x {run.wall_s:.1f} s = {cores * run.wall_s:.1f} core-s"
    )
    print(f"    conflicts:    {sum(r.conflicts for r in run.results)} (rolled back and retried)")
    print(
        f"    database:     {run.check.claimed_in_db:,} claimed, {run.check.still_open} still open,"
        f" {run.check.wrong_assignee} with another assignee than recorded"
    )
    print(f"    duplicates:   {run.check.duplicates}   (target: 0)")
    print(f"    verdict:      {'OK' if run.ok else 'FAILED'}" + (f" {errors}" if errors else ""))


def profile_single_claimer(
    url: str, staff_id: int, options: Options, claims: int, top: int
) -> None:
    """One claimer alone (no contention): its rate, then a cProfile of as many claims again."""
    engine = options.engine(url)
    factory = sessionmaker(engine, expire_on_commit=False)
    began = time.perf_counter()
    plain = claim_until_empty(factory, staff_id, threading.Barrier(1), claims)
    wall = time.perf_counter() - began
    print(
        f"  one claimer alone: {len(plain.claimed):,} claims in {wall:.2f} s "
        f"({len(plain.claimed) / wall:,.0f}/s, p50 {percentile_ms(plain.latencies_s, 50):.1f} ms)"
    )
    profiler = cProfile.Profile()
    began = time.perf_counter()
    profiler.enable()
    profiled = claim_until_empty(factory, staff_id, threading.Barrier(1), claims)
    profiler.disable()
    wall = time.perf_counter() - began
    engine.dispose()
    print(f"  the next {len(profiled.claimed):,} claims under cProfile: {wall:.2f} s")
    for order in ("tottime", "cumulative"):
        buffer = io.StringIO()
        stats = pstats.Stats(profiler, stream=buffer)
        stats.sort_stats(order).print_stats(top)
        lines = buffer.getvalue().splitlines()
        first = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
        print(f"  top {top} by {order}:")
        for line in lines[first:]:
            if line.strip():
                print("    " + line.replace(str(Path(sys.prefix)), "<venv>"))


# --- main ---------------------------------------------------------------------------------


def server_version(url: str) -> str:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                return str(conn.execute(text("SELECT version()")).scalar_one())
            return f"SQLite {conn.execute(text('SELECT sqlite_version()')).scalar_one()}"
    finally:
        engine.dispose()


def bench_backend(backend: Backend, args: argparse.Namespace, options: Options) -> list[Run]:
    print(f"\n== {backend.name}: {server_version(backend.template_url())}")
    staff_ids, filing_s = fill(backend.template_url(), args.cases, args.claimers)
    print(
        f"  filed {args.cases:,} cases in {filing_s:.1f} s ({args.cases / filing_s:,.0f}/s, "
        "one writer, file_case; not part of the figures below)"
    )
    server_cpu = ServerCpu(backend.template_url())
    runs: list[Run] = []
    for processes in args.processes:
        url = backend.copy()
        server_before = server_cpu.seconds()
        wall, client_cpu, results = run_claimers(url, staff_ids, processes, options)
        time.sleep(0.2)  # let the postmaster reap the backends that just disconnected
        server_after = server_cpu.seconds()
        server_s = (
            None if server_before is None or server_after is None else server_after - server_before
        )
        run = Run(
            backend.name,
            args.cases,
            args.claimers,
            processes,
            wall,
            client_cpu,
            server_s,
            results,
            check(url, results),
        )
        report(run)
        runs.append(run)
    if args.profile:
        profile_single_claimer(
            backend.copy(), staff_ids[0], options, args.profile_claims, args.profile_top
        )
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--postgres-url", help="a server to create throwaway databases on")
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--claimers", type=int, default=16)
    parser.add_argument(
        "--processes",
        type=int,
        nargs="+",
        default=[1],
        help="split the claimers into N processes x claimers/N threads (several N: a run each)",
    )
    parser.add_argument(
        "--backends", nargs="+", choices=["postgres", "sqlite"], default=["postgres", "sqlite"]
    )
    parser.add_argument(
        "--profile", action="store_true", help="also time and cProfile one claimer alone"
    )
    parser.add_argument("--profile-claims", type=int, default=1_000)
    parser.add_argument("--profile-top", type=int, default=25)
    parser.add_argument(
        "--experiment",
        nargs="+",
        choices=sorted(EXPERIMENTS),
        default=[],
        help="measure a change that is not in the application",
    )
    args = parser.parse_args(argv)
    for n in args.processes:
        if n < 1 or args.claimers % n:
            parser.error(f"--processes {n}: must divide --claimers {args.claimers}")
    options = Options(frozenset(args.experiment))
    quiet_logs()

    print("Queue benchmark: concurrent claimers call claim_next until the queue is empty")
    print(
        f"  machine: {platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()} "
        f"{platform.release()}; Python {platform.python_version()}"
    )
    print(
        f"  SQLAlchemy {sqlalchemy.__version__}, psycopg {psycopg.__version__} "
        f"(libpq {psycopg.pq.version()}, {psycopg.pq.__impl__}), sqlite3 {sqlite3.sqlite_version}"
    )
    print(
        f"  targets: PostgreSQL >= {TARGET_PG_CLAIMS_PER_S:,} claims/s; every case claimed "
        "exactly once (duplicates: 0, still open: 0)"
    )
    for name in sorted(options.experiments):
        print(f"  EXPERIMENT (not in the application): {name}: {EXPERIMENTS[name]}")

    runs: list[Run] = []
    if "postgres" in args.backends:
        with server_for_benchmark(args.postgres_url) as server:
            pg = PostgresBackend(server)
            try:
                runs += bench_backend(pg, args, options)
            finally:
                pg.close()
    if "sqlite" in args.backends:
        lite = SqliteBackend()
        try:
            runs += bench_backend(lite, args, options)
        finally:
            lite.close()
    return 0 if all(run.ok for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
