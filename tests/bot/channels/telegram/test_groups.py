"""A unit's Telegram group chat, against the fake Bot API through the real python-telegram-bot:
staff link and unlink it with /linkunit (also as /linkunit@OurBot), new cases the unit's
volunteers may take are posted to it without personal data, the first Claim tap in the group
wins, and the claimer gets the contact details privately."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, select

from bot.channels.telegram import new_case_announcer
from bot.channels.telegram.posts import post_new_case
from bot.channels.telegram.sender import TelegramSender
from bot.conversation.engine import ConversationEngine
from bot.conversation.messages import Inbound
from bot.runtime.configure import load_deployment
from bot.runtime.periodic import default_jobs, run_all_once
from config.categories import load_categories
from config.i18n import load_catalogs
from config.settings import CONFIG_DIR, Settings
from nlu.embedded import EmbeddedParser
from storage import actions, outbox
from storage.db import transaction
from storage.models import (
    AuditEntry,
    Case,
    CaseEvent,
    CaseStatus,
    OutboxItem,
    OutboxStatus,
    Retiree,
    Role,
    Unit,
)
from storage.permissions import Actor
from tests.bot.channels.telegram.test_telegram import TOKEN, eventually, ok, running_app, texts_to
from tests.factories import make_retiree, make_staff, make_unit_tree
from tests.fakes.telegram_api import BOT_USERNAME, FakeTelegramApi

GROUP, OTHER_GROUP, STATION_GROUP = -100500, -100600, -100700
VOLUNTEER_1, VOLUNTEER_2, STAFF_A, VOLUNTEER_B, STAFF_B, STRANGER = 701, 702, 801, 703, 802, 999
PHONE, ADDRESS, NAME = "+8613912345678", "和平路12号3单元", "王秀英"
CATALOGS = load_catalogs(CONFIG_DIR / "messages")
CATEGORIES = load_categories(CONFIG_DIR / "categories.yml")


def t(key: str, **params: Any) -> str:
    return CATALOGS.text(f"telegram.{key}", "zh", **params)


def desk(key: str, **params: Any) -> str:
    return CATALOGS.text(f"staff_desk.{key}", "zh", **params)


@pytest.fixture
def fake() -> Iterator[FakeTelegramApi]:
    with FakeTelegramApi(token=TOKEN) as api:
        yield api


def make_team(engine: Engine) -> None:
    """Two volunteers of community A1, a staff member of station A (above A1), a volunteer of
    B1 and a staff member of station B, all on Telegram, and a retiree of A1."""
    with transaction(engine) as session:
        tree = make_unit_tree(session)
        for role, unit, name, user in (
            (Role.VOLUNTEER, tree.community_a1, "张志愿", VOLUNTEER_1),
            (Role.VOLUNTEER, tree.community_a1, "李志愿", VOLUNTEER_2),
            (Role.STAFF, tree.station_a, "陈社工", STAFF_A),
            (Role.VOLUNTEER, tree.community_b1, "赵志愿", VOLUNTEER_B),
            (Role.STAFF, tree.station_b, "刘社工", STAFF_B),
        ):
            make_staff(session, role, [unit], name=name, telegram_user_id=user)
        make_retiree(session, tree.community_a1, name=NAME, phone=PHONE, address=ADDRESS)


def link(engine: Engine, code: str, chat_id: int) -> None:
    with transaction(engine) as session:
        unit = session.scalars(select(Unit).where(Unit.code == code)).one()
        unit.telegram_chat_id = chat_id


def chat_of(engine: Engine, code: str) -> int | None:
    with transaction(engine) as session:
        return session.scalars(select(Unit.telegram_chat_id).where(Unit.code == code)).one()


def audit(engine: Engine, action: str) -> list[tuple[str, int | None, dict[str, Any]]]:
    with transaction(engine) as session:
        entries = session.scalars(
            select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)
        ).all()
        return [(e.actor_label, e.actor_id, e.detail) for e in entries]


def file_and_post(engine: Engine, category: str = "medication_reimbursement") -> str:
    """A new case of the retiree, posted (to the outbox) as the engine's hook does."""
    with transaction(engine) as session:
        retiree = session.scalars(select(Retiree)).one()
        case = actions.file_case(
            session,
            category=category,
            channel="phone",
            actor=Actor.system(),
            retiree=retiree,
            summary=f"{NAME}门诊药费三百元，上门取票据",
            categories=CATEGORIES,
        )
        post_new_case(
            session,
            case,
            catalogs=CATALOGS,
            categories=CATEGORIES,
            language="zh",
            timezone="Asia/Shanghai",
        )
        return case.number


