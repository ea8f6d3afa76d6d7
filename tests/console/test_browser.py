"""The console in a real browser: Playwright driving Debian's Chromium (headless, from
/usr/bin/chromium: Playwright cannot download its own browser here; `.ci/run` installs it).

Skipped where there is no Chromium, unless HOTLINE_REQUIRE_BROWSER is set (CI sets it, so a
missing browser fails there instead of passing silently). Screenshots are saved under test-artifacts/screenshots/ (HOTLINE_TEST_ARTIFACTS to change it).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from playwright.sync_api import Browser, Page, expect, sync_playwright
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from twilio.request_validator import RequestValidator

from bot.channels.twilio import messaging as twilio_messaging
from bot.runtime.app import create_app
from bot.runtime.configure import load_deployment
from bot.runtime.periodic import run_all_once
from config.settings import Settings
from storage import campaigns
from storage.models import (
    CampaignKind,
    Case,
    CaseStatus,
    FollowUp,
    FollowUpStatus,
    OutboxItem,
    Staff,
    Visit,
)
from storage.site import environment_site
from storage.types import utcnow
from tests.console.conftest import PASSWORD, World
from tests.fakes.caller import serve

CHROMIUM = os.environ.get("HOTLINE_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(
    os.environ.get("HOTLINE_TEST_ARTIFACTS", Path(__file__).parents[2] / "test-artifacts")
)
PHONE = {"width": 390, "height": 844}  # a common phone, in CSS pixels
DESK = {"width": 1280, "height": 900}

pytestmark = [
    pytest.mark.parametrize("db_url", ["sqlite"], indirect=True),
    pytest.mark.skipif(
        not Path(CHROMIUM).exists() and not os.environ.get("HOTLINE_REQUIRE_BROWSER"),
        reason=f"no Chromium at {CHROMIUM} (Debian package chromium; .ci/run installs it)",
    ),
]


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def site(console_app: FastAPI) -> Iterator[str]:
    with serve(console_app) as url:
        yield url


def shot(page: Page, name: str) -> None:
    folder = ARTIFACTS / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def sign_in(page: Page, site: str, username: str) -> None:
    page.goto(site + "/")
    page.get_by_label("用户名").fill(username)
    page.get_by_label("密码").fill(PASSWORD)
    page.get_by_role("button", name="登录").click()
    expect(page).to_have_url(site + "/queue")


def _case(engine: Engine, number: str) -> Case:
    with Session(engine) as session:
        return session.scalars(select(Case).where(Case.number == number)).one()


def test_a_volunteer_on_a_phone_claims_a_help_request_and_sees_the_phone_number(
    world: World, site: str, chromium: Browser, engine: Engine
) -> None:
    context = chromium.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True)
    page = context.new_page()
    sign_in(page, site, "vol_a1")
    row = page.locator(f"#case-{world.help_a1.number}")
    expect(row).to_contain_text("帮忙买菜")
    expect(page.locator(f"#case-{world.complaint_a1.number}")).to_have_count(0)
    # On a phone the queue is a list of cards, not a table wider than the screen.
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    shot(page, "volunteer-phone-queue")
    row.get_by_role("button", name="领取").click()
    expect(page).to_have_url(f"{site}/cases/{world.help_a1.number}")
    expect(page.locator("#retiree-phones")).to_contain_text("+8613911112222")
    expect(page.get_by_text("高血压")).to_have_count(0)
    shot(page, "volunteer-phone-claimed")
    assert _case(engine, world.help_a1.number).assignee_id == world.volunteer_a1.id
    context.close()


def test_a_volunteer_on_a_phone_records_a_visit_of_the_round(
    world: World, site: str, chromium: Browser, engine: Engine
) -> None:
    """王芳 was given 王秀英's visit of this quarter's round: on her phone she finds the
    address, and records the visit with a note."""
    with Session(engine, expire_on_commit=False) as session, session.begin():
        staff = session.get(Staff, world.staff_a.id)
        assert staff is not None
        round_ = campaigns.NewCampaign(
            kind=CampaignKind.VISITS,
            title="四季度走访",
            audience=campaigns.Audience(communities=(world.units.community_a1.id,)),
            assignees=(world.volunteer_a1.id,),
            due_on=date.today() + timedelta(days=30),
        )
        campaigns.start(session, round_, by=staff, now=utcnow())
    context = chromium.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True)
    page = context.new_page()
    sign_in(page, site, "vol_a1")
    page.get_by_role("link", name="我的走访").click()
    card = page.locator("#my-visit-rows li").first
    expect(card).to_contain_text("王秀英")
    expect(card).to_contain_text("和平路 8 号 3 单元 502")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    shot(page, "volunteer-phone-my-visits")
    card.get_by_label("走访情况").fill("精神很好，腿脚还是不方便")
    card.get_by_role("button", name="登记走访").click()
    expect(page.locator("#no-visits")).to_be_visible()
    with Session(engine) as session:
        visit = session.scalars(select(Visit)).one()
        assert (visit.retiree_id, visit.staff_id) == (world.retiree_a1.id, world.volunteer_a1.id)
        assert visit.notes == "精神很好，腿脚还是不方便"
    context.close()


def test_staff_resolve_and_close_a_complaint(
    world: World, site: str, chromium: Browser, engine: Engine
) -> None:
    context = chromium.new_context(viewport=DESK)
    page = context.new_page()
    sign_in(page, site, "staff_a")
    page.get_by_role("link", name=world.complaint_a1.number).click()
    expect(page.locator("#retiree-card")).to_contain_text("高血压")
    page.locator("#action-claim").click()
    expect(page.locator("#case-status")).to_have_text("处理中")
    page.get_by_label("办理结果").fill("已请物业更换楼道灯")
    page.locator("#action-resolve").click()
    expect(page.locator("#case-status")).to_have_text("已办结")
    page.locator("#action-close").click()
    expect(page.locator("#case-status")).to_have_text("已结案")
    expect(page.locator("#timeline")).to_contain_text("已请物业更换楼道灯")
    shot(page, "staff-complaint-closed")
    assert _case(engine, world.complaint_a1.number).status == CaseStatus.CLOSED
    context.close()


def test_the_queue_refreshes_itself(world: World, site: str, chromium: Browser) -> None:
    """htmx polls the rows: a case claimed elsewhere leaves the open queue without a reload."""
    context = chromium.new_context(viewport=DESK)
    page = context.new_page()
    sign_in(page, site, "staff_a")
    row = page.locator(f"#case-{world.help_a1.number}")
    expect(row).to_be_visible()
    other = chromium.new_context(viewport=PHONE)
    volunteer = other.new_page()
    sign_in(volunteer, site, "vol_a1")
    volunteer.locator(f"#case-{world.help_a1.number}").get_by_role("button", name="领取").click()
    # What the 20-second poll does, now (no 20-second wait in a test): the same request, swapped in.
    page.evaluate(
        "htmx.ajax('GET', document.querySelector('#queue-rows').getAttribute('hx-get'),"
        " {target: '#queue-rows', swap: 'outerHTML'})"
    )
    expect(row).to_have_count(0)
    other.close()
    context.close()


# -- the whole app: the console and the retiree's channel -------------------------------------------

PUBLIC_URL = "https://hotline.example.org"  # what Twilio signs (a proxy in front of the app)
TWILIO_TOKEN = "browser-test-twilio-token"


@pytest.fixture
def hotline_site(engine: Engine, trained_nlu_dir: Path, tmp_path: Path) -> Iterator[str]:
    """The whole app (console and SMS webhook) on a real port, on the test database."""
    shutil.copytree(trained_nlu_dir / "nlu-cache", tmp_path / "nlu-cache")
    settings = Settings(
        database_url=engine.url.render_as_string(hide_password=False),
        data_dir=tmp_path,
        secret_key="test-secret-key-test-secret-key",
        public_url=PUBLIC_URL,
        twilio_account_sid="AC" + "2" * 32,
        twilio_auth_token=TWILIO_TOKEN,
        twilio_from_number="+15005550006",
        run_worker=False,
        _env_file=None,
    )
    with serve(create_app(settings, engine)) as url:
        yield url


def sms_from(site: str, sender: str, body: str, sid: str) -> httpx.Response:
    """An SMS as Twilio posts it: signed over the public URL, sent to the app."""
    params = {
        "AccountSid": "AC" + "2" * 32,
        "MessageSid": sid,
        "From": sender,
        "To": "+15005550006",
        "Body": body,
        "NumMedia": "0",
    }
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(
        PUBLIC_URL + "/twilio/messaging", params
    )
    return httpx.post(
        site + "/twilio/messaging", data=params, headers={"X-Twilio-Signature": signature}
    )


def test_a_closed_complaint_is_reopened_by_the_retirees_follow_up_answer(
    world: World,
    hotline_site: str,
    chromium: Browser,
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Staff reply, resolve and close a complaint in the console; the follow-up question goes
    out when due (in the daytime); the retiree answers "3" (not done) by SMS, and the case page
    shows the case back with its owner and the answer on the timeline."""
    site, number = hotline_site, world.complaint_a1.number
    context = chromium.new_context(viewport=DESK)
    page = context.new_page()
    sign_in(page, site, "staff_a")
    page.get_by_role("link", name=number).click()
    page.locator("#action-claim").click()
    expect(page.locator("#case-status")).to_have_text("处理中")
    page.locator("#reply-text").fill("您好，已经联系物业，这两天来修。")
    page.locator("#action-reply").click()
    expect(page.locator("#timeline")).to_contain_text("已经联系物业")
    page.get_by_label("办理结果").fill("已请物业更换楼道灯")
    page.locator("#action-resolve").click()
    expect(page.locator("#case-status")).to_have_text("已办结")
    page.locator("#action-close").click()
    expect(page.locator("#case-status")).to_have_text("已结案")

    resolved_at = _case(engine, number).resolved_at
    assert resolved_at is not None
    with Session(engine) as session:
        round_ = session.scalars(
            select(FollowUp).join(Case, Case.id == FollowUp.case_id).where(Case.number == number)
        ).one()
        assert round_.status == FollowUpStatus.PENDING  # the console's resolve started it
    here = environment_site()  # (``site`` is the app's address in this test)
    asked_at = here.care.quiet_hours.after(resolved_at + timedelta(hours=3), here.tz)
    assert (
        run_all_once(engine, load_deployment(Settings(_env_file=None)), now=asked_at)["follow_ups"]
        == 1
    )
    with Session(engine) as session:
        question = session.scalars(
            select(OutboxItem).where(OutboxItem.payload["kind"].as_string() == "follow_up")
        ).one()
        assert (question.channel, question.address) == ("sms", "+8613911112222")

    # The retiree answers 20 minutes after the question (the webhook's clock, moved on to then).
    monkeypatch.setattr(twilio_messaging, "utcnow", lambda: asked_at + timedelta(minutes=20))
    answered = sms_from(site, "+8613911112222", "3", "SM" + "b" * 32)
    assert answered.status_code == 200, answered.text

    page.reload()
    expect(page.locator("#case-status")).to_have_text("处理中")
    timeline = page.locator("#timeline")
    expect(timeline).to_contain_text("回访提问")
    expect(timeline).to_contain_text("回访回答：还没办好")
    expect(timeline).to_contain_text("回访：老人说还没办好")
    expect(page.locator("#action-resolve")).to_be_visible()  # back to work on it
    events = timeline.locator("li.event strong")
    expect(events).to_have_text(
        ["登记", "领取", "回复老人", "办结", "结案", "回访提问", "回访回答", "重新打开"]
    )
    shot(page, "staff-complaint-reopened-by-follow-up")
    case = _case(engine, number)
    assert case.status == CaseStatus.CLAIMED and case.assignee_id == world.staff_a.id
    context.close()


def test_staff_cannot_record_a_follow_up_answer(world: World, console_app: FastAPI) -> None:
    """Only the retiree answers: the console and its API have no route that takes an answer."""
    paths = [getattr(route, "path", "") for route in console_app.routes]
    assert paths and not [p for p in paths if "follow" in p.lower()]
