"""Turn latency: 50 conversations at once, each a realistic multi-turn script, through one shared
ConversationEngine (understanding, dialogue, handlers and the database in one turn), on
PostgreSQL and SQLite; then the database shows whether every conversation filed exactly the
cases its script files.

Two load models, both printed:
  closed loop: every conversation sends its next message as soon as the reply arrives, so the
               machine is saturated; it shows capacity (turns/s) and queueing, not what a
               person waits.
  paced:       every conversation waits a think time (1-2 s, like a person reading or saying the
               next thing) between turns; the latency of a turn under 50 live conversations.
The target (p99 of a turn under 20 ms on PostgreSQL) is judged on the paced figure: a person
takes seconds to answer, so 50 simultaneous conversations are 50 people thinking most of the
time, not 50 messages always queued.

Run: .venv/bin/python benchmarks/turn_bench.py [--postgres-url URL] [--conversations 50]
     [--rounds 10] [--paced-turns 2000] [--think 1.0 2.0] [--backends postgres sqlite]
     [--models paced closed] [--profile] [--profile-rounds 20] [--profile-top 30]
     [--experiment no-pre-ping gil-1ms sqlite-writer-lock]
(about 4 minutes with --profile; PostgreSQL: a throwaway server from tests/pg_server.py, or
--postgres-url / HOTLINE_TEST_POSTGRES_URL)
"""

from __future__ import annotations

import argparse
import cProfile
import io
import logging
import os
import platform
import pstats
import random
import re
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root

import psycopg
import sqlalchemy
import structlog
from sqlalchemy import Engine, event, func, select, text
from sqlalchemy.orm import Session

from benchmarks.queue_bench import ServerCpu
from bot.conversation.engine import ConversationEngine, freeze_startup_objects
from bot.conversation.messages import Inbound
from bot.conversation.state import DialogueState
from bot.runtime.configure import load_deployment
from config.settings import Settings
from nlu.parser import NluParser, get_parser
from storage import actions
from storage.db import make_engine
from storage.migrate import upgrade
from storage.models import Case, ConversationState, Direction, Message, RetireePhone, Role
from storage.permissions import Actor
from tests.factories import make_retiree, make_staff, make_unit_tree
from tests.pg_server import PostgresServer, server_for_benchmark

# A Tuesday in Beijing, 10:00 (the working-day calendar covers 2026 only); each run's clock
# starts here and moves with the wall clock.
START = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)
TARGET_P99_MS = 20.0
FIRST_PHONE = 13800001000
BACKGROUND_CHANNEL = "walk_in"  # the cases filed before the runs, for status inquiries to find


# Changes that are NOT in the application, measured to show what they would save.
EXPERIMENTS = {
    "no-pre-ping": "the engine's pool without pool_pre_ping (one round trip less per turn)",
    "gil-1ms": "sys.setswitchinterval(0.001): a thread back from the database waits at most "
    "~1 ms (not 5 ms) for the GIL held by another turn",
    "sqlite-writer-lock": "SQLite: the engine's transactions take a lock in the process first, "
    "so writers queue on it instead of polling the database with the busy handler's sleeps",
}


@dataclass(frozen=True)
class Options:
    experiments: frozenset[str] = frozenset()

    def conversation_engine(
        self, settings: Settings, db: Engine, parser: NluParser
    ) -> ConversationEngine:
        engine = ConversationEngine(db, parser, load_deployment(settings))
        if "sqlite-writer-lock" in self.experiments and db.dialect.name == "sqlite":
            engine._sessions = LockedSessions(engine._sessions)  # type: ignore[assignment]
        return engine

    def engine(self, url: str, threads: int) -> Engine:
        return make_engine(
            url,
            pool_size=threads + 2,
            max_overflow=8,
            pool_timeout=60,
            pool_pre_ping="no-pre-ping" not in self.experiments,
        )

    @contextmanager
    def applied(self) -> Iterator[None]:
        interval = sys.getswitchinterval()
        if "gil-1ms" in self.experiments:
            sys.setswitchinterval(0.001)
        try:
            yield
        finally:
            sys.setswitchinterval(interval)


