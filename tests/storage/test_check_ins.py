"""Check-ins (storage/check_ins.py): planned once a day in each person's window and never at
night; the ladder of an unanswered one (ask, ask again, tell the family, a visit case); the
answers 1 and 2. On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from config.care import PlanRule
from config.categories import get_categories
from storage import actions, check_ins, family
from storage.models import (
    CarePlan,
    Case,
    CaseEvent,
    CheckIn,
    CheckInStatus,
    MessagingIdentity,
    OutboxItem,
    Retiree,
    RetireeStatus,
    SelfCare,
)
from storage.permissions import Actor
from tests.factories import make_retiree, make_unit_tree

SHANGHAI = ZoneInfo("Asia/Shanghai")
DAY = date(2026, 6, 2)  # a Tuesday
CATS = get_categories()


def at(hour: int, minute: int = 0, day: date = DAY) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=SHANGHAI).astimezone(UTC)


def run(session: Session, now: datetime) -> int:
    return check_ins.run_due(session, now, CATS)


def only(session: Session, retiree: Retiree) -> CheckIn:
    return session.scalars(select(CheckIn).where(CheckIn.retiree_id == retiree.id)).one()


def outbox(session: Session) -> list[tuple[str, str, str]]:
    return [
        (o.channel, o.address, o.payload.get("kind"))
        for o in session.scalars(select(OutboxItem).order_by(OutboxItem.id))
    ]


def wang_alone(session: Session, people: dict[str, Retiree]) -> Retiree:
    """王阿姨 (91) is the only one with a plan: the others' are switched off."""
    for other in ("alone_82", "alone_dependent"):
        session.add(CarePlan(retiree_id=people[other].id, enabled=False, rule={}))
    session.flush()
    return people["ninety"]


def events(session: Session, check_in: CheckIn) -> list[str]:
    return [e.action for e in check_ins.timeline(session, check_in.id)]


@pytest.fixture
def people(session: Session) -> dict[str, Retiree]:
    units = make_unit_tree(session)
    c = units.community_a1
    return {
        "ninety": make_retiree(session, c, age=91, name="王阿姨", today=DAY),
        "alone_82": make_retiree(session, c, age=82, lives_alone=True, today=DAY),
        "alone_dependent": make_retiree(
            session, c, age=70, lives_alone=True, self_care=SelfCare.DEPENDENT, today=DAY
        ),
        "alone_70": make_retiree(session, c, age=70, lives_alone=True, today=DAY),
        "with_family_75": make_retiree(session, c, age=75, today=DAY),
    }


def test_defaults_follow_the_priority_factors(session: Session, people) -> None:
    """90+, 80+ alone, and alone and not self-caring: daily; alone: weekly on Monday; anyone
    else: none. Tuesday's plan has the first three."""
    made = check_ins.plan_day(session, DAY, now=at(0, 5))
    planned = set(session.scalars(select(CheckIn.retiree_id)))
    assert made == 3
    assert planned == {people[k].id for k in ("ninety", "alone_82", "alone_dependent")}
    monday = DAY - timedelta(days=1)
    assert check_ins.plan_day(session, monday, now=at(0, 5, monday)) == 4


def test_never_twice_and_always_in_the_window(session: Session, people) -> None:
    assert check_ins.plan_day(session, DAY, now=at(0, 5)) == 3
    assert check_ins.plan_day(session, DAY, now=at(0, 6)) == 0  # a second run plans nothing
    for row in session.scalars(select(CheckIn)):
        local = row.due_at.astimezone(SHANGHAI)
        assert time(9, 0) <= local.time() < time(11, 0), local
        assert row.window_end.astimezone(SHANGHAI).time() == time(11, 0)


def test_a_window_at_night_is_moved_out_of_the_quiet_hours(session: Session, people) -> None:
    """A registry plan from 06:00 to 09:00 rings from 08:00 (the quiet hours end); one from
    22:00 to 23:00 never rings at all."""
    early, late = people["with_family_75"], people["alone_70"]
    for retiree, start, end in ((early, "06:00", "09:00"), (late, "22:00", "23:00")):
        rule = PlanRule.model_validate({"cadence": "daily", "window": {"from": start, "to": end}})
        session.add(
            CarePlan(retiree_id=retiree.id, rule=rule.model_dump(mode="json", by_alias=True))
        )
    session.flush()
    check_ins.plan_day(session, DAY, now=at(0, 5))
    assert only(session, early).due_at.astimezone(SHANGHAI).time() >= time(8, 0)
    assert session.scalar(select(func.count()).where(CheckIn.retiree_id == late.id)) == 0


