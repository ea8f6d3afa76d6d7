"""Hospital admission and transfer paperwork (办理住院、转院手续): who the patient is, the hospital
they are in now (none for an admission), the hospital they go to, the day, and whether a car or
someone to go along is needed.

Two hospitals in one sentence are told apart by the words in front of them (从/在 X: where the
patient is now; 转到/去/到 X: where they go); with no such words the first one named is the
current hospital and the second the destination. "还没住院" / "在家" is an answer to "which
hospital is the patient in now": the value NOT_IN_HOSPITAL, and the request is an admission.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache
from typing import Any

from handlers.base import (
    CONFIRM,
    UNKNOWN,
    Handler,
    HandlerWords,
    Heard,
    Option,
    Slot,
    SlotKind,
    Task,
    Turn,
    any_of,
)

# The value of `current` when the patient is not in any hospital yet (an admission). Stored as
# is in the case's slots, so staff tools can tell it from a hospital's name.
NOT_IN_HOSPITAL = "not_in_hospital"
CURRENT, DESTINATION = "current", "destination"

_CLAUSE_END = re.compile(r"[,，。.;；!！?？]")


@lru_cache(maxsize=8)
def _family_does(
    who: tuple[str, ...], will: tuple[str, ...], does: tuple[str, ...]
) -> re.Pattern[str]:
    """Family who drive or go along themselves ("儿子开车送", "my son will drive"): who, then
    perhaps a "will", then what they do. No car, no escort from us."""

    def alternatives(words: tuple[str, ...], ascii_only: bool) -> str:
        chosen = sorted((w for w in words if w.isascii() == ascii_only), key=len, reverse=True)
        return "|".join(re.escape(w) for w in chosen) or "(?!)"

    chinese = rf"(?:{alternatives(who, False)})(?:{alternatives(will, False)})?"
    chinese += rf"(?:{alternatives(does, False)})"
    english = rf"\b(?:{alternatives(who, True)})\b(?:\s+(?:{alternatives(will, True)}))?\s+"
    english += rf"(?:{alternatives(does, True)})"
    return re.compile(f"{chinese}|{english}", re.IGNORECASE)


def _has(text: str, word: str) -> bool:
    """``word`` in ``text``: a substring for Chinese, a whole word for English."""
    if word.isascii():
        return re.search(rf"\b{re.escape(word)}\b", text, re.IGNORECASE) is not None
    return word in text


def _has_any(text: str, words: tuple[str, ...]) -> bool:
    return any(_has(text, word) for word in words)


def _cue(before: str, words: HandlerWords) -> str | None:
    """The role the last cue word in ``before`` (the words in front of a hospital) gives."""
    best: tuple[int, int, str] | None = None
    lowered = before.lower()
    for word, role in words.group_of("cues").items():
        pattern = rf"\b{re.escape(word)}\b" if word.isascii() else re.escape(word)
        for match in re.finditer(pattern, lowered):
            key = (match.end(), len(word), role)
            if best is None or key[:2] > best[:2]:
                best = key
    return best[2] if best else None


def place_hospitals(heard: Heard, words: HandlerWords) -> tuple[dict[str, str], list[str]]:
    """The hospitals named in ``heard`` by role ({current, destination}), and those whose role
    the words do not tell (one hospital named without 在/转到 in front of it)."""
    found = sorted(heard.entities_of("hospital"), key=lambda e: e["start"])[:2]
    roles: list[str | None] = []
    previous_end = 0
    for entity in found:
        before = heard.text[previous_end : entity["start"]]
        before = _CLAUSE_END.split(before)[-1]
        roles.append(_cue(before, words))
        previous_end = entity["end"]
    values = [str(e["value"]) for e in found]
    if len(found) == 2:
        if roles[0] == roles[1]:  # no words tell, or both say the same: the order tells
            roles = [CURRENT, DESTINATION]
        elif roles[0] is None:
            roles[0] = CURRENT if roles[1] == DESTINATION else DESTINATION
        elif roles[1] is None:
            roles[1] = CURRENT if roles[0] == DESTINATION else DESTINATION
    placed = {role: value for role, value in zip(roles, values, strict=True) if role}
    loose = [value for role, value in zip(roles, values, strict=True) if role is None]
    return placed, loose


@dataclass(frozen=True)
class HospitalSlot(Slot):
    """A hospital in one role: the words in front of a name say whether it is this one."""

    role: str = CURRENT

    def extract(self, turn: Turn, *, answering: bool) -> Any | None:
        heard = turn.heard
        if heard.choice is not None:  # a button's label ("要去的医院") names no hospital
            return None
        if answering and self.optional and heard.says_any(turn.deployment.dialogue.dont_know):
            return UNKNOWN
        words = turn.deployment.words.of("hospital_transfer")
        placed, loose = place_hospitals(heard, words)
        if self.role == CURRENT and CURRENT not in placed:
            if _has_any(heard.text, words.list_of("not_in_hospital")):
                return NOT_IN_HOSPITAL
            if answering and not loose and _has_any(heard.text, words.list_of("none_yet")):
                return NOT_IN_HOSPITAL
        if self.role in placed:
            return placed[self.role]
        if not answering:
            return None
        if loose:
            return loose[0]
        if placed:  # only the other hospital was named ("转到省医院" for "where is he now")
            return None
        return heard.text.strip() or None


@dataclass(frozen=True)
class PatientSlot(Slot):
    """Who the patient is: a relation, "self", or the person's own words ("我家老王")."""

    def extract(self, turn: Turn, *, answering: bool) -> Any | None:
        heard = turn.heard
        if heard.choice is not None:  # a button's label is not who the patient is
            return None
        relation = heard.entity("relation")
        if relation is not None:
            return relation["value"]
        words = turn.deployment.words.of("hospital_transfer")
        for word, value in words.group_of("kin_short").items():
            if word in heard.text:
                return value
        if _has_any(heard.text, words.list_of("self")):
            return "self"
        if not answering:
            return None
        if heard.says_any(turn.deployment.dialogue.myself):
            return "self"
        return heard.text.strip() or None


