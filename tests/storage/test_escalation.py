"""Escalation of unclaimed cases: the unit is reminded past the claim deadline, the case moves up
a level after a grace period, the top level is reminded without a loop; an emergency unclaimed
for two minutes rings the on-duty staff again and alerts the station, once. On SQLite and
PostgreSQL, including two workers at once."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from bot.runtime import periodic
from config.categories import get_categories
from config.i18n import get_catalogs
from storage import actions, alert_chain, escalation
from storage.alert_chain import alert_emergency
from storage.db import transaction
from storage.models import Case, CaseEvent, CaseStatus, OutboxItem, Retiree, Role, Staff
from storage.permissions import Actor
from tests.factories import UnitTree, make_retiree, make_staff, make_unit_tree

# A Monday in Beijing, 10:00 (+08:00): help requests must be claimed within 4 hours.
NOW = datetime(2026, 6, 1, 2, 0, tzinfo=UTC)
# The ladder's timing on the clock (office hours are storage/deadlines.py's, tested there).
CATS = get_categories().model_copy(
    update={
        "categories": {
            name: cat.model_copy(update={"around_the_clock": True})
            for name, cat in get_categories().categories.items()
        }
    }
)
CATALOGS = get_catalogs()
RETIREE = Actor.system("retiree")
RETIREE_NAME, RETIREE_PHONE, ADDRESS = "王秀英", "+8613911112222", "和平路8号"
A1_STAFF_1, A1_STAFF_2, SA_STAFF, C_ADMIN = (
    "+8613700000001",
    "+8613700000002",
    "+8613700000003",
    4242,
)


@dataclass
class World:
    units: UnitTree
    retiree: Retiree
    a1_staff: list[Staff]
    station_staff: Staff
    center_admin: Staff


def world(session: Session) -> World:
    """Two on-duty staff and a volunteer in community A1, staff in station A, an admin (on
    Telegram) at the center; community A2 has nobody."""
    units = make_unit_tree(session)
    a1 = [
        make_staff(session, Role.STAFF, [units.community_a1], phone=A1_STAFF_1, on_duty=True),
        make_staff(session, Role.STAFF, [units.community_a1], phone=A1_STAFF_2, on_duty=True),
    ]
    make_staff(session, Role.VOLUNTEER, [units.community_a1], phone="+8613700000009")
    station = make_staff(session, Role.STAFF, [units.station_a], phone=SA_STAFF)
    admin = make_staff(session, Role.ADMIN, [units.center], telegram_user_id=C_ADMIN)
    retiree = make_retiree(
        session, units.community_a1, phone=RETIREE_PHONE, name=RETIREE_NAME, address=ADDRESS
    )
    return World(units, retiree, a1, station, admin)


def file(session: Session, w: World, category: str = "help_request", **kw: object) -> Case:
    kw.setdefault("retiree", w.retiree)
    kw.setdefault("now", NOW)
    return actions.file_case(
        session, category=category, channel="sms", actor=RETIREE, categories=CATS, **kw
    )


def run(session: Session, at: datetime) -> int:
    handled = escalation.run_due(session, at, CATS)
    session.flush()
    return handled


def timeline(session: Session, case: Case) -> list[tuple[str, str, str]]:
    return [
        (e.action, e.actor_label, e.note or e.reason)
        for e in session.scalars(
            select(CaseEvent).where(CaseEvent.case_id == case.id).order_by(CaseEvent.id)
        )
    ]


def sent(session: Session, case: Case, kind: str) -> list[tuple[str, str, str]]:
    """(channel, address, text) of the case's outbox items of ``kind``, in order."""
    items = session.scalars(
        select(OutboxItem).where(OutboxItem.case_id == case.id).order_by(OutboxItem.id)
    )
    return [(i.channel, i.address, i.payload["text"]) for i in items if i.payload["kind"] == kind]


def calls(session: Session, case: Case) -> list[OutboxItem]:
    return list(
        session.scalars(
            select(OutboxItem)
            .where(OutboxItem.case_id == case.id, OutboxItem.channel == "voice")
            .order_by(OutboxItem.id)
        )
    )


# -- reminded, then moved up ---------------------------------------------------------------------


def test_an_overdue_case_reminds_its_units_staff_without_personal_data(session: Session) -> None:
    w = world(session)
    case = file(session, w)
    assert run(session, NOW + timedelta(hours=4) - timedelta(seconds=1)) == 0
    assert run(session, NOW + timedelta(hours=4, minutes=5)) == 1

    text = (
        f"【待领取 {case.number}】和平社区的“生活帮扶”个案已超过领取时限5分钟，仍无人领取。"
        "请尽快在控制台领取；2小时内仍无人领取，将升级到东街道。"
    )
    # The unit's own staff, not its volunteer, not the station's staff.
    assert sent(session, case, "escalation_notice") == [
        ("sms", A1_STAFF_1, text),
        ("sms", A1_STAFF_2, text),
    ]
    assert not any(p in text for p in (RETIREE_NAME, RETIREE_PHONE, ADDRESS))
    assert timeline(session, case)[-1] == (
        "escalation_notified",
        "system",
        "超过领取时限5分钟仍无人领取，已提醒和平社区的2名工作人员。",
    )
    assert (case.unit_id, case.priority, case.escalations) == (w.units.community_a1.id, 3, 0)


