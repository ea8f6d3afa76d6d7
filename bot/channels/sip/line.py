"""The SIP line's port to the rest of the system, run on the agent's worker threads: who is
calling, a conversation turn for what the caller chose, a recording onto its case, a silent
call filed for a call-back. The line is the "phone" channel of the conversation engine, so a
call is known by its number as on any phone line (a one-key device's number is a phone of its
retiree in the registry), and its cases are filed, posted to staff, alerted and told as any
other.

A caller who asks for a person, or presses 9, is put through to the on-duty staff in turn
(storage.alert_chain.put_through_to: the same people the Twilio line rings); the emergency's
alert calls are held meanwhile and released when nobody answers or the call ends.

The outbox's calls placed on the line (callout.py) come here too: a key pressed on one
(`hear`: 1 takes an emergency, 1/2/3 answer a follow-up) and its end (`call_over`: an alert
call nobody took passes the emergency on), through bot/channels/calls.py as on Twilio.

The speech-recogniser port: a `Recogniser` (any callable from the recording and the caller's
language to words; HOTLINE_SIP_RECOGNISER names one as "module:function", loaded by `hotline
sip`) writes down what a caller said after choosing a kind by key. Its words become the case's
text beside the recording; one that fails or says nothing leaves the case as it would be without
it. None ships: a cloud service or a model file an operator installs can stand here.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from bot.channels import calls
from bot.channels.calls import CallKind
from bot.channels.sip.callout import Heard, Placed
from bot.channels.sip.flow import Answer, Ask
from bot.conversation.dialogue import HANDOVER_UNANSWERED, VOICE_NOTE
from bot.conversation.engine import ConversationEngine, TurnResult
from bot.conversation.messages import Hint, Inbound
from storage import alert_chain, attachments, identities
from storage.alert_chain import put_through_to
from storage.db import transaction
from storage.phones import InvalidPhoneNumber, normalize_phone
from storage.types import utcnow

CHANNEL = "phone"
WAV = "audio/wav"
# The recording (8 kHz mono WAV) and the caller's language to what they said ("" if unsure).
Recogniser = Callable[[Path, str], str]
log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Caller:
    address: str  # E.164 when the number is one, else "sip:<user>"
    name: str | None  # a registered retiree's, to greet them by
    language: str


class Line:
    def __init__(
        self,
        engine: ConversationEngine,
        db: Engine,
        default_language: str,
        recogniser: Recogniser | None = None,
    ) -> None:
        self.engine = engine
        self.db = db
        self.default_language = default_language
        self.recogniser = recogniser

    def caller(self, number: str) -> Caller:
        try:
            address = normalize_phone(number)
        except InvalidPhoneNumber:
            return Caller(f"sip:{number or 'anonymous'}", None, self.default_language)
        with transaction(self.db) as session:
            retiree = identities.retiree_by_phone(session, address)
            if retiree is None:
                return Caller(address, None, self.default_language)
            return Caller(address, retiree.name, retiree.preferred_language)

    def ask(self, provider_id: str, address: str, ask: Ask, language: str = "") -> Answer:
        """One turn: a request by key (filed with its recording, and its words when a
        recogniser wrote them), the key's words, or a hand-over nobody took (a call-back, with
        the voicemail)."""
        metadata: dict[str, object] = {}
        audio = Path(ask.audio) if ask.audio else None
        says = ask.says
        if ask.category:
            metadata = {"event": VOICE_NOTE, "category": ask.category, "audio": {"channel": "sip"}}
            if audio is not None:
                says = self._words(audio, language or self.default_language)
        elif ask.voicemail:
            metadata = {"event": HANDOVER_UNANSWERED}
        inbound = Inbound(CHANNEL, address, provider_id, utcnow(), text=says, metadata=metadata)

        def keep_recording(session: Session, result: TurnResult) -> None:
            if audio is not None and result.cases and audio.exists():
                _keep(session, result.cases[0].number, provider_id, audio)

        result = self.engine.handle(inbound, then=keep_recording)
        urgent, hand_over = Hint.URGENT in result.hints, Hint.HAND_OVER in result.hints
        targets: tuple[tuple[str, bool], ...] = ()
        if urgent or hand_over:
            with transaction(self.db) as session:
                found = put_through_to(session, address, emergency=urgent)
                targets = tuple((t.phone, t.contact) for t in found)
        return Answer(
            cases=tuple(case.number for case in result.cases),
            urgent=urgent,
            words=tuple(reply.text for reply in result.replies),
            hand_over=hand_over and not urgent,
            targets=targets,
        )

    def _words(self, audio: Path, language: str) -> str:
        """What the recogniser heard in ``audio`` ("" without one, or when it fails)."""
        if self.recogniser is None or not audio.exists():
            return ""
        whole = audio.with_name(f"{audio.stem}.whole.wav")  # its WAV header finished
        try:
            whole.write_bytes(finished_wav(audio))
            return str(self.recogniser(whole, language) or "").strip()[:2000]
        except Exception as exc:  # an operator's plug-in must never lose the case
            log.warning("sip_recogniser_failed", error=f"{type(exc).__name__}: {exc}"[:300])
            return ""
        finally:
            whole.unlink(missing_ok=True)

    def released(self, case: str) -> None:
        """The emergency's held alert calls go now."""
        alert_chain.release_now(self.db, case)

    def connected(self, case: str, phone: str, family: bool) -> None:
        alert_chain.answered_now(self.db, self.engine.deployment.catalogs, case, phone, family)

    def attach(self, case: str, audio: Path, source: str) -> None:
        """What an emergency caller said after the beep, onto the case."""
        if not audio.exists():
            return
        with transaction(self.db) as session:
            _keep(session, case, f"{source}:note", audio)

    def file_silent(self, source: str, address: str) -> None:
        self.engine.file_silent_call(CHANNEL, address, f"{source}:silent")

    # -- the outbox's calls ---------------------------------------------------------------------

    def hear(self, placed: Placed, call_id: str, digit: str) -> Heard:
        """What ``digit`` did on the call placed for ``placed`` (the key that answers it)."""
        catalogs = self.engine.deployment.catalogs
        if placed.kind == CallKind.ALERT:
            pressed = calls.take_alert(self.db, catalogs, placed.key, call_id)
            return Heard(alert_chain.heard_after_pressing(catalogs, pressed, placed.language))
        if placed.kind == CallKind.FOLLOW_UP and placed.follow_up is not None:
            heard = calls.hear(self.db, placed.follow_up, placed.address, digit, now=utcnow())
            if heard is not None and heard.answered is not None:
                return Heard(heard.answered.text)
        if placed.kind == CallKind.CHECK_IN and placed.check_in is not None:
            said = calls.hear_check_in(
                self.db, placed.check_in, placed.address, digit, now=utcnow()
            )
            if said is not None and said.answered is not None:
                if said.answered.label == "needs_help":
                    return Heard(converse=True)
                return Heard(said.answered.text)
        return Heard()

    def call_over(self, placed: Placed, call_id: str, status: str) -> None:
        """An alert call ended (``status``): not taken, the emergency goes on to the next."""
        if placed.kind == CallKind.ALERT:
            catalogs = self.engine.deployment.catalogs
            calls.alert_call_ended(self.db, catalogs, placed.key, call_id, status, final=True)


def _keep(session: Session, case: str, source: str, audio: Path) -> None:
    attachments.keep(
        session,
        case_number=case,
        source=source,
        kind="audio",
        content_type=WAV,
        data=finished_wav(audio),
    )


def finished_wav(path: Path, wait_s: float = 2.0) -> bytes:
    """The recording's bytes, its WAV header complete. PJSIP writes the sizes into the header
    when the recorder closes, which for a call that just hung up may come a moment after the
    recording was handed over: the file is read once it stops growing, and sizes still missing
    are written from its length (a 44-byte PCM header, then the samples)."""
    deadline = time.monotonic() + wait_s
    size = -1
    while time.monotonic() < deadline:
        data = path.read_bytes()
        riff = struct.unpack_from("<I", data, 4)[0] if len(data) >= 44 else 0
        if riff == len(data) - 8:
            return data
        if len(data) == size:
            break
        size = len(data)
        time.sleep(0.2)
    data = bytearray(path.read_bytes())
    if len(data) < 44 or data[:4] != b"RIFF" or data[36:40] != b"data":
        return bytes(data)
    struct.pack_into("<I", data, 4, len(data) - 8)
    struct.pack_into("<I", data, 40, len(data) - 44)
    return bytes(data)
