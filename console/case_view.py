"""What the case page shows, and to whom.

- Staff and admins in scope see the whole retiree card: contact details, emergency contacts and
  the health notes.
- A volunteer sees a case only while it is open (to decide whether to take it) or theirs; the
  retiree's phone, address and emergency contacts appear once they have claimed it; never the
  health, income or family notes (complaints and bereavement they never see at all: those
  categories are not volunteer-eligible).
- Every showing of a retiree's card is written to the audit log, saying whether contact details
  and health notes were shown.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload, selectinload

from config.categories import CategoryConfig
from storage import attachments
from storage.audit import viewed_retiree
from storage.errors import NotFound, NotPermitted
from storage.models import Case, CaseEvent, CaseStatus, Message, Retiree, Role, Staff
from storage.permissions import may_see_case

RECENT_CASES = 5


@dataclass(frozen=True)
class RetireeCard:
    retiree: Retiree
    age_band: str  # "80-89", or "" when the birth date is unknown
    show_contact: bool
    show_notes: bool
    recent: list[Case]


@dataclass(frozen=True)
class TimelineItem:
    at: datetime
    kind: str  # "event" or "message"
    action: str  # the event's action, or the message's direction
    who: str
    text: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CaseView:
    case: Case
    card: RetireeCard | None
    timeline: list[TimelineItem]
    allowed: frozenset[str]  # the actions this person may offer on this case now
    recording_url: str
    attachments: list[attachments.Listed] = field(default_factory=list)


def age_band(birth: date | None, today: date) -> str:
    if birth is None:
        return ""
    age = today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))
    low = age // 10 * 10
    return f"{low}-{low + 9}"


def find_case(session: Session, number: str) -> Case:
    case = (
        session.scalars(
            select(Case)
            .where(Case.number == number)
            .options(
                joinedload(Case.retiree).selectinload(Retiree.phones),
                joinedload(Case.retiree).selectinload(Retiree.emergency_contacts),
                joinedload(Case.assignee),
                joinedload(Case.first_contact_owner),
                joinedload(Case.unit),
            )
        )
        .unique()
        .one_or_none()
    )
    if case is None:
        raise NotFound(f"no case numbered {number}")
    return case


def check_may_see(session: Session, staff: Staff, case: Case, categories: CategoryConfig) -> None:
    """Raise NotPermitted unless ``staff`` may open ``case``."""
    why = may_see_case(session, staff, case, categories)
    if (
        why is None
        and staff.role == Role.VOLUNTEER
        and case.status != CaseStatus.OPEN
        and case.assignee_id != staff.id
    ):
        why = "volunteers see a case while it waits or once it is theirs"
    if why is not None:
        raise NotPermitted(f"{staff.role.value} #{staff.id}", f"open case {case.number}", why)


def allowed_actions(staff: Staff, case: Case) -> frozenset[str]:
    """What the page offers; the case actions check again (and have the last word)."""
    mine = case.assignee_id == staff.id
    is_staff = staff.role in (Role.STAFF, Role.ADMIN)
    status = case.status
    offered: set[str] = set()
    if status == CaseStatus.OPEN:
        offered.add("claim")
    if status in (CaseStatus.OPEN, CaseStatus.CLAIMED, CaseStatus.RESOLVED) and (mine or is_staff):
        offered.add("note")
    if status == CaseStatus.CLAIMED and (mine or is_staff):
        offered |= {"reply", "resolve", "release"}
    if status in (CaseStatus.OPEN, CaseStatus.CLAIMED) and is_staff:
        offered |= {"transfer", "cancel", "reply"}
    if status == CaseStatus.RESOLVED and is_staff:
        offered |= {"close", "reopen", "reply"}
    if status in (CaseStatus.CLOSED, CaseStatus.CANCELLED) and is_staff:
        offered.add("reopen")
    return frozenset(offered)


def load_case_view(
    session: Session,
    staff: Staff,
    number: str,
    categories: CategoryConfig,
    today: date,
) -> CaseView:
    case = find_case(session, number)
    check_may_see(session, staff, case, categories)
    card = None
    if case.retiree is not None:
        card = _card(session, staff, case, today)
    return CaseView(
        case=case,
        card=card,
        timeline=_timeline(session, case),
        allowed=allowed_actions(staff, case),
        recording_url=str(case.details.get("recording_url", "")),
        attachments=attachments.of_case(session, case.id),
    )


def _card(session: Session, staff: Staff, case: Case, today: date) -> RetireeCard:
    retiree = case.retiree
    assert retiree is not None
    is_staff = staff.role in (Role.STAFF, Role.ADMIN)
    show_contact = is_staff or case.assignee_id == staff.id
    recent = list(
        session.scalars(
            select(Case)
            .where(Case.retiree_id == retiree.id, Case.id != case.id)
            .order_by(Case.created_at.desc())
            .limit(RECENT_CASES)
        )
    )
    if staff.role == Role.VOLUNTEER:
        recent = []  # other requests may be complaints or health matters
    viewed_retiree(
        session, staff, retiree.id, case=case.number, contact=show_contact, notes=is_staff
    )
    return RetireeCard(
        retiree=retiree,
        age_band=age_band(retiree.birth_date, today),
        show_contact=show_contact,
        show_notes=is_staff,
        recent=recent,
    )


def _timeline(session: Session, case: Case) -> list[TimelineItem]:
    events = session.scalars(
        select(CaseEvent)
        .where(CaseEvent.case_id == case.id)
        .options(selectinload(CaseEvent.actor))
        .order_by(CaseEvent.at, CaseEvent.id)
    ).all()
    messages = session.scalars(
        select(Message).where(Message.case_id == case.id).order_by(Message.created_at, Message.id)
    ).all()
    items = [
        TimelineItem(
            at=event.at,
            kind="event",
            action=event.action,
            who=event.actor.name if event.actor is not None else event.actor_label,
            text=event.note or event.reason,
            data=dict(event.data or {}),
        )
        for event in events
    ]
    items += [
        TimelineItem(
            at=message.created_at,
            kind="message",
            action=message.direction.value,
            who=message.channel,
            text=message.text,
        )
        for message in messages
    ]
    items.sort(key=lambda item: item.at)
    return items