class LockedSessions:
    """The "sqlite-writer-lock" experiment: sessionmaker.begin() behind a lock."""

    def __init__(self, sessions: Any) -> None:
        self.sessions = sessions
        self.lock = threading.Lock()

    @contextmanager
    def begin(self) -> Iterator[Session]:
        with self.lock, self.sessions.begin() as session:
            yield session


def quiet_logs() -> None:
    """The engine logs every turn and case at INFO: keep them out of the figures."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


# --- the conversations --------------------------------------------------------------------


@dataclass(frozen=True)
class Script:
    name: str
    channel: str
    lines: tuple[str, ...]  # "" is a silent turn
    files: tuple[str, ...]  # the categories one run of the script should file, in order
    share: int  # conversations out of 50 that run it


SCRIPTS = (
    Script(
        "medication_reimbursement",
        "sms",
        ("我想报销药费，大概三百块，是上个月住院的", "上门来取吧", "对", "没有了"),
        ("medication_reimbursement",),
        20,
    ),
    Script(
        "hospital_transfer",
        "phone",
        ("我妈要转院，从市一院转到中心医院", "给我妈", "下周一", "要派车", "对", "没有了"),
        ("hospital_transfer",),
        10,
    ),
    Script(
        "help_request",
        "phone",
        ("家里灯泡坏了，想请人来换一下", "明天上午", "对", "没有了"),
        ("help_request",),
        10,
    ),
    Script("status_inquiry", "sms", ("我上次报的事办得怎么样了", "没有了"), (), 5),
    Script("silent_caller", "phone", ("", ""), ("callback",), 5),
)


def script_for(i: int, conversations: int) -> Script:
    """Conversation i's script: the shares of SCRIPTS, scaled to the number of conversations."""
    total = sum(s.share for s in SCRIPTS)
    slot = (i * total // conversations) % total
    for script in SCRIPTS:
        if slot < script.share:
            return script
        slot -= script.share
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class Expected:
    """What one run of a script did in a sequential reference run: per turn the categories
    filed, the choices offered and the hints; and the categories filed on hanging up."""

    turns: tuple[tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]], ...]
    on_close: tuple[str, ...]

    @property
    def categories(self) -> Counter[str]:
        return Counter([c for filed, _, _ in self.turns for c in filed] + list(self.on_close))


def observed(result: Any) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    choices = tuple(c.label for c in result.replies[-1].choices) if result.replies else ()
    return (
        tuple(c.category for c in result.cases),
        choices,
        tuple(sorted(h.value for h in result.hints)),
    )


# --- measuring --------------------------------------------------------------------------


class Meter:
    """Per thread: NLU seconds and SQL statements of the turn in progress."""

    def __init__(self) -> None:
        self.local = threading.local()

    def reset(self) -> None:
        self.local.nlu_s = 0.0
        self.local.statements = 0

    @property
    def nlu_s(self) -> float:
        return getattr(self.local, "nlu_s", 0.0)

    @property
    def statements(self) -> int:
        return getattr(self.local, "statements", 0)

    def count_statements(self, engine: Engine) -> None:
        @event.listens_for(engine, "before_cursor_execute")
        def _count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            self.local.statements = getattr(self.local, "statements", 0) + 1
            kinds = getattr(self.local, "sql", None)
            if kinds is not None:
                kinds[statement_kind(statement)] += 1


_SPACES = re.compile(r"\s+")


def statement_kind(statement: str) -> str:
    """A statement without its values and column lists: "SELECT ... FROM retiree_phone ..."."""
    s = _SPACES.sub(" ", statement).strip()
    verb = s.split(" ", 1)[0].upper()
    tables = re.findall(r"\b(?:FROM|INTO|UPDATE|JOIN)\s+\"?(\w+)", s, re.IGNORECASE)
    extra = " FOR UPDATE" if s.upper().endswith("FOR UPDATE") else ""
    if verb in ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE"):
        return s[:40]
    return f"{verb} {' '.join(dict.fromkeys(tables))}{extra}"