def send_outbox(fake: FakeTelegramApi, engine: Engine) -> dict[int, dict[str, Any]]:
    """What the worker does with the pending posts (those not sent yet): the real TelegramSender sends each, and its
    after_sent hook records where it went. Returns (a copy of) the message each chat got."""
    settings = Settings(telegram_bot_token=TOKEN, telegram_api_url=fake.url, _env_file=None)
    got: dict[int, dict[str, Any]] = {}

    async def run() -> None:
        sender = TelegramSender(settings)
        try:
            with transaction(engine) as session:
                pending = select(OutboxItem).where(OutboxItem.status == OutboxStatus.PENDING)
                for item in session.scalars(pending.order_by(OutboxItem.id)):
                    result = await sender.send(
                        item.channel, item.address, item.payload, item.idempotency_key
                    )
                    assert result.sent, result.error
                    sender.after_sent(session, item, result)
                    outbox.mark_sent(item)
                    chat, _, message = (result.provider_id or "").partition(":")
                    got[int(chat)] = copy.deepcopy(fake.messages[(int(chat), int(message))])
        finally:
            await sender.aclose()

    asyncio.run(run())
    fake.clear()
    return got


def group_calls(fake: FakeTelegramApi, chat_id: int) -> list[str]:
    """Every text the bot sent or edited into ``chat_id``."""
    return [
        c["text"]
        for c in fake.calls_to("sendMessage") + fake.calls_to("editMessageText")
        if c.get("chat_id") == chat_id
    ]


def delivered_to(fake: FakeTelegramApi, chat_id: int) -> list[int]:
    """The ids of the messages that reached ``chat_id`` (not those Telegram refused)."""
    return sorted(message for chat, message in fake.messages if chat == chat_id)


def assert_no_personal_data(text: str) -> None:
    for personal in (NAME, PHONE, PHONE.removeprefix("+86"), ADDRESS, "门诊药费"):
        assert personal not in text, (personal, text)


# -- linking -----------------------------------------------------------------------------------


