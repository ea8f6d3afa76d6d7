"""Who may see and work on which cases: by role, by the units a person serves, by category.

admin: the whole center. staff: their units and every unit below them (a station's staff
serve its communities). volunteer: their communities, volunteer-eligible categories only
(``volunteer_eligible`` in config/categories.yml: never complaints or bereavement).

- claim: a person in scope. release, resolve, note: the assignee, or staff in scope.
  transfer, escalate, close, reopen, cancel: staff in scope (or the system, e.g. the worker).
- The first staff member who takes a case becomes its first-contact owner (首问负责) and stays so
  through transfers.
- Every view of a retiree's profile and every change is written to ``audit_log``.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from config.categories import CategoryConfig
from storage.models import Case, Role, Staff, Unit


@dataclass(frozen=True)
class Actor:
    """Who does an action: a staff member or volunteer, or the system on someone's behalf."""

    staff: Staff | None = None
    label: str = "system"  # for non-staff actors: "system", "retiree", "worker", "cli"

    @classmethod
    def person(cls, staff: Staff) -> Actor:
        return cls(staff=staff, label=staff.role.value)

    @classmethod
    def system(cls, label: str = "system") -> Actor:
        return cls(staff=None, label=label)

    @property
    def is_system(self) -> bool:
        return self.staff is None

    @property
    def role(self) -> Role | None:
        return self.staff.role if self.staff is not None else None

    def describe(self) -> str:
        if self.staff is None:
            return self.label
        return f"{self.staff.role.value} #{self.staff.id}"


def unit_tree(session: Session) -> dict[int, int | None]:
    """unit id → parent id, read once per session (units change rarely)."""
    cached = session.info.get("unit_tree")
    if cached is None:
        cached = {uid: parent for uid, parent in session.execute(select(Unit.id, Unit.parent_id))}
        session.info["unit_tree"] = cached
    return cached


def descendants_and_self(tree: dict[int, int | None], roots: set[int]) -> set[int]:
    children: dict[int | None, list[int]] = {}
    for unit_id, parent_id in tree.items():
        children.setdefault(parent_id, []).append(unit_id)
    found: set[int] = set()
    stack = list(roots)
    while stack:
        unit_id = stack.pop()
        if unit_id in found:
            continue
        found.add(unit_id)
        stack.extend(children.get(unit_id, ()))
    return found


def units_in_scope(session: Session, staff: Staff) -> set[int]:
    """The ids of the units whose cases ``staff`` may see and work on."""
    tree = unit_tree(session)
    if staff.role == Role.ADMIN:
        return set(tree)
    return descendants_and_self(tree, {u.id for u in staff.units})


def may_see_case(
    session: Session, staff: Staff, case: Case, categories: CategoryConfig
) -> str | None:
    """None when ``staff`` may see ``case``; otherwise the reason why not. The staff member
    who took it first stays accountable for it (首问负责) wherever it went since (a transfer, an
    escalation): they may open it and follow it up."""
    if not staff.active:
        return "the account is not active"
    if case.first_contact_owner_id is not None and case.first_contact_owner_id == staff.id:
        return None
    if case.unit_id not in units_in_scope(session, staff):
        return "the case belongs to a unit they do not serve"
    if staff.role == Role.VOLUNTEER and not categories.get(case.category).volunteer_eligible:
        return f"volunteers do not take {case.category} cases"
    return None
