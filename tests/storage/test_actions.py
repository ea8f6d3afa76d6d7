"""Case actions: filing, claiming, transitions, permissions and the audit trail, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from config.categories import load_categories
from config.settings import CONFIG_DIR
from storage import actions
from storage.errors import CaseConflict, IllegalTransition, InvalidCaseInput, NotPermitted
from storage.models import Case, CaseEvent, CaseStatus, Role
from storage.permissions import Actor
from tests.factories import UnitTree, make_retiree, make_staff, make_unit_tree

# A Monday in Beijing: 2026-06-01 10:00 +08:00.
NOW = datetime(2026, 6, 1, 2, 0, tzinfo=UTC)
SYSTEM = Actor.system()


@pytest.fixture
def units(session: Session) -> UnitTree:
    return make_unit_tree(session)


def file(session: Session, units: UnitTree, category: str = "help_request", **kw) -> Case:
    kw.setdefault("retiree", make_retiree(session, units.community_a1))
    return actions.file_case(
        session, category=category, channel="phone", actor=SYSTEM, now=NOW, **kw
    )


def events(session: Session, case: Case) -> list[str]:
    return list(
        session.scalars(
            select(CaseEvent.action).where(CaseEvent.case_id == case.id).order_by(CaseEvent.id)
        )
    )


# --- filing -------------------------------------------------------------------------------


def test_file_numbers_are_sequential_per_year(session: Session, units: UnitTree) -> None:
    first, second = file(session, units), file(session, units)
    assert first.number == "2026-000001"
    assert second.number == "2026-000002"
    assert first.status == CaseStatus.OPEN
    assert events(session, first) == ["file"]


def test_case_numbers_are_never_reused_after_rollback(engine, session: Session) -> None:
    units = make_unit_tree(session)
    file(session, units)
    session.commit()
    with Session(engine) as other:
        retiree = make_retiree(other, other.get(type(units.community_a1), units.community_a1.id))
        actions.file_case(
            other, category="general", channel="phone", actor=SYSTEM, retiree=retiree, now=NOW
        )
        other.rollback()
    later = file(session, units)
    assert later.number == "2026-000002"


def test_file_goes_to_the_category_queue_level(session: Session, units: UnitTree) -> None:
    assert file(session, units, "help_request").unit_id == units.community_a1.id
    assert file(session, units, "complaint").unit_id == units.station_a.id
    assert file(session, units, "bereavement").unit_id == units.station_a.id


def test_file_for_unknown_caller_needs_a_unit(session: Session, units: UnitTree) -> None:
    with pytest.raises(InvalidCaseInput, match="needs a unit"):
        file(session, units, "callback", retiree=None)
    case = file(session, units, "callback", retiree=None, unit=units.community_b1)
    assert case.retiree_id is None
    assert case.unit_id == units.community_b1.id


def test_file_unknown_category_is_refused(session: Session, units: UnitTree) -> None:
    with pytest.raises(InvalidCaseInput, match="unknown category 'tea'"):
        file(session, units, "tea")


def test_priority_is_raised_for_vulnerable_retirees(session: Session, units: UnitTree) -> None:
    plain = file(session, units, retiree=make_retiree(session, units.community_a1, age=70))
    assert plain.priority == 3
    frail = make_retiree(session, units.community_a1, age=92, lives_alone=True)
    raised = file(session, units, retiree=frail)
    assert raised.priority == 2  # never above 2: priority 1 is for emergencies
    filed = session.scalars(select(CaseEvent).where(CaseEvent.case_id == raised.id)).one()
    assert filed.data["priority_raised_by"] == ["age_80_plus", "age_90_plus", "lives_alone"]


@pytest.mark.parametrize(
    "profile",
    [
        {"age": 81},
        {"lives_alone": True},
        {"self_care": "partly_dependent"},
        {"self_care": "dependent"},
        {"hardship": "dibao"},
    ],
)
def test_each_priority_factor_raises(session: Session, units: UnitTree, profile: dict) -> None:
    retiree = make_retiree(session, units.community_a1, **profile)
    assert file(session, units, retiree=retiree).priority == 2


def test_reasons_in_the_request_raise_within_the_ceiling(session: Session, units: UnitTree) -> None:
    retiree = make_retiree(session, units.community_a1, age=60)
    case = actions.file_case(
        session,
        category="general",
        channel="phone",
        actor=SYSTEM,
        retiree=retiree,
        raise_for=["needed_today", "second_reason"],
        now=NOW,
    )
    assert case.priority == 2  # two reasons, but the ceiling keeps priority 1 for emergencies
    filed = session.scalars(select(CaseEvent).where(CaseEvent.case_id == case.id)).one()
    assert filed.data["priority_raised_by"] == ["needed_today", "second_reason"]


def test_hardship_without_dibao_does_not_raise(session: Session, units: UnitTree) -> None:
    retiree = make_retiree(session, units.community_a1, hardship="hardship", age=60)
    assert file(session, units, retiree=retiree).priority == 3


def test_emergency_is_always_priority_one(session: Session, units: UnitTree) -> None:
    case = file(session, units, "emergency", retiree=make_retiree(session, units.community_a1))
    assert case.priority == 1
    assert case.claim_deadline == NOW + timedelta(minutes=2)
    assert case.resolve_deadline == NOW + timedelta(hours=2)


def test_working_day_deadlines_skip_weekends_and_holidays(
    session: Session, units: UnitTree
) -> None:
    # Filed Wednesday 2026-09-30 10:00 Beijing; the National Day holiday follows.
    filed_at = datetime(2026, 9, 30, 2, 0, tzinfo=UTC)
    case = actions.file_case(
        session,
        category="registration",
        channel="phone",
        actor=SYSTEM,
        unit=units.community_a1,
        now=filed_at,
    )
    assert case.claim_deadline == datetime(2026, 10, 8, 2, 0, tzinfo=UTC)


def test_deadline_outside_the_calendar_still_files_the_case(
    session: Session, units: UnitTree
) -> None:
    far = datetime(2031, 3, 3, 2, 0, tzinfo=UTC)
    case = actions.file_case(
        session,
        category="registration",
        channel="phone",
        actor=SYSTEM,
        unit=units.community_a1,
        now=far,
    )
    assert case.number == "2031-000001"
    # Monday 10:00 in Shanghai; registration: claim within 1 working day, resolve within 5,
    # counted Monday to Friday as the holidays of 2031 are not known.
    cats = load_categories(CONFIG_DIR / "categories.yml")
    assert cats.get("registration").claim_within.working_days == 1
    assert cats.get("registration").resolve_within.working_days == 5
    assert case.claim_deadline == datetime(2031, 3, 4, 2, 0, tzinfo=UTC)
    assert case.resolve_deadline == datetime(2031, 3, 10, 2, 0, tzinfo=UTC)
    filed = session.scalars(select(CaseEvent).where(CaseEvent.case_id == case.id)).one()
    problems = filed.data["deadline_problems"]
    assert len(problems) == 2
    assert all("does not cover 2031" in p and "estimated" in p for p in problems)


# --- claiming -----------------------------------------------------------------------------


def test_staff_claim_sets_assignee_and_first_contact_owner(
    session: Session, units: UnitTree
) -> None:
    staff = make_staff(session, Role.STAFF, [units.station_a])
    case = file(session, units)
    actions.claim(session, case, Actor.person(staff), now=NOW)
    assert case.status == CaseStatus.CLAIMED
    assert case.assignee_id == staff.id
    assert case.first_contact_owner_id == staff.id
    assert case.claimed_at == NOW
    assert events(session, case) == ["file", "claim"]


def test_volunteer_claims_eligible_case_but_is_not_first_contact_owner(
    session: Session, units: UnitTree
) -> None:
    volunteer = make_staff(session, Role.VOLUNTEER, [units.community_a1])
    case = file(session, units, "help_request")
    actions.claim(session, case, Actor.person(volunteer), now=NOW)
    assert case.assignee_id == volunteer.id
    assert case.first_contact_owner_id is None


@pytest.mark.parametrize("category", ["complaint", "bereavement", "emergency", "policy_question"])
def test_volunteer_cannot_claim_staff_only_categories(
    session: Session, units: UnitTree, category: str
) -> None:
    volunteer = make_staff(session, Role.VOLUNTEER, [units.community_a1, units.station_a])
    case = file(session, units, category)
    with pytest.raises(NotPermitted, match=f"volunteers do not take {category}"):
        actions.claim(session, case, Actor.person(volunteer))


def test_staff_of_another_station_cannot_claim(session: Session, units: UnitTree) -> None:
    other = make_staff(session, Role.STAFF, [units.station_b])
    case = file(session, units)
    with pytest.raises(NotPermitted, match="unit they do not serve"):
        actions.claim(session, case, Actor.person(other))


def test_volunteer_of_another_community_cannot_claim(session: Session, units: UnitTree) -> None:
    volunteer = make_staff(session, Role.VOLUNTEER, [units.community_a2])
    case = file(session, units)
    with pytest.raises(NotPermitted, match="unit they do not serve"):
        actions.claim(session, case, Actor.person(volunteer))


def test_admin_can_claim_anywhere(session: Session, units: UnitTree) -> None:
    admin = make_staff(session, Role.ADMIN, [units.center])
    case = file(session, units, "complaint")
    actions.claim(session, case, Actor.person(admin))
    assert case.assignee_id == admin.id


def test_inactive_account_and_system_cannot_claim(session: Session, units: UnitTree) -> None:
    gone = make_staff(session, Role.STAFF, [units.station_a], active=False)
    case = file(session, units)
    with pytest.raises(NotPermitted, match="not active"):
        actions.claim(session, case, Actor.person(gone))
    with pytest.raises(NotPermitted, match="only a staff member or volunteer"):
        actions.claim(session, case, SYSTEM)


def test_claiming_a_claimed_case_is_illegal(session: Session, units: UnitTree) -> None:
    a = make_staff(session, Role.STAFF, [units.station_a])
    b = make_staff(session, Role.STAFF, [units.station_a])
    case = file(session, units)
    actions.claim(session, case, Actor.person(a))
    with pytest.raises(IllegalTransition, match="cannot be claimed: it is claimed"):
        actions.claim(session, case, Actor.person(b))


def test_concurrent_claim_of_a_stale_case_conflicts(engine, session: Session) -> None:
    units = make_unit_tree(session)
    a = make_staff(session, Role.STAFF, [units.station_a])
    b = make_staff(session, Role.STAFF, [units.station_a])
    case = file(session, units)
    session.commit()
    with Session(engine, expire_on_commit=False) as other:
        stale = other.get(Case, case.id)
        b_there = other.get(type(b), b.id)
        other.commit()  # ends the read; the objects keep what they read
        actions.claim(session, case, Actor.person(a))
        session.commit()
        with pytest.raises(CaseConflict, match="changed by someone else"):
            actions.claim(other, stale, Actor.person(b_there))
        other.rollback()
    session.refresh(case)
    assert case.assignee_id == a.id


def test_claim_next_takes_priority_then_deadline_then_age(
    session: Session, units: UnitTree
) -> None:
    staff = make_staff(session, Role.STAFF, [units.station_a])
    normal_old = file(session, units, "general")
    emergency = file(session, units, "emergency")
    high = file(session, units, "callback")
    actor = Actor.person(staff)
    order = [actions.claim_next(session, actor, now=NOW) for _ in range(3)]
    assert [c.number for c in order if c] == [emergency.number, high.number, normal_old.number]
    assert actions.claim_next(session, actor) is None


def test_claim_next_for_volunteer_skips_ineligible(session: Session, units: UnitTree) -> None:
    volunteer = make_staff(session, Role.VOLUNTEER, [units.community_a1])
    file(session, units, "emergency")
    file(session, units, "general")
    help_case = file(session, units, "help_request")
    got = actions.claim_next(session, Actor.person(volunteer))
    assert got is not None and got.id == help_case.id
    assert actions.claim_next(session, Actor.person(volunteer)) is None


def test_claim_next_only_from_my_units(session: Session, units: UnitTree) -> None:
    staff_b = make_staff(session, Role.STAFF, [units.station_b])
    file(session, units)  # community A1
    assert actions.claim_next(session, Actor.person(staff_b)) is None


# --- the rest of the life of a case -------------------------------------------------------


@pytest.fixture
def claimed(session: Session, units: UnitTree) -> tuple[Case, Actor, Actor]:
    """A help request claimed by a volunteer, plus a staff actor of the same station."""
    volunteer = Actor.person(make_staff(session, Role.VOLUNTEER, [units.community_a1]))
    staff = Actor.person(make_staff(session, Role.STAFF, [units.station_a]))
    case = file(session, units)
    actions.claim(session, case, volunteer, now=NOW)
    return case, volunteer, staff


def test_release_by_assignee_returns_case_to_queue(session: Session, claimed) -> None:
    case, volunteer, _ = claimed
    actions.release(session, case, volunteer, reason="cannot go today")
    assert case.status == CaseStatus.OPEN and case.assignee_id is None
    with pytest.raises(IllegalTransition, match="cannot be released: it is open"):
        actions.release(session, case, volunteer)


def test_other_volunteer_cannot_release(session: Session, units: UnitTree, claimed) -> None:
    case, _, _ = claimed
    other = Actor.person(make_staff(session, Role.VOLUNTEER, [units.community_a1]))
    with pytest.raises(NotPermitted, match="only staff can do that"):
        actions.release(session, case, other)


def test_transfer_to_unit_keeps_first_contact_owner(session: Session, units: UnitTree) -> None:
    staff = Actor.person(make_staff(session, Role.STAFF, [units.station_a]))
    case = file(session, units, "complaint")
    actions.claim(session, case, staff)
    owner = case.first_contact_owner_id
    actions.transfer(session, case, staff, reason="belongs to West", to_unit=units.station_b)
    assert case.status == CaseStatus.OPEN
    assert case.unit_id == units.station_b.id
    assert case.assignee_id is None
    assert case.first_contact_owner_id == owner
    west = Actor.person(make_staff(session, Role.STAFF, [units.station_b]))
    actions.claim(session, case, west)
    assert case.first_contact_owner_id == owner  # still the first one who took it
    event = session.scalars(
        select(CaseEvent).where(CaseEvent.case_id == case.id, CaseEvent.action == "transfer")
    ).one()
    assert event.reason == "belongs to West"
    assert event.data["to_unit"] == units.station_b.id


def test_transfer_to_person(session: Session, units: UnitTree, claimed) -> None:
    case, _, staff = claimed
    colleague = make_staff(session, Role.STAFF, [units.station_a])
    actions.transfer(session, case, staff, reason="she knows the family", to_staff=colleague)
    assert case.status == CaseStatus.CLAIMED and case.assignee_id == colleague.id


def test_transfer_rules(session: Session, units: UnitTree, claimed) -> None:
    case, volunteer, staff = claimed
    with pytest.raises(NotPermitted, match="only staff"):
        actions.transfer(session, case, volunteer, reason="x", to_unit=units.station_b)
    with pytest.raises(InvalidCaseInput, match="needs a reason"):
        actions.transfer(session, case, staff, reason=" ", to_unit=units.station_b)
    with pytest.raises(InvalidCaseInput, match="unit or a person"):
        actions.transfer(session, case, staff, reason="x")
    outsider = make_staff(session, Role.VOLUNTEER, [units.community_b1])
    with pytest.raises(NotPermitted, match="unit they do not serve"):
        actions.transfer(session, case, staff, reason="x", to_staff=outsider)


def test_resolve_close_reopen(session: Session, units: UnitTree, claimed) -> None:
    case, volunteer, staff = claimed
    with pytest.raises(InvalidCaseInput, match="outcome"):
        actions.resolve(session, case, volunteer, outcome="")
    actions.resolve(session, case, volunteer, outcome="groceries delivered", now=NOW)
    assert case.status == CaseStatus.RESOLVED and case.outcome == "groceries delivered"
    with pytest.raises(NotPermitted, match="only staff"):
        actions.close(session, case, volunteer)
    actions.close(session, case, staff)
    assert case.status == CaseStatus.CLOSED and case.closed_at is not None
    actions.reopen(session, case, staff, reason="follow-up: not done")
    assert case.status == CaseStatus.CLAIMED and case.assignee_id == volunteer.staff.id
    assert case.closed_at is None and case.resolved_at is None
    assert events(session, case) == ["file", "claim", "resolve", "close", "reopen"]


def test_reopen_goes_to_queue_when_assignee_left(
    session: Session, units: UnitTree, claimed
) -> None:
    case, volunteer, staff = claimed
    actions.resolve(session, case, volunteer, outcome="done")
    volunteer.staff.active = False
    actions.reopen(session, case, staff, reason="not satisfied")
    assert case.status == CaseStatus.OPEN and case.assignee_id is None


def test_illegal_transitions(session: Session, units: UnitTree, claimed) -> None:
    case, _volunteer, staff = claimed
    open_case = file(session, units)
    with pytest.raises(IllegalTransition, match="cannot be resolved: it is open"):
        actions.resolve(session, open_case, staff, outcome="x")
    with pytest.raises(IllegalTransition, match="cannot be closed: it is claimed"):
        actions.close(session, case, staff)
    with pytest.raises(IllegalTransition, match="cannot be reopened: it is claimed"):
        actions.reopen(session, case, staff, reason="x")
    with pytest.raises(IllegalTransition, match="cannot be escalated: it is claimed"):
        actions.escalate(session, case, staff, reason="x")
    actions.cancel(session, case, staff, reason="retiree withdrew")
    for attempt in (
        lambda: actions.claim(session, case, staff),
        lambda: actions.release(session, case, staff),
        lambda: actions.transfer(session, case, staff, reason="x", to_unit=units.station_b),
        lambda: actions.resolve(session, case, staff, outcome="x"),
        lambda: actions.close(session, case, staff),
        lambda: actions.reopen(session, case, staff, reason="x"),
        lambda: actions.cancel(session, case, staff, reason="x"),
    ):
        with pytest.raises(IllegalTransition, match="it is cancelled"):
            attempt()


def test_cancel_needs_reason_and_staff(session: Session, units: UnitTree, claimed) -> None:
    case, volunteer, staff = claimed
    with pytest.raises(NotPermitted):
        actions.cancel(session, case, volunteer, reason="x")
    with pytest.raises(InvalidCaseInput, match="reason"):
        actions.cancel(session, case, staff, reason="")
    actions.cancel(session, case, Actor.system("retiree"), reason="no longer needed")
    assert case.status == CaseStatus.CANCELLED and case.cancelled_at is not None


def test_escalate_moves_up_and_raises_priority(session: Session, units: UnitTree) -> None:
    case = file(session, units, "general")
    assert case.priority == 3
    worker = Actor.system("worker")
    later = NOW + timedelta(hours=9)
    actions.escalate(session, case, worker, reason="unclaimed past deadline", now=later)
    assert case.unit_id == units.station_a.id and case.priority == 2 and case.escalations == 1
    # A fresh claim deadline there, in office hours: Monday 19:00 in Shanghai is after hours,
    # so eight office hours run from Tuesday 8:30 to Wednesday 9:00.
    assert case.claim_deadline == datetime(2026, 6, 3, 1, 0, tzinfo=UTC)
    actions.escalate(session, case, worker, reason="still unclaimed", now=later)
    assert case.unit_id == units.center.id and case.priority == 2
    with pytest.raises(IllegalTransition, match="top level"):
        actions.escalate(session, case, worker, reason="again")


def test_a_volunteer_may_not_note_a_case_someone_else_has(
    session: Session, units: UnitTree, claimed
) -> None:
    """Scope is not enough: the case is claimed by another volunteer of the same unit."""
    case, volunteer, staff = claimed
    other = Actor.person(make_staff(session, Role.VOLUNTEER, [case.unit]))
    with pytest.raises(NotPermitted, match="only staff"):
        actions.add_note(session, case, other, "I was there too")
    actions.add_note(session, case, staff, "staff of the unit may")  # as may the assignee
    actions.release(session, case, volunteer)
    actions.add_note(session, case, other, "open again: a volunteer of the unit may")


def test_notes_from_outside_the_unit_are_refused(
    session: Session, units: UnitTree, claimed
) -> None:
    case, volunteer, staff = claimed
    actions.add_note(session, case, volunteer, "bought rice and eggs")
    actions.add_note(session, case, staff, "called her daughter")
    outsider = Actor.person(make_staff(session, Role.STAFF, [units.station_b]))
    with pytest.raises(NotPermitted):
        actions.add_note(session, case, outsider, "hello")
    with pytest.raises(InvalidCaseInput):
        actions.add_note(session, case, staff, "  ")
    notes = session.scalars(
        select(CaseEvent.note).where(CaseEvent.case_id == case.id, CaseEvent.action == "note")
    ).all()
    assert notes == ["bought rice and eggs", "called her daughter"]


def test_case_events_are_append_only(session: Session, units: UnitTree) -> None:
    case = file(session, units)
    session.commit()
    event = session.scalars(select(CaseEvent).where(CaseEvent.case_id == case.id)).one()
    event.note = "rewritten"
    with pytest.raises(ValueError, match="append-only: cannot change"):
        session.flush()
    session.rollback()
    event = session.scalars(select(CaseEvent).where(CaseEvent.case_id == case.id)).one()
    assert event.note == ""
    session.delete(event)
    with pytest.raises(ValueError, match="append-only: cannot delete"):
        session.flush()
    session.rollback()


def test_every_action_writes_one_event(session: Session, units: UnitTree, claimed) -> None:
    case, volunteer, staff = claimed
    before = session.scalar(select(func.count()).select_from(CaseEvent))
    actions.add_note(session, case, staff, "n")
    actions.resolve(session, case, volunteer, outcome="ok")
    actions.close(session, case, staff)
    session.flush()
    assert session.scalar(select(func.count()).select_from(CaseEvent)) == before + 3
