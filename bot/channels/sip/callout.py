"""A call the SIP line places for the outbox (bot/channels/calls.py says what each kind does), as
a state machine with no SIP in it, like a caller's call (flow.py): events in (answered, a prompt
played to its end, a key, the silence timer, what the key did, the call's end), actions out
(play, wait for a key, hear a key, report the end). The agent carries the actions out.

    ringing ─(answered)─► ASKING: the text (alert: and "press 1"; a notice: twice) ─► WAITING
    WAITING ─ the key that answers (alert: 1; follow-up: 1, 2, 3; check-in: 1, 2) ─► HEARING
            ─► TELLING ─► hang up        (a check-in's 2: Converse, the caller's flow takes over)
            ─ another key, or silence ─► asked again (ALERT_ASKS / FOLLOW_UP_ASKS /
              CHECK_IN_ASKS), then goodbye
    a notice: said twice, then hang up.       the end, however it came: Ended(status)

The end is reported once, after what a key did is recorded: an alert call whose callee pressed
1 and hung up at once is taken, never passed on.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from bot.channels.calls import (
    ALERT_ASKS,
    CHANNEL,
    CHECK_IN_ASKS,
    FOLLOW_UP_ASKS,
    CallKind,
    kind_of,
)
from bot.channels.sip.flow import HangUp, Play, WaitForKey
from bot.channels.sip.prompts import Key, Part, Speak
from config.sip import SipConfig
from storage import check_ins, follow_ups

PRESS_ONE = "alert_chain.heard.press_one"
NOT_TAKEN = "alert_chain.heard.not_taken"
NO_ANSWER = "follow_up.voice_goodbye"
CHECK_IN_GOODBYE = "check_in.goodbye"
ASKS = {CallKind.ALERT: ALERT_ASKS, CallKind.CHECK_IN: CHECK_IN_ASKS}
GOODBYE = {CallKind.ALERT: NOT_TAKEN, CallKind.CHECK_IN: CHECK_IN_GOODBYE}
# What a call that ended is called (as on Twilio: the alert chain's notes and logs say it).
COMPLETED, BUSY, NO_ANSWER_STATUS, FAILED = "completed", "busy", "no-answer", "failed"
BUSY_CODES = frozenset({486, 600, 603})
RANG_OUT_CODES = frozenset({408, 480, 487})


@dataclass(frozen=True)
class Placed:
    """An outbox call handed to the line: the item's key, the number, and what it says."""

    key: str
    address: str
    kind: CallKind
    text: str
    language: str
    follow_up: int | None = None
    check_in: int | None = None

    @classmethod
    def of(cls, key: str, address: str, payload: dict[str, Any], language: str) -> Placed:
        kind = kind_of(CHANNEL, payload)
        follow_up = int(payload["follow_up"]) if kind == CallKind.FOLLOW_UP else None
        check_in = int(payload["check_in"]) if kind == CallKind.CHECK_IN else None
        return cls(
            key=key,
            address=address,
            kind=kind,
            text=str(payload.get("text") or ""),
            language=str(payload.get("language") or language),
            follow_up=follow_up,
            check_in=check_in,
        )


@dataclass(frozen=True)
class Hear:
    """What ``digit`` does on this call (recorded on a worker thread)."""

    digit: str


@dataclass(frozen=True)
class Ended:
    """The call is over: ``status`` (completed, busy, no-answer, failed) for the record."""

    status: str


@dataclass(frozen=True)
class Heard:
    """What a key did: the words the callee hears before the line hangs up (nothing: hang up);
    ``converse``: the call goes on as if the callee had rung us (a check-in's 2)."""

    words: str = ""
    converse: bool = False


@dataclass(frozen=True)
class Converse:
    """Hand the call to a caller's flow (flow.py): greeted, the menu, what they need."""


class Phase(StrEnum):
    RINGING = "ringing"
    ASKING = "asking"  # the text is playing (a key may cut in)
    WAITING = "waiting"  # for a key
    HEARING = "hearing"  # what the key did is being recorded
    TELLING = "telling"  # the last words are playing; then hang up
    DONE = "done"


def status_of(code: int, answered: bool) -> str:
    if answered:
        return COMPLETED
    if code in BUSY_CODES:
        return BUSY
    if code in RANG_OUT_CODES:
        return NO_ANSWER_STATUS
    return FAILED


@dataclass
class CalloutFlow:
    config: SipConfig
    placed: Placed
    phase: Phase = Phase.RINGING
    asks: int = 0
    answered_: bool = False
    ended: str = ""  # the status, once the call is over
    reported: bool = False

    def answered(self) -> list[Any]:
        self.answered_ = True
        return self._ask()

    def _ask(self) -> list[Any]:
        self.asks += 1
        self.phase = Phase.ASKING
        text = Speak(self.placed.text)
        parts: tuple[Part, ...]
        if self.placed.kind == CallKind.ALERT:
            parts = (text, Key(PRESS_ONE))
        elif self.placed.kind in (CallKind.FOLLOW_UP, CallKind.CHECK_IN) and self.asks > 1:
            parts = (text,)
        else:  # a follow-up's first ask, and a notice, say it twice
            parts = (text, text)
        return [Play(parts)]

    def played(self) -> list[Any]:
        if self.ended:
            return []
        if self.phase == Phase.ASKING and self.placed.kind == CallKind.NOTICE:
            self.phase = Phase.DONE
            return [HangUp()]
        if self.phase == Phase.ASKING:
            self.phase = Phase.WAITING
            return [WaitForKey(self.config.silence_seconds)]
        if self.phase == Phase.TELLING:
            self.phase = Phase.DONE
            return [HangUp()]
        return []

    def key(self, digit: str) -> list[Any]:
        if self.ended or self.phase not in (Phase.ASKING, Phase.WAITING):
            return []
        kind = self.placed.kind
        if kind == CallKind.NOTICE:
            return []
        answers = (
            (kind == CallKind.ALERT and digit == "1")
            or (kind == CallKind.FOLLOW_UP and digit in follow_ups.CHOICES)
            or (kind == CallKind.CHECK_IN and digit in check_ins.CHOICES)
        )
        if answers:
            self.phase = Phase.HEARING
            return [Hear(digit)]
        return self._no_answer()

    def silence(self) -> list[Any]:
        if self.ended or self.phase != Phase.WAITING:
            return []
        return self._no_answer()

    def _no_answer(self) -> list[Any]:
        if self.asks < ASKS.get(self.placed.kind, FOLLOW_UP_ASKS):
            return self._ask()
        self.phase = Phase.TELLING
        return [Play((Key(GOODBYE.get(self.placed.kind, NO_ANSWER)),))]

    def heard(self, heard: Heard) -> list[Any]:
        if self.ended:  # hung up while the key was recorded: the end is reported now
            return self._report()
        if heard.converse:
            self.phase = Phase.DONE  # the call is the caller's flow's from now on
            return [Converse()]
        if not heard.words:
            self.phase = Phase.DONE
            return [HangUp()]
        self.phase = Phase.TELLING
        return [Play((Speak(heard.words),))]

    def hung_up(self, code: int = 0) -> list[Any]:
        """The call is over (the callee hung up, it rang out, or we hung up)."""
        if self.ended:
            return []
        self.ended = status_of(code, self.answered_)
        if self.phase == Phase.HEARING:
            return []  # reported once the key is recorded (heard)
        self.phase = Phase.DONE
        return self._report()

    def _report(self) -> list[Any]:
        if self.reported:
            return []
        self.reported = True
        self.phase = Phase.DONE
        return [Ended(self.ended)]
