"""Bereavement (丧事办理): who passed away and when. Staff only; filed in the station's queue.

Staff visit the family to offer condolences (慰问) and help with what follows (funeral grant,
survivor's benefits, stopping the pension): the case carries `condolence_visit: true` and its
summary says so. The person hears a condolence first, before any question or read-back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from handlers.base import Case, Handler, HandlerWords, Heard, Slot, SlotKind, Task, Turn, any_of

# An answer's filler around the name: "是我们隔壁的老张" keeps 隔壁的老张.
_ANSWER_START = re.compile(r"^(?:就是|是)")
_PUNCTUATION = re.compile(r"[\s,，。.!！?？]")


def _spans(text: str, word: str) -> list[tuple[int, int]]:
    pattern = rf"\b{re.escape(word)}\b" if word.isascii() else re.escape(word)
    return [m.span() for m in re.finditer(pattern, text, re.IGNORECASE)]


def who_died(heard: Heard, words: HandlerWords) -> str | None:
    """The person who died, from a relation or a family word (``words``' group "kin") in
    ``heard``; None if none."""
    kin = words.group_of("kin")
    text = heard.text
    named = [(e["start"], e["end"], str(e["value"])) for e in heard.entities_of("relation")]
    for word in sorted(kin, key=len, reverse=True):  # "爸爸" before "爸"
        for start, end in _spans(text, word):
            if not any(start < e and s < end for s, e, _ in named):
                named.append((start, end, kin[word]))
    if not named:
        return None
    named.sort()
    deaths = [span[0] for word in words.list_of("death") for span in _spans(text, word)]
    if deaths:
        before = [value for start, _, value in named if start < min(deaths)]
        if before:
            return before[-1]
    return named[0][2]


@dataclass(frozen=True)
class DeceasedSlot(Slot):
    """Who passed away: a relation ("spouse"), a family word (父亲), or the person's own words
    (a name: "老张"). Never "self": the person speaking is not the one who died."""

    def extract(self, turn: Turn, *, answering: bool) -> Any | None:
        heard = turn.heard
        listened = turn.deployment.words.of("bereavement")
        found = who_died(heard, listened)
        if not answering:
            return found
        words = _ANSWER_START.sub("", heard.text.strip())
        if found is not None and not _says_more(heard, listened):
            return found
        return words or found


def _says_more(heard: Heard, words: HandlerWords) -> bool:
    """Whether an answer names the person beyond a relation word ("隔壁的张大爷": 张大爷)."""
    text = heard.text
    for entity in heard.entities_of("relation"):
        text = text.replace(text[entity["start"] : entity["end"]], " ")
    for word in sorted(words.group_of("kin"), key=len, reverse=True):
        text = re.sub(re.escape(word), " ", text, flags=re.IGNORECASE)
    rest = _PUNCTUATION.sub("", any_of(words.list_of("filler")).sub("", text))
    return len(rest) >= 2


class BereavementHandler(Handler):
    name = "bereavement"
    intents = ("bereavement",)
    category = "bereavement"
    volunteer_visible = False
    word_lists = ("death", "filler", "kin")
    slots = (
        DeceasedSlot("who", SlotKind.RELATION),
        Slot("when", SlotKind.WHEN, optional=True),
    )

    def start(self, turn: Turn, task: Task) -> None:
        """A condolence before anything is asked or read back."""
        turn.say(f"{self.name}.condolence")
        super().start(turn, task)

    def details(self, turn: Turn, task: Task) -> dict[str, Any]:
        details = super().details(turn, task)
        details["condolence_visit"] = True
        return details

    def acknowledge(self, turn: Turn, task: Task, case: Case) -> None:
        turn.acknowledge(case)
        turn.say(f"{self.name}.visit")


HANDLER = BereavementHandler()
