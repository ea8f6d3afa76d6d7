"""The handler registry: every module is found, every intent has one handler, and what a handler
needs from the configuration (its category, its texts) is checked at start-up."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bot.runtime.configure import load_deployment
from config.categories import load_categories
from config.i18n import load_catalogs
from config.settings import CONFIG_DIR, Settings
from handlers import HandlerError, check_handlers, handlers_by_intent, load_handlers
from handlers.base import Handler, Slot, SlotKind
from nlu.intents import REQUEST_INTENTS


def test_every_request_intent_has_a_handler() -> None:
    by_intent = handlers_by_intent(load_handlers())
    assert set(REQUEST_INTENTS) <= by_intent.keys()
    assert {"talk_to_human", "cancel"} <= by_intent.keys()


def test_the_shipped_configuration_has_what_the_handlers_need() -> None:
    catalogs = load_catalogs(CONFIG_DIR / "messages")
    categories = load_categories(CONFIG_DIR / "categories.yml")
    assert check_handlers(load_handlers(), catalogs, categories) == []


def test_a_missing_text_or_category_is_named() -> None:
    class Broken(Handler):
        name = "broken"
        intents = ("broken",)
        category = "tea"
        slots = (Slot("what", SlotKind.TEXT),)

    catalogs = load_catalogs(CONFIG_DIR / "messages")
    categories = load_categories(CONFIG_DIR / "categories.yml")
    problems = check_handlers({"broken": Broken()}, catalogs, categories)
    assert "handlers/broken.py: category 'tea' is not in categories.yml" in problems
    assert "handlers/broken.py: needs the text 'broken.ask.what' in config/messages/" in problems
    assert "handlers/broken.py: needs the text 'broken.read_back' in config/messages/" in problems


def test_two_handlers_for_one_intent_are_refused() -> None:
    class One(Handler):
        name = "one"
        intents = ("greet",)

    class Two(Handler):
        name = "two"
        intents = ("greet",)

    with pytest.raises(HandlerError, match=r"'greet' is served by both one and two"):
        handlers_by_intent({"one": One(), "two": Two()})


def test_start_up_refuses_a_deployment_that_deleted_a_handler_text(tmp_path: Path) -> None:
    config = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, config)
    for lang in ("zh", "en"):
        path = config / "messages" / lang / "medication_reimbursement.yml"
        path.write_text(path.read_text(encoding="utf-8").replace("  read_back:", "  readback:"))
    with pytest.raises(HandlerError, match=r"medication_reimbursement\.read_back"):
        load_deployment(Settings(config_dir=config, _env_file=None))
