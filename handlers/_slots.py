"""The slots a handler asks for: what kind of answer each takes and how it is found in what the
person said (entities from the NLU, a chosen option, their own words)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from bot.conversation.handling import SlotKind
from bot.conversation.state import UNKNOWN
from bot.conversation.turn import Turn
from config.words import opening
from nlu.entities.amounts import bare_amount


@dataclass(frozen=True)
class Option:
    value: str
    words: tuple[str, ...] = ()  # words (Chinese and English) that pick this option


@dataclass(frozen=True)
class Slot:
    name: str
    kind: SlotKind
    options: tuple[Option, ...] = ()
    optional: bool = False  # "不知道" is an answer; the slot stays unknown and staff ask
    prefill: bool = True  # may be taken from the first sentence
    # TEXT slots: words that show a clause is about this slot ("住院" for what bills are for);
    # such a clause in the first sentence or in a correction fills the slot. ``word_list``
    # ("<handler>.<list>") takes them from the deployment's config/words/<handler>.yml instead.
    words: tuple[str, ...] = ()
    word_list: str = ""
    # OPTION slots: each option's words from the group "<handler>.<group>" of the deployment's
    # config/words/<handler>.yml (the group's names are the options' values).
    word_group: str = ""

    def options_in(self, turn: Turn) -> tuple[Option, ...]:
        """The options with the words that pick each, in this deployment."""
        if not self.word_group:
            return self.options
        handler, _, name = self.word_group.partition(".")
        group = turn.deployment.words.of(handler).groups[name]
        return tuple(Option(o.value, group.get(o.value, ())) for o in self.options)

    def words_in(self, turn: Turn) -> tuple[str, ...]:
        """The words that show a clause is about this slot, in this deployment."""
        if not self.word_list:
            return self.words
        handler, _, name = self.word_list.partition(".")
        return turn.deployment.words.of(handler).list_of(name)

    def extract(self, turn: Turn, *, answering: bool) -> Any | None:
        """The slot's value in what was just heard, or None. ``answering``: the person is
        answering this slot's question, so plain words count too."""
        heard = turn.heard
        if answering and self.optional and heard.says_any(turn.deployment.dialogue.dont_know):
            return UNKNOWN
        if self.kind == SlotKind.OPTION:
            return self._option(turn)
        if self.kind == SlotKind.WHEN:
            date = heard.entity("date")
            if date is not None:
                said = heard.said if answering else _span(heard.text, date)
                return {"date": date["value"], "said": said}
            return {"said": heard.said} if answering and heard.said else None
        if self.kind == SlotKind.AMOUNT:
            amount = heard.entity("amount")
            if amount is not None:
                return amount["value"]
            # "300" keyed in, or "三百五" / "一千二百五" / "大概一千二吧" said, for "how much?",
            # or after a correction's opening words ("不对，是三百五").
            said = heard.text
            if not answering:
                rules = turn.deployment.dialogue
                if not heard.says_any(rules.corrections):
                    return None
                said = opening(rules.correction_openers, repeated=True).sub("", said)
            bare = bare_amount(said)
            return bare[0] if bare is not None else None
        if self.kind == SlotKind.HOSPITAL:
            hospital = heard.entity("hospital")
            if hospital is not None:
                return hospital["value"]
            return heard.said if answering and heard.said else None
        if self.kind == SlotKind.RELATION:
            relation = heard.entity("relation")
            if relation is not None:
                return relation["value"]
            if answering and _bare(heard.said) in {
                w.lower() for w in turn.deployment.dialogue.myself
            }:
                return "self"
            return heard.said if answering and heard.said else None
        if self.kind == SlotKind.PHONE:
            phone = heard.entity("phone_number")
            return phone["value"] if phone is not None else None
        if answering and heard.said.strip():
            return heard.said.strip()
        return self._clause(turn) if self.words_in(turn) else None

    def _clause(self, turn: Turn) -> str | None:
        """The clause of what was heard that carries one of the slot's words."""
        text = turn.heard.text
        for clause in re.split(r"[,，。.;；!！?？]", text):
            if any(word.lower() in clause.lower() for word in self.words_in(turn)):
                # "是门诊的" after "不对，": the leading 是 / 应该是 is not part of the value.
                openers = opening(turn.deployment.dialogue.value_openers)
                cleaned = openers.sub("", clause.strip())
                return cleaned or None
        return None

    def _option(self, turn: Turn) -> str | None:
        heard = turn.heard
        values = {o.value for o in self.options}
        if heard.choice in values:
            return heard.choice
        lowered = heard.text.lower()
        best: tuple[int, int, str] | None = None  # earliest, then longest word wins
        for option in self.options_in(turn):
            for word in option.words:
                at = lowered.find(word.lower())
                if at >= 0 and (best is None or (at, -len(word)) < best[:2]):
                    best = (at, -len(word), option.value)
        return best[2] if best else None


# The kinds whose answer may be the person's own words: a bare yes or no is not one (a
# remark takes any answer: SlotKind.REMARK).
IN_WORDS = frozenset({SlotKind.TEXT, SlotKind.WHEN, SlotKind.HOSPITAL, SlotKind.RELATION})


def bare_yes_or_no(turn: Turn) -> bool:
    """What was heard is only a sure yes or no ("对", "是的", "不是"), typed or said."""
    heard, rules = turn.heard, turn.deployment.dialogue
    if heard.choice is not None or not (heard.affirm or heard.deny) or heard.entities:
        return False  # "后天" may read as a yes; its date says it is not
    return heard.confidence >= rules.yes_no_confidence and len(_bare(heard.said)) <= 3


def _bare(text: str) -> str:
    return text.strip(" 。.!！,，、?？").lower()


def _span(text: str, entity: dict[str, Any]) -> str:
    return str(entity.get("text") or text[entity["start"] : entity["end"]])


def own_words(turn: Turn) -> str:
    """What the person wrote or was heard to say, as they put it (full-width punctuation and
    all; the understood text has it made narrow)."""
    return " ".join(turn.heard.said.split()) or turn.heard.text.strip()


@dataclass(frozen=True)
class OwnWordsSlot(Slot):
    """A TEXT slot kept exactly as the person put it: the whole answer, and at the read-back a
    correction that names the complaint ("不对，是物业不修灯") replaces it whole."""

    def extract(self, turn: Turn, *, answering: bool) -> Any | None:
        heard = turn.heard
        if answering:
            return own_words(turn) if heard.text.strip() else None
        if heard.choice is not None or not heard.says_any(turn.deployment.dialogue.corrections):
            return None
        if not heard.says_any(self.words_in(turn)):
            return None
        # The start of a correction ("不对，是……") is taken off what replaces the complaint.
        openers = opening(turn.deployment.dialogue.correction_openers, repeated=True)
        return openers.sub("", own_words(turn)).strip() or None
