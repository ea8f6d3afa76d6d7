"""Fixtures of the conversation tests: the trained NLU parser and a conversation engine."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine

from bot.engine import ConversationEngine
from config.settings import Settings
from nlu.embedded import EmbeddedParser


@pytest.fixture(scope="session")
def nlu_parser(trained_nlu_dir: Path) -> EmbeddedParser:
    return EmbeddedParser.load(Settings(data_dir=trained_nlu_dir, _env_file=None))


@pytest.fixture
def bot(engine: Engine, nlu_parser: EmbeddedParser) -> ConversationEngine:
    return ConversationEngine.create(Settings(_env_file=None), engine, nlu_parser)
