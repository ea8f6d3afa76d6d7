"""Bereavement (丧事办理): who passed away and when. Staff only; filed in the station's queue.

Staff visit the family to offer condolences (慰问) and help with what follows (funeral grant,
survivor's benefits, stopping the pension): the case carries `condolence_visit: true` and its
summary says so. The acknowledgement starts with a condolence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from handlers.base import Case, Handler, Heard, Slot, SlotKind, Task, Turn

# Family the relation table does not have (a retiree's parents, in-laws, elders): the word as
# staff write it. "我爸" → 父亲.
KIN_WORDS: dict[str, str] = {
    **dict.fromkeys(("老父亲", "父亲", "爸爸", "老爸", "爸", "我爹"), "父亲"),
    **dict.fromkeys(("老母亲", "母亲", "妈妈", "老妈", "妈", "我娘"), "母亲"),
    **{w: w for w in ("公公", "婆婆", "岳父", "岳母", "老丈人", "丈母娘", "老太太", "老爷子")},
    **dict.fromkeys(("father", "dad"), "father"),
    **dict.fromkeys(("mother", "mum", "mom"), "mother"),
}
# Words that say someone died: of several people named, the one nearest before it is meant
# ("我是他儿子，我爸走了": the father).
DEATH_WORDS = (
    *("去世", "过世", "走了", "没了", "离世", "病故", "逝世", "不在了", "咽气", "死了"),
    *("passed away", "died", "dead", "passed"),
)
# An answer's filler around the name: "是我们隔壁的老张" keeps 隔壁的老张.
_ANSWER_START = re.compile(r"^(?:就是|是)")
# What is left of an answer without the relation word and these says no more than the relation.
_FILLER = re.compile(
    r"我们|我家|我的|我|家里|家|的|是|就是|了|呀|啊|吧|呢|他|她|走|去世|过世|没|"
    r"\b(?:my|our|the|it|is|was|he|she|passed|away|died)\b|[\s,，。.!！?？]",
    re.IGNORECASE,
)


def _spans(text: str, word: str) -> list[tuple[int, int]]:
    pattern = rf"\b{re.escape(word)}\b" if word.isascii() else re.escape(word)
    return [m.span() for m in re.finditer(pattern, text, re.IGNORECASE)]


def who_died(heard: Heard) -> str | None:
    """The person who died, from a relation or a family word in ``heard``; None if none."""
    text = heard.text
    named = [(e["start"], e["end"], str(e["value"])) for e in heard.entities_of("relation")]
    for word in sorted(KIN_WORDS, key=len, reverse=True):  # "爸爸" before "爸"
        for start, end in _spans(text, word):
            if not any(start < e and s < end for s, e, _ in named):
                named.append((start, end, KIN_WORDS[word]))
    if not named:
        return None
    named.sort()
    deaths = [span[0] for word in DEATH_WORDS for span in _spans(text, word)]
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
        found = who_died(heard)
        if not answering:
            return found
        words = _ANSWER_START.sub("", heard.text.strip())
        if found is not None and not _says_more(heard):
            return found
        return words or found


def _says_more(heard: Heard) -> bool:
    """Whether an answer names the person beyond a relation word ("隔壁的张大爷": 张大爷)."""
    text = heard.text
    for entity in heard.entities_of("relation"):
        text = text.replace(text[entity["start"] : entity["end"]], " ")
    for word in sorted(KIN_WORDS, key=len, reverse=True):
        text = re.sub(re.escape(word), " ", text, flags=re.IGNORECASE)
    return len(_FILLER.sub("", text)) >= 2


class BereavementHandler(Handler):
    name = "bereavement"
    intents = ("bereavement",)
    category = "bereavement"
    volunteer_visible = False
    slots = (
        DeceasedSlot("who", SlotKind.RELATION),
        Slot("when", SlotKind.WHEN, optional=True),
    )

    def details(self, turn: Turn, task: Task) -> dict[str, Any]:
        details = super().details(turn, task)
        details["condolence_visit"] = True
        return details

    def acknowledge(self, turn: Turn, task: Task, case: Case) -> None:
        turn.say(f"{self.name}.condolence")
        turn.acknowledge(case)
        turn.say(f"{self.name}.visit")


HANDLER = BereavementHandler()
