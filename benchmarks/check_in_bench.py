"""Daily check-ins for 10,000 people over a simulated day: the application's periodic job
(storage.check_ins.run_due, every 20 s of the simulated clock) in two worker processes at once
on one database, with most people answering 1 a few minutes after they are asked, some 2, and
some never (the ladder: ask again, the family, a visit case). The database then shows whether
anybody was asked twice, asked at night, or first asked outside their window.

The clock is simulated (a whole day runs in minutes); the figures of time are the real cost
of the job's runs on this machine."""

# Run: .venv/bin/python benchmarks/check_in_bench.py [--people 10000] [--workers 2]
#      [--backends sqlite postgres] [--postgres-url URL]

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root

import structlog
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from config.categories import get_categories
from storage import check_ins
from storage.bulk import allocate_ids, insert_many
from storage.db import make_engine, transaction
from storage.migrate import upgrade
from storage.models import (
    CheckIn,
    CheckInStatus,
    FamilyMember,
    OutboxItem,
    Retiree,
    RetireePhone,
    RetireeStatus,
)
from storage.site import environment_site
from tests.factories import make_unit_tree
from tests.pg_server import server_for_benchmark

SHANGHAI = ZoneInfo("Asia/Shanghai")
DAY = date(2026, 6, 2)  # a Tuesday
STEP = timedelta(seconds=20)  # how often the job runs (as bot/runtime/periodic.py has it)
# Of those asked, by the last digit of their id: who answers 1, who 2 (and no request
# follows), and who never answers.
ANSWERS_2 = {7}
NEVER = {3}


def quiet_logs() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


def local(hour: int, minute: int = 0) -> datetime:
    return datetime(DAY.year, DAY.month, DAY.day, hour, minute, tzinfo=SHANGHAI).astimezone(UTC)


def populate(engine: Engine, people: int) -> None:
    """``people`` retirees of 91 (a daily check-in, 09:00–11:00, by config/care.yml's
    defaults), each with a phone and one family member who may know of check-ins."""
    with transaction(engine) as session:
        community = make_unit_tree(session).community_a1
        ids = allocate_ids(session, Retiree.__table__, people)
        now = local(0)
        insert_many(
            session,
            Retiree,
            [
                {
                    "id": i,
                    "name": f"老人{i}",
                    "birth_date": date(1935, 1, 1),
                    "community_id": community.id,
                    "lives_alone": True,
                    "status": RetireeStatus.ACTIVE,
                    "created_at": now,
                    "updated_at": now,
                }
                for i in ids
            ],
        )
        insert_many(
            session,
            RetireePhone,
            [{"retiree_id": i, "number": f"+86139{i:08d}", "label": ""} for i in ids],
        )
        insert_many(
            session,
            FamilyMember,
            [
                {
                    "retiree_id": i,
                    "name": "家属",
                    "relation": "子女",
                    "channel": "sms",
                    "address": f"+86136{i:08d}",
                    "may_know": ["check_ins"],
                    "may_ask": False,
                    "consent": "本人同意",
                    "consented_on": DAY,
                    "active": True,
                    "created_at": now,
                }
                for i in ids
            ],
        )


# -- the worker processes -------------------------------------------------------------------------

_ENGINE: Engine | None = None


def _start_worker(url: str) -> None:
    global _ENGINE
    quiet_logs()
    _ENGINE = make_engine(url, pool_size=1, max_overflow=0)


def _run_at(now: datetime) -> tuple[int, float]:
    """One run of the job at ``now``: (check-ins handled, seconds it took)."""
    assert _ENGINE is not None
    started = time.perf_counter()
    with transaction(_ENGINE) as session:
        handled = check_ins.run_due(session, now, get_categories(), every_s=STEP.total_seconds())
    return handled, time.perf_counter() - started


def _peak_rss_mib(_: Any = None) -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- the people answering -------------------------------------------------------------------------


def answer_those_asked(engine: Engine, since: datetime, now: datetime) -> int:
    """Who was asked in (since - 2 min, now - 2 min] answers now: 1, or 2, or nothing."""
    answered = 0
    with transaction(engine) as session:
        asked = session.scalars(
            select(CheckIn).where(
                CheckIn.status == CheckInStatus.ASKED,
                CheckIn.asked_at > since - timedelta(minutes=2),
                CheckIn.asked_at <= now - timedelta(minutes=2),
            )
        ).all()
        for check_in in asked:
            if check_in.retiree_id % 10 in NEVER:
                continue
            choice = "2" if check_in.retiree_id % 10 in ANSWERS_2 else "1"
            check_ins.answer(session, check_in, choice, now=now)
            answered += 1
    return answered


# -- checking what the database holds ---------------------------------------------------------------


@dataclass
class Verdict:
    check_ins: int
    statuses: dict[str, int]
    asked_twice_first: int  # check-ins with more than one first question
    night: int  # anything sent to anyone in the quiet hours
    first_outside_window: int
    late_s_max: float  # the last first question, from the window's end (negative: before it)
    questions: int
    family: int

    @property
    def ok(self) -> bool:
        return self.asked_twice_first == 0 and self.night == 0 and self.first_outside_window == 0