class TimedParser:
    """The parser, with the seconds it takes added to the turn's meter."""

    def __init__(self, parser: NluParser, meter: Meter) -> None:
        self.parser = parser
        self.meter = meter

    def parse(self, text: str, *, reference: datetime | None = None) -> dict[str, Any]:
        began = time.perf_counter()
        try:
            return self.parser.parse(text, reference=reference)
        finally:
            self.meter.local.nlu_s = self.meter.nlu_s + time.perf_counter() - began


@dataclass
class Sample:
    total_s: float
    nlu_s: float
    cpu_s: float  # CPU time of the turn's own thread (NLU included)
    statements: int


@dataclass
class ConversationResult:
    index: int
    script: Script
    address: str
    samples: list[Sample] = field(default_factory=list)
    close_s: list[float] = field(default_factory=list)
    runs: int = 0
    turns: int = 0
    cases: int = 0
    mismatches: list[str] = field(default_factory=list)
    error: str | None = None


class Clock:
    """The conversations' clock: START plus the wall-clock time since the run began."""

    def __init__(self) -> None:
        self.began = time.perf_counter()

    def now(self) -> datetime:
        return START + timedelta(seconds=time.perf_counter() - self.began)


def converse(
    engine: ConversationEngine,
    meter: Meter,
    result: ConversationResult,
    expected: Expected,
    clock: Clock,
    start: threading.Barrier,
    stop_at_turns: threading.Event | None,
    rounds: int | None,
    think: tuple[float, float] | None,
    rng: random.Random,
) -> None:
    """Run the script again and again (rounds times, or until stop is set), hanging up after
    each run; check each turn against the reference run."""
    script = result.script
    try:
        start.wait(timeout=600)
        if think:
            time.sleep(rng.uniform(0, think[1]))  # people do not all start at the same instant
        while (rounds is None or result.runs < rounds) and not (
            stop_at_turns is not None and stop_at_turns.is_set()
        ):
            for n, line in enumerate(script.lines):
                meter.reset()
                inbound = Inbound(
                    channel=script.channel,
                    address=result.address,
                    provider_id=uuid.uuid4().hex,
                    received_at=clock.now(),
                    text=line,
                )
                began, cpu = time.perf_counter(), time.thread_time()
                turn = engine.handle(inbound)
                total = time.perf_counter() - began
                cpu = time.thread_time() - cpu
                result.samples.append(Sample(total, meter.nlu_s, cpu, meter.statements))
                result.turns += 1
                result.cases += len(turn.cases)
                seen = observed(turn)
                if seen != expected.turns[n]:
                    result.mismatches.append(
                        f"run {result.runs + 1}, turn {n + 1} ({line!r}): "
                        f"{seen} != reference {expected.turns[n]}"
                    )
                if think:
                    time.sleep(rng.uniform(*think))
            began = time.perf_counter()
            filed = engine.close_conversation(script.channel, result.address, now=clock.now())
            result.close_s.append(time.perf_counter() - began)
            result.cases += len(filed)
            if len(filed) != len(expected.on_close):
                result.mismatches.append(f"run {result.runs + 1}: hanging up filed {filed}")
            result.runs += 1
    except BaseException as exc:
        start.abort()
        result.error = repr(exc)


# --- databases ----------------------------------------------------------------------------


class Backend:
    name = ""

    def template_url(self) -> str:
        raise NotImplementedError

    def copy(self) -> str:
        raise NotImplementedError

    def drop(self, url: str) -> None:
        """Delete a copy once its run is checked (so no vacuum of it runs into the next run)."""
        raise NotImplementedError

    def settle(self) -> None:
        """Before a run: let the database write out what earlier runs left."""

    def close(self) -> None:
        raise NotImplementedError


