"""Proactive care in the console: a retiree's check-in plan on their profile (the default, their
own, off), its refusals, and the day's check-ins page — who may see what, and the audit log."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from fastapi import FastAPI
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from console.routes.registry import local_today
from storage import check_ins
from storage.models import AuditEntry, CarePlan, CheckIn, CheckInStatus, FamilyMember
from tests.console.conftest import World

SHANGHAI = ZoneInfo("Asia/Shanghai")
TODAY = date(2026, 10, 9)  # a Friday
EARLY = datetime(2026, 10, 9, 0, 5, tzinfo=SHANGHAI).astimezone(UTC)


@pytest.fixture(autouse=True)
def fixed_today(console_app: FastAPI) -> None:
    console_app.dependency_overrides[local_today] = lambda: TODAY


def plan_of(engine: Engine, retiree_id: int) -> CarePlan | None:
    with Session(engine) as session:
        return session.scalars(select(CarePlan).where(CarePlan.retiree_id == retiree_id)).first()


def audits(engine: Engine, action: str) -> list[AuditEntry]:
    with Session(engine) as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.action == action)))


def save(b, retiree_id: int, **fields: object) -> object:
    if not b.csrf:
        b.get(f"/retirees/{retiree_id}")
    form: dict[str, object] = {
        "csrf_token": b.csrf,
        "mode": "own",
        "cadence": "daily",
        "window_from": "09:00",
        "window_to": "11:00",
        "channels": ["voice", "sms"],
        "tell_family": "1",
        "quiet_days": "",
    }
    form.update(fields)
    return b.client.post(f"/retirees/{retiree_id}/care-plan", data=form, follow_redirects=False)


def test_the_profile_shows_the_default_plan(world: World, browser) -> None:
    """王秀英 is 86 and lives alone: a daily check-in by config/care.yml's defaults."""
    page = browser("staff_a").get(f"/retirees/{world.retiree_a1.id}").text
    shown = page[page.index('id="plan-now"') :].split("</p>")[0]
    assert "按默认规则" in shown and "每天" in shown and "09:00–11:00" in shown
    other = browser("staff_b").get(f"/retirees/{world.retiree_b1.id}").text
    assert "这位老人不需要定期问候" in other  # 75, not alone: none


def test_an_own_plan_is_saved_audited_and_shown(world: World, browser, engine) -> None:
    b = browser("staff_a")
    r = save(
        b,
        world.retiree_a1.id,
        cadence="weekly",
        weekdays=["mon", "thu"],
        window_from="14:00",
        window_to="16:00",
        tell_family="",
        quiet_days="2026-10-12，sun",
    )
    assert r.status_code == 303, r.text  # type: ignore[attr-defined]
    row = plan_of(engine, world.retiree_a1.id)
    assert row is not None and row.enabled and row.updated_by_id == world.staff_a.id
    assert row.rule["cadence"] == "weekly" and row.rule["weekdays"] == ["mon", "thu"]
    assert row.rule["window"] == {"from": "14:00:00", "to": "16:00:00"}
    assert row.rule["channels"] == ["voice", "sms"] and row.rule["tell_family"] is False
    assert row.quiet_days == ["2026-10-12", "sun"]
    [entry] = audits(engine, "update_care_plan")
    assert (entry.actor_id, entry.subject_id, entry.detail) == (
        world.staff_a.id,
        world.retiree_a1.id,
        {"mode": "own"},
    )
    page = b.get(f"/retirees/{world.retiree_a1.id}").text
    shown = page[page.index('id="plan-now"') :].split("</p>")[0]
    assert "本人计划" in shown and "周一、周四" in shown and "14:00–16:00" in shown
    assert "不告诉家属" in shown and "2026-10-12" in shown


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"window_from": "22:00", "window_to": "23:00"}, "全在夜间"),
        ({"window_from": "11:00", "window_to": "09:00"}, "结束要晚于开始"),
        ({"window_from": "9点"}, "写成 09:00"),
        ({"cadence": "weekly"}, "要选至少一天"),
        ({"channels": []}, "至少选一种联系方式"),
        ({"quiet_days": "星期天"}, "不问候的日子写周几"),
    ],
)
def test_a_wrong_plan_is_refused_next_to_its_field_and_nothing_is_stored(
    world: World, browser, engine, fields: dict[str, object], message: str
) -> None:
    r = save(browser("staff_a"), world.retiree_a1.id, **fields)
    assert r.status_code == 422  # type: ignore[attr-defined]
    assert message in r.text  # type: ignore[attr-defined]
    for typed in fields.values():
        if isinstance(typed, str) and typed:
            assert typed in r.text  # what was typed is kept  # type: ignore[attr-defined]
    assert plan_of(engine, world.retiree_a1.id) is None
    assert audits(engine, "update_care_plan") == []


