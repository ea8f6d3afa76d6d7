"""What the conversation asks of the handlers in handlers/ (one per kind of request): the
protocols that their base class (handlers/base.py's ``Handler``) and two of them, the call-back
and the hand-over to a person, meet. The engine gets the handlers from the deployment
(bot/runtime/configure.py); nothing in bot/conversation/ imports handlers/, so handlers/ builds
on the conversation without an import circle."""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from bot.conversation.state import Task
    from bot.conversation.turn import Turn
    from storage.models import Case


class SlotKind(enum.StrEnum):
    """What kind of answer a question takes."""

    TEXT = "text"  # the person's own words
    WHEN = "when"  # a date entity if there is one, else the words ("上午都行")
    AMOUNT = "amount"  # an amount entity (yuan)
    HOSPITAL = "hospital"  # a hospital entity, else the words (unknown hospitals are common)
    RELATION = "relation"  # who: a relation entity, or "self"
    OPTION = "option"  # one of a closed set, by keyword, button or key
    PHONE = "phone"  # a phone number entity
    # Anything more the person wants to say, which may be nothing: every answer counts, and
    # "没有了", "谢谢" or "再见" say there is none (the dialogue does not take them for leaving).
    REMARK = "remark"


class Question(Protocol):
    """A slot a handler asks for."""

    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> SlotKind: ...

    def extract(self, turn: Turn, *, answering: bool) -> Any | None: ...

    def words_in(self, turn: Turn) -> tuple[str, ...]: ...


class RequestHandler(Protocol):
    """One kind of request, as the dialogue drives it."""

    @property
    def name(self) -> str: ...

    @property
    def intents(self) -> tuple[str, ...]: ...

    @property
    def category(self) -> str: ...

    @property
    def ask_before_leaving(self) -> bool: ...

    def start(self, turn: Turn, task: Task) -> None: ...

    def proceed(self, turn: Turn, task: Task) -> None: ...

    def answer(self, turn: Turn, task: Task) -> None: ...

    def acknowledge(self, turn: Turn, task: Task, case: Case) -> None: ...

    def file_incomplete(self, turn: Turn, task: Task) -> Case | None: ...

    def kind_name(self, turn: Turn) -> str: ...

    def has_slot(self, name: str) -> bool: ...

    def slot(self, name: str) -> Question: ...


class CallbackFiler(RequestHandler, Protocol):
    """The call-back handler: a case for staff to ring the person."""

    def file_callback(
        self, turn: Turn, reason: str, *, said: str | None = None, **details: Any
    ) -> Case: ...

    def file_silent(self, turn: Turn) -> Case: ...


class HandOver(RequestHandler, Protocol):
    """The hand-over to a person ("0", 转人工)."""

    def unanswered(self, turn: Turn, recording_url: str | None) -> None: ...


class Addition(RequestHandler, Protocol):
    """Adds what the person says to a request already filed (handlers/add_to_case.py)."""

    def applies(self, turn: Turn) -> bool: ...