def verdict(engine: Engine, people: int) -> Verdict:
    care = environment_site().care
    with Session(engine) as session:
        rows = session.execute(select(CheckIn.id, CheckIn.status, CheckIn.window_end)).all()
        items = session.execute(
            select(OutboxItem.idempotency_key, OutboxItem.created_at, OutboxItem.payload)
        ).all()
        first_asks = Counter()
        night = 0
        family = 0
        first_at: dict[int, datetime] = {}
        for key, created, payload in items:
            if care.quiet_hours.holds(created.astimezone(SHANGHAI).time()):
                night += 1
            if payload.get("kind") == "check_in_family":
                family += 1
            parts = key.split(":")
            if parts[0] == "check_in" and parts[2] == "1":
                first_asks[int(parts[1])] += 1
                first_at[int(parts[1])] = created
        outside = 0
        window = care.defaults[0].plan.window
        starts = datetime.combine(DAY, window.start, tzinfo=SHANGHAI)
        ends = datetime.combine(DAY, window.end, tzinfo=SHANGHAI)
        for check_in_id, _status, end in rows:
            asked = first_at.get(check_in_id)
            if asked is not None and not (starts <= asked < end):
                outside += 1
        statuses = Counter(status.value for _, status, _ in rows)
        # > 0 only when a first question came after the window's end
        late = max(((at - ends).total_seconds() for at in first_at.values()), default=0.0)
        count = session.scalar(select(func.count()).select_from(CheckIn)) or 0
    return Verdict(
        check_ins=count,
        statuses=dict(statuses),
        asked_twice_first=sum(1 for n in first_asks.values() if n > 1),
        night=night,
        first_outside_window=outside,
        late_s_max=late,
        questions=sum(1 for key, _, _ in items if key.startswith("check_in:")),
        family=family,
    )


# -- a run ----------------------------------------------------------------------------------------


def run_day(url: str, people: int, workers: int, label: str) -> bool:
    engine = make_engine(url)
    upgrade(engine)
    started = time.perf_counter()
    populate(engine, people)
    print(
        f"\n{label}: {people:,} people aged 91 (daily, 09:00–11:00) made in "
        f"{time.perf_counter() - started:.1f} s"
    )
    runs: list[float] = []
    handled_total = 0
    answered = 0
    now = local(0)
    end = local(23, 59)
    job_s = 0.0
    planned_s = 0.0
    wall = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(
        workers, initializer=_start_worker, initargs=(url,)
    ) as pool:
        while now <= end:
            results = pool.map(_run_at, [now] * workers)
            took = max(s for _, s in results)
            if not planned_s:
                planned_s = took
            else:
                runs.append(took)
            job_s += took
            handled_total += sum(h for h, _ in results)
            answered += answer_those_asked(engine, now - STEP, now)
            now += STEP
        rss = max(pool.map(_peak_rss_mib, range(workers)))
    wall = time.perf_counter() - wall
    found = verdict(engine, people)
    engine.dispose()
    runs.sort()
    print(
        f"  {len(runs) + 1:,} runs of the job × {workers} workers over the day; "
        f"{handled_total:,} rungs handled, {answered:,} answers"
    )
    print(f"  planning the day (the first run): {planned_s:.2f} s")
    print(
        f"  a run of the job: p50 {statistics.median(runs) * 1000:.1f} ms, "
        f"p99 {runs[int(len(runs) * 0.99)] * 1000:.1f} ms, max {runs[-1] * 1000:.1f} ms; "
        f"all runs {job_s:.1f} s of the day's 86,400 s; whole simulation {wall:.0f} s"
    )
    print(f"  peak memory of a worker process: {rss:.0f} MiB")
    print(f"  check-ins: {found.check_ins:,} (expected {people:,}); by status {found.statuses}")
    print(f"  questions put: {found.questions:,}; family told: {found.family:,}")
    print(
        f"  asked twice as a first question: {found.asked_twice_first}; anything sent at night: "
        f"{found.night}; first questions outside the window: {found.first_outside_window}; "
        f"the last first question {found.late_s_max / 60:+.1f} min from the window's end"
    )
    ok = found.ok and found.check_ins == people
    print(f"  {'OK' if ok else 'FAILED'}")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--people", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgres"])
    parser.add_argument("--postgres-url")
    args = parser.parse_args(argv)
    quiet_logs()
    print(
        f"check-in benchmark: {platform.machine()}, {os.cpu_count()} CPU cores; Python "
        f"{platform.python_version()}; care.yml per_minute {environment_site().care.per_minute}"
    )
    ok = True
    if "sqlite" in args.backends:
        with tempfile.TemporaryDirectory() as folder:
            url = f"sqlite:///{folder}/bench.db"
            ok &= run_day(url, args.people, args.workers, "SQLite")
    if "postgres" in args.backends:
        with server_for_benchmark(args.postgres_url) as server:
            url = server.create_database("check_in_bench")
            ok &= run_day(url, args.people, args.workers, "PostgreSQL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