def test_a_plan_switched_off_in_the_registry_wins_over_the_defaults(
    session: Session, people
) -> None:
    session.add(CarePlan(retiree_id=people["ninety"].id, enabled=False, rule={}))
    session.flush()
    assert check_ins.plan_day(session, DAY, now=at(0, 5)) == 2


def test_the_ladder_of_a_check_in_nobody_answers(session: Session, people) -> None:
    """ask (voice) → 20 min → ask again (WeChat, the plan's next channel) → 20 min → the
    family told by SMS → 60 min → a visit case at the priority the profile gives."""
    retiree = wang_alone(session, people)
    session.add(MessagingIdentity(retiree_id=retiree.id, channel="wechat", address="o-wang"))
    family.add(
        session,
        retiree,
        name="王小明",
        relation="儿子",
        channel="sms",
        address="+8613600000001",
        may_know=["check_ins"],
        may_ask=False,
        consent="本人同意，上门时当面确认",
        consented_on=DAY,
        recorded_by_id=None,
        now=at(0),
    )
    session.flush()
    assert run(session, at(0, 5)) == 0  # planned; nothing due yet
    check_in = only(session, retiree)
    first = check_in.due_at
    assert run(session, first) == 1
    phone = retiree.phones[0].number
    assert outbox(session) == [("voice", phone, "check_in")]
    assert check_in.status == CheckInStatus.ASKED
    assert run(session, first + timedelta(minutes=19)) == 0
    assert run(session, first + timedelta(minutes=20)) == 1
    assert outbox(session)[-1] == ("wechat", "o-wang", "check_in")
    assert run(session, first + timedelta(minutes=40)) == 1
    assert outbox(session)[-1] == ("sms", "+8613600000001", "check_in_family")
    assert run(session, first + timedelta(minutes=99)) == 0
    assert run(session, first + timedelta(minutes=100)) == 1
    assert check_in.status == CheckInStatus.VISIT
    case = session.get(Case, check_in.case_id)
    assert case is not None and case.category == "callback"
    assert case.retiree_id == retiree.id and case.priority == 2  # the ceiling below emergencies
    filed = session.scalars(select(CaseEvent).where(CaseEvent.case_id == case.id)).one()
    assert filed.data["priority_raised_by"] == ["age_80_plus", "age_90_plus"]
    assert case.details["reason"] == "check_in"
    assert events(session, check_in) == ["asked", "asked", "family_told", "visit"]
    assert run(session, first + timedelta(hours=5)) == 0  # the ladder is over


def test_1_is_well_and_ends_the_day(session: Session, people) -> None:
    retiree = wang_alone(session, people)
    run(session, at(0, 5))
    check_in = only(session, retiree)
    run(session, check_in.due_at)
    answered = check_ins.answer(session, check_in, "1", now=check_in.due_at + timedelta(minutes=1))
    assert answered.label == "well" and "健康" in answered.text
    assert check_in.status == CheckInStatus.WELL
    assert run(session, at(15)) == 0
    again = check_ins.answer(session, check_in, "2", now=at(15))
    assert again.label == "over" and check_in.status == CheckInStatus.WELL
    assert events(session, check_in) == ["asked", "well"]


def test_2_with_no_request_after_it_files_the_visit(session: Session, people) -> None:
    retiree = wang_alone(session, people)
    run(session, at(0, 5))
    check_in = only(session, retiree)
    run(session, check_in.due_at)
    pressed = check_in.due_at + timedelta(minutes=2)
    assert check_ins.answer(session, check_in, "2", now=pressed).label == "needs_help"
    assert run(session, pressed + timedelta(minutes=29)) == 0
    assert run(session, pressed + timedelta(minutes=30)) == 1
    assert check_in.status == CheckInStatus.VISIT
    case = session.get(Case, check_in.case_id)
    assert case is not None and "按了2" in case.summary