def test_switching_off_cancels_today_and_default_brings_it_back(
    world: World, browser, engine
) -> None:
    with Session(engine) as session, session.begin():
        assert check_ins.plan_day(session, TODAY, now=EARLY) == 1  # 王秀英 alone
    b = browser("staff_a")
    assert save(b, world.retiree_a1.id, mode="off").status_code == 303  # type: ignore[attr-defined]
    with Session(engine) as session:
        check_in = session.scalars(select(CheckIn)).one()
        assert check_in.status == CheckInStatus.CANCELLED
    row = plan_of(engine, world.retiree_a1.id)
    assert row is not None and not row.enabled
    page = b.get(f"/retirees/{world.retiree_a1.id}").text
    assert "已为这位老人关闭定期问候" in page
    assert save(b, world.retiree_a1.id, mode="default").status_code == 303  # type: ignore[attr-defined]
    assert plan_of(engine, world.retiree_a1.id) is None


def test_another_stations_staff_and_volunteers_cannot_set_a_plan(
    world: World, browser, engine
) -> None:
    assert save(browser("staff_b"), world.retiree_a1.id).status_code == 403  # type: ignore[attr-defined]
    assert save(browser("vol_a1"), world.retiree_a1.id).status_code == 403  # type: ignore[attr-defined]
    assert plan_of(engine, world.retiree_a1.id) is None


def test_the_day_page_counts_and_lists_who_needs_a_look_first(
    world: World, browser, engine
) -> None:
    with Session(engine) as session, session.begin():
        check_ins.plan_day(session, TODAY, now=EARLY)
        check_in = session.scalars(select(CheckIn)).one()
        check_in.status = CheckInStatus.VISIT
        check_in.attempts = 2
        check_in.asked_at = EARLY + timedelta(hours=9)
    page = browser("staff_a").get("/check-ins").text
    assert '<dd id="count-total">1</dd>' in page
    assert "未联系上，已建上门个案" in page and "王秀英" in page and "第 2 次" in page
    entry = audits(engine, "view_check_ins")[-1]
    assert entry.actor_id == world.staff_a.id
    assert entry.detail == {"day": TODAY.isoformat(), "community": None, "shown": 1}
    # Another station's staff see their own communities only; volunteers are refused.
    other = browser("staff_b").get("/check-ins").text
    assert "王秀英" not in other and '<dd id="count-total">0</dd>' in other
    assert browser("vol_a1").get("/check-ins").status_code == 403
    # A day nobody can read is today, with a word why.
    odd = browser("staff_a").get("/check-ins?day=yesterday").text
    assert "看不懂日期" in odd and "王秀英" in odd
    assert "这一天没有问候" in browser("staff_a").get("/check-ins?day=2026-10-08").text
    # Who needs a look comes first, whatever the time: retiree B1 answered well early on.
    with Session(engine) as session, session.begin():
        session.add(
            CheckIn(
                retiree_id=world.retiree_b1.id,
                day=TODAY,
                status=CheckInStatus.WELL,
                attempts=1,
                due_at=EARLY,
                window_end=EARLY + timedelta(hours=11),
            )
        )
    everyone = browser("admin").get("/check-ins").text
    assert everyone.index("check-in-visit") < everyone.index("check-in-well")


