"""Queues: the open cases a person may take, best first."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement
from sqlalchemy.orm import Session

from config.categories import CategoryConfig
from storage.models import Case, CaseStatus, Role, Staff
from storage.permissions import units_in_scope

# Claim order: highest priority, earliest claim deadline, oldest. On PostgreSQL the partial
# index ix_cases_open_queue has exactly this order, so the best case is found without a sort.
CLAIM_ORDER: tuple[Any, ...] = (
    Case.priority,
    Case.claim_deadline.asc().nulls_last(),
    Case.created_at,
    Case.id,
)


def volunteer_categories(categories: CategoryConfig) -> list[str]:
    return sorted(name for name, cat in categories.categories.items() if cat.volunteer_eligible)


@dataclass(frozen=True)
class ClaimScope:
    """What one person may take: cases of these units, of these categories (None: any)."""

    unit_ids: list[int]
    categories: list[str] | None


def claim_scope(
    session: Session,
    staff: Staff,
    categories: CategoryConfig,
    *,
    unit_ids: set[int] | None = None,
) -> ClaimScope:
    """``staff``'s scope, narrowed to ``unit_ids`` if given."""
    scope = units_in_scope(session, staff)
    if unit_ids is not None:
        scope &= unit_ids
    allowed = volunteer_categories(categories) if staff.role == Role.VOLUNTEER else None
    return ClaimScope(sorted(scope), allowed)


def waiting_filter(scope: ClaimScope) -> list[ColumnElement[bool]]:
    """The conditions for an open case within ``scope``."""
    conditions = [Case.status == CaseStatus.OPEN, Case.unit_id.in_(scope.unit_ids)]
    if scope.categories is not None:
        conditions.append(Case.category.in_(scope.categories))
    return conditions