class PostgresBackend(Backend):
    name = "postgresql"

    def __init__(self, server: PostgresServer) -> None:
        self.server = server
        self.prefix = f"turn_bench_{uuid.uuid4().hex[:8]}"
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

    def drop(self, url: str) -> None:
        name = sqlalchemy.make_url(url).database
        if name in self.databases[1:]:
            self.server.drop_database(name)
            self.databases.remove(name)

    def settle(self) -> None:
        engine = make_engine(self.template)
        try:
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("CHECKPOINT"))
        finally:
            engine.dispose()
        time.sleep(2)

    def close(self) -> None:
        for name in reversed(self.databases):
            self.server.drop_database(name)


class SqliteBackend(Backend):
    name = "sqlite"

    def __init__(self, folder: Path) -> None:
        self.folder = folder / "sqlite"
        self.folder.mkdir()
        self.template = self.folder / "template.db"
        self.copies = 0

    def template_url(self) -> str:
        return f"sqlite:///{self.template}"

    def copy(self) -> str:
        self.copies += 1
        path = self.folder / f"run{self.copies}.db"
        shutil.copyfile(self.template, path)  # the template's engine is disposed: no WAL left
        return f"sqlite:///{path}"

    def drop(self, url: str) -> None:
        path = Path(sqlalchemy.make_url(url).database or "")
        for suffix in ("", "-wal", "-shm"):
            path.with_name(path.name + suffix).unlink(missing_ok=True)

    def settle(self) -> None:
        time.sleep(2)

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def phone(i: int) -> str:
    return f"+86{FIRST_PHONE + i}"


def fill(url: str, people: int) -> None:
    """Migrate; a center, 2 stations, 3 communities with a staff member on duty in each and
    ``people`` retirees (phones +8613800001000 ...) spread over the communities, each with two
    earlier cases (filed at the desk: the status inquiry has something to find)."""
    engine = make_engine(url)
    try:
        upgrade(engine)
        with Session(engine) as session:
            units = make_unit_tree(session)
            communities = [units.community_a1, units.community_a2, units.community_b1]
            for unit in communities:
                make_staff(session, Role.STAFF, [unit], on_duty=True)
            make_staff(session, Role.STAFF, [units.station_a])
            for i in range(people):
                retiree = make_retiree(
                    session,
                    communities[i % len(communities)],
                    phone=phone(i),
                    age=62 + (i * 7) % 30,
                    lives_alone=i % 4 == 0,
                )
                for n, category in enumerate(("help_request", "policy_question")):
                    actions.file_case(
                        session,
                        category=category,
                        channel=BACKGROUND_CHANNEL,
                        actor=Actor.system("bench"),
                        retiree=retiree,
                        summary="earlier request",
                        now=START - timedelta(days=3 + n),
                    )
            session.commit()
        if engine.dialect.name == "postgresql":
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("ANALYZE"))
    finally:
        engine.dispose()


def server_version(url: str) -> str:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                version = str(conn.execute(text("SHOW server_version")).scalar_one())
                settings = {
                    name: conn.execute(text(f"SHOW {name}")).scalar_one()
                    for name in ("fsync", "synchronous_commit")
                }
                return (
                    f"PostgreSQL {version} ({', '.join(f'{k}={v}' for k, v in settings.items())})"
                )
            return f"SQLite {conn.execute(text('SELECT sqlite_version()')).scalar_one()} (WAL)"
    finally:
        engine.dispose()


# --- runs ---------------------------------------------------------------------------------


def open_engine(
    url: str, settings: Settings, parser: NluParser, meter: Meter, threads: int, options: Options
) -> Any:
    db = options.engine(url, threads)
    meter.count_statements(db)
    freeze_startup_objects()  # as `hotline serve` does once the model is loaded
    engine = options.conversation_engine(settings, db, TimedParser(parser, meter))
    return db, engine


