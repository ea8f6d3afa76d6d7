"""Follow-up (回访) rounds: asked after resolution outside quiet hours, on the retiree's channel;
answers reopen when not done or not satisfied; silence twice files a call-back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from config.categories import get_categories
from storage import actions, follow_up_jobs, follow_ups
from storage.models import (
    Case,
    CaseEvent,
    CaseStatus,
    Direction,
    FollowUp,
    FollowUpStatus,
    Message,
    MessageStatus,
    OutboxItem,
    Role,
)
from storage.permissions import Actor
from tests.factories import make_retiree, make_staff, make_unit_tree

SHANGHAI = ZoneInfo("Asia/Shanghai")
# 10:00 in Shanghai: the question is due at 12:00, well outside the quiet hours.
MORNING = datetime(2026, 6, 2, 10, 0, tzinfo=SHANGHAI).astimezone(UTC)
CATS = get_categories()


def resolved_case(session: Session, channel: str = "sms", *, at: datetime = MORNING) -> Case:
    units = make_unit_tree(session)
    retiree = make_retiree(session, units.community_a1, phone="+8613911112222", age=82)
    case = actions.file_case(
        session,
        category="help_request",
        channel=channel,
        actor=Actor.system("retiree"),
        retiree=retiree,
        summary="帮忙买菜",
        now=at - timedelta(hours=3),
    )
    session.add(
        Message(
            channel=channel,
            direction=Direction.INBOUND,
            status=MessageStatus.RECEIVED,
            address="+8613911112222",
            text="帮我买菜",
            retiree_id=retiree.id,
            case_id=case.id,
            created_at=at - timedelta(hours=3),
        )
    )
    staff = make_staff(session, Role.STAFF, [units.station_a], phone="+8613700001111")
    actions.claim(session, case, Actor.person(staff), now=at - timedelta(hours=2))
    actions.resolve(session, case, Actor.person(staff), outcome="菜已送到", now=at)
    return case


def current(session: Session, case: Case) -> FollowUp:
    return session.scalars(
        select(FollowUp).where(FollowUp.case_id == case.id).order_by(FollowUp.round.desc())
    ).first()


def timeline(session: Session, case: Case) -> list[tuple[str, str, str]]:
    """(action, actor label, note or reason) of the case's events, in order."""
    return [
        (e.action, e.actor_label, e.note or e.reason)
        for e in session.scalars(
            select(CaseEvent).where(CaseEvent.case_id == case.id).order_by(CaseEvent.id)
        )
    ]


def rounds(session: Session, case: Case) -> list[tuple[int, FollowUpStatus]]:
    return [
        (f.round, f.status)
        for f in session.scalars(
            select(FollowUp).where(FollowUp.case_id == case.id).order_by(FollowUp.round)
        )
    ]


def questions(session: Session, case: Case) -> list[OutboxItem]:
    return list(
        session.scalars(
            select(OutboxItem)
            .where(
                OutboxItem.case_id == case.id, OutboxItem.payload["kind"].as_string() == "follow_up"
            )
            .order_by(OutboxItem.id)
        )
    )


def test_a_resolution_starts_a_round_asked_two_hours_later(session: Session) -> None:
    case = resolved_case(session)
    round_ = current(session, case)  # started by actions.resolve, in its transaction
    assert round_.status == FollowUpStatus.PENDING and round_.round == 1
    assert round_.next_attempt_at == MORNING + timedelta(hours=2)
    assert follow_up_jobs.run_due(session, MORNING + timedelta(hours=1), CATS) == 0
    assert follow_up_jobs.run_due(session, MORNING + timedelta(hours=2), CATS) == 1
    assert round_.status == FollowUpStatus.ASKED and round_.attempts == 1
    (item,) = questions(session, case)
    assert item.channel == "sms" and item.address == "+8613911112222"
    assert case.number in item.payload["text"] and "1" in item.payload["text"]
    # [value, label] pairs, the outbox's shape of choices (Telegram's buttons).
    assert item.payload["choices"] == [
        [f"fu:{round_.id}:1", "1 办好了，满意"],
        [f"fu:{round_.id}:2", "2 办好了，不满意"],
        [f"fu:{round_.id}:3", "3 还没办好"],
    ]
    assert timeline(session, case)[-1] == (
        "follow_up_asked",
        "system",
        "已发出回访问题（第 1 次，短信）",
    )


def test_no_question_during_the_night(session: Session) -> None:
    evening = datetime(2026, 6, 2, 20, 30, tzinfo=SHANGHAI).astimezone(UTC)
    case = resolved_case(session, at=evening)
    round_ = current(session, case)
    assert round_.next_attempt_at.astimezone(SHANGHAI) == datetime(
        2026, 6, 3, 8, 0, tzinfo=SHANGHAI
    )


