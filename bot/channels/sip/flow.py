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
    CONNECTING = "connecting"  # a staff phone (or a family member's) is ringing
    BRIDGED = "bridged"  # the caller talks with them
    VOICEMAIL = "voicemail"  # nobody took the hand-over: a message for the call-back
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
    voicemail: bool = False  # a hand-over nobody took: the call-back, with ``audio``


@dataclass(frozen=True)
class Attach:
    """The emergency's recording (where, what happened) onto its case."""

    case: str
    audio: str


@dataclass(frozen=True)
class FileSilent:
    pass


@dataclass(frozen=True)
class Dial:
    """Ring ``phone`` (E.164) and, when it answers, connect the caller."""

    phone: str


@dataclass(frozen=True)
class StopDialing:
    pass


@dataclass(frozen=True)
class Released:
    """The emergency's alert calls go now: nobody on the line took it, or the call with
    whoever did has ended."""

    case: str


@dataclass(frozen=True)
class Connected:
    """Someone answered the emergency on the line (the case's timeline says who)."""

    case: str
    phone: str
    family: bool


@dataclass(frozen=True)
class HangUp:
    pass


Action = (
    Play
    | WaitForKey
    | Record
    | StopRecording
    | Ask
    | Attach
    | FileSilent
    | Dial
    | StopDialing
    | Released
    | Connected
    | HangUp
)


@dataclass(frozen=True)
class Answer:
    """What the conversation did with an Ask: the cases it filed, whether it is an emergency,
    and its words (read out when nothing was filed)."""

    cases: tuple[str, ...] = ()
    urgent: bool = False
    words: tuple[str, ...] = ()
    hand_over: bool = False  # the caller asked for a person
    targets: tuple[tuple[str, bool], ...] = ()  # whom to put them through to: (phone, family)


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
    targets: tuple[tuple[str, bool], ...] = ()
    dialled: int = 0  # targets tried so far

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
        if self.phase == Phase.VOICEMAIL:
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
        if self.phase == Phase.VOICEMAIL:
            self.phase = Phase.ASKING
            return [Ask(audio=audio, voicemail=True)]
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
        if answer.urgent and answer.cases and not self.emergency_case:
            self.emergency_case = answer.cases[0]
            self.targets = answer.targets
            if self.targets:  # their phone rings while the caller hears it is ringing
                return [Play((Key("sip.emergency_connecting"),)), *self._dial_next()]
            return [Released(self.emergency_case), Play((Key("sip.emergency"), Beep()))]
        if answer.hand_over:
            self.targets = answer.targets
            return [Play((Key("sip.connecting"),)), *self._dial_next()]
        if answer.cases and self.category:
            return [Play((Key("sip.filed"), Number(answer.cases[0]), Key("sip.call_back")))]
        words = tuple(Speak(w) for w in answer.words if w.strip())
        return [Play(words or (Key("sip.goodbye"),))]

    def _dial_next(self) -> list[Action]:
        if self.dialled < len(self.targets):
            phone, _ = self.targets[self.dialled]
            self.dialled += 1
            self.phase = Phase.CONNECTING
            return [Dial(phone)]
        return self._nobody()

    def _nobody(self) -> list[Action]:
        """Nobody answered: an emergency's alert calls go now and the caller says where they
        are; a hand-over's caller leaves a message for the call-back."""
        if self.emergency_case:
            self.phase = Phase.TELLING
            return [Released(self.emergency_case), Play((Key("sip.emergency"), Beep()))]
        self.phase = Phase.VOICEMAIL
        return [Play((Key("sip.leave_message"), Beep()))]

    def dial_failed(self) -> list[Action]:
        """The phone rang out, was busy or refused: the next one."""
        if self.gone or self.phase != Phase.CONNECTING:
            return []
        if self.dialled < len(self.targets):
            return [Play((Key("sip.connecting_next"),)), *self._dial_next()]
        return self._nobody()

    def dial_answered(self) -> list[Action]:
        if self.phase != Phase.CONNECTING:
            return []
        self.phase = Phase.BRIDGED
        if not self.emergency_case:
            return []
        phone, family = self.targets[self.dialled - 1]
        return [Connected(self.emergency_case, phone, family)]

    def bridge_over(self) -> list[Action]:
        """The person the caller was put through to hung up: the call ends."""
        if self.phase != Phase.BRIDGED:
            return []
        self.phase = Phase.DONE
        after: list[Action] = [Released(self.emergency_case)] if self.emergency_case else []
        return [*after, HangUp()]

    def hung_up(self, code: int = 0) -> list[Action]:
        """The caller hung up (``code``: how the call ended, as SIP said it): what is left to
        do (nothing more is played)."""
        self.gone = True
        if self.phase in (Phase.RECORDING, Phase.NOTE, Phase.VOICEMAIL):
            return [StopRecording()]  # recorded() then files or attaches what there is
        phase, self.phase = self.phase, Phase.DONE
        if phase in (Phase.CONNECTING, Phase.BRIDGED):
            released: list[Action] = [Released(self.emergency_case)] if self.emergency_case else []
            missed: list[Action] = (
                [] if self.emergency_case or phase == Phase.BRIDGED else [Ask(voicemail=True)]
            )
            return [StopDialing(), *released, *missed]
        if phase in (Phase.GREETING, Phase.WAITING):
            return [FileSilent()]
        if phase == Phase.BEFORE_RECORDING:
            return [Ask(category=self.category)]  # chose, then went: filed without a recording
        return []