def reference(url: str, settings: Settings, parser: NluParser) -> dict[str, Expected]:
    """Each script once, alone, on its own retiree, as the application is (no experiment):
    what the load runs must reproduce."""
    meter = Meter()
    db, engine = open_engine(url, settings, parser, meter, 1, Options())
    clock = Clock()
    found: dict[str, Expected] = {}
    try:
        for i, script in enumerate(SCRIPTS):
            address = phone(i)
            turns = []
            for line in script.lines:
                result = engine.handle(
                    Inbound(script.channel, address, uuid.uuid4().hex, clock.now(), text=line)
                )
                turns.append(observed(result))
            closed = engine.close_conversation(script.channel, address, now=clock.now())
            with Session(db) as session:
                categories = session.scalars(
                    select(Case.category).where(Case.number.in_(closed)).order_by(Case.number)
                ).all()
            found[script.name] = Expected(tuple(turns), tuple(categories))
    finally:
        db.dispose()
    return found


@dataclass
class Run:
    backend: str
    model: str
    wall_s: float
    cpu_s: float
    server_cpu_s: float | None
    results: list[ConversationResult]
    db_check: list[str]

    @property
    def samples(self) -> list[Sample]:
        return [s for r in self.results for s in r.samples]

    @property
    def ok(self) -> bool:
        return not self.db_check and not any(r.error or r.mismatches for r in self.results)


def run_load(
    url: str,
    settings: Settings,
    parser: NluParser,
    expected: dict[str, Expected],
    conversations: int,
    model: str,
    rounds: int,
    paced_turns: int,
    think: tuple[float, float],
    options: Options,
) -> tuple[float, float, list[ConversationResult]]:
    meter = Meter()
    db, engine = open_engine(url, settings, parser, meter, conversations, options)
    results = [
        ConversationResult(i, script_for(i, conversations), phone(i)) for i in range(conversations)
    ]
    start = threading.Barrier(conversations + 1)
    stop = threading.Event() if model == "paced" else None
    clock = Clock()
    threads = [
        threading.Thread(
            target=converse,
            args=(
                engine,
                meter,
                r,
                expected[r.script.name],
                clock,
                start,
                stop,
                rounds if model == "closed" else None,
                think if model == "paced" else None,
                random.Random(r.index),
            ),
            name=f"conversation-{r.index}",
            daemon=True,
        )
        for r in results
    ]
    for thread in threads:
        thread.start()
    start.wait(timeout=600)
    began, cpu = time.perf_counter(), time.process_time()
    clock.began = began
    if stop is not None:
        while sum(r.turns for r in results) < paced_turns and any(t.is_alive() for t in threads):
            time.sleep(0.2)
        stop.set()  # each conversation finishes the run it is in, then hangs up
    for thread in threads:
        thread.join()
    wall, cpu_s = time.perf_counter() - began, time.process_time() - cpu
    db.dispose()
    return wall, cpu_s, results


def check_database(
    url: str, results: list[ConversationResult], expected: dict[str, Expected]
) -> list[str]:
    """Each conversation's retiree has exactly the cases its runs should have filed, every
    turn is recorded once, and no conversation is left with a request half-way."""
    problems: list[str] = []
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            by_phone: dict[str, Counter[str]] = {}
            rows = session.execute(
                select(RetireePhone.number, Case.category)
                .join(Case, Case.retiree_id == RetireePhone.retiree_id)
                .where(Case.channel != BACKGROUND_CHANNEL)
            ).all()
            for number, category in rows:
                by_phone.setdefault(number, Counter())[category] += 1
            inbound = dict(
                session.execute(
                    select(Message.address, func.count())
                    .where(Message.direction == Direction.INBOUND)
                    .group_by(Message.address)
                ).all()
            )
            total_cases = (
                session.scalar(
                    select(func.count()).select_from(Case).where(Case.channel != BACKGROUND_CHANNEL)
                )
                or 0
            )
            states = session.execute(
                select(ConversationState.address, ConversationState.state)
            ).all()
    finally:
        engine.dispose()
    for r in results:
        want = Counter({k: v * r.runs for k, v in expected[r.script.name].categories.items()})
        got = by_phone.get(r.address, Counter())
        if got != want:
            problems.append(f"{r.address} ({r.script.name}, {r.runs} runs): cases {dict(got)}")
        if inbound.get(r.address, 0) != r.turns:
            problems.append(f"{r.address}: {inbound.get(r.address, 0)} inbound, sent {r.turns}")
    filed = sum(r.cases for r in results)
    if total_cases != filed:
        problems.append(f"{total_cases} cases in the database, the turns reported {filed}")
    for address, data in states:
        state = DialogueState.load(data)
        if (state.task is not None and not state.task.done) or state.suspended:
            problems.append(f"{address}: a request is left half-way after hanging up")
    return problems


