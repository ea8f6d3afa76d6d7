"""What the database holds of a call: its rows in the messages table (arrival, turns, dialled
numbers, statuses), who is calling, and whom to put the call through to."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, bindparam, select
from sqlalchemy.orm import Session

from bot.channels.twilio.voice.wire import ANSWERED, CHANNEL, EMERGENCY, Caller
from bot.conversation.messages import Hint
from bot.conversation.state import DialogueState
from storage import family, identities, messages
from storage.alert_chain import Target, put_through_to
from storage.models import ConversationState, Direction, Message, Retiree
from storage.phones import InvalidPhoneNumber, normalize_phone

ARRIVAL = "call"  # a call's arrival row: provider id "{CallSid}:call"


def retiree_by_phone(session: Session, phone: str) -> Retiree | None:
    """The registered retiree calling from ``phone`` (as the SIP line knows its callers)."""
    try:
        return identities.retiree_by_phone(session, normalize_phone(phone))
    except InvalidPhoneNumber:  # "anonymous", a withheld number
        return None


def targets(db: Engine, caller: str, kind: str) -> list[Target]:
    """Whom to put the call through to, in order (storage.alert_chain.put_through_to)."""
    with Session(db) as session:
        return put_through_to(session, caller, emergency=kind == EMERGENCY)


def record(
    db: Engine, address: str, provider_id: str, status: str, payload: dict[str, Any]
) -> bool:
    """A record of the call in the messages table (its arrival, a status, a dialled number);
    False when Twilio repeated it (the provider id was seen)."""
    with Session(db) as session, session.begin():
        retiree = retiree_by_phone(session, address)
        return _record(session, address, provider_id, status, payload, retiree)


def caller_of(db: Engine, call_sid: str, lang: str) -> Caller | None:
    """The registered person on the call ``call_sid`` (found by its arrival row), with their
    community's name in ``lang``; None for an unknown number, or a call not recorded."""
    if not call_sid:
        return None
    with Session(db) as session:
        retiree = session.scalar(
            select(Retiree)
            .join(Message, Message.retiree_id == Retiree.id)
            .where(Message.channel == CHANNEL, Message.provider_id == f"{call_sid}:{ARRIVAL}")
        )
        if retiree is None:
            return None
        community = retiree.community.name(lang) if retiree.community is not None else ""
        return Caller(retiree.name, community)


ACCEPTED = "accepted"  # the status of the row of a key pressed at the call screening
NOT_ACCEPTED = "not-accepted"  # a dialled number picked up (a voicemail?) and pressed no key


def accept(db: Engine, callee: str, callee_sid: str, payload: dict[str, Any]) -> bool:
    """Whoever picked up the number the caller was put through to pressed a key at the call
    screening: kept as the row "{callee's CallSid}:accepted" (their <Dial>'s DialCallSid)."""
    return record(db, callee, f"{callee_sid}:{ACCEPTED}", ACCEPTED, payload)


def accepted(db: Engine, callee_sid: str) -> bool:
    """Whether the call leg ``callee_sid`` (a <Dial>'s DialCallSid) was taken by a person."""
    if not callee_sid:
        return False
    with Session(db) as session:
        found = session.scalar(
            select(Message.id).where(
                Message.channel == CHANNEL, Message.provider_id == f"{callee_sid}:{ACCEPTED}"
            )
        )
    return found is not None


@dataclass(frozen=True)
class Arrival:
    """A call that came in: whether this is Twilio's first word of it, who is calling, and
    whether the caller's conversation has something to close (`DialogueState.nothing_to_close`)."""

    first: bool
    left_open: bool
    name: str | None = None  # a registered caller's, or the retiree a family member calls for
    language: str | None = None
    for_family: bool = False  # a family member who may ask for the retiree (storage/family.py)


def arrival(
    db: Engine, address: str, provider_id: str, status: str, payload: dict[str, Any]
) -> Arrival:
    """Record a call's arrival (as `record`), find the caller and look at their conversation,
    in one transaction."""
    with Session(db) as session, session.begin():
        retiree = retiree_by_phone(session, address)
        first = _record(session, address, provider_id, status, payload, retiree)
        left_open = _left_open(session, address)
        if retiree is not None:
            return Arrival(first, left_open, retiree.name, retiree.preferred_language)
        member = family.speaking_for(session, CHANNEL, address)
        if member is None:
            return Arrival(first, left_open)
        proxied = member.retiree
        return Arrival(first, left_open, proxied.name, proxied.preferred_language, True)


