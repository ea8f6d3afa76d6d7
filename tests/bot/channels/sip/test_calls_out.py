"""The outbox's calls over the SIP line, end to end with real peers on 127.0.0.1: `hotline sip`
places an emergency's alert call, a follow-up call and a check-in call through Kamailio to SIPp
phones that answer and press a key (SIP INFO), or ring and ring; the outcome is read from the
database."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from bot.runtime.configure import load_deployment
from bot.runtime.periodic import run_all_once
from config.categories import get_categories
from config.i18n import get_catalogs
from config.settings import Settings
from storage import actions, check_ins
from storage.alert_chain import alert_emergency
from storage.db import transaction
from storage.models import (
    Case,
    CaseEvent,
    CaseStatus,
    CheckIn,
    CheckInStatus,
    FollowUp,
    OutboxItem,
    Retiree,
    Staff,
)
from storage.permissions import Actor
from tests.bot.channels.sip.support import (
    CALLER,
    STAFF_PHONE,
    Line,
    phone_on_duty,
    skip_without_peers,
)
from tests.bot.channels.twilio.test_outage import eventually
from tests.bot.conversation.test_follow_up_answers import ASKED_AT, resolve_case
from tests.sip_peers import AwaitBye, Info, Pause, StaffPhone

pytestmark = pytest.mark.slow
skip_without_peers()

FOLLOW_UP_PHONE = "+8613700000002"  # the phone she called from (137...: the SIPp phone)


def file_emergency(sip: Line) -> str:
    """王秀英's emergency, told by SMS: the alert chain queues the call to the staff on duty."""
    with transaction(sip.engine) as session:
        retiree = session.scalars(select(Retiree)).one()
        case = actions.file_case(
            session, category="emergency", channel="sms", actor=Actor.system(), retiree=retiree
        )
        alert_emergency(session, case, retiree, "我摔倒了", CALLER, get_catalogs(), "zh")
        return case.number


def alert_call(sip: Line, number: str) -> OutboxItem:
    with transaction(sip.engine) as session:
        return session.scalars(
            select(OutboxItem).where(
                OutboxItem.channel == "voice",
                OutboxItem.payload["case"].as_string() == number,
            )
        ).one()


def case_of(sip: Line, number: str) -> Case:
    with transaction(sip.engine) as session:
        return session.scalars(select(Case).where(Case.number == number)).one()


def notes_of(sip: Line, number: str) -> list[str]:
    with transaction(sip.engine) as session:
        case = session.scalars(select(Case).where(Case.number == number)).one()
        found = session.scalars(select(CaseEvent.note).where(CaseEvent.case_id == case.id))
        return [note or "" for note in found]


def test_the_staff_member_who_presses_1_on_the_alert_call_takes_the_emergency(sip: Line) -> None:
    with StaffPhone(
        sip.proxy, sip.folder, answers=True, steps=[Pause(2500), Info("1"), AwaitBye(60)]
    ) as phone:
        number = file_emergency(sip)
        code, printed = phone.rang(90)
    assert code == 0, printed  # answered, pressed 1, heard it is theirs, and the line hung up
    call = eventually(lambda: alert_call(sip, number), lambda i: "outcome" in i.payload)
    assert call.status.value == "sent" and call.payload["outcome"] == "taken"
    assert call.payload["call_sid"].startswith("sip:")
    case = case_of(sip, number)
    with transaction(sip.engine) as session:
        staff = session.scalars(select(Staff)).one()
    assert case.status == CaseStatus.CLAIMED and case.assignee_id == staff.id
    assert any(STAFF_PHONE[3:] in note for note in notes_of(sip, number))  # who took it
    logged = sip.line.wait_for('"sip_call_placed_over"', 10)
    assert '"status": "completed"' in logged


