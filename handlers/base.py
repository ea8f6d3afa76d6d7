"""What a handler is: the intents it serves, the slots it needs, the read-back, how it files the
case and how it acknowledges it. Most handlers only declare these; the asking, re-asking,
correcting and confirming is done here, the same way for every kind of request.

A handler's texts are in config/messages/<lang>/<handler>.yml:
  <handler>.ask.<slot>              the question for a slot (one question, short)
  <handler>.options.<slot>.<value>  the label of each choice of an option slot
  <handler>.labels.<slot>           the slot's name, when the person is asked what to change
  <handler>.read_back               the confirmation, with a {placeholder} per slot
  <handler>.summary                 the case summary staff see, with the same placeholders
"""

from __future__ import annotations

from typing import Any, ClassVar

# What a handler may use: handler modules import only this module (tests/test_structure.py).
from bot.conversation.handling import CallbackFiler, HandOver, SlotKind
from bot.conversation.messages import Hint, Reply
from bot.conversation.notify import tell_assignee
from bot.conversation.state import CONFIRM, UNKNOWN, WHICH, Task
from bot.conversation.timefmt import spoken_date, spoken_day
from bot.conversation.turn import NO, PHONE_CHANNELS, RETIREE, YES, Heard, Turn, only_fillers
from config.faq import get_faq
from config.loader import ConfigError
from config.words import HandlerWords, any_of, ending, opening
from handlers._cases import own_case, own_cases, said_case_number
from handlers._slots import IN_WORDS, Option, OwnWordsSlot, Slot, bare_yes_or_no, own_words
from nlu.text import clean_text, normalize_for_model
from storage import actions
from storage.alert_chain import alert_emergency
from storage.audit import record_access
from storage.errors import IllegalTransition
from storage.models import (
    Case,
    CaseStatus,
    MessagingIdentity,
    Retiree,
    RetireePhone,
    RetireeStatus,
    Unit,
    UnitLevel,
)
from storage.phones import InvalidPhoneNumber, normalize_phone

__all__ = [
    "CONFIRM",
    "NO",
    "PHONE_CHANNELS",
    "RETIREE",
    "UNKNOWN",
    "WHICH",
    "YES",
    "CallbackFiler",
    "Case",
    "CaseStatus",
    "ConfigError",
    "HandOver",
    "Handler",
    "HandlerWords",
    "Heard",
    "Hint",
    "IllegalTransition",
    "InvalidPhoneNumber",
    "MessagingIdentity",
    "Option",
    "OwnWordsSlot",
    "Reply",
    "Retiree",
    "RetireePhone",
    "RetireeStatus",
    "Slot",
    "SlotKind",
    "Task",
    "Turn",
    "Unit",
    "UnitLevel",
    "actions",
    "alert_emergency",
    "any_of",
    "clean_text",
    "ending",
    "get_faq",
    "normalize_for_model",
    "normalize_phone",
    "only_fillers",
    "opening",
    "own_case",
    "own_cases",
    "own_words",
    "record_access",
    "said_case_number",
    "spoken_date",
    "spoken_day",
    "tell_assignee",
]


