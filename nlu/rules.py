"""Emergency safety rules (config/nlu/emergency_rules.yml): clear emergency words always give the
intent `emergency`, except in negations, hypotheticals and paperwork about an earlier event."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from config.loader import load_yaml_model
from nlu.text import normalize_for_model

RULES_FILE = "emergency_rules.yml"
_LATIN = re.compile(r"[a-z]", re.IGNORECASE)
_CLAUSE_END = re.compile(r"[,，。.!！?？;；、\n]")
_LOOKBACK = 24  # characters before a trigger that a negation check reads


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _phrases(values: list[str]) -> list[str]:
    cleaned = [value.strip() for value in values]
    if any(not value for value in cleaned):
        raise ValueError("phrases must not be empty")
    seen: set[str] = set()
    for value in cleaned:
        key = normalize_for_model(value)
        if key in seen:
            raise ValueError(f"{value!r} is listed twice")
        seen.add(key)
    return cleaned


class Triggers(_Strict):
    phrases: list[str] = Field(min_length=1)
    patterns: list[str] = Field(default_factory=list)

    _check_phrases = field_validator("phrases")(_phrases)

    @field_validator("patterns")
    @classmethod
    def _compile(cls, values: list[str]) -> list[str]:
        for value in values:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"pattern {value!r} is not a valid regex: {exc}") from exc
        return values


class PastClaim(_Strict):
    past: list[str] = Field(min_length=1)
    claims: list[str] = Field(min_length=1)

    _check = field_validator("past", "claims")(_phrases)


class Exceptions(_Strict):
    phrases: list[str] = Field(default_factory=list)
    not_after: list[str] = Field(default_factory=list)
    questions: list[str] = Field(default_factory=list)
    past_claim: PastClaim | None = None

    _check = field_validator("phrases", "not_after", "questions")(_phrases)


class EmergencyRulesFile(_Strict):
    version: Literal[1]
    triggers: Triggers
    exceptions: Exceptions = Exceptions()


def _is_latin(phrase: str) -> bool:
    return bool(_LATIN.search(phrase))


def _phrase_regex(phrases: list[str]) -> re.Pattern[str] | None:
    """One regex finding any of the phrases; Latin ones only as whole words."""
    parts = []
    for phrase in sorted({normalize_for_model(p) for p in phrases}, key=len, reverse=True):
        body = re.escape(phrase).replace(r"\ ", r"\s+")
        parts.append(rf"(?<![a-z0-9']){body}(?![a-z0-9'])" if _is_latin(phrase) else body)
    return re.compile("|".join(parts)) if parts else None


def _spans(regex: re.Pattern[str] | None, text: str) -> list[tuple[int, int]]:
    """All occurrences, overlapping ones included."""
    if regex is None:
        return []
    spans = []
    pos = 0
    while (found := regex.search(text, pos)) is not None:
        if found.end() > found.start():
            spans.append((found.start(), found.end()))
        pos = found.start() + 1
    return spans


@dataclass(frozen=True)
class TriggerHit:
    phrase: str  # the matched text (normalised)
    start: int
    end: int
    counted: bool
    reason: str  # why it does not count, or "trigger"


class EmergencyRules:
    """Compiled rules; `match(text)` says which trigger (if any) counts in a text."""

    def __init__(self, spec: EmergencyRulesFile) -> None:
        self.spec = spec
        self._triggers = [_phrase_regex([p]) for p in spec.triggers.phrases]
        self._triggers += [re.compile(p) for p in spec.triggers.patterns]
        self._any_trigger = re.compile(
            "|".join(f"(?:{r.pattern})" for r in self._triggers if r is not None)
        )
        exc = spec.exceptions
        self._exception_phrases = _phrase_regex(exc.phrases)
        self._not_after = [
            re.compile(rf"(?<![a-z0-9']){re.escape(normalize_for_model(n))}\s*$")
            if _is_latin(n)
            else re.compile(rf"{re.escape(normalize_for_model(n))}$")
            for n in exc.not_after
        ]
        self._questions = tuple(normalize_for_model(q) for q in exc.questions)
        self._past = _phrase_regex(exc.past_claim.past) if exc.past_claim else None
        self._claims = _phrase_regex(exc.past_claim.claims) if exc.past_claim else None

    @classmethod
    def load(cls, path: Path) -> EmergencyRules:
        """Read and validate the rules file; ConfigError names the file and the bad key."""
        return cls(load_yaml_model(path, EmergencyRulesFile))

    def hits(self, text: str) -> list[TriggerHit]:
        """Every trigger occurrence in a (raw or cleaned) text, with whether it counts and why."""
        norm = normalize_for_model(text)
        if not self._any_trigger.search(norm):
            return []
        exception_spans = _spans(self._exception_phrases, norm)
        has_claim = self._claims is not None and self._claims.search(norm) is not None
        hits = []
        for regex in self._triggers:
            for start, end in _spans(regex, norm):
                reason = self._cancelled_by(norm, start, end, exception_spans, has_claim)
                hits.append(
                    TriggerHit(norm[start:end], start, end, reason is None, reason or "trigger")
                )
        return sorted(hits, key=lambda hit: (hit.start, -hit.end))

    def _cancelled_by(
        self,
        norm: str,
        start: int,
        end: int,
        exception_spans: list[tuple[int, int]],
        has_claim: bool,
    ) -> str | None:
        for ex_start, ex_end in exception_spans:
            if ex_start < end and start < ex_end:
                return f"exception phrase {norm[ex_start:ex_end]!r}"
        before = norm[max(0, start - _LOOKBACK) : start]
        if not before.endswith(self._questions or ("\0",)):
            for regex in self._not_after:
                found = regex.search(before)
                if found:
                    return f"after {found[0].strip()!r}"
        if has_claim and self._past is not None:
            clause_start = max((m.end() for m in _CLAUSE_END.finditer(norm, 0, start)), default=0)
            next_end = _CLAUSE_END.search(norm, end)
            clause = norm[clause_start : next_end.start() if next_end else len(norm)]
            past = self._past.search(clause)
            if past:
                return f"paperwork about an earlier event ({past[0]!r})"
        return None

    def match(self, text: str) -> str | None:
        """The first trigger that counts in the text, or None."""
        for hit in self.hits(text):
            if hit.counted:
                return hit.phrase
        return None