@dataclass(frozen=True)
class Ending:
    """A call's final status: whether this is its first delivery, the call's rows, and whether
    the caller's conversation has something to close."""

    first: bool
    record: CallRecord
    left_open: bool


def record_ending(
    db: Engine, address: str, provider_id: str, status: str, payload: dict[str, Any], call_sid: str
) -> Ending:
    """Record a final status (as `record`), read the call's rows and look at the caller's
    conversation, in one transaction."""
    with Session(db) as session, session.begin():
        retiree = retiree_by_phone(session, address)
        first = _record(session, address, provider_id, status, payload, retiree)
        record = _call_record(session, address, call_sid)
        return Ending(first, record, _left_open(session, address))


def _left_open(session: Session, address: str) -> bool:
    data = session.execute(_STATE, {"address": address}).scalar()
    return not DialogueState.nothing_to_close(data)


_STATE = select(ConversationState.state).where(
    ConversationState.channel == CHANNEL, ConversationState.address == bindparam("address")
)


def _record(
    session: Session,
    address: str,
    provider_id: str,
    status: str,
    payload: dict[str, Any],
    retiree: Retiree | None,
) -> bool:
    added = messages.record_once(
        session,
        channel=CHANNEL,
        direction=Direction.INBOUND,
        address=address,
        provider_id=provider_id,
        payload=payload,
        status=status,
        retiree_id=retiree.id if retiree is not None else None,
        now=datetime.now(UTC),
    )
    return added is not None


@dataclass(frozen=True)
class CallRow:
    id: int
    provider_id: str
    text: str
    payload: dict[str, Any]
    case_id: int | None
    status: str


@dataclass(frozen=True)
class CallRecord:
    """What the messages table holds of one call: its turns, hand-overs and dialled numbers."""

    call_sid: str
    rows: list[CallRow]

    def turn_number(self, row: CallRow) -> int | None:
        """n of an engine turn's row ("{CallSid}:{n}"); None for the call's other rows."""
        rest = row.provider_id.removeprefix(f"{self.call_sid}:")
        return int(rest) if rest.isdigit() else None

    def heard_anything(self) -> bool:
        return any(
            (row.text.strip() or row.payload.get("digits"))
            for row in self.rows
            if self.turn_number(row) is not None
        )

    def filed_anything(self) -> bool:
        return any(row.case_id is not None for row in self.rows)

    def pending_hand_over(self) -> int | None:
        """n of the last turn that asked for a person, when after it nobody was reached and
        no voicemail was taken (the caller hung up while the phones rang)."""
        asked: CallRow | None = None
        for row in self.rows:
            replies = row.payload.get("replies", [])
            if self.turn_number(row) is not None and any(
                Hint.HAND_OVER.value in reply.get("hints", []) for reply in replies
            ):
                asked = row
        if asked is None:
            return None
        for row in self.rows:
            if row.id <= asked.id:
                continue
            if row.provider_id.startswith(f"{self.call_sid}:handover:"):
                return None
            if row.provider_id.startswith(f"{self.call_sid}:dial:") and row.status in ANSWERED:
                return None
        return self.turn_number(asked)


def _call_record(session: Session, caller: str, call_sid: str) -> CallRecord:
    found = session.execute(
        select(
            Message.id,
            Message.provider_id,
            Message.text,
            Message.payload,
            Message.case_id,
            Message.status,
        )
        .where(
            Message.channel == CHANNEL,
            Message.address == caller,
            Message.direction == Direction.INBOUND,
            Message.provider_id.startswith(f"{call_sid}:", autoescape=True),
        )
        .order_by(Message.id)
    ).all()
    rows = [CallRow(r[0], r[1] or "", r[2] or "", r[3] or {}, r[4], r[5] or "") for r in found]
    return CallRecord(call_sid, rows)
