"""One call on the SIP line, as a state machine with no SIP in it: events in (answered, a prompt
played to its end, a key, the silence timer, a recording done, the conversation's answer, a
hang-up), actions out (play, wait for a key, record, ask the conversation, file a silent call,
hang up). The agent (agent.py) carries the actions out on the call; tests drive it directly.

    answered ─► greeting + menu ─► (key) ─┬─ request key ─► "speak after the beep" ─► RECORDING
       ▲                                  │      RECORDING ─(# / max / hang-up)─► ASK (file it)
       │ silence: menu again, N times     ├─ "says" key (9, 0, 5) ─► ASK (the conversation)
       └─────────── then: SILENT ─► hang-up  │
    ASK ─► answer: filed number / read out ─► (emergency: record where, attach) ─► goodbye, hang-up
    hang-up before a key: a silent call (call-back case); during a recording: filed with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from bot.channels.sip.prompts import Beep, Key, Number, Part, Speak
from config.sip import SipConfig


class Phase(StrEnum):
    GREETING = "greeting"  # the greeting and menu are playing (a key may cut in)
    WAITING = "waiting"  # for a key
    BEFORE_RECORDING = "before_recording"  # "speak after the beep" is playing
    RECORDING = "recording"
    ASKING = "asking"  # the conversation is working on it
    TELLING = "telling"  # the answer is playing; then the next step
    NOTE = "note"  # an emergency: recording where and what
    DONE = "done"


@dataclass(frozen=True)
class Play:
    parts: tuple[Part, ...]


@dataclass(frozen=True)
class WaitForKey:
    seconds: int


@dataclass(frozen=True)
class Record:
    seconds: int


@dataclass(frozen=True)
class StopRecording:
    pass


@dataclass(frozen=True)
class Ask:
    """Tell the conversation: a request by key with its recording (``category``, ``audio``),
    or words (``says``)."""

    category: str = ""
    says: str = ""
    audio: str = ""  # the recording's path


@dataclass(frozen=True)
class Attach:
    """The emergency's recording (where, what happened) onto its case."""

    case: str
    audio: str


@dataclass(frozen=True)
class FileSilent:
    pass


@dataclass(frozen=True)
class HangUp:
    pass


Action = Play | WaitForKey | Record | StopRecording | Ask | Attach | FileSilent | HangUp


@dataclass(frozen=True)
class Answer:
    """What the conversation did with an Ask: the cases it filed, whether it is an emergency,
    and its words (read out when nothing was filed)."""

    cases: tuple[str, ...] = ()
    urgent: bool = False
    words: tuple[str, ...] = ()


@dataclass
class CallFlow:
    config: SipConfig
    name: str | None = None  # the registered caller's name, to greet them by
    phase: Phase = Phase.GREETING
    repeats: int = 0
    category: str = ""
    emergency_case: str = ""
    gone: bool = False  # the caller hung up: nothing more is played
    keys: list[str] = field(default_factory=list)

    def answered(self) -> list[Action]:
        hello = Key("sip.hello_name", (("name", self.name),)) if self.name else Key("sip.hello")
        return [Play((hello, Key("sip.menu")))]

    def played(self) -> list[Action]:
        """The playing prompt reached its end."""
        if self.gone:
            return []
        if self.phase == Phase.GREETING:
            self.phase = Phase.WAITING
            return [WaitForKey(self.config.silence_seconds)]
        if self.phase == Phase.BEFORE_RECORDING:
            self.phase = Phase.RECORDING
            return [Record(self.config.record_seconds)]
        if self.phase == Phase.TELLING and self.emergency_case:
            self.phase = Phase.NOTE
            return [Record(self.config.record_seconds)]
        if self.phase == Phase.TELLING:
            self.phase = Phase.DONE
            return [HangUp()]
        return []

    def key(self, digit: str) -> list[Action]:
        self.keys.append(digit)
        if self.phase in (Phase.RECORDING, Phase.NOTE) and digit == "#":
            return [StopRecording()]
        if self.phase not in (Phase.GREETING, Phase.WAITING):
            return []
        choice = self.config.menu.get(digit)
        if choice is None:
            self.phase = Phase.GREETING
            return [Play((Key("sip.menu"),))]
        if choice.request:
            self.category = choice.request
            self.phase = Phase.BEFORE_RECORDING
            return [Play((Key("sip.speak_after_beep"), Beep()))]
        self.phase = Phase.ASKING
        return [Ask(says=choice.says)]

    def silence(self) -> list[Action]:
        """No key within the wait."""
        if self.phase != Phase.WAITING:
            return []
        if self.repeats < self.config.menu_repeats:
            self.repeats += 1
            self.phase = Phase.GREETING
            return [Play((Key("sip.again"), Key("sip.menu")))]
        self.phase = Phase.DONE
        return [FileSilent(), HangUp()]

    def recorded(self, audio: str) -> list[Action]:
        """A recording ended (# pressed, its longest, or a hang-up)."""
        if self.phase == Phase.RECORDING:
            self.phase = Phase.ASKING
            return [Ask(category=self.category, audio=audio)]
        if self.phase == Phase.NOTE:
            self.phase = Phase.DONE if self.gone else Phase.TELLING
            self.emergency_case, case = "", self.emergency_case
            after: list[Action] = [] if self.gone else [Play((Key("sip.goodbye"),))]
            return [Attach(case, audio), *after]
        return []

    def answer(self, answer: Answer) -> list[Action]:
        if self.gone or self.phase == Phase.DONE:
            self.phase = Phase.DONE
            return []
        self.phase = Phase.TELLING
        if answer.urgent and answer.cases:
            self.emergency_case = answer.cases[0]
            return [Play((Key("sip.emergency"), Beep()))]
        if answer.cases and self.category:
            return [Play((Key("sip.filed"), Number(answer.cases[0]), Key("sip.call_back")))]
        words = tuple(Speak(w) for w in answer.words if w.strip())
        return [Play(words or (Key("sip.goodbye"),))]

    def hung_up(self) -> list[Action]:
        """The caller hung up: what is left to do (nothing more is played)."""
        self.gone = True
        if self.phase in (Phase.RECORDING, Phase.NOTE):
            return [StopRecording()]  # recorded() then files or attaches what there is
        phase, self.phase = self.phase, Phase.DONE
        if phase in (Phase.GREETING, Phase.WAITING):
            return [FileSilent()]
        if phase == Phase.BEFORE_RECORDING:
            return [Ask(category=self.category)]  # chose, then went: filed without a recording
        return []
