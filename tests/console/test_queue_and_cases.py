"""The queue and the case page: who sees what, and every action through the case rules."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from bot.channels import moved_announcer
from bot.runtime.configure import load_deployment
from config.settings import Settings
from console import bind_engine, mount_console
from storage.models import AuditEntry, Case, CaseEvent, CaseStatus, OutboxItem, Role, Unit
from tests.console.conftest import Browser, World


def _case(engine: Engine, number: str) -> Case:
    with Session(engine) as session:
        return session.scalars(select(Case).where(Case.number == number)).one()


def _events(engine: Engine, case: Case) -> list[str]:
    with Session(engine) as session:
        return list(
            session.scalars(
                select(CaseEvent.action).where(CaseEvent.case_id == case.id).order_by(CaseEvent.id)
            )
        )


def test_a_volunteer_queue_holds_only_volunteer_cases_of_their_community(
    world: World, browser
) -> None:
    page = browser("vol_a1").get("/queue").text
    assert world.help_a1.number in page
    assert world.complaint_a1.number not in page  # staff only
    assert world.help_b1.number not in page  # another station's community
    assert "+8613911112222" not in page and "和平路" not in page  # no contact details in a list


def test_staff_see_their_station_and_an_admin_the_whole_centre(world: World, browser) -> None:
    staff_a = browser("staff_a").get("/queue").text
    assert world.help_a1.number in staff_a and world.complaint_a1.number in staff_a
    assert world.help_b1.number not in staff_a
    admin = browser("admin").get("/queue").text
    assert all(c.number in admin for c in (world.help_a1, world.complaint_a1, world.help_b1))


def test_queue_filters_and_live_rows(world: World, browser) -> None:
    b = browser("staff_a")
    only_complaints = b.get("/queue?category=complaint").text
    assert world.complaint_a1.number in only_complaints
    assert world.help_a1.number not in only_complaints
    rows = b.get(f"/queue/rows?unit={world.units.community_a1.id}")
    assert rows.status_code == 200 and 'id="queue-rows"' in rows.text
    assert "<html" not in rows.text  # a fragment for htmx to swap in
    assert world.help_a1.number in rows.text
    assert "共 1 件" in rows.text  # the complaint waits in the station's queue, not A1's
    nothing = b.get(f"/queue/rows?unit={world.units.community_a2.id}").text
    assert "没有符合条件的个案" in nothing


def test_a_volunteer_cannot_open_a_complaint_or_another_communitys_case(
    world: World, browser
) -> None:
    b = browser("vol_a1")
    complaint = b.get(f"/cases/{world.complaint_a1.number}")
    assert complaint.status_code == 403 and "楼道灯" not in complaint.text
    other = b.get(f"/cases/{world.help_b1.number}")
    assert other.status_code == 403 and "修水龙头" not in other.text
    assert b.get("/cases/2026-999999").status_code == 404


def test_staff_of_one_station_cannot_see_anothers_case(world: World, browser) -> None:
    b = browser("staff_b")
    assert b.get(f"/cases/{world.help_a1.number}").status_code == 403
    refused = b.post(f"/cases/{world.help_a1.number}/claim")
    assert refused.status_code == 303 and refused.headers["location"] == "/queue"


def test_a_volunteer_sees_the_phone_only_after_claiming_and_never_health_notes(
    world: World, browser, engine: Engine
) -> None:
    b = browser("vol_a1")
    before = b.get(f"/cases/{world.help_a1.number}").text
    assert "帮忙买菜" in before
    assert "+8613911112222" not in before and "和平路" not in before
    assert "领取个案后显示" in before
    claimed = b.post(f"/cases/{world.help_a1.number}/claim")
    assert claimed.headers["location"] == f"/cases/{world.help_a1.number}"
    after = b.get(f"/cases/{world.help_a1.number}").text
    assert "+8613911112222" in after and "和平路 8 号" in after and "+8613800009999" in after
    assert "高血压" not in after
    assert "已领取个案" in after  # the notice
    with Session(engine) as session:
        views = session.scalars(
            select(AuditEntry).where(
                AuditEntry.action == "view_retiree",
                AuditEntry.subject_id == world.retiree_a1.id,
                AuditEntry.actor_id == world.volunteer_a1.id,
            )
        ).all()
    assert [v.detail["contact"] for v in views] == [False, True]
    assert _case(engine, world.help_a1.number).assignee_id == world.volunteer_a1.id


def test_staff_see_health_notes_and_the_view_is_audited(
    world: World, browser, engine: Engine
) -> None:
    page = browser("staff_a").get(f"/cases/{world.complaint_a1.number}").text
    assert "高血压" in page and "+8613911112222" in page and "楼道灯坏了" in page
    with Session(engine) as session:
        entry = session.scalars(
            select(AuditEntry).where(
                AuditEntry.action == "view_retiree", AuditEntry.actor_id == world.staff_a.id
            )
        ).one()
    assert entry.detail == {"case": world.complaint_a1.number, "contact": True, "notes": True}


def test_two_volunteers_claim_the_same_case_and_the_second_is_told(
    world: World, browser, engine: Engine
) -> None:
    first, second = browser("vol_a1"), browser("vol2_a1")
    second.get(f"/cases/{world.help_a1.number}")  # both have the page open
    first.post(f"/cases/{world.help_a1.number}/claim")
    late = second.post(f"/cases/{world.help_a1.number}/claim")
    assert late.status_code == 303
    # The case is no longer open, so a volunteer who does not hold it may not see it.
    assert late.headers["location"] in ("/queue", f"/cases/{world.help_a1.number}")
    assert "不能做这一步" in second.get("/queue").text or "没有权限" in second.get("/queue").text
    assert _case(engine, world.help_a1.number).assignee_id == world.volunteer_a1.id


def test_claim_next_takes_the_best_waiting_case(world: World, browser, engine: Engine) -> None:
    b = browser("vol_a1")
    response = b.post("/queue/claim-next")
    assert response.headers["location"] == f"/cases/{world.help_a1.number}"
    assert _case(engine, world.help_a1.number).status == CaseStatus.CLAIMED
    again = b.post("/queue/claim-next")
    assert again.headers["location"] == "/queue"
    assert "现在没有等待领取的个案" in b.get("/queue").text


def test_staff_note_resolve_close_and_reopen_a_complaint(
    world: World, browser, engine: Engine
) -> None:
    b = browser("staff_a")
    number = world.complaint_a1.number
    b.post(f"/cases/{number}/claim")
    b.post(f"/cases/{number}/note", {"text": "已联系物业"})
    assert b.post(f"/cases/{number}/resolve", {"outcome": ""}).status_code == 422
    b.post(f"/cases/{number}/resolve", {"outcome": "物业已换灯"})
    assert _case(engine, number).status == CaseStatus.RESOLVED
    b.post(f"/cases/{number}/close", {"text": "老人满意"})
    assert _case(engine, number).status == CaseStatus.CLOSED
    b.post(f"/cases/{number}/reopen", {"reason": "灯又坏了"})
    case = _case(engine, number)
    assert case.status == CaseStatus.CLAIMED and case.assignee_id == world.staff_a.id
    assert _events(engine, case) == ["file", "claim", "note", "resolve", "close", "reopen"]
    page = b.get(f"/cases/{number}").text
    assert "已联系物业" in page and "物业已换灯" in page and "灯又坏了" in page


def test_a_volunteer_resolves_their_case_but_cannot_close_it(
    world: World, browser, engine: Engine
) -> None:
    b = browser("vol_a1")
    number = world.help_a1.number
    b.post(f"/cases/{number}/claim")
    b.post(f"/cases/{number}/resolve", {"outcome": "菜已送到"})
    assert _case(engine, number).status == CaseStatus.RESOLVED
    page = b.get(f"/cases/{number}").text
    assert 'id="action-close"' not in page
    b.post(f"/cases/{number}/close")
    assert _case(engine, number).status == CaseStatus.RESOLVED
    assert "没有权限" in b.get("/queue").text


def test_transfer_to_another_unit_keeps_the_first_contact_owner(
    world: World, browser, engine: Engine
) -> None:
    b = browser("staff_a")
    number = world.complaint_a1.number
    b.post(f"/cases/{number}/claim")
    assert (
        b.post(
            f"/cases/{number}/transfer", {"to_unit": str(world.units.station_b.id), "reason": ""}
        ).status_code
        == 422
    )
    b.post(
        f"/cases/{number}/transfer",
        {"to_unit": str(world.units.station_b.id), "reason": "属西街道管辖"},
    )
    case = _case(engine, number)
    assert case.unit_id == world.units.station_b.id and case.status == CaseStatus.OPEN
    assert case.first_contact_owner_id == world.staff_a.id
    # Now it is station B's, and staff B see it; staff A took it first and stay accountable
    # for it (首问负责): she still opens it and follows it up with notes.
    assert browser("staff_b").get(f"/cases/{number}").status_code == 200
    assert b.get(f"/cases/{number}").status_code == 200
    noted = b.post(f"/cases/{number}/note", {"text": "已电话告知老人转到西街道"})
    assert noted.status_code == 303 and noted.headers["location"] == f"/cases/{number}"
    assert "已电话告知老人转到西街道" in b.get(f"/cases/{number}").text
    # Anyone else outside station B is still refused, in their own language.
    refused = browser("vol_a1").get(f"/cases/{number}")
    assert refused.status_code == 403 and "您没有权限" in refused.text
    assert not re.search(r"[A-Za-z]{4,} (case|unit|volunteer)", refused.text.split("<main")[-1])


def test_a_case_transferred_to_another_unit_is_posted_to_that_units_telegram_group(
    world: World, engine: Engine, tmp_path: Path
) -> None:
    group_b1 = -100900
    with Session(engine) as session, session.begin():
        session.get(Unit, world.units.community_b1.id).telegram_chat_id = group_b1
    settings = Settings(
        database_url=engine.url.render_as_string(hide_password=False),
        data_dir=tmp_path,
        secret_key="test-secret-key-test-secret-key",
        telegram_bot_token="123456:ABC-test",  # a deployment with a bot
        _env_file=None,
    )
    app = FastAPI()
    deployment = load_deployment(settings)
    mount_console(app, deployment, on_moved=moved_announcer(deployment))
    bind_engine(app, engine)
    number = world.help_a1.number
    with TestClient(app) as client:
        b = Browser(client)
        b.sign_in("staff_a")
        b.get("/queue")  # the signed-in session's form token
        moved = b.post(
            f"/cases/{number}/transfer",
            {"to_unit": str(world.units.community_b1.id), "reason": "老人搬到女儿家住了"},
        )
        assert moved.status_code == 303
        # To a person only, the case stays in B1's queue: nothing more is posted.
        b.post(f"/cases/{number}/transfer", {"to_staff": str(world.staff_b.id), "reason": "转办"})
    assert _case(engine, number).unit_id == world.units.community_b1.id
    with Session(engine) as session:
        posts = session.scalars(select(OutboxItem).where(OutboxItem.channel == "telegram")).all()
    assert [(p.address, p.idempotency_key) for p in posts] == [
        (str(group_b1), f"{number}:new_case:telegram:{group_b1}")
    ]
    text = posts[0].payload["text"]
    assert text.startswith(f"↪️ 转来的案件 {number}：现在由") and "生活帮扶" in text
    assert "王秀英" not in text and "帮忙买菜" not in text  # a group sees no personal data
    assert posts[0].payload["choices"] == [[f"claim:{number}", "认领"]]


def test_cancel_needs_a_reason_and_staff(world: World, browser, engine: Engine) -> None:
    volunteer = browser("vol_a1")
    volunteer.post(f"/cases/{world.help_a1.number}/cancel", {"reason": "老人说不用了"})
    assert _case(engine, world.help_a1.number).status == CaseStatus.OPEN
    staff = browser("staff_a")
    staff.post(f"/cases/{world.help_a1.number}/cancel", {"reason": "老人说不用了"})
    assert _case(engine, world.help_a1.number).status == CaseStatus.CANCELLED


def test_an_action_without_the_csrf_token_changes_nothing(
    world: World, browser, engine: Engine
) -> None:
    b = browser("staff_a")
    response = b.post(f"/cases/{world.help_a1.number}/claim", csrf=False)
    assert response.status_code == 403
    assert _case(engine, world.help_a1.number).status == CaseStatus.OPEN
    htmx = b.client.post(
        f"/cases/{world.help_a1.number}/claim",
        headers={"HX-Request": "true", "X-CSRF-Token": b.csrf},
    )
    assert htmx.status_code == 204 and htmx.headers["HX-Redirect"].endswith(world.help_a1.number)


def _replies(engine: Engine, case: Case) -> list[OutboxItem]:
    with Session(engine) as session:
        return list(
            session.scalars(
                select(OutboxItem).where(
                    OutboxItem.case_id == case.id,
                    OutboxItem.payload["kind"].as_string() == "staff_reply",
                )
            )
        )


def test_staff_reply_to_the_retiree_through_the_outbox(
    world: World, browser, engine: Engine
) -> None:
    b = browser("staff_a")
    number = world.complaint_a1.number
    b.post(f"/cases/{number}/claim")
    b.post(f"/cases/{number}/reply", {"text": "王阿姨您好，物业明天上午来修灯。"})
    (item,) = _replies(engine, world.complaint_a1)
    assert item.channel == "sms" and item.address == "+8613911112222"
    assert item.payload["text"] == "王阿姨您好，物业明天上午来修灯。"
    page = b.get(f"/cases/{number}").text
    assert "已排队发送" in page and "物业明天上午来修灯" in page  # the notice and the timeline
    assert b.post(f"/cases/{number}/reply", {"text": ""}).status_code == 422
    assert len(_replies(engine, world.complaint_a1)) == 1


def test_a_volunteer_replies_only_on_a_case_they_hold(
    world: World, browser, engine: Engine
) -> None:
    other = browser("vol2_a1")
    other.post(f"/cases/{world.help_a1.number}/reply", {"text": "你好"})
    assert _replies(engine, world.help_a1) == []
    holder = browser("vol_a1")
    holder.post(f"/cases/{world.help_a1.number}/claim")
    holder.post(f"/cases/{world.help_a1.number}/reply", {"text": "阿姨，我下午三点到。"})
    assert [i.payload["text"] for i in _replies(engine, world.help_a1)] == ["阿姨，我下午三点到。"]


def test_a_reply_nobody_can_receive_is_refused_with_the_reason(
    world: World, browser, engine: Engine
) -> None:
    with Session(engine) as session, session.begin():
        session.get(Case, world.help_b1.id).channel = "web"
    b = browser("staff_b")
    b.post(f"/cases/{world.help_b1.number}/reply", {"text": "您好"})
    assert _replies(engine, world.help_b1) == []
    assert "网页接口" in b.get(f"/cases/{world.help_b1.number}").text


def _labels_in_source() -> set[str]:
    """The actor labels our code writes on timelines: Actor.system("x") and actor_label="x"."""
    root = Path(__file__).resolve().parents[2]
    found: set[str] = set()
    for package in ("bot", "console", "handlers", "storage"):
        for path in (root / package).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            found |= set(re.findall(r'Actor\.system\("([a-z_]+)"\)', text))
            found |= set(re.findall(r'actor_label="([a-z_]+)"', text))
    return found


def test_the_timeline_never_shows_a_raw_key() -> None:
    """Every kind of timeline event, and everyone who writes on a timeline (people's roles,
    the system's parts, the channels a message came by), has a name in both languages."""
    from bot.channels.calls import CHANNEL as VOICE
    from bot.channels.telegram.groups import VIA as TELEGRAM
    from bot.channels.twilio.voice.wire import CHANNEL as PHONE
    from bot.channels.web_api import CHANNEL as WEB
    from bot.cli.units import VIA as CLI
    from config.i18n import LANGUAGES
    from storage.alert_chain import LABEL as CHAIN
    from storage.outbox import WORKER_LABEL
    from storage.timeline import ACTIONS

    catalogs = load_deployment(Settings(_env_file=None)).catalogs
    who = {r.value for r in Role} | {"system", "sms", "whatsapp", TELEGRAM, CLI, CHAIN}
    who |= {WORKER_LABEL, PHONE, VOICE, WEB} | _labels_in_source()
    assert len(who) > 12 and len(ACTIONS) > 12
    missing = [
        f"{lang}: {key}"
        for lang in LANGUAGES
        for key in [f"console.events.{a}" for a in ACTIONS] + [f"console.roles.{w}" for w in who]
        if key not in catalogs.texts.get(lang, {})
    ]
    assert missing == []


def test_a_missing_field_is_named_in_the_persons_language(world: World, browser) -> None:
    """An empty note or reason: the page says which field, in Chinese, never the developer's
    English sentence."""
    b = browser("staff_a")
    number = world.help_a1.number
    b.post(f"/cases/{number}/claim")
    for action, field, says in (
        ("note", "text", "请填写记录内容。"),
        ("resolve", "outcome", "请填写办理结果。"),
    ):
        refused = b.post(f"/cases/{number}/{action}", {field: "  "})
        page = b.get(refused.headers["location"]).text
        assert says in page
        assert "cannot be empty" not in page and "needs its outcome" not in page