def test_still_unclaimed_after_the_grace_period_it_moves_up_level_by_level(
    session: Session,
) -> None:
    w = world(session)
    case = file(session, w)
    reminded = NOW + timedelta(hours=4, minutes=5)
    assert run(session, reminded) == 1
    assert run(session, reminded + timedelta(hours=2) - timedelta(seconds=1)) == 0

    at_station = reminded + timedelta(hours=2)
    assert run(session, at_station) == 1
    assert (case.unit_id, case.priority, case.escalations) == (w.units.station_a.id, 2, 1)
    assert case.status == CaseStatus.OPEN
    assert case.claim_deadline == at_station + timedelta(hours=4)  # a fresh claim window
    assert timeline(session, case)[-1] == (
        "escalate",
        "system",
        "超过领取时限2小时，提醒和平社区后仍无人领取，自动升级到东街道。",
    )

    # The station is reminded in its turn, then the case goes to the center.
    assert run(session, at_station + timedelta(hours=4)) == 1
    assert [a for _, a, _ in sent(session, case, "escalation_notice")][-1] == SA_STAFF
    assert run(session, at_station + timedelta(hours=6)) == 1
    assert (case.unit_id, case.priority, case.escalations) == (w.units.center.id, 2, 2)
    assert [e[0] for e in timeline(session, case)] == [
        "file",
        "escalation_notified",
        "escalate",
        "escalation_notified",
        "escalate",
    ]


def test_at_the_center_it_is_reminded_once_per_claim_window_and_never_loops(
    session: Session,
) -> None:
    w = world(session)
    case = file(session, w, "general", unit=w.units.center)  # 8 hours to claim
    deadline = NOW + timedelta(hours=8)
    assert run(session, deadline + timedelta(minutes=1)) == 1
    # Every 15 seconds for the next ten minutes, and just before the next window: nothing.
    for n in range(1, 41):
        assert run(session, deadline + timedelta(minutes=1, seconds=15 * n)) == 0
    assert run(session, deadline + timedelta(hours=8, minutes=1) - timedelta(seconds=1)) == 0
    assert run(session, deadline + timedelta(hours=8, minutes=1)) == 1

    text = (
        f"【待领取 {case.number}】退管中心的“其他事项”个案已超过领取时限1分钟，仍无人领取。"
        "已在最高一级，请尽快在控制台领取。"
    )
    notices = sent(session, case, "escalation_notice")
    assert notices[0] == ("telegram", str(C_ADMIN), text)
    assert len(notices) == 2  # the second reminder has a key of its own
    assert (case.unit_id, case.escalations) == (w.units.center.id, 0)
    assert [e[0] for e in timeline(session, case)] == ["file"] + ["escalation_notified"] * 2


def test_cases_that_wait_for_nothing_do_not_crowd_out_those_due(session: Session) -> None:
    w = world(session)
    waiting = [file(session, w, "general", unit=w.units.center) for _ in range(5)]
    assert escalation.run_due(session, NOW + timedelta(hours=8), CATS, limit=3) == 3
    assert escalation.run_due(session, NOW + timedelta(hours=8), CATS, limit=3) == 2
    later = file(session, w, "general", now=NOW + timedelta(hours=1))  # due after them all
    assert escalation.run_due(session, NOW + timedelta(hours=9), CATS, limit=3) == 1
    assert [e[0] for e in timeline(session, later)][-1] == "escalation_notified"
    assert all(len(sent(session, case, "escalation_notice")) == 1 for case in waiting)


def test_a_unit_with_nobody_to_remind_moves_the_case_up_at_once(session: Session) -> None:
    w = world(session)
    case = file(session, w, retiree=None, unit=w.units.community_a2)
    assert run(session, NOW + timedelta(hours=4)) == 1
    assert case.unit_id == w.units.station_a.id
    assert sent(session, case, "escalation_notice") == []
    assert timeline(session, case)[-1] == (
        "escalate",
        "system",
        "超过领取时限0分钟仍无人领取，幸福社区没有可以提醒的工作人员，自动升级到东街道。",
    )


