"""`hotline sip`: the one-key phone line over SIP (bot/channels/sip/), until Ctrl-C: answers the
one-key phones and places the outbox's calls."""

from __future__ import annotations

import asyncio
import importlib
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, cast

import typer

from bot.cli.common import current_settings, fail
from bot.runtime.configure import load_deployment
from config.checks import check_configuration
from config.loader import ConfigError
from config.logging import configure_logging
from config.sip import load_sip
from handlers import HandlerError
from storage.db import make_engine
from storage.migrate import upgrade
from storage.site import bind

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from bot.channels.sip.agent import Agent
    from bot.channels.sip.line import Recogniser


def sip_command(
    migrate: bool = typer.Option(True, "--migrate/--no-migrate", help="Upgrade the schema first."),
) -> None:
    """Register on the PBX or trunk and answer the one-key phones' calls."""
    settings = current_settings()
    if not settings.sip_enabled:
        fail("set HOTLINE_SIP_REGISTRAR (sip:pbx.example.org:5060) and HOTLINE_SIP_USER")
    from bot.channels.sip.prompts import Prompts, tools_missing

    missing = tools_missing()
    if missing:
        fail(f"the line speaks with {' and '.join(missing)}: apt-get install espeak-ng sox")
    try:
        import pjsua2  # noqa: F401
    except ImportError:
        fail("pjsua2 is not installed (pip install pjsua2-python; x86_64 Linux wheels only)")
    configure_logging(settings.log_level, settings.log_json)
    try:
        check_configuration(settings)
        deployment = load_deployment(settings)
        config = load_sip(settings.config_dir)
    except (ConfigError, HandlerError) as exc:
        fail(f"configuration: {exc}")
    unknown = sorted(
        c.request
        for c in config.menu.values()
        if c.request and c.request not in deployment.categories.categories
    )
    if unknown:
        fail(
            f"configuration: {settings.config_dir / 'sip.yml'}: no such kind of request: {', '.join(unknown)}"
        )
    recogniser = None
    if settings.sip_recogniser:
        try:
            recogniser = load_recogniser(settings.sip_recogniser)
        except (ImportError, AttributeError, ValueError) as exc:
            fail(f"HOTLINE_SIP_RECOGNISER={settings.sip_recogniser}: {exc}")
    engine = make_engine(settings.effective_database_url, pool_timeout=5)
    bind(engine, deployment)
    if migrate:
        upgrade(engine)

    from bot.channels import case_announcers
    from bot.channels.sip.agent import Agent
    from bot.channels.sip.line import Line
    from bot.conversation.engine import ConversationEngine
    from nlu.parser import get_parser

    # New cases are posted to staff as the app's are (WeCom cards, Telegram posts).
    hooks = case_announcers(deployment)
    conversations = ConversationEngine(engine, get_parser(settings), deployment, on_filed=hooks)
    prompts = Prompts(
        deployment.catalogs, config, settings.config_dir, Path(settings.data_dir) / "prompts"
    )
    line = Line(conversations, engine, settings.default_language, recogniser)
    agent = Agent(settings, config, line, prompts)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    agent.start()
    calls = CallsOut(engine, agent, settings.default_language)
    try:
        calls.start()
        agent.run(stop)
    finally:
        calls.stop()
        agent.stop()
        engine.dispose()


def load_recogniser(spec: str) -> Recogniser:
    """The speech recogniser "module:function" names (bot/channels/sip/line.py, its port)."""
    module, _, name = spec.partition(":")
    if not module or not name:
        raise ValueError("write it as module:function, e.g. my_asr.hotline:transcribe")
    found = getattr(importlib.import_module(module), name)
    if not callable(found):
        raise ValueError(f"{name} in {module} is not a function")
    return cast("Recogniser", found)


class CallsOut:
    """The outbox's calls ("voice"), placed on the line: a worker of that channel alone, on a
    thread with an event loop of its own (the agent's loop is pjsua2's)."""

    def __init__(self, engine: Engine, agent: Agent, language: str) -> None:
        from bot.channels.calls import CHANNEL
        from bot.channels.sip.sender import SipCallSender
        from bot.runtime.worker import OutboxWorker

        self.agent = agent
        sender = SipCallSender(agent, language)
        self.worker = OutboxWorker(
            engine, {CHANNEL: sender}, language=language, flag_unsendable=False
        )
        self.loop = asyncio.new_event_loop()
        self.stopping = asyncio.Event()
        self.thread = threading.Thread(target=self._run, name="sip-calls-out", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.worker.run(self.stopping))
        finally:
            self.loop.run_until_complete(self.worker.aclose())
            self.loop.close()

    def stop(self) -> None:
        """Let the round in progress finish (a call not dialled yet goes back to the outbox at
        once), then end the thread."""
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.stopping.set)
            self.agent.stop_dialling()
            self.thread.join(timeout=20)
