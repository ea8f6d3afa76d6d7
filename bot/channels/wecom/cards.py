"""Cases posted to volunteers and staff in the WeCom app as button cards (``template_card`` of
type ``button_interaction``, one "我来处理" button), through the outbox so that they are retried.

One card per case and round (``task_id`` ``<number>-<version>``) goes to everyone with a WeCom
account who may take the case (their role, units and the case's category: storage.permissions,
as on Telegram). The card, once WeCom took it, is recorded as an outbound `Message` (provider id
``card:<task_id>``, status posted/taken/settled as Telegram's posts) with the people it went to
and the ``response_code``s that may still update it: WeCom gives one with the card and one with
each tap, each good for one update, for 72 hours.

A card is updated for everyone it went to (``update_template_card``: the button replaced by a
line that cannot be pressed) when the case is taken by a tap on it (staff.py, at once) or
anywhere else, withdrawn or done (`keep_cards_up`, the sender's upkeep, every few seconds). A
case put back in the queue gets a new card. A card whose codes are all used or stale is left as
it is: a tap on it then claims nothing and says why.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.channels.staff_desk import Desk, local_time
from bot.conversation.deployment import Deployment
from storage import messages, outbox
from storage.models import Case, CaseStatus, Direction, Message, MessageStatus, Staff
from storage.permissions import may_see_case
from storage.types import utcnow

log = structlog.get_logger(__name__)

CHANNEL = "wecom"
CARD, UPDATE = "wecom_card", "wecom_card_update"  # outbox payload kinds
CLAIM = "claim:"  # the button's key: "claim:2026-000123"
CARD_PREFIX = "card:"  # a recorded card's provider id: "card:<task_id>"
POSTED, TAKEN, SETTLED = MessageStatus.POSTED, MessageStatus.TAKEN, MessageStatus.SETTLED
CODES, PEOPLE, OWNER = "codes", "userids", messages.POST_OWNER  # a recorded card's payload
BATCH = 200


def task_id(case: Case) -> str:
    return f"{case.number}-{case.version}"


def post_case(session: Session, case: Case, desk: Desk, *, again: bool = False) -> int:
    """Queue a card of ``case`` to everyone with a WeCom account who may take it; returns how
    many people it goes to."""
    people = [
        person.wecom_user_id
        for person in session.scalars(
            select(Staff)
            .where(Staff.wecom_user_id.is_not(None), Staff.active.is_(True))
            .order_by(Staff.id)
        )
        if person.wecom_user_id and may_see_case(session, person, case, desk.categories) is None
    ]
    if not people:
        return 0
    task = task_id(case)
    outbox.enqueue(
        session,
        channel=CHANNEL,
        address=task,
        payload={
            "kind": CARD,
            "case": case.number,
            messages.POST_UNIT: case.unit_id,  # moved to another unit's queue: updated
            "task_id": task,
            PEOPLE: people,
            "card": card(case, desk, task, again=again),
        },
        idempotency_key=f"{case.number}:{CARD}:{case.version}",
        priority=1 if case.priority == 1 else 2,
        case_id=case.id,
    )
    return len(people)


def card(case: Case, desk: Desk, task: str, *, again: bool = False) -> dict[str, Any]:
    """The template card: what the case is, where, how urgent, by when; the claim button."""
    title = desk.catalogs.text(
        "wecom.card_again" if again else "wecom.card_title", desk.language, number=case.number
    )
    facts = [
        {"keyname": desk.catalogs.text("wecom.kind", desk.language), "value": desk.category(case)},
        {
            "keyname": desk.catalogs.text("wecom.unit", desk.language),
            "value": case.unit.name(desk.language),
        },
        {
            "keyname": desk.catalogs.text("wecom.priority", desk.language),
            "value": desk.priority(case),
        },
    ]
    if case.claim_deadline is not None:
        facts.append(
            {
                "keyname": desk.catalogs.text("wecom.claim_by", desk.language),
                "value": local_time(case.claim_deadline, desk.tz),
            }
        )
    body: dict[str, Any] = {
        "card_type": "button_interaction",
        "source": {"desc": desk.catalogs.text("wecom.source", desk.language)},
        "main_title": {"title": title[:36], "desc": desk.category(case)[:44]},
        "horizontal_content_list": facts,
        "task_id": task,
        "button_list": [
            {
                "text": desk.catalogs.text("wecom.claim_button", desk.language),
                "style": 1,
                "key": f"{CLAIM}{case.number}",
            }
        ],
    }
    if case.summary:
        body["sub_title_text"] = case.summary[:110]
    return body


def record_card(
    session: Session, item_payload: dict[str, Any], case_id: int | None, code: str
) -> None:
    """The card WeCom took (the sender's after_sent), with its first response code."""
    messages.record_once(
        session,
        channel=CHANNEL,
        direction=Direction.OUTBOUND,
        address=str(item_payload["task_id"]),
        provider_id=f"{CARD_PREFIX}{item_payload['task_id']}",
        text=str(item_payload["card"].get("main_title", {}).get("title", "")),
        payload={
            PEOPLE: item_payload[PEOPLE],
            CODES: [code] if code else [],
            "case": item_payload["case"],
            messages.POST_UNIT: item_payload.get(messages.POST_UNIT),
        },
        status=POSTED,
        case_id=case_id,
        now=utcnow(),
    )


def card_of(session: Session, task: str) -> Message | None:
    return session.scalars(
        select(Message).where(
            Message.channel == CHANNEL, Message.provider_id == f"{CARD_PREFIX}{task}"
        )
    ).first()


def add_code(post: Message, code: str) -> None:
    """A response code a tap brought: the newest is used first."""
    if code:
        post.payload = {**post.payload, CODES: [*post.payload.get(CODES, []), code]}


def queue_update(session: Session, post: Message, case: Case, line: str) -> bool:
    """Replace the card's button by ``line`` for everyone it went to, with its newest unused
    code; False when it has none left."""
    codes = list(post.payload.get(CODES, []))
    if not codes:
        log.info("wecom_card_not_updated", case=case.number, why="no response code left")
        return False
    code = codes.pop()
    post.payload = {**post.payload, CODES: codes}
    outbox.enqueue(
        session,
        channel=CHANNEL,
        address=post.address,
        payload={
            "kind": UPDATE,
            "case": case.number,
            PEOPLE: post.payload.get(PEOPLE, []),
            "response_code": code,
            "line": line[:20],
        },
        idempotency_key=f"{case.number}:{UPDATE}:{code}",
        priority=2,
        case_id=case.id,
    )
    return True


def card_line(desk: Desk, status: CaseStatus, owner: str | None) -> str:
    """What replaces a card's button: who took it, or how the case stands."""
    if status == CaseStatus.CLAIMED and owner:
        return desk.catalogs.text("wecom.taken_by", desk.language, name=owner)
    return desk.text(f"status.{status.value}")


def keep_cards_up(session: Session, desk: Desk, limit: int = BATCH) -> int:
    """Cards whose case changed other than by a tap on them: taken elsewhere, withdrawn, done
    (updated), back in the queue (posted anew), or moved to another unit's queue (updated to
    say where: its people got cards of their own). Returns how many were handled."""
    handled = 0
    for post, case in messages.moved_posts(session, CHANNEL, limit):
        messages.mark_post(post, SETTLED, None)
        where = case.unit.name(desk.language)
        queue_update(
            session, post, case, desk.catalogs.text("wecom.moved_to", desk.language, unit=where)
        )
        handled += 1
    rows = messages.changed_posts(session, CHANNEL, limit)
    for post, case, assignee in rows:
        owner = assignee.name if assignee is not None else None
        now_at = TAKEN if case.status == CaseStatus.CLAIMED else SETTLED
        if case.status == CaseStatus.OPEN:  # released: a new card; the old one says who had it
            messages.mark_post(post, SETTLED)
            post_case(session, case, desk, again=True)
        else:
            taken = {OWNER: case.assignee_id} if now_at == TAKEN else None
            messages.mark_post(post, now_at, {**post.payload, **(taken or {})})
            queue_update(session, post, case, card_line(desk, case.status, owner))
        handled += 1
    return handled


def announcer(deployment: Deployment) -> Callable[[Session, Sequence[Case]], int]:
    """The engine's hook (new cases) and the escalation's (moved cases): each posted."""
    desk = desk_for(deployment)

    def announce(session: Session, cases: Sequence[Case]) -> int:
        return sum(post_case(session, c, desk) for c in cases if c.status == CaseStatus.OPEN)

    return announce


def desk_for(deployment: Deployment) -> Desk:
    return Desk.of(deployment.settings, deployment.catalogs, deployment.categories, CHANNEL)