def test_claimed_resolved_and_cancelled_cases_are_left_alone(session: Session) -> None:
    w = world(session)
    staff = Actor.person(w.a1_staff[0])
    claimed, resolved, cancelled = (file(session, w) for _ in range(3))
    actions.claim(session, claimed, staff, now=NOW)
    actions.claim(session, resolved, staff, now=NOW)
    actions.resolve(session, resolved, staff, outcome="办好了", now=NOW)
    actions.cancel(session, cancelled, staff, reason="老人不需要了", now=NOW)
    # Reminded, then claimed before the grace period ended: not moved up.
    waiting = file(session, w)
    assert run(session, NOW + timedelta(hours=5)) == 1
    actions.claim(session, waiting, staff, now=NOW + timedelta(hours=6))

    assert run(session, NOW + timedelta(days=3)) == 0
    for case in (claimed, resolved, cancelled):
        assert not any(e[0].startswith("escala") for e in timeline(session, case))
    assert waiting.unit_id == w.units.community_a1.id
    assert [e[0] for e in timeline(session, waiting)][-2:] == ["escalation_notified", "claim"]


def test_a_case_put_back_in_the_queue_reminds_its_unit_again(session: Session) -> None:
    w = world(session)
    case = file(session, w)
    staff = Actor.person(w.a1_staff[0])
    assert run(session, NOW + timedelta(hours=5)) == 1
    actions.claim(session, case, staff, now=NOW + timedelta(hours=5, minutes=10))
    actions.release(session, case, staff, now=NOW + timedelta(hours=5, minutes=20))
    # Back in the queue past its deadline: a new stay, so a new reminder, not an escalation.
    assert run(session, NOW + timedelta(hours=7, minutes=30)) == 1
    assert case.unit_id == w.units.community_a1.id
    assert len(sent(session, case, "escalation_notice")) == 4  # two staff, twice


# -- emergencies ----------------------------------------------------------------------------------


def emergency(session: Session, w: World) -> Case:
    """An emergency filed as the conversation files it, with its first alert call queued."""
    case = file(session, w, "emergency", summary="紧急求助")
    alert_emergency(session, case, w.retiree, "我摔倒了", RETIREE_PHONE, CATALOGS, "zh")
    session.flush()
    return case


def test_an_emergency_unclaimed_for_two_minutes_rings_again_and_alerts_the_station_once(
    session: Session,
) -> None:
    w = world(session)
    case = emergency(session, w)
    [first] = calls(session, case)
    assert run(session, NOW + timedelta(minutes=2) - timedelta(seconds=1)) == 0
    # The first call went unanswered: the chain rang the second staff member.
    alert_chain.call_ended(
        session,
        first.idempotency_key,
        "CA1",
        "no-answer",
        final=True,
        now=NOW + timedelta(seconds=70),
        catalogs=CATALOGS,
    )
    assert [c.address for c in calls(session, case)] == [A1_STAFF_1, A1_STAFF_2]

    assert run(session, NOW + timedelta(minutes=2)) == 1
    # The second wave takes over: the first wave's call to A1_STAFF_2, not placed yet, is called
    # off, kept as cancelled (nobody's phone rings for both waves at once).
    assert [(c.address, c.payload.get("wave")) for c in calls(session, case)] == [
        (A1_STAFF_1, None),
        (A1_STAFF_2, None),
        (A1_STAFF_1, 2),
    ]
    called_off = calls(session, case)[1]
    assert (called_off.status.value, called_off.payload["outcome"]) == ("cancelled", "called_off")
    rering = calls(session, case)[2]
    assert "held" not in rering.payload  # nothing of the first wave rings now
    spoken = f"紧急求助，编号 {case.number}，和平社区，已经2分钟没有人领取。请立即处理，详情请看短信或控制台。"
    assert rering.address == A1_STAFF_1 and rering.status.value == "pending"
    assert rering.payload["kind"] == "emergency_call" and rering.payload["wave"] == 2
    assert rering.payload["text"] == spoken and rering.payload["order"] == 3
    assert [c["address"] for c in rering.payload["chain"]] == [A1_STAFF_2]
    alert = (
        f"【紧急 {case.number}】和平社区的紧急求助已经2分钟没有人领取，已再次呼叫值班人员。"
        "请立即跟进，详情请看控制台。"
    )
    assert sent(session, case, "emergency_alert")[-1] == ("sms", SA_STAFF, alert)
    assert timeline(session, case)[-1] == (
        "emergency_reescalated",
        "system",
        "紧急求助2分钟无人领取：再次呼叫值班人员（2人），并通知东街道的1名工作人员。",
    )

    # The second wave goes on along its own chain.
    alert_chain.call_ended(
        session,
        rering.idempotency_key,
        "CA3",
        "busy",
        final=True,
        now=NOW + timedelta(minutes=3),
        catalogs=CATALOGS,
    )
    assert [(c.address, c.payload.get("wave")) for c in calls(session, case)] == [
        (A1_STAFF_1, None),
        (A1_STAFF_2, None),  # called off
        (A1_STAFF_1, 2),
        (A1_STAFF_2, 2),
    ]

    # Once: not again while it stays unclaimed; after the grace period it moves up.
    for n in range(1, 40):
        assert run(session, NOW + timedelta(minutes=2, seconds=15 * n)) == 0
    assert len(calls(session, case)) == 4 and len(sent(session, case, "emergency_alert")) == 3
    assert run(session, NOW + timedelta(minutes=12)) == 1
    assert (case.unit_id, case.priority) == (w.units.station_a.id, 1)
    assert [e[0] for e in timeline(session, case)][-1] == "escalate"


