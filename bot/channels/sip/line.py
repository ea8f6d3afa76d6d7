"""The SIP line's port to the rest of the system, run on the agent's worker threads: who is
calling, a conversation turn for what the caller chose, a recording onto its case, a silent
call filed for a call-back. The line is the "phone" channel of the conversation engine, so a
call is known by its number as on any phone line (a one-key device's number is a phone of its
retiree in the registry), and its cases are filed, posted to staff, alerted and told as any
other.

A speech recogniser can stand in front of `ask` later (a cloud service, or a model file an
operator installs): it would turn the recording into ``Ask(says=...)``. None ships.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from bot.channels.sip.flow import Answer, Ask
from bot.conversation.dialogue import HANDOVER_UNANSWERED, VOICE_NOTE
from bot.conversation.engine import ConversationEngine, TurnResult
from bot.conversation.messages import Hint, Inbound
from storage import attachments, identities
from storage.db import transaction
from storage.phones import InvalidPhoneNumber, normalize_phone
from storage.types import utcnow

CHANNEL = "phone"
WAV = "audio/wav"


@dataclass(frozen=True)
class Caller:
    address: str  # E.164 when the number is one, else "sip:<user>"
    name: str | None  # a registered retiree's, to greet them by
    language: str


class Line:
    def __init__(self, engine: ConversationEngine, db: Engine, default_language: str) -> None:
        self.engine = engine
        self.db = db
        self.default_language = default_language

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

    def ask(self, provider_id: str, address: str, ask: Ask) -> Answer:
        """One turn: a request by key (filed with its recording) or the key's words."""
        metadata: dict[str, object] = {}
        if ask.category:
            metadata = {"event": VOICE_NOTE, "category": ask.category, "audio": {"channel": "sip"}}
        inbound = Inbound(CHANNEL, address, provider_id, utcnow(), text=ask.says, metadata=metadata)
        audio = Path(ask.audio) if ask.audio else None

        def keep_recording(session: Session, result: TurnResult) -> None:
            if audio is not None and result.cases and audio.exists():
                _keep(session, result.cases[0].number, provider_id, audio)

        result = self.engine.handle(inbound, then=keep_recording)
        if Hint.HAND_OVER in result.hints:
            # Putting the call through to staff is not built yet: a call-back instead.
            unanswered = Inbound(
                CHANNEL,
                address,
                f"{provider_id}:handover",
                utcnow(),
                metadata={"event": HANDOVER_UNANSWERED},
            )
            result = self.engine.handle(unanswered)
        return Answer(
            cases=tuple(case.number for case in result.cases),
            urgent=Hint.URGENT in result.hints,
            words=tuple(reply.text for reply in result.replies),
        )

    def attach(self, case: str, audio: Path, source: str) -> None:
        """What an emergency caller said after the beep, onto the case."""
        if not audio.exists():
            return
        with transaction(self.db) as session:
            _keep(session, case, f"{source}:note", audio)

    def file_silent(self, source: str, address: str) -> None:
        self.engine.file_silent_call(CHANNEL, address, f"{source}:silent")


def _keep(session: Session, case: str, source: str, audio: Path) -> None:
    attachments.keep(
        session,
        case_number=case,
        source=source,
        kind="audio",
        content_type=WAV,
        data=audio.read_bytes(),
    )