def test_the_report_counts_coverage_and_response(world: World, browser, engine) -> None:
    """王秀英 has a plan (the default) and was asked and answered; the other retiree of the
    world has none. The page and the export say the same."""
    with Session(engine) as session, session.begin():
        check_ins.plan_day(session, TODAY, now=EARLY)
        check_in = session.scalars(select(CheckIn)).one()
        check_in.attempts, check_in.status = 1, CheckInStatus.WELL
    b = browser("admin")
    query = f"unit={world.units.center.id}&from={TODAY.isoformat()}&to={TODAY.isoformat()}"
    page = b.get(f"/reports?{query}").text
    sentence = page[page.index('id="check-in-coverage"') :].split("</p>")[0]
    assert "有问候计划的老人 1 人，这段时间问候到 1 人（100%）" in sentence
    assert "发出问候 1 次，有回答 1 次（100%）" in sentence
    body = b.get(f"/reports/export.csv?{query}").content.decode("utf-8-sig")
    rows = {line.split(",")[0]: line.split(",")[3:] for line in body.splitlines()[1:]}
    assert rows["check_ins.well"] == ["1", "100.0"]
    assert rows["check_ins.planned"] == ["1", ""] and rows["check_ins.covered"] == ["1", "100.0"]
    assert rows["check_ins.answered"] == ["1", "100.0"]


def link_family(b, retiree_id: int, **fields: object) -> object:
    if not b.csrf:
        b.get(f"/retirees/{retiree_id}")
    form: dict[str, object] = {
        "csrf_token": b.csrf,
        "name": "李明",
        "relation": "儿子",
        "channel": "sms",
        "address": "138 0000 9999",
        "may_know": ["emergencies", "check_ins"],
        "may_ask": "1",
        "consent": "上门时本人口头同意",
        "consented_on": "2026-10-08",
    }
    form.update(fields)
    return b.client.post(f"/retirees/{retiree_id}/family", data=form, follow_redirects=False)


def family_rows(engine: Engine, retiree_id: int) -> list[FamilyMember]:
    with Session(engine) as session:
        return list(
            session.scalars(select(FamilyMember).where(FamilyMember.retiree_id == retiree_id))
        )


def test_family_are_linked_with_the_consent_and_unlinked(world: World, browser, engine) -> None:
    b = browser("staff_a")
    assert link_family(b, world.retiree_a1.id).status_code == 303  # type: ignore[attr-defined]
    [member] = family_rows(engine, world.retiree_a1.id)
    assert (member.channel, member.address, member.may_ask) == ("sms", "+8613800009999", True)
    assert member.may_know == ["emergencies", "check_ins"]
    assert (member.consent, member.consented_on) == ("上门时本人口头同意", date(2026, 10, 8))
    assert member.recorded_by_id == world.staff_a.id
    [entry] = audits(engine, "add_family_member")
    assert entry.detail == {
        "family_member": member.id,
        "may_know": ["emergencies", "check_ins"],
        "may_ask": True,
    }  # what they may be told, never who they are
    page = b.get(f"/retirees/{world.retiree_a1.id}").text
    shown = page[page.index('id="family-list"') :].split("</ul>")[0]
    assert "李明" in shown and "紧急情况、问候没联系上" in shown and "可以替老人求助" in shown
    assert "2026-10-08 老人同意：上门时本人口头同意" in shown
    again = link_family(b, world.retiree_a1.id)
    assert again.status_code == 422 and "已经登记过了" in again.text  # type: ignore[attr-defined]
    removed = b.post(f"/retirees/{world.retiree_a1.id}/family/{member.id}/remove")
    assert removed.status_code == 303  # type: ignore[attr-defined]
    [member] = family_rows(engine, world.retiree_a1.id)
    assert member.active is False
    assert len(audits(engine, "remove_family_member")) == 1


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"consent": ""}, "没有老人的同意，不能登记家属"),
        ({"address": "12"}, "手机号不对"),
        ({"consented_on": "2026-10-10"}, "不能在今天以后"),
        ({"may_know": [], "may_ask": ""}, "至少选一项"),
        ({"name": ""}, "请写家属的姓名"),
    ],
)
def test_family_without_consent_or_a_way_to_reach_them_are_refused(
    world: World, browser, engine, fields: dict[str, object], message: str
) -> None:
    r = link_family(browser("staff_a"), world.retiree_a1.id, **fields)
    assert r.status_code == 422 and message in r.text  # type: ignore[attr-defined]
    assert family_rows(engine, world.retiree_a1.id) == []
    assert audits(engine, "add_family_member") == []


def test_only_staff_serving_her_may_link_her_family(world: World, browser, engine) -> None:
    assert link_family(browser("staff_b"), world.retiree_a1.id).status_code == 403  # type: ignore[attr-defined]
    assert link_family(browser("vol_a1"), world.retiree_a1.id).status_code == 403  # type: ignore[attr-defined]
    assert family_rows(engine, world.retiree_a1.id) == []