# --- figures ------------------------------------------------------------------------------


def pct_ms(values: list[float], pct: int) -> float:
    if len(values) < 2:
        return values[0] * 1_000 if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1] * 1_000


def figures(values: list[float]) -> str:
    return (
        f"p50 {pct_ms(values, 50):6.1f}  p90 {pct_ms(values, 90):6.1f}  "
        f"p99 {pct_ms(values, 99):6.1f}  max {max(values, default=0) * 1000:6.1f} ms"
    )


def report(run: Run, conversations: int, think: tuple[float, float]) -> None:
    samples = run.samples
    totals = [s.total_s for s in samples]
    nlu = [s.nlu_s for s in samples if s.nlu_s > 0]
    rest = [s.total_s - s.nlu_s for s in samples]
    closes = [c for r in run.results for c in r.close_s]
    turns = len(samples)
    if run.model == "closed":
        label = "closed loop (next message as soon as the reply comes: capacity, queueing)"
    else:
        label = f"paced (think {think[0]:g}-{think[1]:g} s between turns: what a person waits)"
    print(f"  {run.backend}, {label}")
    if run.server_cpu_s is not None:
        server = f", the database server {run.server_cpu_s:.1f} CPU-s"
    elif run.backend == "sqlite":
        server = " (SQLite runs inside it)"
    else:
        server = ""
    print(
        f"    {conversations} conversations, {turns:,} turns in {run.wall_s:.1f} s = "
        f"{turns / run.wall_s:,.1f} turns/s; CPU: this process {run.cpu_s:.1f} CPU-s "
        f"({run.cpu_s / run.wall_s:.0%} of one core){server}"
    )
    print(f"    turn (engine.handle):   {figures(totals)}")
    print(f"      of which NLU parse:   {figures(nlu)}   ({len(nlu):,} turns with text)")
    print(f"      the rest (dialogue, handlers, database): {figures(rest)}")
    cpu = [s.cpu_s for s in samples]
    waited = [max(s.total_s - s.cpu_s, 0.0) for s in samples]
    print(f"      CPU of the turn's thread: {figures(cpu)}")
    print(f"      waiting (database, GIL): {figures(waited)}")
    print(f"    hanging up (close):     {figures(closes)}")
    statements = [s.statements for s in samples]
    print(
        f"    SQL statements/turn:    mean {statistics.fmean(statements):.1f}, "
        f"max {max(statements)} (COMMIT not counted; BEGIN IMMEDIATE is, on SQLite)"
    )
    if run.model == "paced" and run.backend == "postgresql":
        p99 = pct_ms(totals, 99)
        verdict = "met" if p99 < TARGET_P99_MS else "NOT met"
        print(f"    target p99 < {TARGET_P99_MS:g} ms on PostgreSQL (paced): {verdict}")
    mismatched = [m for r in run.results for m in r.mismatches]
    errors = [f"{r.address}: {r.error}" for r in run.results if r.error]
    print(
        f"    correctness: {sum(r.cases for r in run.results):,} cases filed in "
        f"{sum(r.runs for r in run.results):,} script runs; "
        f"{len(mismatched)} turns unlike the reference; database check: "
        + ("OK" if not run.db_check else f"{len(run.db_check)} problems")
    )
    for line in (errors + mismatched + run.db_check)[:10]:
        print(f"      ! {line}")
    print(f"    verdict: {'OK' if run.ok else 'FAILED'}")


