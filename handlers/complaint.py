"""Complaints and petitions (投诉信访): what it is about, in the person's own words, and since
when. Staff only; filed in the station's queue. The read-back quotes the person word for word,
and the acknowledgement makes the first-contact commitment (首问负责): whoever takes the case
stays responsible for it until it is closed (storage records first_contact_owner_id)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from bot.conversation.state import Task
from bot.conversation.turn import Turn
from handlers.base import Handler, Slot, SlotKind
from storage.models import Case

# Words that show an answer is (part of) the complaint itself: such an answer is never taken
# for another request ("楼道灯坏了一个月物业都不修" sounds like a repair), and a correction at
# the read-back with one of them replaces what the complaint is about.
COMPLAINT_WORDS = (
    *("投诉", "反映", "举报", "信访", "上访", "告状", "意见", "不满意", "不像话", "不负责"),
    *("态度", "不管", "没人管", "没人来", "不修", "不干", "太差", "糊弄", "拖", "推来推去"),
    *("物业", "工作人员", "志愿者", "护工", "保洁", "服务", "收费", "骂", "吵", "不理"),
    *("complain", "complaint", "rude", "nobody", "ignored", "staff", "service", "volunteer"),
)

# What a bare "我要投诉" consists of: with these taken away, nothing is left to quote.
_BARE = re.compile(
    r"我们|我要|我想|我得|我有|给我|你们|我|要|想|登记|一个|一下|个|投诉|投数|头术|信访|新访|上访"
    r"|反映|举报|告状|问题|情况|意见|事|啊|呀|吧|呢|嗯|那个|就是|哎呀|了|的|帮|找"
    r"|\b(?:i|i'd|i'm|want|would|like|to|make|a|an|file|lodge|complaint|complain|please|have"
    r"|about|something|need)\b"
    r"|[\s,，。.;；!！?？、~～…]",
    re.IGNORECASE,
)


def is_bare(text: str) -> bool:
    """Whether ``text`` only says that the person wants to complain ("我要投诉")."""
    return len(_BARE.sub("", text)) <= 1


def own_words(turn: Turn) -> str:
    """What the person wrote or was heard to say, as they put it (full-width punctuation and
    all; the understood text has it made narrow)."""
    return " ".join(turn.heard.said.split()) or turn.heard.text.strip()


# The start of a correction ("不对，是……"), taken off what replaces the complaint.
_CORRECTION_START = re.compile(
    r"^(?:(?:不对|不是|错了|说错了|应该是|我是说|我说的是|而是|是|no|wrong|actually|i mean)"
    r"[\s,，。.:：;；!！]*)+",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class OwnWordsSlot(Slot):
    """A TEXT slot kept exactly as the person put it: the whole answer, and at the read-back a
    correction that names the complaint ("不对，是物业不修灯") replaces it whole."""

    def extract(self, turn: Turn, *, answering: bool) -> Any | None:
        heard = turn.heard
        if answering:
            return own_words(turn) if heard.text.strip() else None
        if heard.choice is not None or not heard.says_any(turn.services.dialogue.corrections):
            return None
        if not heard.says_any(self.words):
            return None
        return _CORRECTION_START.sub("", own_words(turn)).strip() or None


class ComplaintHandler(Handler):
    name = "complaint"
    intents = ("complaint",)
    category = "complaint"
    volunteer_visible = False
    slots = (
        # Prefilled from the whole first sentence (see prefill), not from a clause of it.
        OwnWordsSlot("about", SlotKind.TEXT, prefill=False, words=COMPLAINT_WORDS),
        Slot("since", SlotKind.WHEN, optional=True),
    )

    def prefill(self, turn: Turn, task: Task) -> None:
        super().prefill(turn, task)
        said = own_words(turn)
        if said and not is_bare(said):
            task.slots["about"] = said  # word for word: the read-back quotes it

    def acknowledge(self, turn: Turn, task: Task, case: Case) -> None:
        turn.acknowledge(case)
        turn.say(f"{self.name}.first_contact")


HANDLER = ComplaintHandler()
