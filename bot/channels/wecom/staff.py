"""What volunteers and staff send the WeCom app: a tap on a card's "我来处理" claims the case
(storage.actions decides: scope, volunteer rules, first tap wins), every copy of the card then
says who took it, and the claimer gets whom to contact; "我的" lists their cases; "关闭 编号"
closes a case that is done; anything else gets the help. A person whose UserID is no staff
record's is told so. Every answer goes through the outbox (WeCom is answered at once with
nothing), and each callback is recorded once by its id, so WeCom's retries change nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.channels import staff_desk
from bot.channels.staff_desk import Desk
from bot.channels.wecom import cards
from config.wecom import WeComConfig
from storage import messages, outbox
from storage.models import CaseStatus, Direction, MessageStatus, Staff

log = structlog.get_logger(__name__)

CARD_EVENT = "template_card_event"


@dataclass(frozen=True)
class Callback:
    """One callback from WeCom, decrypted and read."""

    user: str  # FromUserName: the person's UserID
    kind: str  # MsgType, or the Event of an event
    received_at: datetime
    provider_id: str
    text: str = ""
    key: str = ""  # a card button's EventKey
    task_id: str = ""
    response_code: str = ""

    @classmethod
    def of(cls, xml: dict[str, Any], received_at: datetime) -> Callback:
        msg_type = str(xml.get("MsgType") or "")
        event = str(xml.get("Event") or "")
        user = str(xml.get("FromUserName") or "")
        if not user or not msg_type:
            raise ValueError("FromUserName and MsgType are required")
        stamp = str(xml.get("CreateTime") or "")
        provider_id = (
            str(xml.get("MsgId") or "") or f"{user}:{stamp}:{event}:{xml.get('TaskId', '')}"
        )
        return cls(
            user=user,
            kind=event if msg_type == "event" else msg_type,
            received_at=received_at,
            provider_id=provider_id[:100],
            text=str(xml.get("Content") or "")[:500],
            key=str(xml.get("EventKey") or "")[:100],
            task_id=str(xml.get("TaskId") or "")[:128],
            response_code=str(xml.get("ResponseCode") or "")[:200],
        )


def handle(session: Session, callback: Callback, desk: Desk, config: WeComConfig) -> str | None:
    """In one transaction with its record: what the callback does. Returns the answer queued
    for the person (None for a repeat, or an event that needs none)."""
    if not _first(session, callback):
        log.info("wecom_redelivery", provider_id=callback.provider_id)
        return None
    staff = session.scalars(select(Staff).where(Staff.wecom_user_id == callback.user)).first()
    if callback.kind == CARD_EVENT and callback.key.startswith(cards.CLAIM):
        answer = _tap(session, callback, desk, staff)
    elif callback.kind == "text":
        answer = _command(session, callback, desk, config, staff)
    else:
        return None  # entering the app, a location report: nothing to say
    _answer(session, callback, answer, desk.language)
    return answer


def _first(session: Session, callback: Callback) -> bool:
    return (
        messages.record_once(
            session,
            channel=cards.CHANNEL,
            direction=Direction.INBOUND,
            address=callback.user,
            provider_id=callback.provider_id,
            text=callback.text or callback.key,
            payload={"event": callback.kind, "task_id": callback.task_id},
            status=MessageStatus.RECEIVED,
            now=callback.received_at,
        )
        is not None
    )


def _tap(session: Session, callback: Callback, desk: Desk, staff: Staff | None) -> str:
    number = callback.key.removeprefix(cards.CLAIM)
    card = cards.card_of(session, callback.task_id) if callback.task_id else None
    if card is not None:
        cards.add_code(card, callback.response_code)
    if staff is None:
        return desk.text("not_staff")
    try:
        with session.begin_nested():  # a refused claim keeps the record and the tap's code
            case = staff_desk.claim(desk, session, staff, number)
    except staff_desk.REFUSED as refused:
        log.info("wecom_claim_refused", case=number, error=type(refused).__name__)
        current = staff_desk.find(session, number)
        if current is not None and current.status == CaseStatus.CLAIMED and current.assignee:
            own = current.assignee_id == staff.id
            return staff_desk.taken_line(desk, number, current.status, current.assignee.name, own)
        return staff_desk.refusal(desk, refused, number, "claim")
    log.info("wecom_claimed", case=number, staff=staff.id)
    if card is not None:  # every copy says who took it, now
        messages.mark_post(card, cards.TAKEN, {**card.payload, cards.OWNER: staff.id})
        cards.queue_update(session, card, case, cards.card_line(desk, case.status, staff.name))
    mine = staff_desk.taken_line(desk, number, case.status, staff.name, True)
    return f"{mine}\n{staff_desk.case_details(desk, session, case, staff)}"


def _command(
    session: Session, callback: Callback, desk: Desk, config: WeComConfig, staff: Staff | None
) -> str:
    if staff is None:
        return desk.text("not_staff")
    command = config.command(callback.text)
    if command is None:
        return desk.catalogs.text("wecom.help", desk.language)
    name, rest = command
    if name == "mine":
        return staff_desk.mine(desk, session, staff)
    number, _, note = rest.partition(" ")
    if not number:
        return desk.catalogs.text("wecom.close_usage", desk.language)
    try:
        with session.begin_nested():
            return staff_desk.close(desk, session, staff, number, note.strip())
    except staff_desk.REFUSED as refused:
        return staff_desk.refusal(desk, refused, number, "close")


def _answer(session: Session, callback: Callback, text: str, language: str) -> None:
    outbox.enqueue(
        session,
        channel=cards.CHANNEL,
        address=callback.user,
        payload={"kind": "reply", "text": text, "language": language},
        idempotency_key=f"reply:{cards.CHANNEL}:{callback.provider_id}",
        priority=1,
    )
