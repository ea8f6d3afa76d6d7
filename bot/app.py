"""The one ASGI app that `hotline serve` runs: health checks, NLU, the channels' webhooks and API,
and the staff console."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from bot.channels import mount_channels
from bot.channels.base import Conversations
from bot.routes import nlu as nlu_routes
from bot.routes.nlu import ParserLoader
from bot.worker import start_outbox_worker, sweep_idle_conversations
from config.settings import Settings
from console import bind_engine, mount_console
from storage.db import make_engine, ping

log = structlog.get_logger(__name__)


def create_app(settings: Settings, engine: Engine | None = None) -> FastAPI:
    """Build the app for ``settings``; ``engine`` lets a caller share one it already has."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = engine is None
        app.state.engine = engine or make_engine(settings.effective_database_url, pool_timeout=5)
        bind_engine(app, app.state.engine)
        app.state.nlu = ParserLoader(settings)
        app.state.nlu.start()
        hooks = [hook for channel in channels for hook in channel.on_filed]
        app.state.conversations = Conversations(
            settings, app.state.engine, app.state.nlu.parser, on_filed=hooks
        )
        for channel in channels:
            for start in channel.on_startup:
                await start()
        app.state.outbox_worker = outbox_worker = start_outbox_worker(
            settings, app.state.engine, channels
        )
        sweep_stop = asyncio.Event()
        sweeper = None
        if settings.run_worker:  # the same switch: one process does the background work
            sweeper = asyncio.create_task(
                sweep_idle_conversations(app.state.conversations.engine, sweep_stop)
            )
        try:
            yield
        finally:
            sweep_stop.set()
            if sweeper is not None:
                await sweeper
            if outbox_worker is not None:
                await outbox_worker.stop()
            for channel in channels:
                for stop in channel.on_shutdown:
                    await stop()
            if own:
                app.state.engine.dispose()

    app = FastAPI(title="Community Hotline", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.include_router(nlu_routes.router)
    channels = mount_channels(app, settings)
    mount_console(app, settings)
    app.state.channels = channels
    log.info("channels", **{c.name: ("on" if c.enabled else f"off: {c.why}") for c in channels})

    @app.middleware("http")
    async def request_log(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex[:16]
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        try:
            response = await call_next(request)
        finally:
            structlog.contextvars.unbind_contextvars("request_id")
        response.headers["x-request-id"] = request_id
        log.info(
            "request",
            request_id=request_id,
            method=request.method,
            path=request.url.path,
            status=response.status_code,
            ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return response

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """The process is up (says nothing about the database)."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    async def readyz(request: Request) -> JSONResponse:
        """Ready to serve: the database answers. 503 while it cannot be reached."""
        try:
            await run_in_threadpool(ping, request.app.state.engine)
        except SQLAlchemyError as exc:
            log.warning("database_unreachable", error=type(exc).__name__)
            return JSONResponse(
                {"status": "unavailable", "database": "unreachable"}, status_code=503
            )
        return JSONResponse({"status": "ok", "database": "ok"})

    return app
