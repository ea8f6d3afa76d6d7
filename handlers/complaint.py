"""Complaints and petitions (投诉信访): what it is about, in the person's own words, and since
when. Staff only; filed in the station's queue. The read-back quotes the person word for word,
and the acknowledgement makes the first-contact commitment (首问负责): whoever takes the case
stays responsible for it until it is closed (storage records first_contact_owner_id)."""

from __future__ import annotations

import re

from handlers.base import (
    Case,
    Handler,
    OwnWordsSlot,
    Slot,
    SlotKind,
    Task,
    Turn,
    any_of,
    own_words,
)

_PUNCTUATION = re.compile(r"[\s,，。.;；!！?？、~～…]")


def is_bare(text: str, bare: tuple[str, ...]) -> bool:
    """Whether ``text`` only says that the person wants to complain ("我要投诉"): nothing is
    left once the ``bare`` words (config/words/complaint.yml) and punctuation are taken away."""
    return len(_PUNCTUATION.sub("", any_of(bare).sub("", text))) <= 1


class ComplaintHandler(Handler):
    name = "complaint"
    intents = ("complaint",)
    category = "complaint"
    volunteer_visible = False
    word_lists = ("about", "bare")
    slots = (
        # Prefilled from the whole first sentence (see prefill), not from a clause of it.
        OwnWordsSlot("about", SlotKind.TEXT, prefill=False, word_list="complaint.about"),
        Slot("since", SlotKind.WHEN, optional=True),
    )

    def prefill(self, turn: Turn, task: Task) -> None:
        super().prefill(turn, task)
        said = own_words(turn)
        if said and not is_bare(said, self.words_of(turn).list_of("bare")):
            task.slots["about"] = said  # word for word: the read-back quotes it

    def acknowledge(self, turn: Turn, task: Task, case: Case) -> None:
        turn.acknowledge(case)
        turn.say(f"{self.name}.first_contact")


HANDLER = ComplaintHandler()
