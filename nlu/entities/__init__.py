"""Entity extraction for the embedded parser: amounts, dates, hospitals, relations, phone and case
numbers, in Rasa's entity format, with overlaps resolved in favour of the longer match."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from nlu.entities.amounts import AmountExtractor
from nlu.entities.common import SHANGHAI
from nlu.entities.dates import DateExtractor
from nlu.entities.lookups import (
    DEFAULT_RELATIONS,
    NOT_FOLLOWED_BY,
    LookupEntityExtractor,
    PhraseTable,
    load_hospital_table,
)
from nlu.entities.numbers import RegexEntityExtractor

__all__ = [
    "DEFAULT_RELATIONS",
    "EntityTables",
    "extract_entities",
    "load_hospital_table",
    "reference_day",
]

# When two candidates are equally long, the more specific kind wins.
_PRIORITY = {"case_number": 0, "phone_number": 1, "date": 2, "amount": 3, "hospital": 4}
# Spaces with a Chinese character on one side and a Chinese character or a digit on the other.
_RECOGNISER_SPACE = re.compile(
    r"(?<=[\u3400-\u9fff])\s+(?=[\u3400-\u9fff0-9])|(?<=[0-9])\s+(?=[\u3400-\u9fff])"
)
_AMOUNTS = AmountExtractor()
_DATES = DateExtractor()
_NUMBERS = RegexEntityExtractor()
_LOOKUPS = LookupEntityExtractor()


@dataclass(frozen=True)
class EntityTables:
    """The tables the look-up extractors use; build once and reuse (matchers are built here)."""

    hospitals: dict[str, str] = field(default_factory=dict)
    relations: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_RELATIONS))
    _hospital_table: PhraseTable = field(init=False, repr=False, compare=False)
    _relation_table: PhraseTable = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hospital_table", PhraseTable(self.hospitals))
        object.__setattr__(self, "_relation_table", PhraseTable(self.relations, NOT_FOLLOWED_BY))


def reference_day(reference: datetime) -> date:
    """The calendar day of ``reference`` in Asia/Shanghai (a naive time is taken as Shanghai's)."""
    if reference.tzinfo is None:
        return reference.date()
    return reference.astimezone(SHANGHAI).date()


def extract_entities(text: str, reference: datetime, tables: EntityTables) -> list[dict[str, Any]]:
    """Rasa-format entities found in `text` (already cleaned), sorted by start; `reference` is an
    aware datetime, dates resolve in Asia/Shanghai.

    Entities never overlap: of two overlapping candidates the longer stays (a case number is not
    also a phone number, 3月5号 is a date and not an amount). Spaces that a recogniser put between
    Chinese characters (三 百 五 十 块) are looked through; start/end still index `text`.
    """
    if not text:
        return []
    compact, positions = _without_recogniser_spaces(text)
    candidates = _AMOUNTS.extract(compact)
    candidates += _DATES.extract(compact, reference_day(reference))
    candidates += _NUMBERS.extract(compact)
    candidates += _LOOKUPS.extract(compact, tables._hospital_table, tables._relation_table)
    entities = _without_overlaps(candidates, len(compact))
    if positions is not None:  # offsets back into the text as given
        for entity in entities:
            entity["start"] = positions[entity["start"]]
            entity["end"] = positions[entity["end"] - 1] + 1
    return entities


def _without_recogniser_spaces(text: str) -> tuple[str, list[int] | None]:
    """``text`` without the spaces a recogniser puts between Chinese characters (三 百 五 十 块,
    3 月 5 号), and where each remaining character was; (text, None) when there are none."""
    if _RECOGNISER_SPACE.search(text) is None:
        return text, None
    positions: list[int] = []
    kept: list[str] = []
    previous = 0
    for match in _RECOGNISER_SPACE.finditer(text):
        positions.extend(range(previous, match.start()))
        kept.append(text[previous : match.start()])
        previous = match.end()
    positions.extend(range(previous, len(text)))
    kept.append(text[previous:])
    return "".join(kept), positions


def _without_overlaps(candidates: list[dict[str, Any]], size: int) -> list[dict[str, Any]]:
    """Keep the longest candidates that do not overlap a longer (or earlier, equally long) one."""
    if len(candidates) <= 1:
        return candidates
    candidates.sort(
        key=lambda e: (e["start"] - e["end"], _PRIORITY.get(e["entity"], 9), e["start"])
    )
    taken = bytearray(size)
    kept: list[dict[str, Any]] = []
    for entity in candidates:
        start, end = entity["start"], entity["end"]
        if taken.find(1, start, end) == -1:
            taken[start:end] = b"\x01" * (end - start)
            kept.append(entity)
    kept.sort(key=lambda e: e["start"])
    return kept
