"""Answers to the follow-up question (回访, storage/follow_ups.py) as they come in on the channels,
and to today's check-in (storage/check_ins.py: a bare 1 or 2 by message, `_answer_check_in`;
a follow-up question waiting on the same address is answered first).

- SMS and WhatsApp (bot/channels/twilio/messaging/): a message of just "1", "2" or "3" from the
  address a question went to (``waiting_round``). Any other text is a conversation turn as ever;
  so is a digit while the person is in the middle of a conversation that offered numbered choices
  after the question was sent (the digit answers the conversation's own question).
- Telegram (bot/channels/telegram/retirees.py): the question's buttons, callback_data
  ``fu:<follow-up id>:<1|2|3>`` (``parse_button``); only the chat the question went to may answer.
- The follow-up call (bot/channels/twilio/voice/follow_up.py): the key pressed.

Each channel records the answer with ``answer_round`` in the transaction that records the inbound
message or webhook once (so a redelivery answers nothing twice) and gets the retiree's reply: a
thank-you, or that the case is open again; for a round that was answered before, the thank-you
of that answer; for one that is over (the case was reopened meanwhile, or no answer came in time)
that it is over. Staff never answer for the retiree: no console or API route calls this.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from bot.conversation.messages import Inbound, record_inbound
from bot.conversation.state import DialogueState
from storage import check_ins, follow_up_jobs, follow_ups, messages
from storage.db import transaction
from storage.models import (
    Case,
    CheckIn,
    ConversationState,
    Direction,
    FollowUp,
    Message,
    MessageStatus,
)
from storage.outbox import enqueue
from storage.site import site_of

log = structlog.get_logger(__name__)

MESSAGE_STATUS = MessageStatus.FOLLOW_UP  # an inbound message that answered a follow-up question
CHECK_IN_STATUS = MessageStatus.CHECK_IN  # one that answered a check-in
_BUTTON = re.compile(r"^fu:(?P<id>\d{1,12}):(?P<choice>[123])$")


@dataclass(frozen=True)
class Answered:
    """What a retiree's answer did, and what they are told."""

    case: str  # the case number
    label: str  # satisfied, not_satisfied, not_done; "not_open" when the round is over
    reopened: bool  # this answer reopened the case
    text: str  # the reply, in the retiree's language
    language: str
    retiree_id: int | None


def answer_round(session: Session, follow_up: FollowUp, choice: str, *, now: datetime) -> Answered:
    """Record ``choice`` (1, 2 or 3) as the answer to ``follow_up`` (storage.follow_up_jobs.answer:
    not done or not satisfied reopens the case and tells its owner) and word the reply."""
    case = session.get(Case, follow_up.case_id)
    assert case is not None
    was_open = follow_up.status in follow_ups.OPEN_ROUND
    site = site_of(session)
    follow_up_jobs.answer(session, follow_up, choice, site.categories, now=now)
    given = follow_ups.recorded_answer(follow_up)
    label = given.label if given is not None else "not_open"
    language = follow_ups.language_of(session, case)
    key = f"follow_up.thanks.{label}" if given is not None else "follow_up.not_open"
    return Answered(
        case=case.number,
        label=label,
        reopened=was_open and given is not None and given.reopens,
        text=site.catalogs.text(key, language),
        language=language,
        retiree_id=case.retiree_id,
    )


def waiting_round(
    session: Session, channel: str, address: str, now: datetime, *, idle: timedelta
) -> FollowUp | None:
    """The question a bare 1, 2 or 3 from ``address`` answers; None when there is none, or when
    the conversation since it was asked waits on a number of its own (`_conversation_waits`)."""
    follow_up = follow_ups.open_round_for(session, channel, address)
    if follow_up is None or _conversation_waits(
        session, channel, address, follow_up.asked_at, now, idle
    ):
        return None
    return follow_up


def waiting_check_in(
    session: Session, channel: str, address: str, now: datetime, *, idle: timedelta
) -> CheckIn | None:
    """Today's check-in a bare 1 or 2 from ``address`` answers, as `waiting_round`."""
    today = now.astimezone(site_of(session).tz).date()
    check_in = check_ins.waiting_for(session, channel, address, today)
    if check_in is None or _conversation_waits(
        session, channel, address, check_in.asked_at, now, idle
    ):
        return None
    return check_in


