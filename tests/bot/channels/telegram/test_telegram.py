"""Telegram: the app's webhook and the polling mode against a fake Bot API on 127.0.0.1, driven
through the real python-telegram-bot; retirees link their account and file requests with
buttons, volunteers and staff claim, list and close cases."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, delete, func, select
from sqlalchemy.exc import OperationalError

from bot.channels.telegram import application as telegram_application
from bot.channels.telegram import common as telegram_channel
from bot.channels.telegram.application import poll
from bot.channels.telegram.common import buttons
from bot.channels.telegram.posts import announce_new_cases, post_new_case
from bot.channels.telegram.retirees import telegram_phone
from bot.channels.telegram.sender import TelegramSender
from bot.channels.telegram.staff import keep_posts_up, record_sent
from bot.conversation.messages import Choice
from bot.runtime.app import create_app
from bot.runtime.configure import load_deployment
from bot.runtime.worker import OutboxWorker
from config.categories import load_categories
from config.i18n import load_catalogs
from config.settings import CONFIG_DIR, Settings
from storage import actions
from storage.db import transaction
from storage.models import (
    AuditEntry,
    Case,
    CaseEvent,
    CaseStatus,
    CheckIn,
    CheckInStatus,
    Message,
    MessagingIdentity,
    OutboxItem,
    Role,
    Staff,
)
from storage.permissions import Actor
from tests.factories import make_retiree, make_staff, make_unit_tree
from tests.fakes.telegram_api import FakeTelegramApi, bound_socket, serve_in_thread

TOKEN = "123:ABC"
SECRET = "webhook-s3cret_42"
PERSON = 555  # a retiree's Telegram user id
PHONE = "+8613912345678"
VOLUNTEER_1, VOLUNTEER_2, STAFF_A, VOLUNTEER_B = 701, 702, 801, 703


@pytest.fixture
def fake() -> Iterator[FakeTelegramApi]:
    with FakeTelegramApi(token=TOKEN) as api:
        yield api


def settings_for(
    db_url: str, data_dir: Path, trained_nlu_dir: Path, fake: FakeTelegramApi, **kw: Any
) -> Settings:
    if not (data_dir / "nlu-cache").exists():
        shutil.copytree(trained_nlu_dir / "nlu-cache", data_dir / "nlu-cache")
    values: dict[str, Any] = {
        "database_url": db_url,
        "data_dir": data_dir,
        "telegram_bot_token": TOKEN,
        "telegram_webhook_secret": SECRET,
        "telegram_api_url": fake.url,
        "run_worker": False,  # the outbox is looked at here, not sent
        "_env_file": None,
    }
    values.update(kw)
    return Settings(**values)


@contextmanager
def running_app(
    db_url: str, engine: Engine, trained_nlu_dir: Path, tmp_path: Path, fake: FakeTelegramApi
) -> Iterator[str]:
    """The real app under uvicorn on 127.0.0.1; it sets its webhook at the fake on start-up."""
    sock, url = bound_socket()
    settings = settings_for(db_url, tmp_path, trained_nlu_dir, fake, public_url=url)
    with serve_in_thread(create_app(settings, engine), sock=sock) as base:
        yield base


def sent_to(fake: FakeTelegramApi, chat_id: int) -> list[dict[str, Any]]:
    return [c for c in fake.calls_to("sendMessage") if c["chat_id"] == chat_id]


def texts_to(fake: FakeTelegramApi, chat_id: int) -> list[str]:
    return [c["text"] for c in sent_to(fake, chat_id)]


def keyboard(call: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, callback_data) of an inline keyboard, one button per row."""
    rows = call["reply_markup"]["inline_keyboard"]
    assert all(len(row) == 1 for row in rows)
    return [(row[0]["text"], row[0]["callback_data"]) for row in rows]