def test_staff_link_and_unlink_a_group_chat_with_commands_addressed_to_the_bot(
    db_url: str, engine: Engine, trained_nlu_dir: Path, tmp_path: Path, fake: FakeTelegramApi
) -> None:
    make_team(engine)
    with running_app(db_url, engine, trained_nlu_dir, tmp_path, fake):
        linking = fake.text_update(STAFF_A, f"/linkunit@{BOT_USERNAME} A1", chat_id=GROUP)
        ok(fake.push(linking))
        assert chat_of(engine, "A1") == GROUP
        linked = t("group.linked", unit="和平社区", code="A1")
        assert texts_to(fake, GROUP) == [linked]
        ok(fake.push(linking))  # redelivered: nothing twice
        ok(fake.push(fake.text_update(STAFF_A, "/linkunit a1", chat_id=GROUP)))
        assert texts_to(fake, GROUP) == [
            linked,
            t("group.already_linked", unit="和平社区", code="A1"),
        ]
        # one group per unit, one unit per group
        ok(fake.push(fake.text_update(STAFF_A, "/linkunit A2", chat_id=GROUP)))
        assert texts_to(fake, GROUP)[-1] == t(
            "group.chat_has_other_unit", unit="和平社区", code="A1"
        )
        ok(fake.push(fake.text_update(STAFF_A, "/linkunit A1", chat_id=OTHER_GROUP)))
        assert texts_to(fake, OTHER_GROUP) == [
            t("group.unit_has_other_chat", unit="和平社区", code="A1")
        ]
        # addressed to another bot: not ours to answer
        ok(fake.push(fake.text_update(STAFF_A, "/unlinkunit@another_bot", chat_id=GROUP)))
        assert chat_of(engine, "A1") == GROUP and len(texts_to(fake, GROUP)) == 3
        ok(fake.push(fake.text_update(STAFF_A, f"/unlinkunit@{BOT_USERNAME}", chat_id=GROUP)))
        assert texts_to(fake, GROUP)[-1] == t("group.unlinked", unit="和平社区", code="A1")
        assert chat_of(engine, "A2") is None and chat_of(engine, "A1") is None
        ok(fake.push(fake.text_update(STAFF_A, "/unlinkunit", chat_id=GROUP)))
        assert texts_to(fake, GROUP)[-1] == t("group.not_linked")
    with transaction(engine) as session:
        unit_id = session.scalars(select(Unit.id).where(Unit.code == "A1")).one()
    entries = audit(engine, "link_unit_chat") + audit(engine, "unlink_unit_chat")
    assert [(label, detail) for label, _, detail in entries] == [
        ("staff", {"chat_id": GROUP, "via": "telegram"}),
        ("staff", {"chat_id": GROUP, "via": "telegram"}),
    ]
    with transaction(engine) as session:
        subjects = session.scalars(
            select(AuditEntry.subject_id).where(AuditEntry.subject_type == "unit")
        ).all()
        assert subjects == [unit_id, unit_id]


def test_linking_is_refused_to_those_who_may_not(
    db_url: str, engine: Engine, trained_nlu_dir: Path, tmp_path: Path, fake: FakeTelegramApi
) -> None:
    make_team(engine)
    with running_app(db_url, engine, trained_nlu_dir, tmp_path, fake):
        tries = [
            (VOLUNTEER_1, "/linkunit A1", GROUP, t("group.only_staff")),
            (STRANGER, "/linkunit A1", GROUP, t("staff.link_first")),
            (STAFF_B, "/linkunit A1", GROUP, t("group.not_your_unit", unit="和平社区", code="A1")),
            (STAFF_A, "/linkunit ZZ", GROUP, t("group.unit_not_found", code="ZZ")),
            (STAFF_A, f"/linkunit@{BOT_USERNAME}", GROUP, t("group.link_usage")),
            (STAFF_A, "/linkunit A1", None, t("group.link_in_group")),
        ]
        for user, text, chat, answer in tries:
            ok(fake.push(fake.text_update(user, text, chat_id=chat)))
            assert texts_to(fake, chat or user)[-1] == answer, text
        link(engine, "A1", GROUP)
        ok(fake.push(fake.text_update(STAFF_B, "/unlinkunit", chat_id=GROUP)))
        assert texts_to(fake, GROUP)[-1] == t("group.not_your_unit", unit="和平社区", code="A1")
        assert chat_of(engine, "A1") == GROUP
        # A group that is gone: unlinked from a private chat by its code.
        ok(fake.push(fake.text_update(STAFF_A, "/unlinkunit")))
        assert texts_to(fake, STAFF_A)[-1] == t("group.unlink_usage")
        ok(fake.push(fake.text_update(STAFF_A, "/unlinkunit A1")))
        assert texts_to(fake, STAFF_A)[-1] == t("group.unlinked", unit="和平社区", code="A1")
    assert chat_of(engine, "A1") is None
    assert audit(engine, "link_unit_chat") == []
    assert len(audit(engine, "unlink_unit_chat")) == 1


def test_a_group_turned_into_a_supergroup_keeps_its_unit(
    db_url: str, engine: Engine, trained_nlu_dir: Path, tmp_path: Path, fake: FakeTelegramApi
) -> None:
    make_team(engine)
    link(engine, "A1", GROUP)
    supergroup = -1001234567890
    with running_app(db_url, engine, trained_nlu_dir, tmp_path, fake):
        ok(fake.push(fake.migrate_update(GROUP, supergroup)))
        ok(fake.push(fake.migrate_update(GROUP, supergroup)))
    assert chat_of(engine, "A1") == supergroup
    moves = audit(engine, "move_unit_chat")
    assert moves == [
        ("telegram", None, {"chat_id": supergroup, "from_chat_id": GROUP, "via": "telegram"})
    ]


