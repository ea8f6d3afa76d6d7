"""One module per kind of request. Each module defines HANDLER, an instance of a
handlers.base.Handler subclass; the registry finds them, so a new kind of request is a new
module here, its training examples in nlu/data/intents/, its texts in config/messages/ and its
entry in config/categories.yml."""

from __future__ import annotations

import importlib
import pkgutil
from functools import lru_cache

from config.categories import CategoryConfig
from config.i18n import Catalogs
from config.words import Words, missing_words
from handlers.base import Handler, SlotKind

NOT_HANDLERS = {"base"}


class HandlerError(Exception):
    """A handler module is inconsistent with the configuration (named in the message)."""


@lru_cache(maxsize=1)
def load_handlers() -> dict[str, Handler]:
    """Every handler module's HANDLER, by name."""
    found: dict[str, Handler] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.startswith("_") or info.name in NOT_HANDLERS:
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        handler = getattr(module, "HANDLER", None)
        if not isinstance(handler, Handler):
            raise HandlerError(f"handlers/{info.name}.py: defines no HANDLER (a Handler instance)")
        if handler.name != info.name:
            raise HandlerError(
                f"handlers/{info.name}.py: HANDLER.name is {handler.name!r}; it must be the module's name"
            )
        found[handler.name] = handler
    return found


def handlers_by_intent(handlers: dict[str, Handler]) -> dict[str, Handler]:
    by_intent: dict[str, Handler] = {}
    for handler in handlers.values():
        for intent in handler.intents:
            if intent in by_intent:
                raise HandlerError(
                    f"intent {intent!r} is served by both {by_intent[intent].name} and {handler.name}"
                )
            by_intent[intent] = handler
    return by_intent


def check_handlers(
    handlers: dict[str, Handler],
    catalogs: Catalogs,
    categories: CategoryConfig,
    words: Words | None = None,
) -> list[str]:
    """What a handler needs but the configuration lacks: its category, its texts, its words."""
    problems: list[str] = []
    for handler in handlers.values():
        if words is not None:
            problems += missing_words(words, handler.name, handler.word_lists)
        where = f"handlers/{handler.name}.py"
        if handler.category and handler.category not in categories.categories:
            problems.append(f"{where}: category {handler.category!r} is not in categories.yml")
        if (
            handler.intents
            and not handler.category
            and f"{handler.name}.kind" not in catalogs.texts["zh"]
        ):
            problems.append(
                f"{where}: files no category, so it needs the text '{handler.name}.kind'"
            )
        keys = [f"{handler.name}.ask.{s.name}" for s in handler.slots]
        keys += [
            f"{handler.name}.options.{s.name}.{o.value}"
            for s in handler.slots
            if s.kind == SlotKind.OPTION
            for o in s.options
        ]
        if handler.slots:
            keys += [f"{handler.name}.labels.{s.name}" for s in handler.slots]
            keys += [f"{handler.name}.summary"]
            if handler.confirm:
                keys.append(f"{handler.name}.read_back")
        missing = [k for k in keys if k not in catalogs.texts["zh"]]
        problems += [f"{where}: needs the text {key!r} in config/messages/" for key in missing]
    return problems
