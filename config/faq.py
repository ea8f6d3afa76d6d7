"""Answers to common policy questions (config/faq.yml), written by the deployment.

The product ships no answers: policy differs from place to place and changes every year, and a
wrong answer told to an old person is worse than a call-back. A question the file has no topic
for becomes a call-back case for staff.

A question matches a topic when it contains one of the topic's keywords (either language,
case-insensitive). A keyword that only occurs inside a longer matched keyword does not count
("补贴" inside "高龄补贴"). The topic with the most matched characters wins, then the one with
more keywords; an exact tie is no match (staff answer rather than the wrong topic).
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from config.loader import load_yaml_model

TOPIC_ID = r"^[a-z][a-z0-9_]*$"
_ASCII_WORD = re.compile(r"[a-z0-9]")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Keywords(_Strict):
    zh: tuple[str, ...] = ()
    en: tuple[str, ...] = ()

    @field_validator("zh", "en")
    @classmethod
    def _not_blank(cls, words: tuple[str, ...]) -> tuple[str, ...]:
        if any(not word.strip() for word in words):
            raise ValueError("a keyword cannot be empty")
        return tuple(word.strip() for word in words)

    @property
    def all(self) -> tuple[str, ...]:
        return self.zh + self.en


class Answer(_Strict):
    zh: str = Field(min_length=1)
    en: str = Field(min_length=1)

    def get(self, language: str) -> str:
        return self.en if language == "en" else self.zh


class Topic(_Strict):
    keywords: Keywords
    answer: Answer

    @model_validator(mode="after")
    def _has_keywords(self) -> Topic:
        if not self.keywords.all:
            raise ValueError("a topic needs at least one keyword (zh or en)")
        return self


class FaqConfig(_Strict):
    version: Literal[1]
    topics: dict[str, Topic] = Field(default_factory=dict)

    @field_validator("topics", mode="before")
    @classmethod
    def _none_is_empty(cls, value: object) -> object:
        return {} if value is None else value  # `topics:` with everything commented out

    @field_validator("topics")
    @classmethod
    def _topic_ids(cls, topics: dict[str, Topic]) -> dict[str, Topic]:
        bad = [name for name in topics if not re.match(TOPIC_ID, name)]
        if bad:
            raise ValueError(f"topic names are lower-case letters, digits and _: {bad}")
        return topics

    def match(self, question: str) -> str | None:
        """The topic ``question`` is about, or None (no keyword, or a tie)."""
        text = _fold(question)
        if not text:
            return None
        spans: list[tuple[int, int, str, str]] = []  # start, end, topic, keyword
        for name, topic in self.topics.items():
            for word in {_fold(w) for w in topic.keywords.all}:
                for start in _occurrences(text, word):
                    spans.append((start, start + len(word), name, word))
        counted: dict[str, set[str]] = {}
        for start, end, name, word in spans:
            inside_longer = any(
                s <= start and end <= e and (e - s) > (end - start) for s, e, _, _ in spans
            )
            if not inside_longer:
                counted.setdefault(name, set()).add(word)
        if not counted:
            return None
        scores = sorted(
            ((sum(len(w) for w in words), len(words), name) for name, words in counted.items()),
            reverse=True,
        )
        if len(scores) > 1 and scores[0][:2] == scores[1][:2]:
            return None
        return scores[0][2]

    def answer(self, topic: str, language: str) -> str:
        return self.topics[topic].answer.get(language)


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).lower().strip()


def _occurrences(text: str, word: str) -> list[int]:
    """Where ``word`` occurs; an English word must start a word ("pension" not in "suspension")."""
    found = []
    start = text.find(word)
    while start >= 0:
        before = text[start - 1] if start > 0 else ""
        if not (_ASCII_WORD.match(word[0]) and before and _ASCII_WORD.match(before)):
            found.append(start)
        start = text.find(word, start + 1)
    return found


def load_faq(path: Path) -> FaqConfig:
    """Read and check ``path``; a ConfigError names the file and the key."""
    return load_yaml_model(path, FaqConfig)


@lru_cache(maxsize=8)
def get_faq(path: Path) -> FaqConfig:
    """``load_faq``, once per path (the file is read at the first question, then kept)."""
    return load_faq(path)
