"""Where a conversation stands, as stored in conversation_states.state (JSON): the request being
taken down, requests put aside for another, and what the last question offered."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

# The value of a slot the person could not or would not give ("不知道"); staff ask later.
UNKNOWN = "?"
# task.asking while the read-back waits for yes or no, and while the person picks what to change.
CONFIRM = "_confirm"
WHICH = "_which"


class _State(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Task(_State):
    """One request being taken down by its handler."""

    handler: str
    slots: dict[str, Any] = Field(default_factory=dict)
    asking: str | None = None  # the slot (or step) the last question asked for
    retries: int = 0  # answers in a row that did not answer the question
    said: list[str] = Field(default_factory=list)  # everything the person said for it
    case: str | None = None  # the case number, once filed
    done: bool = False  # the handler has finished (filed, answered or dropped)
    data: dict[str, Any] = Field(default_factory=dict)  # the handler's own notes

    @property
    def original_text(self) -> str:
        return "\n".join(self.said)

    def missing(self, name: str) -> bool:
        return name not in self.slots


class Switch(_State):
    """A new request heard in the middle of another, waiting for the person to confirm it."""

    intent: str
    text: str
    said: str = ""
    entities: list[dict[str, Any]] = Field(default_factory=list)


class DialogueState(_State):
    lang: str = "zh"
    lang_chosen: bool = False  # set from the profile or what the person wrote
    task: Task | None = None
    suspended: list[Task] = Field(default_factory=list)  # put aside, newest last
    switch: Switch | None = None
    deferred: Switch | None = None  # a request made before registration was finished
    emergency_check: Switch | None = None  # an uncertain emergency, asked about once
    fallbacks: int = 0  # not understood in a row (outside a task)
    unclear: list[str] = Field(default_factory=list)  # what was not understood, kept for staff
    silences: int = 0  # empty turns in a row
    last_ask: dict[str, Any] | None = None  # the last question ({text, choices}), to repeat
    choices: list[list[str]] = Field(
        default_factory=list
    )  # [value, label] the last question offered
    cases: list[str] = Field(default_factory=list)  # numbers filed in this conversation
    emergency_case: str | None = None  # an emergency filed in this conversation
    registered: bool = False  # an unknown sender finished registration in this conversation
    on_behalf: int | None = None  # the family member (storage/family.py) asking for the retiree
    ended: bool = False
    turns: int = 0

    @classmethod
    def load(cls, data: dict[str, Any] | None) -> DialogueState:
        return cls.model_validate(data or {})

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_defaults=True)

    def unfinished(self) -> list[Task]:
        """The requests left half-way: the current one and those put aside."""
        return [t for t in [self.task, *self.suspended] if t is not None and not t.done]

    @classmethod
    def nothing_to_close(cls, data: dict[str, Any] | None) -> bool:
        """Closing a conversation stored as ``data`` would change nothing: it is empty, or it
        ended (goodbye was said) with no request half-way, so its next turn starts afresh
        anyway. A caller that reads this can spare the closing transaction."""
        if not data:
            return True
        state = cls.load(data)
        return state.ended and not state.unfinished()