def test_an_alert_call_nobody_answers_passes_the_emergency_on(sip: Line) -> None:
    phone_on_duty(sip, "+8613900000009")  # rings and rings (139... on the proxy)
    with StaffPhone(sip.proxy, sip.folder, answers=False):
        number = file_emergency(sip)
        call = eventually(lambda: alert_call(sip, number), lambda i: "outcome" in i.payload, 60)
    assert call.payload["outcome"] == "passed"
    assert call.payload["call_status"] == "no-answer"
    assert case_of(sip, number).status == CaseStatus.OPEN  # still in the queue, for everyone
    assert '"status": "no-answer"' in sip.line.wait_for('"sip_call_placed_over"', 10)


def resolve_and_ask(sip: Line) -> tuple[str, int]:
    """王秀英 called from FOLLOW_UP_PHONE; her case was resolved; the follow-up round is due."""
    with transaction(sip.engine) as session:
        retiree = session.scalars(select(Retiree)).one()
        staff = session.scalars(select(Staff)).one()
        found = resolve_case(session, retiree, staff, "phone", FOLLOW_UP_PHONE)
    deployment = load_deployment(Settings(_env_file=None))
    assert run_all_once(sip.engine, deployment, now=ASKED_AT)["follow_ups"] == 1
    return found


def test_a_follow_up_call_over_the_line_hears_3_and_reopens_the_case(sip: Line) -> None:
    with StaffPhone(
        sip.proxy, sip.folder, answers=True, steps=[Pause(2500), Info("3"), AwaitBye(60)]
    ) as phone:
        number, follow_up_id = resolve_and_ask(sip)
        code, printed = phone.rang(90)
    assert code == 0, printed
    case = eventually(lambda: case_of(sip, number), lambda c: c.status == CaseStatus.CLAIMED)
    assert case.status == CaseStatus.CLAIMED  # not done: back with its owner
    with transaction(sip.engine) as session:
        follow_up = session.get(FollowUp, follow_up_id)
        assert follow_up is not None and follow_up.done is False
        [question] = session.scalars(
            select(OutboxItem).where(OutboxItem.payload["kind"].as_string() == "follow_up")
        ).all()
    assert (question.channel, question.address, question.status.value) == (
        "voice",
        FOLLOW_UP_PHONE,
        "sent",
    )


def ask_check_in(sip: Line) -> int:
    """王秀英's check-in today, asked now by the ladder's first rung: a call to the phone she
    has (the SIPp phone's number), as the worker's job would queue it in the morning."""
    shanghai = ZoneInfo("Asia/Shanghai")
    today = datetime.now(shanghai).date()
    morning = datetime.combine(today, time(10, 0), tzinfo=shanghai)
    if morning > datetime.now(shanghai):
        morning -= timedelta(days=1)  # before 10:00: yesterday's morning, due all the same
    with transaction(sip.engine) as session:
        retiree = session.scalars(select(Retiree)).one()
        retiree.phones[0].number = FOLLOW_UP_PHONE
        check_in = CheckIn(
            retiree_id=retiree.id,
            day=today,
            due_at=morning,
            window_end=morning + timedelta(hours=2),
        )
        session.add(check_in)
        session.flush()
        check_ins.step(session, check_in, get_categories(), now=morning.astimezone(UTC))
        assert check_in.status == CheckInStatus.ASKED and check_in.channel == "voice"
        return check_in.id


def test_a_check_in_call_over_the_line_hears_1_and_she_is_well(sip: Line) -> None:
    with StaffPhone(
        sip.proxy, sip.folder, answers=True, steps=[Pause(2500), Info("1"), AwaitBye(60)]
    ) as phone:
        check_in_id = ask_check_in(sip)
        code, printed = phone.rang(90)
    assert code == 0, printed

    def check_in() -> CheckIn:
        with transaction(sip.engine) as session:
            found = session.get(CheckIn, check_in_id)
            assert found is not None
            return found

    done = eventually(check_in, lambda c: c.status == CheckInStatus.WELL)
    assert done.status == CheckInStatus.WELL and done.answered_at is not None
    with transaction(sip.engine) as session:
        [question] = session.scalars(
            select(OutboxItem).where(OutboxItem.payload["kind"].as_string() == "check_in")
        ).all()
        assert (question.channel, question.address) == ("voice", FOLLOW_UP_PHONE)
        assert [e.action for e in check_ins.timeline(session, check_in_id)][-1] == "well"