def test_2_followed_by_a_request_is_helped(session: Session, people) -> None:
    retiree = wang_alone(session, people)
    run(session, at(0, 5))
    check_in = only(session, retiree)
    run(session, check_in.due_at)
    pressed = check_in.due_at + timedelta(minutes=2)
    check_ins.answer(session, check_in, "2", now=pressed)
    filed = actions.file_case(
        session,
        category="help_request",
        channel="voice",
        actor=Actor.system("retiree"),
        retiree=retiree,
        summary="买药",
        now=pressed + timedelta(minutes=3),
    )
    run(session, pressed + timedelta(minutes=30))
    assert check_in.status == CheckInStatus.HELPED
    assert check_in.case_id is None
    assert events(session, check_in)[-1] == "helped"
    assert check_ins.timeline(session, check_in.id)[-1].data == {"number": filed.number}


def test_a_rung_at_night_is_skipped_and_the_visit_still_filed(session: Session, people) -> None:
    """A check-in whose asking ran late into the night: no call, no family message; the
    visit case is filed all the same."""
    retiree = wang_alone(session, people)
    run(session, at(0, 5))
    check_in = only(session, retiree)
    check_in.due_at = at(21, 30)
    assert run(session, at(21, 30)) == 1
    assert outbox(session) == []
    assert events(session, check_in) == ["skipped_quiet"]
    for _ in range(3):
        run(session, at(21, 31))
    assert check_in.status == CheckInStatus.VISIT
    assert outbox(session) == []  # the case's own notices aside, nobody was contacted


def test_an_inactive_person_is_not_rung(session: Session, people) -> None:
    retiree = wang_alone(session, people)
    run(session, at(0, 5))
    retiree.status = RetireeStatus.INACTIVE
    check_in = only(session, retiree)
    run(session, check_in.due_at)
    assert check_in.status == CheckInStatus.CANCELLED
    assert [o for o in outbox(session) if o[1] == retiree.phones[0].number] == []


def test_a_second_worker_does_not_plan_the_day_again(session: Session, people) -> None:
    assert run(session, at(0, 5)) == 0
    before = session.scalar(select(func.count()).select_from(CheckIn))
    session.query(CheckIn).delete()
    assert run(session, at(0, 6)) == 0  # the day is marked planned: no second planning
    assert before == 3 and session.scalar(select(func.count()).select_from(CheckIn)) == 0


def test_no_more_than_per_minute_are_asked_a_minute(session: Session) -> None:
    """config/care.yml's 200 a minute, run every 20 s: a share of 66 a run, and no more than
    200 in any minute however many runs there are."""
    community = make_unit_tree(session).community_a1
    for _ in range(250):
        make_retiree(session, community, age=91, today=DAY)
    check_ins.plan_day(session, DAY, now=at(0, 5))
    session.execute(update(CheckIn).values(due_at=at(9)))
    counts = [
        check_ins.run_due(session, moment, CATS, every_s=20)
        for moment in (at(9), at(9) + timedelta(seconds=20), at(9) + timedelta(seconds=40))
    ]
    assert counts == [66, 66, 66]
    assert check_ins.run_due(session, at(9) + timedelta(seconds=50), CATS, every_s=20) == 2
    assert check_ins.run_due(session, at(9, 1) + timedelta(seconds=1), CATS, every_s=20) == 50


@pytest.mark.parametrize("minutes", [120, 8])
def test_a_check_in_is_planned_clear_of_its_windows_end(minutes: int) -> None:
    """Whoever it is, the first question is planned in the window, and not in its last
    minutes: the job's period and its rate then keep it inside."""
    start = datetime(2026, 12, 7, 1, 0, tzinfo=UTC)
    end = start + timedelta(minutes=minutes)
    clear = min(timedelta(seconds=check_ins.LEEWAY_S), (end - start) / 2)
    moments = [check_ins.spread(n, start, end) for n in range(1, 5_000)]
    assert all(start <= m < end - clear for m in moments)
    assert max(moments) > end - clear - timedelta(minutes=2)  # spread over all the room