@dataclass(frozen=True)
class TransportSlot(Slot):
    """A car, someone to go along, both or neither: each part of the answer says yes or no to
    the car and to the escort ("不用车，要人陪" is an escort)."""

    def extract(self, turn: Turn, *, answering: bool) -> Any | None:
        heard = turn.heard
        if heard.choice is not None:  # a button or key: one of ours, or a label of something else
            return heard.choice if heard.choice in {o.value for o in self.options} else None
        text = heard.text.replace("不对", "").lower()
        words = turn.deployment.words.of("hospital_transfer")
        negations = words.list_of("negations")
        family_does = _family_does(
            words.list_of("family"), words.list_of("family_will"), words.list_of("family_does")
        )
        car = escort = None
        parts = re.compile(
            f"{_CLAUSE_END.pattern}|{any_of(words.list_of('parts')).pattern}", re.IGNORECASE
        )
        for part in parts.split(text):
            negated = _has_any(part, negations) or family_does.search(part) is not None
            if _has_any(part, words.list_of("car")):
                car = not negated
            if _has_any(part, words.list_of("escort")):
                escort = not negated
        named = car is not None or escort is not None
        both = _has_any(text, words.list_of("both"))
        if (answering or named) and both and not _has_any(text, negations):
            return "both"  # "车和人都要"
        if named:
            if car and escort:
                return "both"
            return "car" if car else "escort" if escort else "none"
        # Without a car or an escort named, "都要" / "不用" only answer the question itself
        # (in a first sentence "要不要" is not an answer).
        if answering and family_does.search(text):
            return "none"
        if answering and _has_any(text, words.list_of("none")):
            return "none"
        return None


