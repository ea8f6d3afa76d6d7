"""Case work on a clock, run by whichever process sends the outbox (`hotline worker`, or the
one `hotline serve` process that holds the background work): follow-up questions (回访),
check-ins (主动关爱: storage/check_ins.py), campaigns (storage/campaigns.py) and escalation of cases nobody claimed.

Each job is a storage function ``run_due(session, now, categories) -> int`` (how many things it
handled), run in its own short transaction on a worker thread every ``every_s`` seconds. A job
that fails (the database is down) is logged and tried again at its next turn; nothing it had
not committed is lost, because its rows stay due. Jobs lock what they handle (SKIP LOCKED on
PostgreSQL), so several workers on one database share the work without doing anything twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from bot.channels import moved_announcer
from bot.conversation.deployment import Deployment
from config.categories import CategoryConfig
from storage.db import transaction

log = structlog.get_logger(__name__)

JobRun = Callable[[Session, datetime, CategoryConfig], int]


@dataclass(frozen=True)
class PeriodicJob:
    name: str
    run: JobRun
    every_s: float


def default_jobs(deployment: Deployment) -> list[PeriodicJob]:
    """The jobs of a deployment. Emergencies are looked at often: one unclaimed for two
    minutes must ring again. A case moved up is posted to its new unit's Telegram group (and
    to whoever may take it now) when the deployment has a Telegram bot."""
    from storage import campaigns, check_ins, escalation, follow_up_jobs

    on_moved = moved_announcer(deployment)
    return [
        PeriodicJob("follow_ups", follow_up_jobs.run_due, 60.0),
        PeriodicJob("check_ins", functools.partial(check_ins.run_due, every_s=20.0), 20.0),
        PeriodicJob("campaigns", functools.partial(campaigns.run_due, every_s=20.0), 20.0),
        PeriodicJob("escalation", functools.partial(escalation.run_due, on_moved=on_moved), 15.0),
    ]


def run_job_once(
    db: Engine, job: PeriodicJob, categories: CategoryConfig, now: datetime | None = None
) -> int:
    """One run of ``job`` in one transaction; returns what it handled."""
    with transaction(db) as session:
        return job.run(session, now or datetime.now(UTC), categories)


def run_all_once(
    db: Engine,
    deployment: Deployment,
    jobs: list[PeriodicJob] | None = None,
    now: datetime | None = None,
) -> dict[str, int]:
    """Every job once (for `hotline worker --once` and tests)."""
    categories = deployment.categories
    jobs = jobs if jobs is not None else default_jobs(deployment)
    return {job.name: run_job_once(db, job, categories, now) for job in jobs}


async def run_periodic(
    db: Engine,
    stop: asyncio.Event,
    deployment: Deployment,
    jobs: list[PeriodicJob] | None = None,
) -> None:
    """Run each job every ``every_s`` seconds until ``stop`` is set."""
    jobs = jobs if jobs is not None else default_jobs(deployment)
    categories = deployment.categories
    next_run = dict.fromkeys((job.name for job in jobs), 0.0)
    while not stop.is_set():
        for job in jobs:
            if time.monotonic() < next_run[job.name]:
                continue
            next_run[job.name] = time.monotonic() + job.every_s
            try:
                handled = await asyncio.to_thread(run_job_once, db, job, categories)
                if handled:
                    log.info("periodic_job", job=job.name, handled=handled)
            except SQLAlchemyError as exc:
                log.warning("periodic_job_db_error", job=job.name, error=f"{exc}"[:300])
            except Exception:
                log.exception("periodic_job_failed", job=job.name)
        wait = max(0.05, min(next_run.values()) - time.monotonic()) if jobs else 3600.0
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=wait)
