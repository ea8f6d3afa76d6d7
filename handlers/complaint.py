"""Complaints and petitions (投诉信访): what it is about, in the person's own words, and since
when. Staff only; filed in the station's queue. The read-back quotes the person word for word,
and the acknowledgement makes the first-contact commitment (首问负责): whoever takes the case
stays responsible for it until it is closed (storage records first_contact_owner_id)."""

from __future__ import annotations

import re

from handlers.base import Case, Handler, OwnWordsSlot, Slot, SlotKind, Task, Turn, own_words

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