def test_a_phone_caller_is_asked_by_a_call(session: Session) -> None:
    case = resolved_case(session, channel="phone")
    follow_up_jobs.run_due(session, MORNING + timedelta(hours=2), CATS)
    (item,) = questions(session, case)
    assert item.channel == "voice" and item.address == "+8613911112222"
    assert "请按1" in item.payload["text"]


def test_satisfied_leaves_the_case_resolved(session: Session) -> None:
    case = resolved_case(session)
    round_ = current(session, case)
    follow_up_jobs.run_due(session, MORNING + timedelta(hours=2), CATS)
    found = follow_ups.open_round_for(session, "sms", "+8613911112222")
    assert found is not None and found.id == round_.id
    result = follow_up_jobs.answer(session, found, "1", CATS, now=MORNING + timedelta(hours=3))
    assert result.done and result.satisfied and not result.reopens
    assert round_.status == FollowUpStatus.ANSWERED and round_.done and round_.satisfied
    assert case.status == CaseStatus.RESOLVED
    assert follow_ups.open_round_for(session, "sms", "+8613911112222") is None


@pytest.mark.parametrize(("choice", "label"), [("2", "not_satisfied"), ("3", "not_done")])
def test_not_done_or_not_satisfied_reopens_and_tells_the_owner(
    session: Session, choice: str, label: str
) -> None:
    case = resolved_case(session)
    round_ = current(session, case)
    follow_up_jobs.run_due(session, MORNING + timedelta(hours=2), CATS)
    result = follow_up_jobs.answer(session, round_, choice, CATS, now=MORNING + timedelta(hours=3))
    assert result.label == label and result.reopens
    assert case.status == CaseStatus.CLAIMED  # back to its owner
    told = session.scalars(
        select(OutboxItem).where(
            OutboxItem.case_id == case.id,
            OutboxItem.payload["kind"].as_string() == "follow_up_reopened",
        )
    ).one()
    assert told.address == "+8613700001111" and case.number in told.payload["text"]
    # A second answer to the same round changes nothing.
    follow_up_jobs.answer(session, round_, "1", CATS, now=MORNING + timedelta(hours=4))
    assert round_.satisfied is not True and case.status == CaseStatus.CLAIMED


def test_silence_twice_files_a_call_back(session: Session) -> None:
    case = resolved_case(session)
    round_ = current(session, case)
    first = MORNING + timedelta(hours=2)
    follow_up_jobs.run_due(session, first, CATS)
    second = round_.next_attempt_at
    assert second == first + timedelta(hours=24)
    follow_up_jobs.run_due(session, second, CATS)
    assert round_.attempts == 2 and len(questions(session, case)) == 2
    follow_up_jobs.run_due(session, round_.next_attempt_at, CATS)
    assert round_.status == FollowUpStatus.UNANSWERED
    callback = session.get(Case, round_.callback_case_id)
    assert callback is not None and callback.category == "callback" and callback.priority == 2
    assert callback.details["follow_up_of"] == case.number
    assert callback.retiree_id == case.retiree_id


def test_reopening_before_an_answer_cancels_the_round(session: Session) -> None:
    case = resolved_case(session)
    round_ = current(session, case)
    actions.reopen(session, case, Actor.system("cli"), reason="老人来电说没做完", now=MORNING)
    session.flush()
    session.refresh(round_)
    assert round_.status == FollowUpStatus.CANCELLED
    assert follow_up_jobs.run_due(session, MORNING + timedelta(days=3), CATS) == 0


def test_an_answer_is_one_two_or_three() -> None:
    with pytest.raises(ValueError, match="1, 2 or 3"):
        follow_ups.Answer.from_choice("4")
    assert follow_ups.Answer.from_choice(" 3 ").label == "not_done"


# -- which resolutions start a round, and what ends one ---------------------------------------------


def test_resolving_again_after_a_reopening_starts_the_next_round(session: Session) -> None:
    case = resolved_case(session)
    staff = Actor.person(case.assignee)
    actions.reopen(session, case, staff, reason="老人说菜不新鲜", now=MORNING + timedelta(hours=1))
    assert rounds(session, case) == [(1, FollowUpStatus.CANCELLED)]
    actions.resolve(session, case, staff, outcome="重新买了", now=MORNING + timedelta(hours=5))
    assert rounds(session, case) == [(1, FollowUpStatus.CANCELLED), (2, FollowUpStatus.PENDING)]
    assert follow_up_jobs.run_due(session, MORNING + timedelta(hours=7), CATS) == 1
    assert [i.idempotency_key for i in questions(session, case)] == [f"{case.number}:follow_up:2:1"]


