"""Every conversation script in tests/bot/conversations/, on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import sessionmaker

from bot.conversation.engine import ConversationEngine
from bot.runtime.configure import load_deployment
from config.settings import Settings
from nlu.embedded import EmbeddedParser
from storage.db import transaction
from tests.bot.scripts import DEFAULT_START, Script, ScriptRunner, build_world, load_scripts

SCRIPTS = load_scripts()


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.id for s in SCRIPTS])
def test_conversation(script: Script, engine: Engine, nlu_parser: EmbeddedParser) -> None:
    settings = Settings(_env_file=None)
    start = datetime.fromisoformat(str(script.spec.get("at", DEFAULT_START)))
    with transaction(engine) as session:
        build_world(session, script.spec, start.date())
    bot = ConversationEngine(engine, nlu_parser, load_deployment(settings))
    ScriptRunner(bot, sessionmaker(engine), script).run()
