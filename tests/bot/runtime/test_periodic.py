"""The clock that runs follow-ups and escalation: every job on its own schedule, in its own
transaction; a job that fails is logged and tried again, and does not stop the others."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from structlog.testing import capture_logs

from bot.runtime.periodic import PeriodicJob, run_all_once, run_periodic
from config.categories import CategoryConfig
from storage.db import transaction
from storage.models import Unit, UnitLevel
from tests.factories import make_unit_tree


def test_jobs_run_on_their_schedule_and_a_failing_one_does_not_stop_the_rest(
    engine: Engine, deployment: Any
) -> None:
    with transaction(engine) as session:
        make_unit_tree(session)
    runs: list[tuple[str, int]] = []
    failures = 0

    def counting(session: Session, now: datetime, categories: CategoryConfig) -> int:
        units = session.scalar(select(func.count(Unit.id))) or 0  # a real query, in a session
        runs.append(("counting", units))
        return 1

    def failing(session: Session, now: datetime, categories: CategoryConfig) -> int:
        nonlocal failures
        failures += 1
        raise RuntimeError("boom")

    jobs = [PeriodicJob("counting", counting, 0.05), PeriodicJob("failing", failing, 0.05)]

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(run_periodic(engine, stop, deployment, jobs))
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.wait_for(task, timeout=5)

    with capture_logs() as logs:
        asyncio.run(main())
    assert len(runs) >= 3 and all(units > 0 for _, units in runs)
    assert failures >= 3  # tried again each time
    assert any(e["event"] == "periodic_job_failed" and e["job"] == "failing" for e in logs)


def test_run_all_once_commits_what_a_job_wrote(engine: Engine, deployment: Any) -> None:
    def adding(session: Session, now: datetime, categories: CategoryConfig) -> int:
        session.add(Unit(code="X-NEW", level=UnitLevel.CENTER, name_zh="新中心", name_en="New"))
        return 1

    assert run_all_once(engine, deployment, [PeriodicJob("adding", adding, 1.0)]) == {"adding": 1}
    with transaction(engine) as session:
        assert session.scalar(select(Unit.name_zh).where(Unit.code == "X-NEW")) == "新中心"