def test_cancelling_a_case_cancels_its_open_round(session: Session) -> None:
    case = resolved_case(session)
    staff = Actor.person(case.assignee)
    actions.reopen(session, case, staff, reason="还要再办", now=MORNING + timedelta(hours=1))
    # A round left open on a case that is being worked on again (rounds made before resolve
    # started them, or by hand): cancelling the case ends it too.
    stray = follow_ups.start(session, case, now=MORNING + timedelta(hours=1))
    actions.cancel(session, case, staff, reason="老人说不用了", now=MORNING + timedelta(hours=2))
    session.flush()
    session.refresh(stray)
    assert stray.status == FollowUpStatus.CANCELLED
    assert follow_up_jobs.run_due(session, MORNING + timedelta(days=3), CATS) == 0


def test_a_closed_case_is_still_asked_and_not_done_reopens_it(session: Session) -> None:
    case = resolved_case(session)
    staff = Actor.person(case.assignee)
    actions.close(session, case, staff, now=MORNING + timedelta(minutes=30))
    round_ = current(session, case)
    assert follow_up_jobs.run_due(session, MORNING + timedelta(hours=2), CATS) == 1
    assert round_.status == FollowUpStatus.ASKED and len(questions(session, case)) == 1
    follow_up_jobs.answer(session, round_, "3", CATS, now=MORNING + timedelta(hours=3))
    assert case.status == CaseStatus.CLAIMED and case.closed_at is None
    assert timeline(session, case)[-2:] == [
        ("follow_up_answered", "retiree", "回访回答：还没办好"),
        ("reopen", "retiree", "回访：老人说还没办好"),
    ]


@pytest.mark.parametrize("category", ["emergency", "complaint", "medication_reimbursement"])
def test_other_categories_are_followed_up(session: Session, category: str) -> None:
    units = make_unit_tree(session)
    retiree = make_retiree(session, units.community_a1, phone="+8613911112222")
    staff = Actor.person(make_staff(session, Role.STAFF, [units.station_a]))
    case = actions.file_case(
        session, category=category, channel="sms", actor=staff, retiree=retiree, now=MORNING
    )
    actions.claim(session, case, staff, now=MORNING)
    actions.resolve(session, case, staff, outcome="办好了", now=MORNING)
    assert rounds(session, case) == [(1, FollowUpStatus.PENDING)]


def test_bereavement_gets_no_round(session: Session) -> None:
    units = make_unit_tree(session)
    retiree = make_retiree(session, units.community_a1, phone="+8613911112222")
    staff = Actor.person(make_staff(session, Role.STAFF, [units.station_a]))
    case = actions.file_case(
        session, category="bereavement", channel="sms", actor=staff, retiree=retiree, now=MORNING
    )
    actions.claim(session, case, staff, now=MORNING)
    actions.resolve(session, case, staff, outcome="已办理丧事手续", now=MORNING)
    assert rounds(session, case) == []
    assert follow_up_jobs.run_due(session, MORNING + timedelta(days=2), CATS) == 0


def test_the_call_back_of_an_unanswered_round_starts_no_round_of_its_own(
    session: Session,
) -> None:
    case = resolved_case(session)
    round_ = current(session, case)
    follow_up_jobs.run_due(session, MORNING + timedelta(hours=2), CATS)
    follow_up_jobs.run_due(session, round_.next_attempt_at, CATS)
    follow_up_jobs.run_due(session, round_.next_attempt_at, CATS)
    assert round_.status == FollowUpStatus.UNANSWERED
    callback = session.get(Case, round_.callback_case_id)
    assert callback is not None and follow_ups.wanted(callback) is False
    assert timeline(session, case)[-1] == (
        "follow_up_unanswered",
        "system",
        f"回访没有得到回答，已登记回电个案 {callback.number}，请打电话回访",
    )
    staff = Actor.person(case.assignee)
    later = round_.next_attempt_at + timedelta(hours=1)
    actions.claim(session, callback, staff, now=later)
    actions.resolve(session, callback, staff, outcome="已电话回访，老人满意", now=later)
    assert rounds(session, callback) == []
    # An ordinary call-back (a caller who hung up) is followed up like any other case.
    other = actions.file_case(
        session,
        category="callback",
        channel="phone",
        actor=Actor.system("retiree"),
        retiree=case.retiree,
        details={"caller": "+8613911112222"},
        now=later,
    )
    actions.claim(session, other, staff, now=later)
    actions.resolve(session, other, staff, outcome="已回电", now=later)
    assert rounds(session, other) == [(1, FollowUpStatus.PENDING)]


def test_a_round_answered_keeps_its_answer(session: Session) -> None:
    case = resolved_case(session)
    round_ = current(session, case)
    assert follow_ups.recorded_answer(round_) is None
    follow_up_jobs.run_due(session, MORNING + timedelta(hours=2), CATS)
    follow_up_jobs.answer(session, round_, "2", CATS, now=MORNING + timedelta(hours=3))
    recorded = follow_ups.recorded_answer(round_)
    assert recorded is not None and recorded.label == "not_satisfied"
    assert follow_ups.language_of(session, case) == "zh"
