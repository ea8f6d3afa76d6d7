"""Answers to the follow-up question (回访, storage/follow_ups.py) as they come in on the channels.

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
from storage import follow_up_jobs, follow_ups, messages
from storage.db import transaction
from storage.models import Case, ConversationState, Direction, FollowUp, Message, MessageStatus
from storage.outbox import enqueue
from storage.site import site_of

log = structlog.get_logger(__name__)

MESSAGE_STATUS = MessageStatus.FOLLOW_UP  # an inbound message that answered a follow-up question
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
    the person has talked with the bot since it was asked and that conversation (not idle, not
    ended; ``idle``: the dialogue rules' idle time) waits on a numbered choice of its own."""
    follow_up = follow_ups.open_round_for(session, channel, address)
    if follow_up is None:
        return None
    row = session.execute(
        select(ConversationState.state, ConversationState.updated_at).where(
            ConversationState.channel == channel, ConversationState.address == address
        )
    ).first()
    if row is None or not row.state or follow_up.asked_at is None:
        return follow_up
    idled = now - row.updated_at > idle
    state = DialogueState.load(row.state)
    if row.updated_at > follow_up.asked_at and state.choices and not state.ended and not idled:
        return None
    return follow_up


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
            return bool(earlier.status == MESSAGE_STATUS)
        follow_up = waiting_round(
            session, inbound.channel, inbound.address, inbound.received_at, idle=idle
        )
        if follow_up is None:
            return False
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
        reply = {"text": answered.text, "language": answered.language}
        messages.set_payload(
            session,
            added,
            {
                "intent": None,
                "follow_up": follow_up.id,
                "answer": answered.label,
                "replies": [reply],
            },
        )
        enqueue(
            session,
            channel=inbound.channel,
            address=inbound.address,
            payload={"kind": "reply", **reply},
            idempotency_key=reply_key,
            priority=priority,
        )
    log.info(
        "follow_up_answered",
        channel=inbound.channel,
        case=answered.case,
        answer=answered.label,
        reopened=answered.reopened,
    )
    return True


def parse_button(data: str) -> tuple[int, str] | None:
    """(follow-up id, choice) of a Telegram button's callback_data; None if it is no answer."""
    found = _BUTTON.match(data)
    if found is None:
        return None
    return int(found["id"]), found["choice"]
