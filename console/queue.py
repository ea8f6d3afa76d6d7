"""The queue: the cases a person may see, best first, with the deadline that matters now.

A volunteer sees the open cases of their communities in the categories volunteers may take, and
the cases they hold themselves; staff see every case of their units (and the units below); an
admin sees the whole centre. The list shows what it takes to choose a case, never a phone number
or an address (those are on the case page, once it is theirs).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.orm import Session, joinedload

from config.categories import CategoryConfig
from storage.models import Case, CaseStatus, Role, Staff
from storage.permissions import units_in_scope
from storage.queues import CLAIM_ORDER, volunteer_categories

PAGE_SIZE = 100
ACTIVE = (CaseStatus.OPEN, CaseStatus.CLAIMED, CaseStatus.RESOLVED)


class View(StrEnum):
    """The queue's status filter."""

    OPEN = "open"  # waiting to be claimed (the default)
    MINE = "mine"  # what I hold
    CLAIMED = "claimed"
    RESOLVED = "resolved"  # waiting for follow-up and closing
    ACTIVE = "active"  # everything not closed or cancelled


@dataclass(frozen=True)
class Filters:
    view: View = View.OPEN
    category: str = ""
    unit_id: int | None = None
    channel: str = ""
    page: int = 1


@dataclass(frozen=True)
class Row:
    case: Case
    deadline: datetime | None
    minutes_left: int | None  # negative: overdue

    @property
    def overdue(self) -> bool:
        return self.minutes_left is not None and self.minutes_left < 0


@dataclass(frozen=True)
class QueuePage:
    rows: list[Row]
    total: int
    filters: Filters
    unit_choices: list[tuple[int, str]]
    unit_names: dict[int, str]

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // PAGE_SIZE))


def scope_conditions(
    session: Session, staff: Staff, categories: CategoryConfig
) -> list[ColumnElement[bool]]:
    """What ``staff`` may see at all: their units; a volunteer only open volunteer cases and
    their own."""
    conditions: list[ColumnElement[bool]] = []
    if staff.role != Role.ADMIN:
        conditions.append(Case.unit_id.in_(sorted(units_in_scope(session, staff))))
    if staff.role == Role.VOLUNTEER:
        conditions.append(
            or_(
                Case.assignee_id == staff.id,
                and_(
                    Case.status == CaseStatus.OPEN,
                    Case.category.in_(volunteer_categories(categories)),
                ),
            )
        )
    return conditions


def _view_conditions(view: View, staff: Staff) -> list[ColumnElement[bool]]:
    if view is View.OPEN:
        return [Case.status == CaseStatus.OPEN]
    if view is View.MINE:
        return [Case.assignee_id == staff.id, Case.status.in_(ACTIVE)]
    if view is View.CLAIMED:
        return [Case.status == CaseStatus.CLAIMED]
    if view is View.RESOLVED:
        return [Case.status == CaseStatus.RESOLVED]
    return [Case.status.in_(ACTIVE)]


def load_queue(
    session: Session,
    staff: Staff,
    categories: CategoryConfig,
    filters: Filters,
    now: datetime,
    unit_names: dict[int, str],
) -> QueuePage:
    conditions = scope_conditions(session, staff, categories) + _view_conditions(
        filters.view, staff
    )
    if filters.category:
        conditions.append(Case.category == filters.category)
    if filters.unit_id is not None:
        conditions.append(Case.unit_id == filters.unit_id)
    if filters.channel:
        conditions.append(Case.channel == filters.channel)
    if filters.view is View.OPEN:
        order = CLAIM_ORDER
    else:
        order = (Case.priority, Case.resolve_deadline.asc().nulls_last(), Case.created_at, Case.id)
    total = session.scalar(select(func.count()).select_from(Case).where(*conditions)) or 0
    cases = session.scalars(
        select(Case)
        .where(*conditions)
        .order_by(*order)
        .limit(PAGE_SIZE)
        .offset((max(filters.page, 1) - 1) * PAGE_SIZE)
        .options(joinedload(Case.assignee))
    ).all()
    rows = [queue_row(case, now) for case in cases]
    if staff.role == Role.ADMIN:
        visible = sorted(unit_names)
    else:
        visible = sorted(units_in_scope(session, staff))
    choices = [(uid, unit_names[uid]) for uid in visible if uid in unit_names]
    return QueuePage(rows, total, filters, choices, unit_names)


def queue_row(case: Case, now: datetime) -> Row:
    deadline = case.claim_deadline if case.status == CaseStatus.OPEN else case.resolve_deadline
    if case.status not in (CaseStatus.OPEN, CaseStatus.CLAIMED):
        deadline = None
    minutes = None if deadline is None else int((deadline - now).total_seconds() // 60)
    return Row(case, deadline, minutes)