def nlu_alone(parser: NluParser, repeat: int) -> list[float]:
    texts = sorted({line for s in SCRIPTS for line in s.lines if line})
    reference_time = START
    for t in texts:
        parser.parse(t, reference=reference_time)  # warm up
    times = []
    for _ in range(repeat):
        for t in texts:
            began = time.perf_counter()
            parser.parse(t, reference=reference_time)
            times.append(time.perf_counter() - began)
    return times


def profile_alone(
    url: str,
    settings: Settings,
    parser: NluParser,
    expected: dict[str, Expected],
    rounds: int,
    top: int,
    options: Options,
) -> None:
    """One thread runs every script ``rounds`` times (no contention): the SQL statements per
    turn by kind, then a cProfile of the same."""
    meter = Meter()
    db, engine = open_engine(url, settings, parser, meter, 1, options)
    results = [ConversationResult(i, script, phone(i)) for i, script in enumerate(SCRIPTS)]

    def run_all() -> None:
        for r in results:
            converse(
                engine,
                meter,
                r,
                expected[r.script.name],
                Clock(),
                threading.Barrier(1),
                None,
                r.runs + rounds,
                None,
                random.Random(0),
            )

    meter.local.sql = Counter()
    began = time.perf_counter()
    run_all()
    wall = time.perf_counter() - began
    sql: Counter[str] = meter.local.sql
    meter.local.sql = None
    samples = [s for r in results for s in r.samples]
    turns = len(samples)
    print(
        f"  one conversation at a time: {turns:,} turns in {wall:.2f} s, "
        f"{figures([s.total_s for s in samples])}"
    )
    print(
        f"    NLU {statistics.fmean([s.nlu_s for s in samples]) * 1000:.2f} ms/turn, "
        f"the rest {statistics.fmean([s.total_s - s.nlu_s for s in samples]) * 1000:.2f} ms/turn"
    )
    print(f"    SQL statements per turn (hanging up included), by kind, of {turns} turns:")
    for kind, n in sql.most_common(25):
        print(f"      {n / turns:6.2f}  {kind}")
    for r in results:
        r.samples.clear()
    profiler = cProfile.Profile()
    began = time.perf_counter()
    profiler.enable()
    run_all()
    profiler.disable()
    wall = time.perf_counter() - began
    db.dispose()
    print(f"  the same again under cProfile: {wall:.2f} s")
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