class Handler:
    """One kind of request. Subclasses declare the class attributes and override what differs."""

    name: ClassVar[str] = ""  # the module's name; texts are under this key
    intents: ClassVar[tuple[str, ...]] = ()
    category: ClassVar[str] = ""
    slots: ClassVar[tuple[Slot, ...]] = ()
    confirm: ClassVar[bool] = True  # read back before filing
    # "再见" half-way asks whether to file what was said; False: just say goodbye (a request
    # that files nothing, like a status inquiry).
    ask_before_leaving: ClassVar[bool] = True
    # The word lists and groups it listens for, in config/words/<name>.yml (`words_of`).
    word_lists: ClassVar[tuple[str, ...]] = ()

    def words_of(self, turn: Turn) -> HandlerWords:
        """This deployment's words for this handler (config/words/<name>.yml)."""
        return turn.deployment.words.of(self.name)

    # -- the flow ----------------------------------------------------------------------------

    def start(self, turn: Turn, task: Task) -> None:
        """The request was just recognised in ``turn.heard``."""
        self.prefill(turn, task)
        self.proceed(turn, task)

    def prefill(self, turn: Turn, task: Task) -> None:
        """Take what the first sentence already says, so it is not asked again."""
        for slot in self.slots:
            if slot.prefill and task.missing(slot.name):
                value = slot.extract(turn, answering=False)
                if value is not None:
                    task.slots[slot.name] = value

    def needed(self, task: Task) -> list[Slot]:
        """The slots to ask for, in order (override when one depends on another)."""
        return list(self.slots)

    def proceed(self, turn: Turn, task: Task) -> None:
        """Ask for the next missing slot, or read back, or file."""
        for slot in self.needed(task):
            if task.missing(slot.name):
                self.ask_slot(turn, task, slot)
                return
        if self.confirm and not task.data.get("confirmed"):
            self.read_back(turn, task)
            return
        self.finish(turn, task)

    def answer(self, turn: Turn, task: Task) -> None:
        """The person answered the last question of this task."""
        if turn.heard.said:
            task.said.append(turn.heard.said)
        if task.asking == CONFIRM:
            self.on_confirm(turn, task)
        elif task.asking == WHICH:
            self.on_which(turn, task)
        elif task.asking is not None and self.has_slot(task.asking):
            self.on_slot_answer(turn, task, self.slot(task.asking))
        else:
            self.on_step(turn, task)

    def on_slot_answer(self, turn: Turn, task: Task, slot: Slot) -> None:
        heard = turn.heard
        if heard.says_any(turn.deployment.dialogue.corrections) and self.correct(turn, task, slot):
            turn.say("confirm.fixed")
            self.proceed(turn, task)
            return
        # "对" is no answer to a question in words ("what is it about?"), for any slot's kind.
        in_words = slot.kind in IN_WORDS and bare_yes_or_no(turn)
        value = None if in_words else slot.extract(turn, answering=True)
        if value is None:
            self.not_answered(turn, task, slot)
            return
        task.slots[slot.name] = value
        task.retries = 0
        # One answer may say more than was asked ("我老伴，明天上午"): keep that too.
        for other in self.slots:
            if other.kind != SlotKind.TEXT and other.prefill and task.missing(other.name):
                extra = other.extract(turn, answering=False)
                if extra is not None:
                    task.slots[other.name] = extra
        self.proceed(turn, task)

    def on_step(self, turn: Turn, task: Task) -> None:
        """A handler's own steps (task.asking not a slot); the default asks again."""
        self.proceed(turn, task)

    def not_answered(self, turn: Turn, task: Task, slot: Slot) -> None:
        """Ask once more; after max_retries move on and leave it to staff."""
        task.retries += 1
        if task.retries >= turn.deployment.dialogue.max_retries:
            task.retries = 0
            task.slots[slot.name] = UNKNOWN
            if turn.heard.said:
                task.data.setdefault("unclear", []).append(turn.heard.said)
            self.proceed(turn, task)
            return
        turn.say("not_understood")
        self.ask_slot(turn, task, slot)

    def ask_slot(self, turn: Turn, task: Task, slot: Slot) -> None:
        task.asking = slot.name
        choices = [
            turn.choice(option.value, f"{self.name}.options.{slot.name}.{option.value}")
            for option in slot.options
        ]
        turn.ask(f"{self.name}.ask.{slot.name}", choices, **self.ask_params(turn, task, slot))

    def ask_params(self, turn: Turn, task: Task, slot: Slot) -> dict[str, Any]:
        """Placeholders of a slot's question (none by default)."""
        return {}

    def read_back(self, turn: Turn, task: Task) -> None:
        task.asking = CONFIRM
        turn.ask(f"{self.name}.read_back", turn.yes_no(), **self.displays(turn, task))

    def on_confirm(self, turn: Turn, task: Task) -> None:
        heard = turn.heard
        if heard.affirm:
            task.data["confirmed"] = True
            self.finish(turn, task)
        elif self.correct(turn, task):
            turn.say("confirm.fixed")
            self.proceed(turn, task)
        elif heard.deny:
            self.ask_which(turn, task)
        else:
            task.retries += 1
            if task.retries >= turn.deployment.dialogue.max_retries:
                # Nothing is lost: file what we have; staff check it with the person.
                task.data["unconfirmed"] = True
                self.finish(turn, task)
                return
            turn.say("not_understood")
            self.read_back(turn, task)

    def ask_which(self, turn: Turn, task: Task) -> None:
        task.asking = WHICH
        filled = [s for s in self.needed(task) if not task.missing(s.name)]
        choices = [turn.choice(s.name, f"{self.name}.labels.{s.name}") for s in filled]
        turn.ask("confirm.which", choices)

    def on_which(self, turn: Turn, task: Task) -> None:
        heard = turn.heard
        if heard.choice is None and self.correct(turn, task):
            turn.say("confirm.fixed")
            self.proceed(turn, task)
            return
        chosen = heard.choice if heard.choice and self.has_slot(heard.choice) else None
        if chosen is None:
            for slot in self.needed(task):
                if turn.text(f"{self.name}.labels.{slot.name}") in heard.text:
                    chosen = slot.name
                    break
        if chosen is None:
            task.retries += 1
            if task.retries >= turn.deployment.dialogue.max_retries:
                task.retries = 0
                task.data["unconfirmed"] = True
                self.finish(turn, task)
                return
            turn.say("not_understood")
            self.ask_which(turn, task)
            return
        task.retries = 0
        del task.slots[chosen]
        task.data["confirmed"] = False
        self.ask_slot(turn, task, self.slot(chosen))

    def correct(self, turn: Turn, task: Task, exclude: Slot | None = None) -> bool:
        """Apply a correction ("不对，是明天") to the one filled slot it can only mean."""
        found: dict[SlotKind, list[tuple[Slot, Any]]] = {}
        for slot in self.slots:
            if (slot.kind == SlotKind.TEXT and not slot.words_in(turn)) or slot is exclude:
                continue
            if task.missing(slot.name):
                continue
            value = slot.extract(turn, answering=False)
            if value is not None and value != task.slots[slot.name]:
                found.setdefault(slot.kind, []).append((slot, value))
        changes = [pairs[0] for pairs in found.values() if len(pairs) == 1]
        for slot, value in changes:
            task.slots[slot.name] = value
        if changes:
            task.data["confirmed"] = False
            task.data.setdefault("corrections", []).extend(s.name for s, _ in changes)
        return bool(changes)

    def finish(self, turn: Turn, task: Task) -> None:
        case = self.file(turn, task)
        task.case = case.number
        task.done = True
        task.asking = None
        self.acknowledge(turn, task, case)

    # -- the case ----------------------------------------------------------------------------

    def file(self, turn: Turn, task: Task) -> Case:
        return turn.file_case(
            self.category,
            summary=self.summary(turn, task),
            details=self.details(turn, task),
            original_text=task.original_text,
            raise_for=self.raise_for(turn, task),
        )

    def summary(self, turn: Turn, task: Task) -> str:
        return turn.text(
            f"{self.name}.summary", turn.staff_lang, **self.displays(turn, task, turn.staff_lang)
        )

    def details(self, turn: Turn, task: Task) -> dict[str, Any]:
        details: dict[str, Any] = {"slots": dict(task.slots), "language": turn.lang}
        unknown = [s.name for s in self.slots if task.slots.get(s.name, UNKNOWN) == UNKNOWN]
        if unknown:
            details["unknown"] = unknown
        for key in ("unclear", "corrections", "unconfirmed", "incomplete"):
            if task.data.get(key):
                details[key] = task.data[key]
        return details

    def raise_for(self, turn: Turn, task: Task) -> list[str]:
        """Reasons in the request itself to raise its priority (none by default)."""
        return []

    def acknowledge(self, turn: Turn, task: Task, case: Case) -> None:
        turn.acknowledge(case)

    def file_incomplete(self, turn: Turn, task: Task) -> Case | None:
        """File what is known when the conversation ends before the request was finished."""
        if task.done or task.case is not None:
            return None
        task.data["incomplete"] = True
        case = self.file(turn, task)
        task.case = case.number
        task.done = True
        return case

    def kind_name(self, turn: Turn) -> str:
        """What this kind of request is called: the `<handler>.kind` text, else its category's
        name (the dialogue says it when it offers or resumes the request)."""
        key = f"{self.name}.kind"
        if turn.has_text(key):
            return turn.text(key)
        return turn.category_name(self.category)

    # -- slots -------------------------------------------------------------------------------

    def has_slot(self, name: str) -> bool:
        return any(s.name == name for s in self.slots)

    def slot(self, name: str) -> Slot:
        return next(s for s in self.slots if s.name == name)

    def displays(self, turn: Turn, task: Task, lang: str | None = None) -> dict[str, str]:
        """Every slot as words for the read-back or the summary (unknown ones as 不清楚)."""
        return {
            slot.name: self.display(turn, slot, task.slots.get(slot.name, UNKNOWN), lang)
            for slot in self.slots
        }

    def display(self, turn: Turn, slot: Slot, value: Any, lang: str | None = None) -> str:
        lang = lang or turn.lang
        if value == UNKNOWN or value is None:
            return turn.text("unknown_value", lang)
        if slot.kind == SlotKind.OPTION:
            return turn.text(f"{self.name}.options.{slot.name}.{value}", lang)
        if slot.kind == SlotKind.AMOUNT:
            return turn.text("amount", lang, amount=_number(value))
        if slot.kind == SlotKind.RELATION:
            key = f"relation.{value}"
            return (
                turn.text(key, lang) if key in turn.deployment.catalogs.texts["zh"] else str(value)
            )
        if slot.kind == SlotKind.WHEN and isinstance(value, dict):
            if value.get("date"):
                s = turn.deployment
                return spoken_date(value["date"], turn.now, s.tz, s.catalogs, lang)
            return str(value.get("said", ""))
        return str(value)


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
