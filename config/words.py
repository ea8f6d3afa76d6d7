"""The words the handlers listen for (config/words/<handler>.yml), which a deployment edits:
local ways of saying things are added there, not in code. Each file holds the word lists of one
handler (``lists``: name → words) and its word groups (``groups``: name → what each group
means → its words, e.g. 父亲 → 爸爸, 老爸, 我爹). Chinese and English words share a list.

Every list and group a handler declares (``Handler.words``) must be in its file; the engine's
configuration check says which is missing (handlers/__init__.py)."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from config.loader import load_yaml_model

Word = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40)]
WordList = Annotated[tuple[Word, ...], Field(min_length=1)]


class HandlerWords(BaseModel):
    """One handler's file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1]
    lists: dict[str, WordList] = Field(default_factory=dict)
    groups: dict[str, dict[Word, WordList]] = Field(default_factory=dict)

    def list_of(self, name: str) -> tuple[str, ...]:
        return self.lists[name]

    def group_of(self, name: str) -> dict[str, str]:
        """Each word of group ``name`` → what it means (its group's name)."""
        return {word: meaning for meaning, words in self.groups[name].items() for word in words}

    def names(self) -> set[str]:
        return set(self.lists) | set(self.groups)


EMPTY = HandlerWords(version=1)


class Words:
    """Every handler's words, by handler name."""

    def __init__(self, by_handler: dict[str, HandlerWords]) -> None:
        self.by_handler = by_handler

    def of(self, handler: str) -> HandlerWords:
        return self.by_handler.get(handler, EMPTY)


def load_words(folder: Path) -> Words:
    """Every ``<handler>.yml`` in ``folder`` (none: no handler listens for words)."""
    if not folder.is_dir():
        return Words({})
    return Words(
        {path.stem: load_yaml_model(path, HandlerWords) for path in sorted(folder.glob("*.yml"))}
    )


def missing_words(words: Words, handler: str, needed: tuple[str, ...]) -> list[str]:
    """What a handler needs that its file lacks, one line each."""
    have = words.of(handler).names()
    return [f"config/words/{handler}.yml: no list or group {n!r}" for n in needed if n not in have]


@lru_cache(maxsize=64)
def any_of(words: tuple[str, ...]) -> re.Pattern[str]:
    """A pattern matching any of ``words``, longest first; an English word only whole."""
    parts = [
        rf"\b{re.escape(w)}\b" if w.isascii() else re.escape(w)
        for w in sorted(words, key=len, reverse=True)
    ]
    return re.compile("|".join(parts), re.IGNORECASE)


_AFTER_OPENER = r"[\s,，。.:：;；!！]*"


@lru_cache(maxsize=64)
def opening(words: tuple[str, ...], *, repeated: bool = False) -> re.Pattern[str]:
    """A pattern for one of ``words`` at the start of a text, with the spaces and punctuation
    after it ("我叫 王秀英" → "王秀英"); ``repeated``: any number of them in a row ("不对，我是说……")."""
    one = rf"(?:{any_of(words).pattern}){_AFTER_OPENER}"
    return re.compile(rf"^(?:{one})+" if repeated else rf"^{one}", re.IGNORECASE)


@lru_cache(maxsize=64)
def ending(words: tuple[str, ...]) -> re.Pattern[str]:
    """A pattern for one of ``words`` at the end of a text ("和平社区退管站" → "和平社区")."""
    return re.compile(rf"(?:{any_of(words).pattern})$", re.IGNORECASE)