# -- posting -----------------------------------------------------------------------------------


def test_a_filed_help_request_is_posted_to_the_units_group_without_personal_data(
    engine: Engine, nlu_parser: EmbeddedParser
) -> None:
    make_team(engine)
    link(engine, "A1", GROUP)
    link(engine, "SA", STATION_GROUP)  # the station's group: not for its communities' cases
    settings = Settings(telegram_bot_token=TOKEN, _env_file=None)
    deployment = load_deployment(settings)
    bot = ConversationEngine(
        engine, nlu_parser, deployment, on_filed=[new_case_announcer(deployment)]
    )
    now = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)
    for n, text in enumerate(["家里灯坏了，能派人来修吗", "明天上午", "对"]):
        bot.handle(Inbound("sms", PHONE, f"m{n}", now, text=text))
    with transaction(engine) as session:
        case = session.scalars(select(Case)).one()
        assert case.category == "help_request" and case.summary
        items = session.scalars(select(OutboxItem).order_by(OutboxItem.id)).all()
        assert sorted(i.address for i in items) == sorted(
            [str(VOLUNTEER_1), str(VOLUNTEER_2), str(STAFF_A), str(GROUP)]
        )
        group = next(i for i in items if i.address == str(GROUP))
        assert group.idempotency_key == f"{case.number}:new_case:telegram:{GROUP}"
        deadline = case.claim_deadline.astimezone(ZoneInfo("Asia/Shanghai"))
        assert group.payload == {
            "kind": "new_case",
            "case": case.number,
            "text": f"🆕 新案件 {case.number}\n生活帮扶｜和平社区｜一般\n"
            f"请在{deadline:%m-%d %H:%M}前认领。\n" + t("group.claim_hint"),
            "language": "zh",
            "choices": [[f"claim:{case.number}", "认领"]],
        }
        assert_no_personal_data(group.payload["text"])
        personal = next(i for i in items if i.address == str(VOLUNTEER_1))
        assert case.summary in personal.payload["text"]  # a person's own post says what


def test_a_complaint_is_never_posted_to_a_group(engine: Engine) -> None:
    make_team(engine)
    link(engine, "A1", GROUP)
    link(engine, "SA", STATION_GROUP)  # the complaint's queue unit: still not to its group
    for category in ("complaint", "bereavement", "emergency"):
        file_and_post(engine, category)
    with transaction(engine) as session:
        addresses = set(session.scalars(select(OutboxItem.address)).all())
    assert addresses == {str(STAFF_A)}


def test_a_case_nobody_claimed_is_posted_to_the_group_of_the_unit_it_moves_up_to(
    engine: Engine, fake: FakeTelegramApi
) -> None:
    make_team(engine)  # A1 has volunteers only: nobody there to remind, so it moves up at once
    link(engine, "A1", GROUP)
    link(engine, "SA", STATION_GROUP)
    number = file_and_post(engine, "help_request")
    posted = send_outbox(fake, engine)
    assert set(posted) == {VOLUNTEER_1, VOLUNTEER_2, STAFF_A, GROUP}
    with transaction(engine) as session:
        case = session.scalars(select(Case)).one()
        overdue = case.claim_deadline + timedelta(minutes=1)
    settings = Settings(telegram_bot_token=TOKEN, _env_file=None)
    deployment = load_deployment(settings)
    handled = run_all_once(engine, deployment, default_jobs(deployment), now=overdue)
    assert handled["escalation"] == 1
    with transaction(engine) as session:
        case = session.scalars(select(Case)).one()
        assert case.unit.code == "SA" and case.escalations == 1
        pending = session.scalars(select(OutboxItem).where(OutboxItem.sent_at.is_(None))).all()
        # Only the station's group is new to it; those posted before get nothing twice.
        assert [i.address for i in pending] == [str(STATION_GROUP)]
    got = send_outbox(fake, engine)
    assert set(got) == {STATION_GROUP}
    text = got[STATION_GROUP]["text"]
    assert text.startswith(f"↪️ 转来的案件 {number}：现在由东街道处理\n生活帮扶｜优先")
    assert_no_personal_data(text)
    claim = got[STATION_GROUP]["reply_markup"]["inline_keyboard"][0][0]
    assert claim["callback_data"] == f"claim:{number}"
    # Run again: nothing is due, nothing more is posted.
    assert (
        run_all_once(engine, deployment, default_jobs(deployment), now=overdue)["escalation"] == 0
    )
    assert send_outbox(fake, engine) == {}


