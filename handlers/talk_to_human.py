"""Hand-over to a person. The reply carries the hand-over hint (the phone channel dials the
on-duty staff); on channels with nobody to connect to, and when nobody answers the phone, a
call-back case is filed so a person rings back."""

from __future__ import annotations

from typing import cast

from handlers.base import CallbackFiler, Handler, Hint, Task, Turn

# Channels on which a hand-over connects a person live (the others get a call-back).
LIVE_CHANNELS = ("phone",)


class TalkToHumanHandler(Handler):
    name = "talk_to_human"
    intents = ("talk_to_human",)
    category = "callback"
    confirm = False

    def start(self, turn: Turn, task: Task) -> None:
        task.done = True
        if turn.inbound.channel in LIVE_CHANNELS:
            turn.hint(Hint.HAND_OVER)
            turn.say("talk_to_human.connecting")
            return
        self._file_callback(turn, task, "asked")

    def unanswered(self, turn: Turn, recording_url: str | None) -> None:
        """The phone channel could not reach anybody: a call-back case (with the voicemail)."""
        task = turn.task_for(self)
        extra = {"recording_url": recording_url} if recording_url else {}
        self._file_callback(turn, task, "handover", **extra)
        turn.end()

    def _file_callback(self, turn: Turn, task: Task, reason: str, **details: str) -> None:
        callback = cast(CallbackFiler, turn.handler("callback"))
        case = callback.file_callback(turn, reason, **details)
        task.case, task.done = case.number, True
        turn.state.cases.append(case.number)
        turn.say("talk_to_human.call_back")
        turn.acknowledge(case)


HANDLER = TalkToHumanHandler()
