"""The demo data looks like a community's registry: visits kept up, a few due, one overdue."""

from __future__ import annotations

from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from console.registry_visits import visit_status
from storage.demo import seed_demo
from storage.models import Campaign, CampaignKind, CampaignTarget, Retiree

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


def test_demo_has_this_quarters_visit_round_once(session: Session) -> None:
    """The east's 80+ are given in turn to 陈静 and 孙志愿, due at the quarter's end; a second
    run adds no second round."""
    first = seed_demo(session, today=TODAY)
    assert first.campaigns == 1
    campaign = session.scalars(select(Campaign)).one()
    assert (campaign.kind, campaign.due_on) == (CampaignKind.VISITS, date(2026, 12, 31))
    targets = session.scalars(select(CampaignTarget)).all()
    assert len(targets) >= 2
    visitors = {t.assignee.username for t in targets if t.assignee is not None}
    assert visitors == {"chen.heping", "vol.sun"}
    for target in targets:
        age = target.retiree.age_on(TODAY)
        assert age is not None and age >= 80
        assert target.retiree.community.code in ("C-HP", "C-XF")
    assert seed_demo(session, today=TODAY).campaigns == 0
