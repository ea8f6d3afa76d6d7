"""The demo data looks like a community's registry: visits kept up, a few due, one overdue."""

from __future__ import annotations

from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from console.registry_visits import visit_status
from storage.demo import seed_demo
from storage.models import Retiree

TODAY = date(2026, 12, 7)


def test_demo_profiles_are_not_all_overdue(session: Session) -> None:
    seed_demo(session, today=TODAY)
    people = session.scalars(select(Retiree).options(selectinload(Retiree.visits))).all()
    statuses = [visit_status(r, TODAY) for r in people]
    overdue = [s for s in statuses if s.first_overdue or s.quarterly_overdue]
    due_soon = [s for s in statuses if s.first_due is not None and not s.first_overdue]
    due_this_quarter = [s for s in statuses if s.quarter_end and not s.quarterly_overdue]
    assert len(people) == 30
    assert 1 <= len(overdue) <= 3, [(s.first_due, s.last_visit) for s in overdue]
    assert due_soon and due_this_quarter
    assert all(s.first_due is None or s.first_due.year == TODAY.year for s in statuses)
    visited = [s.last_visit for s in statuses if s.last_visit is not None]
    assert len(visited) >= 24 and all(v <= TODAY for v in visited)