# -- claiming in the group ---------------------------------------------------------------------


def test_two_members_tap_claim_in_the_group_at_once_and_the_winner_gets_the_details_privately(
    db_url: str, engine: Engine, trained_nlu_dir: Path, tmp_path: Path, fake: FakeTelegramApi
) -> None:
    make_team(engine)
    link(engine, "A1", GROUP)
    number = file_and_post(engine)
    names = {VOLUNTEER_1: "张志愿", VOLUNTEER_2: "李志愿"}
    with running_app(db_url, engine, trained_nlu_dir, tmp_path, fake):
        posts = send_outbox(fake, engine)
        assert set(posts) == {VOLUNTEER_1, VOLUNTEER_2, STAFF_A, GROUP}
        assert_no_personal_data(posts[GROUP]["text"])
        taps = [
            fake.callback_update(v, f"claim:{number}", message=posts[GROUP])
            for v in (VOLUNTEER_1, VOLUNTEER_2)
        ]
        for response in fake.push_together(taps):
            ok(response)
        with transaction(engine) as session:
            case = session.scalars(select(Case)).one()
            assert case.status == CaseStatus.CLAIMED
            winner = case.assignee.telegram_user_id
            winner_id = case.assignee_id
            claims = session.scalars(select(CaseEvent).where(CaseEvent.action == "claim")).all()
            assert len(claims) == 1
        loser = VOLUNTEER_2 if winner == VOLUNTEER_1 else VOLUNTEER_1
        answers = {a["callback_query_id"]: a for a in fake.calls_to("answerCallbackQuery")}
        by_user = {tap["callback_query"]["from"]["id"]: tap["callback_query"]["id"] for tap in taps}
        taken = desk("taken_by", number=number, name=names[winner])
        assert answers[by_user[winner]]["text"] == t("staff.claimed_see_private", number=number)
        assert answers[by_user[loser]]["text"] == taken
        assert answers[by_user[loser]]["show_alert"] is True

        def now(chat: int) -> dict[str, Any]:
            return fake.messages[(chat, posts[chat]["message_id"])]

        # The group's post says who took it and loses its button.
        assert now(GROUP)["text"] == posts[GROUP]["text"] + "\n\n" + taken
        assert "reply_markup" not in now(GROUP)
        # Everyone's own copy too (the winner's says it is theirs).
        eventually(lambda: now(STAFF_A)["text"].endswith(taken))
        assert now(loser)["text"] == posts[loser]["text"] + "\n\n" + taken
        eventually(lambda: "reply_markup" not in now(winner))
        mine = desk("claimed_by_you", number=number)
        assert now(winner)["text"] == posts[winner]["text"] + "\n\n" + mine
        # The contact details: to the winner's private chat only.
        details = texts_to(fake, winner)
        assert len(details) == 1
        assert details[0].startswith(desk("details_header", number=number, category="药费报销"))
        assert f"{NAME}｜{PHONE}" in details[0] and ADDRESS in details[0]
        assert texts_to(fake, loser) == [] and texts_to(fake, STAFF_A) == []
        for text in group_calls(fake, GROUP):
            assert_no_personal_data(text)
        # A redelivered winning tap sends nothing again.
        ok(fake.push(taps[[VOLUNTEER_1, VOLUNTEER_2].index(winner)]))
        assert len(texts_to(fake, winner)) == 1
        assert now(GROUP)["text"] == posts[GROUP]["text"] + "\n\n" + taken
    assert audit(engine, "view_retiree") == [
        ("volunteer", winner_id, {"case": number, "via": "telegram"})
    ]