def bench_backend(
    backend: Backend,
    args: argparse.Namespace,
    settings: Settings,
    parser: NluParser,
    options: Options,
) -> list[Run]:
    print(f"\n== {backend.name}: {server_version(backend.template_url())}")
    fill(backend.template_url(), max(args.conversations, len(SCRIPTS)))
    url = backend.copy()
    expected = reference(url, settings, parser)
    backend.drop(url)
    server_cpu = ServerCpu(backend.template_url())
    for script in SCRIPTS:
        got = expected[script.name]
        filed = sorted(got.categories.elements())
        if filed != sorted(script.files):
            print(
                f"  note: the script {script.name} files {filed} today, not {list(script.files)}"
                " (the handlers changed?); the load runs are checked against what it files today"
            )
    think = (args.think[0], args.think[1])
    runs = []
    for model in args.models:
        url = backend.copy()
        backend.settle()
        server_before = server_cpu.seconds()
        with options.applied():
            wall, cpu, results = run_load(
                url,
                settings,
                parser,
                expected,
                args.conversations,
                model,
                args.rounds,
                args.paced_turns,
                think,
                options,
            )
        time.sleep(0.2)  # let the postmaster reap the backends that just disconnected
        server_after = server_cpu.seconds()
        server_s = (
            None if server_before is None or server_after is None else server_after - server_before
        )
        checked = check_database(url, results, expected)
        backend.drop(url)
        run = Run(backend.name, model, wall, cpu, server_s, results, checked)
        report(run, args.conversations, think)
        runs.append(run)
    if args.profile:
        backend.settle()
        with options.applied():
            profile_alone(
                backend.copy(),
                settings,
                parser,
                expected,
                args.profile_rounds,
                args.profile_top,
                options,
            )
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--postgres-url", help="a server to create throwaway databases on")
    parser.add_argument("--conversations", type=int, default=50)
    parser.add_argument(
        "--rounds", type=int, default=10, help="closed loop: times each conversation runs"
    )
    parser.add_argument(
        "--paced-turns", type=int, default=2_000, help="paced: run until this many turns"
    )
    parser.add_argument(
        "--think", type=float, nargs=2, default=[1.0, 2.0], metavar=("MIN_S", "MAX_S")
    )
    parser.add_argument(
        "--backends", nargs="+", choices=["postgres", "sqlite"], default=["postgres", "sqlite"]
    )
    parser.add_argument(
        "--models", nargs="+", choices=["closed", "paced"], default=["paced", "closed"]
    )
    parser.add_argument(
        "--profile", action="store_true", help="also count SQL and cProfile one thread alone"
    )
    parser.add_argument("--profile-rounds", type=int, default=20)
    parser.add_argument("--profile-top", type=int, default=30)
    parser.add_argument(
        "--experiment",
        nargs="+",
        choices=sorted(EXPERIMENTS),
        default=[],
        help="measure a change that is not in the application",
    )
    args = parser.parse_args(argv)
    options = Options(frozenset(args.experiment))
    quiet_logs()

    folder = Path(tempfile.mkdtemp(prefix="turn-bench-"))
    try:
        settings = Settings(data_dir=folder, _env_file=None)
        began = time.perf_counter()
        nlu = get_parser(settings)
        loaded = time.perf_counter() - began
        print("Turn benchmark: conversations through one shared ConversationEngine")
        print(
            f"  machine: {platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()} "
            f"{platform.release()}; Python {platform.python_version()}"
        )
        print(
            f"  SQLAlchemy {sqlalchemy.__version__}, psycopg {psycopg.__version__} "
            f"(libpq {psycopg.pq.version()}, {psycopg.pq.__impl__}), sqlite3 {sqlite3.sqlite_version}"
        )
        print(f"  NLU: {type(nlu).__name__}, loaded (trained) in {loaded:.1f} s")
        alone = nlu_alone(nlu, 50)
        print(f"  NLU parse alone, one thread, the scripts' texts: {figures(alone)}")
        mix = ", ".join(
            f"{s.name} x{sum(1 for i in range(args.conversations) if script_for(i, args.conversations) is s)}"
            f" ({len(s.lines)} turns)"
            for s in SCRIPTS
        )
        print(f"  conversations: {mix}")
        print(
            f"  target: p99 of a turn < {TARGET_P99_MS:g} ms on PostgreSQL with "
            f"{args.conversations} conversations, judged on the paced run (people think for "
            "seconds between turns; the closed loop measures capacity and queueing)"
        )
        for name in sorted(options.experiments):
            print(f"  EXPERIMENT (not in the application): {name}: {EXPERIMENTS[name]}")
        runs: list[Run] = []
        if "postgres" in args.backends:
            with server_for_benchmark(args.postgres_url) as server:
                pg = PostgresBackend(server)
                try:
                    runs += bench_backend(pg, args, settings, nlu, options)
                finally:
                    pg.close()
        if "sqlite" in args.backends:
            lite = SqliteBackend(folder)
            try:
                runs += bench_backend(lite, args, settings, nlu, options)
            finally:
                lite.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0 if all(run.ok for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