def _conversation_waits(
    session: Session,
    channel: str,
    address: str,
    asked_at: datetime | None,
    now: datetime,
    idle: timedelta,
) -> bool:
    """Whether the person has talked with the bot since our question was asked and that
    conversation (not idle, not ended; ``idle``: the dialogue rules' idle time) waits on a
    numbered choice of its own: then a bare number answers the conversation, not us."""
    row = session.execute(
        select(ConversationState.state, ConversationState.updated_at).where(
            ConversationState.channel == channel, ConversationState.address == address
        )
    ).first()
    if row is None or not row.state or asked_at is None:
        return False
    idled = now - row.updated_at > idle
    state = DialogueState.load(row.state)
    return row.updated_at > asked_at and bool(state.choices) and not state.ended and not idled


def answer_message(
    db: Engine, inbound: Inbound, reply_key: str, priority: int, *, idle: timedelta
) -> bool:
    """A message of a bare 1, 2 or 3 (SMS, WhatsApp) from someone a follow-up question waits on:
    the answer, recorded as their message once per provider id (the message status
    MESSAGE_STATUS), its reply queued under ``reply_key`` in the same transaction. False when it
    is no answer: a conversation turn takes the message."""
    assert inbound.provider_id is not None
    with transaction(db) as session:
        earlier = session.execute(
            select(Message.status).where(
                Message.channel == inbound.channel,
                Message.provider_id == inbound.provider_id,
                Message.direction == Direction.INBOUND,
            )
        ).first()
        if earlier is not None:
            # A redelivery: an answer was answered the first time; a turn's message is the
            # engine's, which answers a redelivered one from what it saved.
            return earlier.status in (MESSAGE_STATUS, CHECK_IN_STATUS)
        follow_up = waiting_round(
            session, inbound.channel, inbound.address, inbound.received_at, idle=idle
        )
        if follow_up is None:
            return _answer_check_in(session, inbound, reply_key, priority, idle=idle)
        added = record_inbound(
            session,
            inbound,
            payload={"intent": None, "follow_up": follow_up.id, "replies": []},
            status=MESSAGE_STATUS,
            case_id=follow_up.case_id,
            retiree_id=session.scalar(select(Case.retiree_id).where(Case.id == follow_up.case_id)),
        )
        if added is None:  # the same message delivered twice at once: the other one answers it
            return True
        answered = answer_round(session, follow_up, inbound.text, now=inbound.received_at)
        answer = {"follow_up": follow_up.id, "answer": answered.label}
        _reply(
            session, inbound, added, answer, answered.text, answered.language, reply_key, priority
        )
    log.info(
        "follow_up_answered",
        channel=inbound.channel,
        case=answered.case,
        answer=answered.label,
        reopened=answered.reopened,
    )
    return True


def _answer_check_in(
    session: Session, inbound: Inbound, reply_key: str, priority: int, *, idle: timedelta
) -> bool:
    """A bare 1 or 2 to today's check-in (storage/check_ins.py), recorded once as the person's
    message (CHECK_IN_STATUS) with its reply queued; False when no check-in waits on it. After a
    2 the person's next message is a conversation turn as ever: they are asked what they need."""
    if inbound.text not in check_ins.CHOICES:
        return False
    check_in = waiting_check_in(
        session, inbound.channel, inbound.address, inbound.received_at, idle=idle
    )
    if check_in is None:
        return False
    added = record_inbound(
        session,
        inbound,
        payload={"intent": None, "check_in": check_in.id, "replies": []},
        status=CHECK_IN_STATUS,
        retiree_id=check_in.retiree_id,
    )
    if added is None:
        return True
    answered = check_ins.answer(session, check_in, inbound.text, now=inbound.received_at)
    answer = {"check_in": check_in.id, "answer": answered.label}
    _reply(session, inbound, added, answer, answered.text, answered.language, reply_key, priority)
    return True


def _reply(
    session: Session,
    inbound: Inbound,
    message_id: int,
    answer: dict[str, object],
    text: str,
    language: str,
    reply_key: str,
    priority: int,
) -> None:
    """The answer's record (its message ``message_id`` says what it answered, and the reply
    in the engine's shape) and the reply queued, in the transaction that recorded it."""
    reply = {"text": text, "language": language}
    messages.set_payload(session, message_id, {"intent": None, **answer, "replies": [reply]})
    enqueue(
        session,
        channel=inbound.channel,
        address=inbound.address,
        payload={"kind": "reply", **reply},
        idempotency_key=reply_key,
        priority=priority,
    )


def parse_button(data: str) -> tuple[int, str] | None:
    """(follow-up id, choice) of a Telegram button's callback_data; None if it is no answer."""
    found = _BUTTON.match(data)
    if found is None:
        return None
    return int(found["id"]), found["choice"]