def test_a_tap_by_an_unknown_user_or_from_outside_the_unit_is_refused(
    db_url: str, engine: Engine, trained_nlu_dir: Path, tmp_path: Path, fake: FakeTelegramApi
) -> None:
    make_team(engine)
    link(engine, "A1", GROUP)
    number = file_and_post(engine)
    with running_app(db_url, engine, trained_nlu_dir, tmp_path, fake):
        posts = send_outbox(fake, engine)
        for user, answer in (
            (STRANGER, t("staff.link_first")),
            (VOLUNTEER_B, desk("may_not_claim", number=number)),
        ):
            ok(fake.push(fake.callback_update(user, f"claim:{number}", message=posts[GROUP])))
            said = fake.calls_to("answerCallbackQuery")[-1]
            assert (said["text"], said["show_alert"]) == (answer, True)
        assert fake.messages[(GROUP, posts[GROUP]["message_id"])] == posts[GROUP]  # unchanged
        assert fake.calls_to("sendMessage") == [] and fake.calls_to("editMessageText") == []
    with transaction(engine) as session:
        assert session.scalars(select(Case)).one().status == CaseStatus.OPEN
    assert audit(engine, "view_retiree") == []


def test_a_claimer_the_bot_may_not_write_to_yet_is_sent_to_a_private_chat_for_the_details(
    db_url: str, engine: Engine, trained_nlu_dir: Path, tmp_path: Path, fake: FakeTelegramApi
) -> None:
    make_team(engine)
    link(engine, "A1", GROUP)
    number = file_and_post(engine)
    with running_app(db_url, engine, trained_nlu_dir, tmp_path, fake):
        posts = send_outbox(fake, engine)
        fake.never_started(VOLUNTEER_1)
        ok(fake.push(fake.callback_update(VOLUNTEER_1, f"claim:{number}", message=posts[GROUP])))
        answer = fake.calls_to("answerCallbackQuery")[-1]
        assert answer["text"] == t("staff.claimed_open_chat", number=number)
        assert answer["url"] == f"https://t.me/{BOT_USERNAME}?start=case_{number}"
        group_post = fake.messages[(GROUP, posts[GROUP]["message_id"])]
        taken = desk("taken_by", number=number, name="张志愿")
        assert group_post["text"] == posts[GROUP]["text"] + "\n\n" + taken
        tried = texts_to(fake, VOLUNTEER_1)
        assert len(tried) == 1 and NAME in tried[0]  # tried privately: refused,
        assert delivered_to(fake, VOLUNTEER_1) == [posts[VOLUNTEER_1]["message_id"]]  # not there
        # Someone else coming by the same link sees nothing.
        ok(fake.push(fake.text_update(VOLUNTEER_2, f"/start case_{number}")))
        assert texts_to(fake, VOLUNTEER_2) == [t("staff.details_not_yours", number=number)]
        # The link opens the private chat; its Start brings the details.
        ok(fake.push(fake.text_update(VOLUNTEER_1, f"/start case_{number}")))
        assert len(delivered_to(fake, VOLUNTEER_1)) == 2
        assert texts_to(fake, VOLUNTEER_1)[-1] == tried[0]
        # /mine asked in the group is answered privately.
        ok(fake.push(fake.text_update(VOLUNTEER_1, f"/mine@{BOT_USERNAME}", chat_id=GROUP)))
        assert texts_to(fake, VOLUNTEER_1)[-1].startswith("您在办的案件（1件）")
        assert texts_to(fake, GROUP) == []
    assert [label for label, _, _ in audit(engine, "view_retiree")] == ["volunteer"] * 2