class HospitalTransferHandler(Handler):
    name = "hospital_transfer"
    intents = ("hospital_transfer",)
    category = "hospital_transfer"
    word_lists = (
        *("not_in_hospital", "none_yet", "admission", "in_hospital", "self", "car", "escort"),
        *("negations", "both", "none", "soon", "cues", "kin_short"),
        *("family", "family_will", "family_does", "parts"),
    )
    slots = (
        PatientSlot("patient", SlotKind.RELATION),
        HospitalSlot("current", SlotKind.HOSPITAL, optional=True, role=CURRENT),
        HospitalSlot("destination", SlotKind.HOSPITAL, optional=True, role=DESTINATION),
        Slot("when", SlotKind.WHEN, optional=True),
        TransportSlot(
            "transport",
            SlotKind.OPTION,
            options=(Option("car"), Option("escort"), Option("both"), Option("none")),
        ),
    )

    def prefill(self, turn: Turn, task: Task) -> None:
        super().prefill(turn, task)
        heard = turn.heard
        words = self.words_of(turn)
        # One hospital and no words in front of it: in a transfer it is the one the patient
        # is in ("市一院让转院"); otherwise the one to go into ("市一院住院手续咋办").
        _, loose = place_hospitals(heard, words)
        if loose:
            transfer = _has_any(heard.text, words.list_of("in_hospital"))
            role = CURRENT if transfer and task.missing(CURRENT) else DESTINATION
            if task.missing(role):
                task.slots[role] = loose[0]
        # An admission: nobody is in hospital yet, so "which hospital now" is not asked.
        if (
            task.missing(CURRENT)
            and _has_any(heard.text, words.list_of("admission"))
            and not _has_any(heard.text, words.list_of("in_hospital"))
        ):
            task.slots[CURRENT] = NOT_IN_HOSPITAL

    def admission(self, task: Task) -> bool:
        return task.slots.get(CURRENT) == NOT_IN_HOSPITAL

    def ask_slot(self, turn: Turn, task: Task, slot: Slot) -> None:
        if slot.name == DESTINATION and self.admission(task):
            task.asking = slot.name
            turn.ask(f"{self.name}.ask.destination_admission")
            return
        super().ask_slot(turn, task, slot)

    def read_back(self, turn: Turn, task: Task) -> None:
        if not self.admission(task):
            super().read_back(turn, task)
            return
        task.asking = CONFIRM
        turn.ask(f"{self.name}.read_back_admission", turn.yes_no(), **self.displays(turn, task))

    def display(self, turn: Turn, slot: Slot, value: Any, lang: str | None = None) -> str:
        if slot.name == CURRENT and value == NOT_IN_HOSPITAL:
            return turn.text(f"{self.name}.not_in_hospital", lang)
        return super().display(turn, slot, value, lang)

    def summary(self, turn: Turn, task: Task) -> str:
        shown = self.displays(turn, task, turn.staff_lang)
        if task.slots.get("patient") == "self":  # staff read "the retiree", not "您本人"
            shown["patient"] = turn.text(f"{self.name}.patient_self", turn.staff_lang)
        return turn.text(f"{self.name}.summary", turn.staff_lang, **shown)

    def details(self, turn: Turn, task: Task) -> dict[str, Any]:
        details = super().details(turn, task)
        details["request"] = "admission" if self.admission(task) else "transfer"
        return details

    def raise_for(self, turn: Turn, task: Task) -> list[str]:
        """Needed today or tomorrow: one level up (a bed or a transfer does not wait)."""
        when = task.slots.get("when")
        if not isinstance(when, dict):
            return []
        if when.get("date"):
            today = turn.now.astimezone(turn.deployment.tz).date()
            day = date.fromisoformat(when["date"])
            return ["needed_within_a_day"] if today <= day <= today + timedelta(days=1) else []
        said = str(when.get("said", ""))
        if _has_any(said, self.words_of(turn).list_of("soon")):
            return ["needed_within_a_day"]
        return []


HANDLER = HospitalTransferHandler()
