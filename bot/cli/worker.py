"""`hotline worker`: send the outbox (SMS, WhatsApp, Telegram, calls) and run the periodic case
jobs (follow-ups, escalation; bot/runtime/periodic.py) until stopped, or once."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable

import typer
from sqlalchemy import Engine

from bot.channels import outbox_senders
from bot.cli.common import current_settings, fail
from bot.conversation.deployment import Deployment
from bot.conversation.engine import ConversationEngine
from bot.runtime.configure import load_deployment
from bot.runtime.periodic import run_all_once, run_periodic
from bot.runtime.worker import OutboxWorker, sweep_idle_conversations
from config.loader import ConfigError
from config.logging import configure_logging
from handlers import HandlerError
from nlu.parser import get_parser
from storage.db import make_engine
from storage.site import bind


def worker_command(
    once: bool = typer.Option(
        False, "--once", help="Send what is due now, then exit (for cron and tests)."
    ),
    interval: float = typer.Option(
        1.0, "--interval", min=0.05, help="Seconds between looks at the outbox when idle."
    ),
) -> None:
    """Send the outbox and run follow-ups and escalation; run this beside `hotline serve` when
    HOTLINE_RUN_WORKER=false."""
    settings = current_settings()
    configure_logging(settings.log_level, settings.log_json)
    try:
        deployment = load_deployment(settings)
    except (ConfigError, HandlerError) as exc:
        fail(f"configuration: {exc}")
    offer = outbox_senders(settings)
    senders = offer.on
    for channel in sorted(senders):
        typer.echo(f"{channel}: on")
    for channel, command in sorted(offer.elsewhere.items()):
        typer.echo(f"{channel}: sent by {command}")
    for channel, why in sorted(offer.off.items()):
        typer.echo(f"{channel}: off (needs {why}); its notifications wait in the outbox")
    if not senders:
        fail("no channel can send: configure Twilio or Telegram first")
    engine = make_engine(settings.effective_database_url)
    bind(engine, deployment)
    worker = OutboxWorker(
        engine, senders, language=settings.default_language, sent_elsewhere=offer.elsewhere
    )
    conversations = _lazy_conversations(deployment, engine)
    try:
        if once:  # case work first: what it queues is sent in the same run
            for job, handled in run_all_once(engine, deployment).items():
                typer.echo(f"{job}: {handled} handled")
        sent = asyncio.run(_run(worker, once, interval, conversations, engine, deployment))
    finally:
        engine.dispose()
    if once:
        typer.echo(f"attempted {sent} notification(s)")


def _lazy_conversations(
    deployment: Deployment, engine: Engine
) -> Callable[[], Awaitable[ConversationEngine]]:
    """The conversation engine, built on first use (it loads the NLU model)."""
    built: list[ConversationEngine] = []

    async def conversations() -> ConversationEngine:
        if not built:
            parser = await asyncio.to_thread(get_parser, deployment.settings)
            built.append(ConversationEngine(engine, parser, deployment))
        return built[0]

    return conversations


async def _run(
    worker: OutboxWorker,
    once: bool,
    interval: float,
    conversations: Callable[[], Awaitable[ConversationEngine]],
    db: Engine,
    deployment: Deployment,
) -> int:
    try:
        if once:
            await worker.maintain()
            total = 0
            while True:  # everything due now, a batch at a time
                attempted = await worker.run_once()
                total += attempted
                if attempted < worker.batch_size:
                    return total
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        # Beside sending: file what conversations left half-way (the person went away).
        sweeper = asyncio.create_task(sweep_idle_conversations(conversations, stop))
        periodic = asyncio.create_task(run_periodic(db, stop, deployment))  # follow-ups, escalation
        try:
            await worker.run(stop, interval_s=interval)
        finally:
            stop.set()
            await sweeper
            await periodic
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
        return 0
    finally:
        await worker.aclose()