def test_an_emergency_somebody_took_by_phone_is_not_rung_again(session: Session) -> None:
    w = world(session)
    case = emergency(session, w)
    [first] = calls(session, case)
    alert_chain.acknowledge(session, first.idempotency_key, "CA1", now=NOW, catalogs=CATALOGS)
    session.flush()
    run(session, NOW + timedelta(minutes=5))
    assert len(calls(session, case)) == 1
    assert "emergency_reescalated" not in [e[0] for e in timeline(session, case)]


def test_a_claimed_emergency_is_not_rung_again(session: Session) -> None:
    w = world(session)
    case = emergency(session, w)
    actions.claim(session, case, Actor.person(w.a1_staff[1]), now=NOW + timedelta(minutes=1))
    assert run(session, NOW + timedelta(minutes=30)) == 0
    assert len(calls(session, case)) == 1


# -- idempotent, and safe with several workers -----------------------------------------------------


def test_running_twice_at_the_same_moment_does_nothing_the_second_time(session: Session) -> None:
    w = world(session)
    first, second, urgent = file(session, w), file(session, w), emergency(session, w)
    run(session, NOW + timedelta(hours=4))  # reminds the first two, rings again for the third
    at = NOW + timedelta(hours=6)
    assert run(session, at) == 3
    counts = (
        session.scalar(select(func.count(OutboxItem.id))),
        session.scalar(select(func.count(CaseEvent.id))),
    )
    assert run(session, at) == 0
    assert counts == (
        session.scalar(select(func.count(OutboxItem.id))),
        session.scalar(select(func.count(CaseEvent.id))),
    )
    assert first.escalations == second.escalations == urgent.escalations == 1


def test_two_workers_at_once_handle_each_case_exactly_once(engine: Engine) -> None:
    with transaction(engine) as session:
        w = world(session)
        ids = [file(session, w).id for _ in range(24)]
        ids += [file(session, w, unit=w.units.community_a2, retiree=None).id for _ in range(6)]
    reminded_at = NOW + timedelta(hours=4, minutes=1)
    escalated_at = reminded_at + timedelta(hours=2)
    handled: list[int] = []
    errors: list[BaseException] = []

    def worker(at: datetime, barrier: threading.Barrier) -> None:
        try:
            barrier.wait(timeout=30)
            while True:
                with transaction(engine) as session:
                    n = escalation.run_due(session, at, CATS, limit=4)
                handled.append(n)
                if n == 0:
                    return
        except BaseException as exc:  # reported below
            errors.append(exc)

    for at in (reminded_at, escalated_at):
        barrier = threading.Barrier(2)
        threads = [threading.Thread(target=worker, args=(at, barrier)) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not errors
    # 24 reminded then escalated, 6 escalated at once (nobody at A2): 24 + 24 + 6.
    assert sum(handled) == 54
    with Session(engine) as session:
        per_case = dict(
            session.execute(
                select(CaseEvent.case_id, func.count(CaseEvent.id))
                .where(CaseEvent.action == "escalate")
                .group_by(CaseEvent.case_id)
            ).all()
        )
        assert per_case == dict.fromkeys(ids, 1)
        reminders = session.scalar(
            select(func.count(CaseEvent.id)).where(CaseEvent.action == "escalation_notified")
        )
        assert reminders == 24
        assert session.scalar(select(func.count(OutboxItem.id))) == 48  # two staff each
        assert set(session.scalars(select(Case.escalations))) == {1}


def test_the_worker_runs_escalation_with_its_other_jobs(engine: Engine, deployment: Any) -> None:
    with transaction(engine) as session:
        case_id = file(session, world(session)).id
    assert "escalation" in [job.name for job in periodic.default_jobs(deployment)]
    result = periodic.run_all_once(engine, deployment, now=NOW + timedelta(hours=4, minutes=1))
    assert result["escalation"] == 1
    with Session(engine) as session:
        actions_ = session.scalars(select(CaseEvent.action).where(CaseEvent.case_id == case_id))
        assert list(actions_)[-1] == "escalation_notified"


def test_the_console_names_the_new_timeline_lines() -> None:
    for lang in ("zh", "en"):
        for action in (escalation.NOTIFIED, escalation.REESCALATED):
            assert f"console.events.{action}" in CATALOGS.texts[lang]
