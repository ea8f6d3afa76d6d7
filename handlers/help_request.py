"""Help with daily life (生活帮扶): what kind of help (a repair, cleaning, shopping, meals,
company, someone to go along, paying bills, or something else) and when it suits. Volunteers may
take it.

A need that fits none of the kinds is kept in the person's words: after the kind was asked again
and still matched nothing, it becomes "other" and what was said is the `what` slot, so nothing
is lost and the person is not asked a third time. `what` is only asked when the person chose
"other" themself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from handlers.base import (
    CONFIRM,
    Handler,
    Option,
    OwnWordsSlot,
    Slot,
    SlotKind,
    Task,
    Turn,
    own_words,
)

OTHER = "other"

KINDS = tuple(
    Option(value)
    for value in ("repair", "cleaning", "groceries", "meals", "company", "escort", "bills", OTHER)
)


@dataclass(frozen=True)
class KindSlot(Slot):
    """An option slot whose English words count only as whole words ("other" is not in
    "brother", "fix" not in "prefix"); Chinese words anywhere."""

    def _option(self, turn: Turn) -> str | None:
        heard = turn.heard
        if heard.choice is not None:  # a key or button: a kind, or the label of something else
            return heard.choice if heard.choice in {o.value for o in self.options} else None
        text = heard.text.lower()
        best: tuple[int, int, str] | None = None  # earliest, then longest word wins
        for option in self.options_in(turn):
            for word in option.words:
                at = _find(text, word.lower())
                if at >= 0 and (best is None or (at, -len(word)) < best[:2]):
                    best = (at, -len(word), option.value)
        return best[2] if best else None


def _find(text: str, word: str) -> int:
    if not word.isascii():
        return text.find(word)
    match = re.search(rf"\b{re.escape(word)}\b", text)
    return match.start() if match else -1


@dataclass(frozen=True)
class WhenSlot(Slot):
    """A day, with the part of the day when one is said ("周六上午": Saturday, 上午)."""

    def extract(self, turn: Turn, *, answering: bool) -> Any | None:
        value = super().extract(turn, answering=answering)
        if isinstance(value, dict) and value.get("date"):
            text = turn.heard.text.lower()
            periods = turn.deployment.words.of("help_request").group_of("periods").items()
            period = next((p for w, p in periods if _find(text, w) >= 0), None)
            if period:
                value["period"] = period
        return value


class HelpRequestHandler(Handler):
    name = "help_request"
    intents = ("help_request",)
    category = "help_request"
    word_lists = ("kinds", "periods")
    slots = (
        KindSlot("kind", SlotKind.OPTION, options=KINDS, word_group="help_request.kinds"),
        OwnWordsSlot("what", SlotKind.TEXT, prefill=False),  # only for "other" (see needed)
        WhenSlot("when", SlotKind.WHEN, optional=True),
    )

    def needed(self, task: Task) -> list[Slot]:
        return [s for s in self.slots if s.name != "what" or task.slots.get("kind") == OTHER]

    def not_answered(self, turn: Turn, task: Task, slot: Slot) -> None:
        """A need that fits no kind: asked once more, then kept as "other" in the words said."""
        said = own_words(turn)
        dont_know = turn.heard.says_any(turn.deployment.dialogue.dont_know)
        if slot.name != "kind" or not said or dont_know:
            super().not_answered(turn, task, slot)
            return
        words = task.data.setdefault("kind_words", [])
        words.append(said)
        task.retries += 1
        if task.retries < turn.deployment.dialogue.max_retries:
            task.asking = slot.name
            choices = [
                turn.choice(o.value, f"{self.name}.options.kind.{o.value}") for o in slot.options
            ]
            turn.ask(f"{self.name}.kind_again", choices)
            return
        task.retries = 0
        task.data.pop("kind_words")
        task.slots["kind"] = OTHER
        task.slots["what"] = "，".join(words) if turn.lang == "zh" else "; ".join(words)
        self.proceed(turn, task)

    def correct(self, turn: Turn, task: Task, exclude: Slot | None = None) -> bool:
        changed = super().correct(turn, task, exclude)
        if changed and task.slots.get("kind") != OTHER:
            task.slots.pop("what", None)  # the words of an "other" that was not one
        return changed

    def read_back(self, turn: Turn, task: Task) -> None:
        if task.slots.get("kind") != OTHER:
            super().read_back(turn, task)
            return
        task.asking = CONFIRM
        turn.ask(f"{self.name}.read_back_other", turn.yes_no(), **self.displays(turn, task))

    def displays(self, turn: Turn, task: Task, lang: str | None = None) -> dict[str, str]:
        shown = super().displays(turn, task, lang)
        if task.missing("what") and task.said:
            shown["what"] = task.said[0]  # for staff: what the person first said
        return shown

    def display(self, turn: Turn, slot: Slot, value: Any, lang: str | None = None) -> str:
        shown = super().display(turn, slot, value, lang)
        if slot.kind == SlotKind.WHEN and isinstance(value, dict) and value.get("period"):
            key = f"{self.name}.day_and_period"
            period = turn.text(f"{self.name}.period.{value['period']}", lang)
            return turn.text(key, lang, day=shown, period=period)
        return shown

    def details(self, turn: Turn, task: Task) -> dict[str, Any]:
        details = super().details(turn, task)
        if task.slots.get("kind") != OTHER:  # `what` is only asked for "other"
            unknown = [n for n in details.pop("unknown", []) if n != "what"]
            if unknown:
                details["unknown"] = unknown
        return details


HANDLER = HelpRequestHandler()