def ok(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text


# -- retirees ----------------------------------------------------------------------------------


def test_start_links_the_account_by_the_shared_contact_and_a_request_is_filed_with_buttons(
    db_url: str, engine: Engine, trained_nlu_dir: Path, tmp_path: Path, fake: FakeTelegramApi
) -> None:
    with transaction(engine) as session:
        tree = make_unit_tree(session)
        make_retiree(session, tree.community_a1, name="王秀英", phone=PHONE, age=75)
    with running_app(db_url, engine, trained_nlu_dir, tmp_path, fake) as base:
        assert fake.webhook == {
            "url": f"{base}/telegram/webhook",
            "secret_token": SECRET,
            "allowed_updates": ["message", "callback_query"],
        }
        ok(fake.push(fake.text_update(PERSON, "/start")))
        ask = sent_to(fake, PERSON)[-1]
        assert "分享我的电话号码" in ask["text"]
        assert ask["reply_markup"]["keyboard"] == [
            [{"text": "📞 分享我的电话号码", "request_contact": True}]
        ]
        # Telegram gives the number without "+"
        ok(fake.push(fake.contact_update(PERSON, "8613912345678", contact_user_id=PERSON)))
        linked = sent_to(fake, PERSON)[-1]
        assert linked["text"].startswith("王秀英您好，找到您的登记信息了")
        assert linked["reply_markup"] == {"remove_keyboard": True}

        ok(fake.push(fake.text_update(PERSON, "我想报销药费，门诊的，三百块")))
        question = sent_to(fake, PERSON)[-1]
        assert "票据" in question["text"]
        assert keyboard(question) == [("上门来取", "collect"), ("自己送去", "bring")]

        ok(fake.push(fake.callback_update(PERSON, "collect", message=fake.sent_message(PERSON))))
        assert len(fake.calls_to("answerCallbackQuery")) == 1
        pressed = fake.calls_to("editMessageText")[-1]
        assert pressed["text"] == question["text"] + "\n\n✅ 上门来取"
        assert "reply_markup" not in pressed  # the buttons of an answered question go
        confirm = sent_to(fake, PERSON)[-1]
        assert "对吗" in confirm["text"]
        assert [data for _, data in keyboard(confirm)] == ["yes", "no"]

        before = len(sent_to(fake, PERSON))
        ok(fake.push(fake.callback_update(PERSON, "yes", message=fake.sent_message(PERSON))))
        assert len(fake.calls_to("answerCallbackQuery")) == 2
        filed = texts_to(fake, PERSON)[before:]
        assert "2026-000001" in filed[0] and filed[-1] == "请问还有别的事吗？"
    with transaction(engine) as session:
        identity = session.scalars(select(MessagingIdentity)).one()
        assert (identity.channel, identity.address) == ("telegram", str(PERSON))
        assert identity.retiree.name == "王秀英"
        audit = session.scalars(select(AuditEntry).where(AuditEntry.action == "link_messaging"))
        entry = audit.one()
        assert (entry.subject_id, entry.actor_label) == (identity.retiree_id, "retiree")
        assert entry.detail == {"channel": "telegram", "by": "shared_contact"}
        case = session.scalars(select(Case)).one()
        assert (case.number, case.channel) == ("2026-000001", "telegram")
        assert case.retiree_id == identity.retiree_id


def test_only_the_senders_own_contact_links_an_account(
    db_url: str, engine: Engine, trained_nlu_dir: Path, tmp_path: Path, fake: FakeTelegramApi
) -> None:
    with transaction(engine) as session:
        tree = make_unit_tree(session)
        make_retiree(session, tree.community_a1, name="王秀英", phone=PHONE)
    with running_app(db_url, engine, trained_nlu_dir, tmp_path, fake):
        someone_else = fake.contact_update(PERSON, PHONE, contact_user_id=999)
        from_address_book = fake.contact_update(PERSON, PHONE, contact_user_id=None)
        for update in (someone_else, from_address_book):
            ok(fake.push(update))
            refused = sent_to(fake, PERSON)[-1]
            assert "分享您自己的号码" in refused["text"]
            assert refused["reply_markup"]["keyboard"][0][0]["request_contact"] is True
        ok(fake.push(fake.contact_update(PERSON, "+8613900000000", contact_user_id=PERSON)))
        assert "没有找到这个号码的登记信息" in texts_to(fake, PERSON)[-1]
        ok(fake.push(fake.contact_update(PERSON, "12345", contact_user_id=PERSON)))
        assert "这个号码好像不对" in texts_to(fake, PERSON)[-1]
    with transaction(engine) as session:
        assert session.scalars(select(MessagingIdentity)).all() == []
        assert session.scalars(select(AuditEntry)).all() == []


def test_a_redelivered_update_is_handled_once(
    db_url: str, engine: Engine, trained_nlu_dir: Path, tmp_path: Path, fake: FakeTelegramApi
) -> None:
    with transaction(engine) as session:
        tree = make_unit_tree(session)
        retiree = make_retiree(session, tree.community_a1, name="王秀英", phone=PHONE)
        retiree.identities.append(MessagingIdentity(channel="telegram", address=str(PERSON)))
    with running_app(db_url, engine, trained_nlu_dir, tmp_path, fake):
        request = fake.text_update(PERSON, "我想报销药费，门诊的，三百块")
        start = fake.text_update(PERSON, "/start")
        for update in (request, request, start, start):
            ok(fake.push(update))
        texts = texts_to(fake, PERSON)
        assert len(texts) == 2
        assert "票据" in texts[0] and texts[1].startswith("王秀英您好，您的账号已经关联好了")
    with transaction(engine) as session:
        inbound = session.scalars(
            select(Message.provider_id).where(Message.direction == "inbound")
        ).all()
        assert sorted(inbound) == sorted([f"tg:{request['update_id']}", f"tg:{start['update_id']}"])


def test_a_bare_1_answers_the_check_in_asked_in_the_chat(
    db_url: str, engine: Engine, trained_nlu_dir: Path, tmp_path: Path, fake: FakeTelegramApi
) -> None:
    """Today's check-in went to her Telegram chat: "1" is her answer (once, however often
    Telegram delivers it), thanked through the outbox; the next "1" is a conversation turn."""
    now = datetime.now(UTC)
    with transaction(engine) as session:
        tree = make_unit_tree(session)
        retiree = make_retiree(session, tree.community_a1, name="王秀英", phone=PHONE)
        retiree.identities.append(MessagingIdentity(channel="telegram", address=str(PERSON)))
        session.flush()
        session.add(
            CheckIn(
                retiree_id=retiree.id,
                day=now.astimezone(ZoneInfo("Asia/Shanghai")).date(),
                status=CheckInStatus.ASKED,
                attempts=1,
                channel="telegram",
                address=str(PERSON),
                due_at=now + timedelta(minutes=20),
                window_end=now + timedelta(hours=2),
                asked_at=now - timedelta(minutes=1),
            )
        )
    with running_app(db_url, engine, trained_nlu_dir, tmp_path, fake):
        answer = fake.text_update(PERSON, "1")
        ok(fake.push(answer))
        ok(fake.push(answer))
        assert texts_to(fake, PERSON) == []  # the thanks wait in the outbox (no worker here)
        with transaction(engine) as session:
            check_in = session.scalars(select(CheckIn)).one()
            assert check_in.status == CheckInStatus.WELL
            (reply,) = session.scalars(select(OutboxItem)).all()
            assert (reply.channel, reply.address) == ("telegram", str(PERSON))
            assert reply.payload["kind"] == "reply" and reply.payload["text"]
        ok(fake.push(fake.text_update(PERSON, "1")))  # nothing waits now: a conversation turn
        assert texts_to(fake, PERSON)  # the engine answered it at once
        with transaction(engine) as session:
            assert session.scalars(select(CheckIn)).one().status == CheckInStatus.WELL
            assert len(session.scalars(select(OutboxItem)).all()) == 1


def test_a_wrong_or_missing_secret_is_refused_and_nothing_is_stored(
    db_url: str, engine: Engine, trained_nlu_dir: Path, tmp_path: Path, fake: FakeTelegramApi
) -> None:
    with transaction(engine) as session:
        make_unit_tree(session)
    with running_app(db_url, engine, trained_nlu_dir, tmp_path, fake):
        for secret in ("", "wrong", SECRET + "x", SECRET[:-1]):
            refused = fake.push(fake.text_update(PERSON, "我摔倒了，救命"), secret=secret)
            assert refused.status_code == 403
        assert fake.calls_to("sendMessage") == []
    with transaction(engine) as session:
        assert session.scalars(select(Message)).all() == []
        assert session.scalars(select(Case)).all() == []


def test_a_nul_in_a_text_is_taken_out_and_a_bottomless_update_refused(
    db_url: str, engine: Engine, trained_nlu_dir: Path, tmp_path: Path, fake: FakeTelegramApi
) -> None:
    """PostgreSQL cannot store a NUL: the text is handled without it (answered once, not
    asked for again with 503 for ever). JSON nested too deep to parse is no update: 400."""
    with transaction(engine) as session:
        make_unit_tree(session)
    with running_app(db_url, engine, trained_nlu_dir, tmp_path, fake):
        ok(fake.push(fake.text_update(PERSON, "/st\x00art")))
        assert len(texts_to(fake, PERSON)) == 1
        deep = '{"update_id": 5, "message": ' + "[" * 100_000 + "]" * 100_000 + "}"
        refused = httpx.post(
            fake.webhook["url"],  # type: ignore[index]
            content=deep,
            headers={
                "X-Telegram-Bot-Api-Secret-Token": SECRET,
                "Content-Type": "application/json",
            },
        )
        assert refused.status_code == 400 and "not a Telegram update" in refused.text
    with transaction(engine) as session:
        [text] = session.scalars(select(Message.text).where(Message.direction == "inbound"))
        assert text == "/start"


def test_a_reply_telegram_does_not_take_waits_in_the_outbox(
    db_url: str, engine: Engine, trained_nlu_dir: Path, tmp_path: Path, fake: FakeTelegramApi
) -> None:
    with running_app(db_url, engine, trained_nlu_dir, tmp_path, fake):
        fake.fail("sendMessage", error_code=429, description="Too Many Requests", retry_after=3)
        ok(fake.push(fake.text_update(PERSON, "/start")))
        fake.fail(
            "sendMessage", error_code=403, description="Forbidden: bot was blocked by the user"
        )
        ok(fake.push(fake.text_update(PERSON + 1, "/start")))
    with transaction(engine) as session:
        item = session.scalars(select(OutboxItem)).one()  # a blocked bot is not retried
        assert (item.channel, item.address, item.status) == ("telegram", str(PERSON), "pending")
        assert item.payload["kind"] == "reply"
        assert "分享我的电话号码" in item.payload["text"]


def test_a_database_failure_asks_for_the_update_again_and_a_bug_is_apologised_for(
    db_url: str,
    engine: Engine,
    trained_nlu_dir: Path,
    tmp_path: Path,
    fake: FakeTelegramApi,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def unreachable(self: object, user_id: int) -> None:
        raise OperationalError("SELECT 1", {}, Exception("server closed the connection"))

    def bug(self: object, user_id: int) -> None:
        raise RuntimeError("a bug")

    with running_app(db_url, engine, trained_nlu_dir, tmp_path, fake):
        monkeypatch.setattr(telegram_channel.Hotline, "_staff_for", unreachable)
        update = fake.text_update(PERSON, "你好")
        assert fake.push(update).status_code == 503  # Telegram delivers it again later
        assert fake.calls_to("sendMessage") == []
        monkeypatch.setattr(telegram_channel.Hotline, "_staff_for", bug)
        ok(fake.push(update))  # would fail again: not asked for again
        assert texts_to(fake, PERSON) == [
            "对不起，系统出了点问题。请稍后再试，或者直接给我们打电话。"
        ]


def test_the_app_starts_while_telegram_is_unreachable(
    db_url: str,
    engine: Engine,
    trained_nlu_dir: Path,
    tmp_path: Path,
    fake: FakeTelegramApi,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(telegram_application, "_RETRY_STARTUP_S", 0.2)
    fake.fail("getMe", error_code=502, description="Bad Gateway")
    fake.fail("setWebhook", error_code=502, description="Bad Gateway")
    with running_app(db_url, engine, trained_nlu_dir, tmp_path, fake) as base:
        assert fake.webhook is None
        update = fake.text_update(PERSON, "/start")
        ok(fake.push(update, url=f"{base}/telegram/webhook", secret=SECRET))
        assert "分享我的电话号码" in texts_to(fake, PERSON)[-1]
        fake.wait_for("setWebhook", count=2)  # tried again in the background
        assert fake.webhook is not None and fake.webhook["secret_token"] == SECRET


def test_telegram_is_off_without_its_settings(db_url: str, tmp_path: Path) -> None:
    cases = {
        "no HOTLINE_TELEGRAM_BOT_TOKEN": {},
        "no HOTLINE_TELEGRAM_WEBHOOK_SECRET": {"telegram_bot_token": TOKEN},
        "may only have A-Z": {"telegram_bot_token": TOKEN, "telegram_webhook_secret": "a b"},
    }
    for why, values in cases.items():
        settings = Settings(database_url=db_url, data_dir=tmp_path, _env_file=None, **values)
        app = create_app(settings)
        status = {c.name: c for c in app.state.channels}["telegram"]
        assert not status.enabled and why in status.why
        with TestClient(app) as client:
            assert client.post("/telegram/webhook", json={"update_id": 1}).status_code == 404


# -- volunteers and staff ----------------------------------------------------------------------


@dataclass
class Team:
    case_number: str
    volunteer_names: dict[int, str]


def team_and_new_case(engine: Engine, category: str = "medication_reimbursement") -> Team:
    """Two volunteers of A1, a staff member of station A, a volunteer of B1 (all on Telegram)
    and a new case in A1's queue, posted through the outbox."""
    with transaction(engine) as session:
        tree = make_unit_tree(session)
        make_staff(
            session,
            Role.VOLUNTEER,
            [tree.community_a1],
            name="张志愿",
            telegram_user_id=VOLUNTEER_1,
        )
        make_staff(
            session,
            Role.VOLUNTEER,
            [tree.community_a1],
            name="李志愿",
            telegram_user_id=VOLUNTEER_2,
        )
        make_staff(session, Role.STAFF, [tree.station_a], name="陈社工", telegram_user_id=STAFF_A)
        make_staff(
            session,
            Role.VOLUNTEER,
            [tree.community_b1],
            name="赵志愿",
            telegram_user_id=VOLUNTEER_B,
        )
        make_staff(session, Role.STAFF, [tree.community_a1], name="无电报")  # no Telegram
        retiree = make_retiree(session, tree.community_a1, name="王秀英", phone=PHONE)
        case = actions.file_case(
            session,
            category=category,
            channel="phone",
            actor=Actor.system(),
            retiree=retiree,
            summary="门诊药费三百元，上门取票据",
        )
        post_new_case(
            session,
            case,
            catalogs=load_catalogs(CONFIG_DIR / "messages"),
            categories=load_categories(CONFIG_DIR / "categories.yml"),
            language="zh",
            timezone="Asia/Shanghai",
        )
        return Team(case.number, {VOLUNTEER_1: "张志愿", VOLUNTEER_2: "李志愿"})


def deliver_posts(fake: FakeTelegramApi, engine: Engine) -> dict[int, dict[str, Any]]:
    """What the worker does with the outbox posts (its sender is tested on its own): send each
    with its choices as an inline keyboard, then its after_sent hook records where the post
    went. Returns the message each person got."""
    with transaction(engine) as session:
        items = session.scalars(select(OutboxItem).order_by(OutboxItem.id)).all()
        got = {}
        for item in items:
            markup = {
                "inline_keyboard": [
                    [{"text": label, "callback_data": data}]
                    for data, label in item.payload["choices"]
                ]
            }
            response = httpx.post(
                f"{fake.url}/bot{TOKEN}/sendMessage",
                json={
                    "chat_id": int(item.address),
                    "text": item.payload["text"],
                    "reply_markup": markup,
                },
            )
            message = response.json()["result"]
            record_sent(session, item, f"{message['chat']['id']}:{message['message_id']}")
            got[int(item.address)] = message
    fake.clear()
    return got


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.02)


def test_a_new_case_is_posted_to_those_who_may_take_it(engine: Engine) -> None:
    team = team_and_new_case(engine)
    with transaction(engine) as session:
        items = session.scalars(select(OutboxItem).order_by(OutboxItem.address)).all()
        assert [(i.channel, i.address) for i in items] == [
            ("telegram", str(VOLUNTEER_1)),
            ("telegram", str(VOLUNTEER_2)),
            ("telegram", str(STAFF_A)),
        ]
        payload = items[0].payload
        assert payload["kind"] == "new_case" and payload["case"] == team.case_number
        assert payload["choices"] == [[f"claim:{team.case_number}", "认领"]]
        assert payload["text"].startswith(
            f"🆕 新案件 {team.case_number}\n药费报销｜和平社区｜一般\n内容：门诊药费三百元，上门取票据\n请在"
        )
        assert items[0].idempotency_key == f"{team.case_number}:new_case:telegram:{VOLUNTEER_1}"
        case = session.scalars(select(Case)).one()
        again = post_new_case(
            session,
            case,
            catalogs=load_catalogs(CONFIG_DIR / "messages"),
            categories=load_categories(CONFIG_DIR / "categories.yml"),
            language="zh",
            timezone="Asia/Shanghai",
        )
        assert again == 3
        assert session.scalar(select(func.count()).select_from(OutboxItem)) == 3  # not twice


def test_new_cases_are_announced_only_while_telegram_is_on(engine: Engine) -> None:
    team_and_new_case(engine)
    with transaction(engine) as session:
        session.execute(delete(OutboxItem))
        case = session.scalars(select(Case)).one()
        services = {
            "catalogs": load_catalogs(CONFIG_DIR / "messages"),
            "categories": load_categories(CONFIG_DIR / "categories.yml"),
        }
        off = Settings(_env_file=None)
        assert announce_new_cases(session, [case], settings=off, **services) == 0
        assert session.scalars(select(OutboxItem)).all() == []
        on = Settings(telegram_bot_token=TOKEN, _env_file=None)
        assert announce_new_cases(session, [case], settings=on, **services) == 3


def test_a_complaint_is_not_posted_to_volunteers(engine: Engine) -> None:
    team_and_new_case(engine, category="complaint")  # station level, staff only
    with transaction(engine) as session:
        items = session.scalars(select(OutboxItem)).all()
        assert [i.address for i in items] == [str(STAFF_A)]


def test_two_volunteers_tap_claim_at_the_same_moment_and_one_gets_it(
    db_url: str, engine: Engine, trained_nlu_dir: Path, tmp_path: Path, fake: FakeTelegramApi
) -> None:
    team = team_and_new_case(engine)
    with running_app(db_url, engine, trained_nlu_dir, tmp_path, fake):
        posts = deliver_posts(fake, engine)
        data = f"claim:{team.case_number}"
        taps = [fake.callback_update(v, data, message=posts[v]) for v in (VOLUNTEER_1, VOLUNTEER_2)]
        for response in fake.push_together(taps):
            ok(response)
        with transaction(engine) as session:
            case = session.scalars(select(Case)).one()
            assert case.status == CaseStatus.CLAIMED
            winner = case.assignee.telegram_user_id
            events = session.scalars(select(CaseEvent).where(CaseEvent.action == "claim")).all()
            assert len(events) == 1
        loser = VOLUNTEER_2 if winner == VOLUNTEER_1 else VOLUNTEER_1
        answers = {a["callback_query_id"]: a for a in fake.calls_to("answerCallbackQuery")}
        won = answers[taps[[VOLUNTEER_1, VOLUNTEER_2].index(winner)]["callback_query"]["id"]]
        lost = answers[taps[[VOLUNTEER_1, VOLUNTEER_2].index(loser)]["callback_query"]["id"]]
        assert won["text"] == f"✅ 您已认领案件{team.case_number}。"
        taken = f"案件{team.case_number}已由{team.volunteer_names[winner]}认领。"
        assert lost["text"] == taken and lost["show_alert"] is True

        def post(person: int) -> dict[str, Any]:
            return fake.messages[(person, posts[person]["message_id"])]

        # Everyone's copy says who took it, without a button (the staff member did not tap).
        eventually(lambda: post(STAFF_A)["text"].endswith(taken))
        for person in (loser, STAFF_A):
            assert post(person)["text"] == posts[person]["text"] + "\n\n" + taken
            assert "reply_markup" not in post(person)
        assert post(winner)["text"] == posts[winner]["text"] + "\n\n" + won["text"]
        # A tap later still says who has it; the redelivered winning tap claims nothing twice.
        ok(fake.push(fake.callback_update(STAFF_A, data, message=posts[STAFF_A])))
        assert fake.calls_to("answerCallbackQuery")[-1]["text"] == taken
        ok(fake.push(taps[[VOLUNTEER_1, VOLUNTEER_2].index(winner)]))
        assert fake.calls_to("answerCallbackQuery")[-1]["text"] == won["text"]
        assert post(STAFF_A)["text"].count(taken) == 1
    with transaction(engine) as session:
        assert session.scalar(select(func.count()).select_from(CaseEvent)) == 2  # file, claim
        # The tap updated the posts: the worker's upkeep has none left to update.
        assert keep_posts_up(session, **POST_SERVICES) == 0


POST_SERVICES: dict[str, Any] = {
    "catalogs": load_catalogs(CONFIG_DIR / "messages"),
    "categories": load_categories(CONFIG_DIR / "categories.yml"),
    "language": "zh",
    "timezone": "Asia/Shanghai",
}


def work_the_outbox(fake: FakeTelegramApi, engine: Engine, *, upkeep: bool = False) -> int:
    """One round of the real outbox worker with the real TelegramSender (at the fake), after
    its maintenance when ``upkeep``; returns how many items it sent."""
    settings = Settings(telegram_bot_token=TOKEN, telegram_api_url=fake.url, _env_file=None)

    async def run() -> int:
        worker = OutboxWorker(engine, {"telegram": TelegramSender(settings)}, language="zh")
        try:
            if upkeep:
                await worker.maintain()
            return await worker.run_once()
        finally:
            await worker.aclose()

    return asyncio.run(run())


def test_the_running_worker_updates_posts_within_seconds_not_at_its_maintenance(
    engine: Engine, fake: FakeTelegramApi
) -> None:
    """The worker's loop, not a call of its upkeep: with maintenance an hour away, a case
    claimed at the desk has its posts lose their Claim button at the next upkeep (seconds)."""
    team = team_and_new_case(engine)
    assert work_the_outbox(fake, engine) == 3
    settings = Settings(telegram_bot_token=TOKEN, telegram_api_url=fake.url, _env_file=None)

    async def run() -> None:
        worker = OutboxWorker(
            engine,
            {"telegram": TelegramSender(settings)},
            language="zh",
            maintenance_every_s=3600,
            upkeep_every_s=0.5,
        )
        stop = asyncio.Event()
        loop = asyncio.create_task(worker.run(stop, interval_s=0.1))
        await asyncio.sleep(0.3)  # its first round (the maintenance) is done
        with transaction(engine) as session:
            case = actions.get_case(session, team.case_number)
            chen = session.scalars(select(Staff).where(Staff.name == "陈社工")).one()
            actions.claim(session, case, Actor.person(chen))
        # Waited for at most a minute: far less than the maintenance's hour, so only the
        # upkeep's own schedule can have edited the posts (no wall-clock bound is checked).
        deadline = time.monotonic() + 60
        while len(fake.calls_to("editMessageText")) < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        stop.set()
        await loop
        await worker.aclose()

    asyncio.run(run())
    assert len(fake.calls_to("editMessageText")) == 3


@pytest.mark.parametrize("action", ["claim", "cancel"])
def test_a_case_taken_in_the_console_updates_every_post(
    engine: Engine, fake: FakeTelegramApi, action: str
) -> None:
    """陈社工 claims the case at the desk (or withdraws it): every Telegram copy of its post
    says so at the worker's next upkeep and loses its Claim button, once."""
    team = team_and_new_case(engine)
    assert work_the_outbox(fake, engine) == 3
    posts = {c["chat_id"]: c for c in fake.calls_to("sendMessage")}
    sent = {chat: m for (chat, _), m in fake.messages.items()}
    assert all(m["reply_markup"] for m in sent.values())
    with transaction(engine) as session:
        case = actions.get_case(session, team.case_number)
        chen = session.scalars(select(Staff).where(Staff.name == "陈社工")).one()
        if action == "claim":
            actions.claim(session, case, Actor.person(chen))
        else:
            actions.cancel(session, case, Actor.person(chen), reason="老人说已经办好了")

    assert work_the_outbox(fake, engine, upkeep=True) == 3
    taken = f"案件{team.case_number}已由陈社工认领。"
    lines = {
        "claim": {
            VOLUNTEER_1: taken,
            VOLUNTEER_2: taken,
            STAFF_A: f"✅ 您已认领案件{team.case_number}。",
        },
        "cancel": dict.fromkeys(
            (VOLUNTEER_1, VOLUNTEER_2, STAFF_A), f"案件{team.case_number}现在是已撤销，不能认领了。"
        ),
    }[action]
    for chat, line in lines.items():
        now = fake.messages[(chat, sent[chat]["message_id"])]
        assert now["text"] == posts[chat]["text"] + "\n\n" + line
        assert "reply_markup" not in now
    edits = len(fake.calls_to("editMessageText"))
    assert edits == 3
    assert work_the_outbox(fake, engine, upkeep=True) == 0  # updated once
    assert len(fake.calls_to("editMessageText")) == edits


def act_as(engine: Engine, number: str, action: str, who: str = "陈社工") -> None:
    """A case action at the desk (the console's own call of storage.actions)."""
    with transaction(engine) as session:
        case = actions.get_case(session, number)
        staff = session.scalars(select(Staff).where(Staff.name == who)).one()
        do = {"claim": actions.claim, "release": actions.release}[action]
        do(session, case, Actor.person(staff))


def test_a_released_case_is_posted_again_and_every_copy_kept_up(
    engine: Engine, fake: FakeTelegramApi
) -> None:
    """Claimed at the desk, then put back in the queue: the posts keep saying who had it, and
    everyone who may take it gets a new post with a Claim button; claimed again, every copy,
    old and new, says who has it now."""
    team = team_and_new_case(engine)
    number = team.case_number
    work_the_outbox(fake, engine)
    act_as(engine, number, "claim")
    work_the_outbox(fake, engine, upkeep=True)
    fake.clear()

    act_as(engine, number, "release")
    assert work_the_outbox(fake, engine, upkeep=True) == 3
    again = fake.calls_to("sendMessage")
    assert sorted(c["chat_id"] for c in again) == sorted((VOLUNTEER_1, VOLUNTEER_2, STAFF_A))
    for call in again:
        assert call["text"].startswith(f"↩️ 案件 {number} 又可以认领了\n药费报销｜和平社区｜一般")
        assert keyboard(call) == [("认领", f"claim:{number}")]
    assert fake.calls_to("editMessageText") == []  # the old copies still say who had it
    assert work_the_outbox(fake, engine, upkeep=True) == 0  # posted once

    act_as(engine, number, "claim", who="张志愿")
    assert work_the_outbox(fake, engine, upkeep=True) == 6
    taken = f"案件{number}已由张志愿认领。"
    mine = f"✅ 您已认领案件{number}。"
    edited = {(c["chat_id"], c["message_id"]): c["text"] for c in fake.calls_to("editMessageText")}
    assert len(edited) == 6
    for (chat, _), text in edited.items():
        assert text.endswith("\n\n" + (mine if chat == VOLUNTEER_1 else taken))
        assert "陈社工" not in text  # the line replaces the one the copy had


def test_a_taken_case_handed_to_someone_else_names_its_new_owner(
    engine: Engine, fake: FakeTelegramApi
) -> None:
    """陈社工 claimed the case at the desk, then hands it to 张志愿 (a transfer to a person):
    every copy says 张志愿 has it now, once."""
    team = team_and_new_case(engine)
    number = team.case_number
    work_the_outbox(fake, engine)
    act_as(engine, number, "claim")
    assert work_the_outbox(fake, engine, upkeep=True) == 3
    fake.clear()

    with transaction(engine) as session:
        case = actions.get_case(session, number)
        chen, zhang = (
            session.scalars(select(Staff).where(Staff.name == name)).one()
            for name in ("陈社工", "张志愿")
        )
        actions.transfer(session, case, Actor.person(chen), reason="上门取票据", to_staff=zhang)
    assert work_the_outbox(fake, engine, upkeep=True) == 3
    edited = {c["chat_id"]: c["text"] for c in fake.calls_to("editMessageText")}
    assert sorted(edited) == sorted((VOLUNTEER_1, VOLUNTEER_2, STAFF_A))
    for chat, text in edited.items():
        mine = chat == VOLUNTEER_1
        assert text.endswith(
            f"\n\n✅ 您已认领案件{number}。" if mine else f"\n\n案件{number}已由张志愿认领。"
        )
        assert "陈社工" not in text
    assert work_the_outbox(fake, engine, upkeep=True) == 0  # named once


def test_mine_lists_the_cases_a_person_works_on(
    db_url: str, engine: Engine, trained_nlu_dir: Path, tmp_path: Path, fake: FakeTelegramApi
) -> None:
    team = team_and_new_case(engine)
    with running_app(db_url, engine, trained_nlu_dir, tmp_path, fake):
        posts = deliver_posts(fake, engine)
        tap = fake.callback_update(VOLUNTEER_1, f"claim:{team.case_number}", message=posts[701])
        ok(fake.push(tap))
        for person in (VOLUNTEER_1, VOLUNTEER_2, PERSON):
            ok(fake.push(fake.text_update(person, "/mine")))
        assert texts_to(fake, VOLUNTEER_1)[-1] == (
            f"您在办的案件（1件）：\n{team.case_number}｜药费报销｜一般｜门诊药费三百元，上门取票据"
        )
        assert texts_to(fake, VOLUNTEER_2)[-1] == "您现在没有在办的案件。"
        assert texts_to(fake, PERSON)[-1] == "这个功能只给工作人员和志愿者使用。"
        ok(fake.push(fake.text_update(VOLUNTEER_2, "你好")))
        assert texts_to(fake, VOLUNTEER_2)[-1].startswith("李志愿您好。新案件会发到这里")


def test_staff_close_a_resolved_case_and_a_volunteer_may_not(
    db_url: str, engine: Engine, trained_nlu_dir: Path, tmp_path: Path, fake: FakeTelegramApi
) -> None:
    team = team_and_new_case(engine)
    number = team.case_number
    with transaction(engine) as session:
        case = actions.get_case(session, number)
        worker = session.scalars(select(Staff).where(Staff.telegram_user_id == VOLUNTEER_1)).one()
        actions.claim(session, case, Actor.person(worker))
    with running_app(db_url, engine, trained_nlu_dir, tmp_path, fake):
        ok(fake.push(fake.text_update(STAFF_A, f"/close {number}")))
        assert texts_to(fake, STAFF_A)[-1] == f"案件{number}现在是已认领，要先办结才能关闭。"
        with transaction(engine) as session:
            case = actions.get_case(session, number)
            actions.resolve(session, case, Actor.person(case.assignee), outcome="票据已取")
        ok(fake.push(fake.text_update(VOLUNTEER_1, f"/close {number}")))
        assert texts_to(fake, VOLUNTEER_1)[-1] == "只有工作人员可以关闭案件。"
        ok(fake.push(fake.text_update(STAFF_A, "/close")))
        assert texts_to(fake, STAFF_A)[-1].startswith("请这样写：/close 案件编号")
        ok(fake.push(fake.text_update(STAFF_A, "/close 2026-999999")))
        assert texts_to(fake, STAFF_A)[-1] == "没有编号为2026-999999的案件。"
        ok(fake.push(fake.text_update(STAFF_A, f"/close {number} 已回访")))
        assert texts_to(fake, STAFF_A)[-1] == f"案件{number}已关闭。"
    with transaction(engine) as session:
        case = actions.get_case(session, number)
        assert case.status == CaseStatus.CLOSED
        closing = session.scalars(select(CaseEvent).where(CaseEvent.action == "close")).one()
        assert (closing.actor.name, closing.note) == ("陈社工", "已回访")


# -- polling -----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_polling_answers_with_the_same_handlers(
    db_url: str, engine: Engine, trained_nlu_dir: Path, tmp_path: Path, fake: FakeTelegramApi
) -> None:
    with transaction(engine) as session:
        tree = make_unit_tree(session)
        retiree = make_retiree(session, tree.community_a1, name="王秀英", phone=PHONE)
        retiree.identities.append(MessagingIdentity(channel="telegram", address=str(PERSON)))
    fake.webhook = {"url": "https://old.example/telegram/webhook", "secret_token": "x"}
    settings = settings_for(db_url, tmp_path, trained_nlu_dir, fake)
    stop = asyncio.Event()
    polling = asyncio.create_task(poll(load_deployment(settings), engine, stop))
    try:
        fake.queue_update(fake.text_update(PERSON, "/start"))
        await asyncio.to_thread(fake.wait_for, "sendMessage", 1, 30)
    finally:
        stop.set()
        await asyncio.wait_for(polling, 30)
    assert fake.webhook is None  # polling deleted it first
    assert texts_to(fake, PERSON)[0].startswith("王秀英您好")


# -- the pieces --------------------------------------------------------------------------------


def test_callback_data_never_exceeds_64_bytes() -> None:
    long_value = "intent:" + "很长" * 20  # 7 + 120 bytes
    pairs = buttons((Choice("yes", "对"), Choice(long_value, "长的"), Choice("x" * 64, "64")))
    assert pairs == [("yes", "对"), ("#2", "长的"), ("x" * 64, "64")]


def test_telegram_phone_numbers_come_without_a_plus() -> None:
    assert telegram_phone("8613912345678") == PHONE
    assert telegram_phone("+86 139 1234 5678") == PHONE
    assert telegram_phone("13912345678") == PHONE
