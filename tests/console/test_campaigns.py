"""Campaigns in the console: starting a greeting and a visit round, the form's refusals, who may
see a campaign, "my visits" on a volunteer's phone, recording a visit, reassigning, stopping —
and the audit log of each showing of people."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from fastapi import FastAPI
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from config.categories import get_categories
from console.routes.registry import local_today
from storage import campaigns
from storage.models import (
    AuditEntry,
    Campaign,
    CampaignStatus,
    CampaignTarget,
    Direction,
    Message,
    MessageStatus,
    MessagingIdentity,
    OutboxItem,
    OutboxStatus,
    TargetStatus,
    Visit,
)
from tests.console.conftest import World

SHANGHAI = ZoneInfo("Asia/Shanghai")
TODAY = date(2026, 12, 7)
START = datetime(2030, 1, 2, 10, 0, tzinfo=SHANGHAI)  # the form's start_day and start_time


@pytest.fixture(autouse=True)
def fixed_today(console_app: FastAPI) -> None:
    console_app.dependency_overrides[local_today] = lambda: TODAY


def audits(engine: Engine, action: str) -> list[AuditEntry]:
    with Session(engine) as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.action == action)))


def only_campaign(engine: Engine) -> Campaign:
    with Session(engine) as session:
        return session.scalars(select(Campaign)).one()


def targets(engine: Engine) -> list[CampaignTarget]:
    with Session(engine) as session:
        return list(session.scalars(select(CampaignTarget).order_by(CampaignTarget.id)))


def start(b, **fields: object) -> object:
    form: dict[str, object] = {
        "kind": "greeting",
        "title": "元旦问候",
        "text_zh": "{name}您好，新年快乐！",
        "channels": ["wechat", "sms"],
        "per_minute": "60",
        "start_day": "2030-01-02",
        "start_time": "10:00",
    }
    form.update(fields)
    b.get("/campaigns")
    return b.post("/campaigns", form)  # type: ignore[arg-type]


def start_round(b, world: World) -> object:
    """A visit round of community A1's people, all given to volunteer 王芳, by year's end."""
    return start(
        b,
        kind="visits",
        title="四季度走访",
        text_zh="",
        communities=[str(world.units.community_a1.id)],
        due_on="2026-12-31",
        assignees=[str(world.volunteer_a1.id)],
    )


def test_a_greeting_is_started_sent_and_counted(world: World, browser, engine) -> None:
    b = browser("staff_a")
    r = start(b)
    assert r.status_code == 303, r.text  # type: ignore[attr-defined]
    campaign = only_campaign(engine)
    assert r.headers["location"].endswith(f"/campaigns/{campaign.id}")  # type: ignore[attr-defined]
    # staff A serves station A: the audience is A's communities, so 王秀英 and not retiree B1
    assert campaign.audience["communities"] == sorted(
        [world.units.community_a1.id, world.units.community_a2.id]
    )
    assert [t.retiree_id for t in targets(engine)] == [world.retiree_a1.id]
    assert [e.subject_id for e in audits(engine, "start_campaign")] == [campaign.id]
    # the worker's job sends it from its start (by SMS: she has no WeChat)
    with Session(engine) as session, session.begin():
        assert campaigns.run_due(session, START - timedelta(minutes=1), get_categories()) == 0
        assert campaigns.run_due(session, START, get_categories()) == 1
    with Session(engine) as session, session.begin():
        item = session.scalars(select(OutboxItem)).one()
        assert item.payload["text"] == "王秀英您好，新年快乐！" and item.channel == "sms"
        item.status = OutboxStatus.SENT
    page = b.get(f"/campaigns/{campaign.id}").text
    assert 'id="count-people">1<' in page and 'id="count-delivered">1<' in page
    assert "王秀英" in page
    assert [e.subject_id for e in audits(engine, "view_campaign")] == [campaign.id]
    listing = b.get("/campaigns").text
    assert "元旦问候" in listing and "送达 1" in listing


def test_the_forms_mistakes_are_named_and_nothing_starts(world: World, browser, engine) -> None:
    b = browser("staff_a")
    r = start(b, text_zh="", per_minute="0", communities=[str(world.units.community_b1.id)])
    assert r.status_code == 422  # type: ignore[attr-defined]
    page = r.text  # type: ignore[attr-defined]
    assert "请填写要发送的内容" in page and "只能选您负责的社区" in page
    assert "每分钟条数请填1到1000之间的数字" in page
    r = start(b, min_age="110")
    assert r.status_code == 422 and "按这些条件没有找到老人" in r.text  # type: ignore[attr-defined]
    r = start(b, kind="visits", due_on="2026-12-01")
    assert r.status_code == 422  # type: ignore[attr-defined]
    assert "走访截止日期" in r.text and "请选择走访的人" in r.text  # type: ignore[attr-defined]
    with Session(engine) as session:
        assert session.scalars(select(Campaign)).first() is None
        assert session.scalars(select(CampaignTarget)).first() is None


def test_only_staff_of_its_communities_see_a_campaign(world: World, browser, engine) -> None:
    assert start(browser("staff_a")).status_code == 303  # type: ignore[attr-defined]
    campaign = only_campaign(engine)
    other = browser("staff_b")
    assert other.get(f"/campaigns/{campaign.id}").status_code == 403
    assert "元旦问候" not in other.get("/campaigns").text
    assert browser("admin").get(f"/campaigns/{campaign.id}").status_code == 200
    volunteer = browser("vol_a1")
    assert volunteer.get("/campaigns").status_code == 403
    assert volunteer.get("/campaigns/999").status_code == 403  # volunteers: never, not even 404
    assert browser("staff_a").get("/campaigns/999").status_code == 404


def test_a_visit_round_reaches_the_volunteer_who_records_the_visit(
    world: World, browser, engine
) -> None:
    staff = browser("staff_a")
    r = start_round(staff, world)
    assert r.status_code == 303, r.text  # type: ignore[attr-defined]
    (target,) = targets(engine)
    assert (target.status, target.assignee_id) == (TargetStatus.ASSIGNED, world.volunteer_a1.id)

    volunteer = browser("vol_a1")
    mine = volunteer.get("/my-visits").text
    assert "王秀英" in mine and "和平路 8 号 3 单元 502" in mine and "+8613911112222" in mine
    assert "2026-12-31" in mine
    [seen] = audits(engine, "view_my_visits")
    assert seen.actor_id == world.volunteer_a1.id
    assert seen.detail == {"retirees": [world.retiree_a1.id]}
    # somebody else's visit is not theirs to record; a wrong date is named
    assert (
        browser("vol2_a1").post(f"/my-visits/{target.id}", {"visited_on": "2026-12-05"}).status_code
        == 403
    )  # type: ignore[attr-defined]
    wrong = volunteer.post(f"/my-visits/{target.id}", {"visited_on": "2027-01-01"})
    assert wrong.status_code == 422  # type: ignore[attr-defined]
    done = volunteer.post(
        f"/my-visits/{target.id}", {"visited_on": "2026-12-06", "notes": "身体不错"}
    )
    assert done.status_code == 303  # type: ignore[attr-defined]
    with Session(engine) as session:
        visit = session.scalars(select(Visit)).one()
        assert (visit.retiree_id, visit.visited_on, visit.staff_id) == (
            world.retiree_a1.id,
            date(2026, 12, 6),
            world.volunteer_a1.id,
        )
        assert session.scalars(select(CampaignTarget)).one().visit_id == visit.id
        assert session.scalars(select(Campaign)).one().status == CampaignStatus.DONE
    assert "现在没有分给您的走访" in volunteer.get("/my-visits").text
    again = volunteer.post(f"/my-visits/{target.id}", {"visited_on": "2026-12-06"})
    assert again.status_code == 409 and "这次走访已经记录过了" in again.text  # type: ignore[attr-defined]


def test_a_visit_is_reassigned_and_a_campaign_stopped(world: World, browser, engine) -> None:
    staff = browser("staff_a")
    start_round(staff, world)
    campaign = only_campaign(engine)
    (target,) = targets(engine)
    staff.get(f"/campaigns/{campaign.id}")
    moved = staff.post(
        f"/campaigns/{campaign.id}/targets/{target.id}/assign",
        {"assignee": str(world.volunteer2_a1.id)},
    )
    assert moved.status_code == 303  # type: ignore[attr-defined]
    assert targets(engine)[0].assignee_id == world.volunteer2_a1.id
    assert "王秀英" in browser("vol2_a1").get("/my-visits").text
    assert "王秀英" not in browser("vol_a1").get("/my-visits").text
    # staff B's people are not staff A's to give visits to
    refused = staff.post(
        f"/campaigns/{campaign.id}/targets/{target.id}/assign", {"assignee": str(world.staff_b.id)}
    )
    assert refused.status_code == 303 and targets(engine)[0].assignee_id == world.volunteer2_a1.id  # type: ignore[attr-defined]
    assert staff.post(f"/campaigns/{campaign.id}/cancel").status_code == 303  # type: ignore[attr-defined]
    assert only_campaign(engine).status == CampaignStatus.CANCELLED
    assert targets(engine)[0].status == TargetStatus.CANCELLED
    assert "现在没有分给您的走访" in browser("vol2_a1").get("/my-visits").text


def test_a_retiree_reached_on_wechat_gets_the_greeting_there(world: World, browser, engine) -> None:
    with Session(engine) as session, session.begin():
        session.add(
            MessagingIdentity(channel="wechat", address="o-wang", retiree_id=world.retiree_a1.id)
        )
    start(browser("staff_a"), text_en="Happy new year, {name}!")
    with Session(engine) as session, session.begin():
        campaigns.run_due(session, START, get_categories())
    with Session(engine) as session:
        item = session.scalars(select(OutboxItem)).one()
        assert (item.channel, item.address) == ("wechat", "o-wang")


def test_the_report_counts_delivery_answers_and_visits(world: World, browser, engine) -> None:
    """A greeting delivered to 王秀英 and answered the same day, and a visit round not made
    yet: the report's page and its export say the same."""
    staff = browser("staff_a")
    start(staff)
    start_round(staff, world)
    with Session(engine) as session, session.begin():
        campaigns.run_due(session, START, get_categories())
        item = session.scalars(select(OutboxItem)).one()
        item.status = OutboxStatus.SENT
        session.add(
            Message(
                channel="sms",
                direction=Direction.INBOUND,
                address="+8613911112222",
                text="谢谢你们",
                status=MessageStatus.RECEIVED,
                retiree_id=world.retiree_a1.id,
                created_at=START + timedelta(hours=2),
            )
        )
    today = datetime.now(SHANGHAI).date().isoformat()  # the campaigns were started now
    query = f"unit={world.units.center.id}&from={today}&to={today}"
    b = browser("admin")
    page = b.get(f"/reports?{query}").text
    section = page[page.index('id="campaign-figures"') :].split("</table>")[0]
    greeting = section[section.index('id="campaigns-greeting"') :].split("</tr>")[0]
    cells = greeting.replace("\n", "").replace(" ", "")
    # people, sent, delivered (of sent), failed, answered (of sent), visited
    assert "<td>1</td><td>1</td><td>1（100%）</td><td>0</td><td>1（100%）</td><td>—</td>" in cells
    visits = section[section.index('id="campaigns-visits"') :].split("</tr>")[0]
    assert "0（0%）" in visits
    body = b.get(f"/reports/export.csv?{query}").content.decode("utf-8-sig")
    rows = {line.split(",")[0]: line.split(",")[3:] for line in body.splitlines()[1:]}
    assert rows["campaigns.started"] == ["2", ""]
    assert rows["campaigns.greeting.delivered"] == ["1", "100.0"]
    assert rows["campaigns.greeting.answered"] == ["1", "100.0"]
    assert rows["campaigns.visits.people"] == ["1", ""]
    assert rows["campaigns.visits.visited"] == ["0", "0.0"]
    # staff B's station had no campaign
    other = f"unit={world.units.station_b.id}&from={today}&to={today}"
    assert "这段时间没有开始的活动" in browser("staff_b").get(f"/reports?{other}").text
