"""Queues: the open cases a person may take, best first."""

from __future__ import annotations

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from config.categories import CategoryConfig
from storage.models import Case, CaseStatus, Role, Staff
from storage.permissions import units_in_scope


def volunteer_categories(categories: CategoryConfig) -> list[str]:
    return sorted(name for name, cat in categories.categories.items() if cat.volunteer_eligible)


def waiting_cases_query(
    session: Session,
    staff: Staff,
    categories: CategoryConfig,
    *,
    unit_ids: set[int] | None = None,
) -> Select[tuple[Case]]:
    """Open cases of ``staff``'s units (or of ``unit_ids`` within them), in claim order:
    highest priority, earliest claim deadline, oldest."""
    scope = units_in_scope(session, staff)
    if unit_ids is not None:
        scope &= unit_ids
    query = select(Case).where(Case.status == CaseStatus.OPEN, Case.unit_id.in_(sorted(scope)))
    if staff.role == Role.VOLUNTEER:
        query = query.where(Case.category.in_(volunteer_categories(categories)))
    return query.order_by(
        Case.priority, Case.claim_deadline.asc().nulls_last(), Case.created_at, Case.id
    )
