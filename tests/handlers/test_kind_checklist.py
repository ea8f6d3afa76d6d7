"""The checklist of a kind of request: adding one is its handler module (handlers/<kind>.py), its
data (training and held-out examples in nlu/data/, its texts in config/messages/zh and en, the
words it listens for in config/words/ if any, its conversation scripts in
tests/bot/conversations/) and its entry in config/categories.yml. This
test names whatever part a kind lacks; nothing else is edited (the intent lists and Rasa's
domain follow the training data)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from config.categories import load_categories
from handlers import load_handlers
from nlu.intents import INTENTS_DIR, REQUEST_INTENTS
from nlu.training_data import held_out_files, load_training_data

ROOT = Path(__file__).resolve().parents[2]


def missing_parts(handler: Any, root: Path = ROOT) -> list[str]:
    """What the kind of request ``handler`` serves lacks, one line each."""
    missing = []
    held_out = set(load_training_data(held_out_files()).intents)
    for intent in handler.intents:
        if not (INTENTS_DIR / f"{intent}.yml").is_file():
            missing.append(f"nlu/data/intents/{intent}.yml (training examples)")
        if intent not in held_out:
            missing.append(f"held-out examples of {intent!r} in nlu/data/test/")
    for lang in ("zh", "en"):
        if not (root / "config" / "messages" / lang / f"{handler.name}.yml").is_file():
            missing.append(f"config/messages/{lang}/{handler.name}.yml (its texts)")
    words_file = root / "config" / "words" / f"{handler.name}.yml"
    if getattr(handler, "word_lists", ()) and not words_file.is_file():
        missing.append(f"config/words/{handler.name}.yml (the words it listens for)")
    categories = load_categories(root / "config" / "categories.yml").categories
    if handler.category and handler.category not in categories:
        missing.append(f"config/categories.yml: categories.{handler.category}")
    scripts = root / "tests" / "bot" / "conversations" / f"{handler.name}.yml"
    if not scripts.is_file() or not yaml.safe_load(scripts.read_text(encoding="utf-8")):
        missing.append(f"tests/bot/conversations/{handler.name}.yml (its conversations)")
    return missing


def kinds_of_request() -> list[Any]:
    return [h for h in load_handlers().values() if set(h.intents) & set(REQUEST_INTENTS)]


def test_every_request_intent_has_a_handler() -> None:
    served = {intent for handler in kinds_of_request() for intent in handler.intents}
    assert served == set(REQUEST_INTENTS)


@pytest.mark.parametrize("handler", kinds_of_request(), ids=lambda h: h.name)
def test_a_kind_of_request_has_every_part(handler: Any) -> None:
    assert missing_parts(handler) == []


def test_the_checklist_names_each_part_a_new_kind_lacks() -> None:
    pension = SimpleNamespace(
        name="pension", intents=("pension",), category="pension", word_lists=("kinds",)
    )
    assert missing_parts(pension) == [
        "nlu/data/intents/pension.yml (training examples)",
        "held-out examples of 'pension' in nlu/data/test/",
        "config/messages/zh/pension.yml (its texts)",
        "config/messages/en/pension.yml (its texts)",
        "config/words/pension.yml (the words it listens for)",
        "config/categories.yml: categories.pension",
        "tests/bot/conversations/pension.yml (its conversations)",
    ]
