"""Queues: the open cases a person may take, best first, and how claiming them stays safe.

A queue is not a table: it is the open cases of a unit, ordered by priority (1 first), then
claim deadline, then age. `claim_next` picks the first row the claimer may take:

- PostgreSQL: one statement picks, locks, claims and writes the claim event:
  `UPDATE cases SET ... WHERE id = (SELECT id ... ORDER BY priority, claim_deadline, created_at,
  id LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING ...`, with the event inserted by a CTE. A row
  another claimer is taking is skipped, not waited for, so any number of claimers on any number
  of servers each get a different case. The partial index `ix_cases_open_queue` (open cases in
  claim order) means the best case is found without sorting the queue. Built once and cached,
  the statement costs one round trip: `benchmarks/queue_bench.py` measured about 1,000–1,400
  claims/s with 16 claimers on 2 cores, against about 120/s for the same steps through the ORM
  without the index.
- SQLite: every transaction starts with `BEGIN IMMEDIATE`, so writers take turns (waiting up to
  30 s) instead of failing half-way; `claim_next` there selects the case and claims it through
  the ORM. Writers are served in no particular order, so with many concurrent claimers a few
  wait much longer than the rest (p99 about 1 s with 16): SQLite is for one server.
- Both: `cases.version` is a SQLAlchemy version counter. Every ORM `UPDATE cases` says
  `WHERE id = ? AND version = ?` (the one-statement claim increments it too); a change that
  raced with another fails with `CaseConflict` (the caller rolls back and may retry) instead of
  overwriting it.

Case numbers (`2026-000123`) come from a per-year counter row incremented with `UPDATE ...
RETURNING`; the row stays locked until the filing transaction commits, so no number is handed
out twice, and a rolled-back number is skipped, never reused.
"""

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
