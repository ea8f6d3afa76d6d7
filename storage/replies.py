"""A staff member or volunteer writes to the retiree about their case, from the console or the
API: the message goes through the outbox (retried, delivered once) to where the claim and resolve
notices go (storage.notices.choose_destination), and the case's timeline shows it.

Who may: the case's assignee, or staff serving its unit. When the retiree cannot be reached by
message (a web-API case, no address, or they declined messages) the reply is refused with the
reason, so the person knows to phone instead; nothing is queued.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from config.categories import CategoryConfig
from storage import outbox, timeline
from storage.errors import IllegalTransition, InvalidCaseInput, NotPermitted
from storage.models import Case, CaseStatus, OutboxItem, Role
from storage.notices import NotTold, choose_destination, notice_language, read_facts
from storage.permissions import Actor, may_see_case
from storage.site import site_of
from storage.types import utcnow

KIND = "staff_reply"
MAX_LENGTH = 1000  # an SMS of this is already seven parts
REPLYABLE = (CaseStatus.OPEN, CaseStatus.CLAIMED, CaseStatus.RESOLVED)


def reply(
    session: Session,
    case: Case,
    actor: Actor,
    text: str,
    *,
    categories: CategoryConfig,
    now: datetime | None = None,
) -> OutboxItem:
    """Queue ``text`` for the retiree of ``case`` and note it on the timeline."""
    now = now or utcnow()
    staff = actor.staff
    if staff is None:
        raise NotPermitted(actor.describe(), f"reply on case {case.number}", "a person replies")
    if case.status not in REPLYABLE:
        raise IllegalTransition(case.number, "reply", case.status.value, REPLYABLE)
    if staff.id != case.assignee_id:
        why = may_see_case(session, staff, case, categories)
        if why is None and staff.role == Role.VOLUNTEER:
            why = "volunteers reply only on the cases they hold"
        if why is not None:
            raise NotPermitted(actor.describe(), f"reply on case {case.number}", why)
    body = " ".join(text.split())
    if not body:
        raise InvalidCaseInput("a reply cannot be empty", key="console.errors.required.reply")
    if len(body) > MAX_LENGTH:
        raise InvalidCaseInput(
            f"a reply is at most {MAX_LENGTH} characters, this is {len(body)}",
            key="console.errors.reply_too_long",
            max=MAX_LENGTH,
            count=len(body),
        )
    timeline.record(session, case, "reply", now=now, actor=Actor.person(staff), note=body)
    session.flush()
    facts = read_facts(session, case, "reply")
    target = choose_destination(case.channel, case.details or {}, facts)
    site = site_of(session)
    if isinstance(target, NotTold):
        raise InvalidCaseInput(
            site.catalogs.text(f"notices.not_told.{target.why}", site.language),
            key=f"notices.not_told.{target.why}",
        )
    item_id = outbox.enqueue(
        session,
        channel=target.channel,
        address=target.address,
        payload={
            "kind": KIND,
            "case": case.number,
            "text": body,
            "language": notice_language(facts, case.details or {}, site.language),
        },
        idempotency_key=f"{case.number}:{KIND}:{facts.count}",
        priority=2,
        case_id=case.id,
        now=now,
    )
    return session.get_one(OutboxItem, item_id)
