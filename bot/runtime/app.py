"""The one ASGI app that `hotline serve` runs: health checks, NLU, the channels' webhooks and API,
and the staff console."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from bot.channels import WEBHOOK_PREFIXES, mount_channels, moved_announcer
from bot.channels.base import Conversations, Mounted
from bot.channels.twilio.outage import Replayer, replay_token, spool_of
from bot.conversation.deployment import Deployment
from bot.runtime import nlu as nlu_routes
from bot.runtime.configure import load_deployment
from bot.runtime.edge import RejectNul, RequestLog
from bot.runtime.flock import try_flock
from bot.runtime.nlu import ParserLoader
from bot.runtime.periodic import run_periodic
from bot.runtime.worker import start_outbox_worker, sweep_idle_conversations
from config.settings import Settings
from console import bind_engine, mount_console
from storage.db import make_engine, ping
from storage.site import bind
from storage.spool import Spool

log = structlog.get_logger(__name__)


def create_app(
    settings: Settings, engine: Engine | None = None, *, standby_retry_s: float = 5.0
) -> FastAPI:
    """Build the app for ``settings``; ``engine`` lets a caller share one it already has.
    ``standby_retry_s``: with several workers, how often a process that does not run the
    background work looks whether it should take it over (see `BackgroundWork`)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = engine is None
        app.state.engine = engine or make_engine(settings.effective_database_url, pool_timeout=5)
        bind(app.state.engine, deployment)  # the case actions work with this deployment too
        bind_engine(app, app.state.engine)
        app.state.nlu = ParserLoader(settings)
        app.state.nlu.start()
        hooks = [hook for channel in channels for hook in channel.on_filed]
        app.state.conversations = Conversations(
            deployment, app.state.engine, app.state.nlu.parser, on_filed=hooks
        )
        for channel in channels:
            for start in channel.on_startup:
                await start()
        app.state.outbox_worker = None
        app.state.background = background = BackgroundWork(app, standby_retry_s)
        background.start()
        replaying = _start_replayer(app, deployment, channels)
        try:
            yield
        finally:
            if replaying is not None:
                await replaying()
            await background.stop()
            for channel in channels:
                for stop in channel.on_shutdown:
                    await stop()
            if own:
                app.state.engine.dispose()

    app = FastAPI(title="Community Hotline", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.deployment = deployment = load_deployment(settings)
    app.state.spool = spool_of(settings)  # Twilio webhooks kept while the database is down
    app.state.replay_token = replay_token()  # how its routes know the spool's replays
    app.include_router(nlu_routes.router)
    channels = mount_channels(app, deployment)
    mount_console(app, deployment, on_moved=moved_announcer(deployment))
    app.state.channels = channels
    log.info("channels", **{c.name: ("on" if c.enabled else f"off: {c.why}") for c in channels})

    app.add_middleware(RejectNul, passing=WEBHOOK_PREFIXES)  # the webhooks clean instead
    app.add_middleware(RequestLog)  # added last: the outermost, so it times everything

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """The process is up (says nothing about the database)."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    async def readyz(request: Request) -> JSONResponse:
        """Ready to serve: the database answers. 503 while it cannot be reached. Also how many
        webhooks this machine's spool keeps (waiting for the database; failed: see `hotline
        spool list`), for monitoring."""
        spool: Spool = request.app.state.spool
        waiting, failed = spool.counts()
        kept = {"waiting": waiting, "failed": failed}
        try:
            await run_in_threadpool(ping, request.app.state.engine)
        except SQLAlchemyError as exc:
            log.warning("database_unreachable", error=type(exc).__name__)
            return JSONResponse(
                {"status": "unavailable", "database": "unreachable", "spool": kept},
                status_code=503,
            )
        return JSONResponse({"status": "ok", "database": "ok", "spool": kept})

    return app


def _start_replayer(
    app: FastAPI, deployment: Deployment, channels: list[Mounted]
) -> Callable[[], Coroutine[Any, Any, None]] | None:
    """Every process hands back what its machine's spool kept while the database was down
    (bot/channels/twilio/outage.py, and the channels' own kinds: `Mounted.replays`); returns
    what stops it."""
    settings = deployment.settings
    replays = {kind: replay for channel in channels for kind, replay in channel.replays.items()}
    twilio = settings.twilio_enabled and bool(settings.public_url)
    if not (twilio or replays):
        return None
    file_call = None
    if twilio:
        from bot.channels.twilio.voice.handover import file_outage_call

        file_call = partial(file_outage_call, app.state.conversations, deployment.emergency_rules)
    replayer = Replayer(app, app.state.spool, file_call, replays=replays)
    stop = asyncio.Event()
    task = asyncio.create_task(replayer.run(stop), name="spool-replayer")

    async def stopping() -> None:
        stop.set()
        await task

    return stopping


class BackgroundWork:
    """The outbox worker, the idle sweep and the periodic case jobs (bot/runtime/periodic.py:
    follow-ups, escalation) of a `hotline serve` (with HOTLINE_RUN_WORKER).

    One process: they run in it. Several uvicorn workers (settings.workers > 1), each with
    this same app: only the process holding an exclusive lock on data_dir/background.lock
    runs them, the others stand by and try the lock every ``retry_s``, so that when the holder
    stops (a crash, uvicorn's restart of a worker) another takes over and the outbox is never
    left unsent. The lock is the kernel's (flock), released when its process ends however it
    ends. One sender per machine is what SQLite needs (its outbox claims have no SKIP LOCKED;
    BEGIN IMMEDIATE serialises them, but two senders would only queue on the busy timeout);
    on PostgreSQL a second sender (another machine's, or `hotline worker`) is safe.
    """

    LOCK_FILE = "background.lock"

    def __init__(self, app: FastAPI, retry_s: float = 5.0) -> None:
        self.app = app
        self.settings: Settings = app.state.settings
        self.retry_s = retry_s
        self.running = False
        self._lock_fd: int | None = None
        self._standby: asyncio.Task[None] | None = None
        self._sweep_stop = asyncio.Event()
        self._sweeper: asyncio.Task[None] | None = None
        self._periodic: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Run the work now (one process), or stand by for the lock (several)."""
        if not self.settings.run_worker:
            start_outbox_worker(self.settings, self.app.state.engine)  # logs that it is off
        elif self.settings.workers <= 1:
            self._run()
        else:
            self._standby = asyncio.create_task(self._take_over(), name="background-standby")

    async def stop(self) -> None:
        if self._standby is not None:
            self._standby.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._standby
        self._sweep_stop.set()
        if self._sweeper is not None:
            await self._sweeper
        if self._periodic is not None:
            await self._periodic
        if self.app.state.outbox_worker is not None:
            await self.app.state.outbox_worker.stop()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the lock: a standing-by process takes over
            self._lock_fd = None
        self.running = False

    async def _take_over(self) -> None:
        while not self._locked():
            await asyncio.sleep(self.retry_s)
        self._run()

    def _locked(self) -> bool:
        self._lock_fd = try_flock(Path(self.settings.data_dir) / self.LOCK_FILE)
        return self._lock_fd is not None

    def _run(self) -> None:
        state = self.app.state
        state.outbox_worker = start_outbox_worker(self.settings, state.engine)
        self._sweeper = asyncio.create_task(
            sweep_idle_conversations(state.conversations.engine, self._sweep_stop)
        )
        self._periodic = asyncio.create_task(
            run_periodic(state.engine, self._sweep_stop, state.deployment), name="periodic-jobs"
        )
        self.running = True
        log.info("background_work_here", pid=os.getpid(), workers=self.settings.workers)
