"""Answers to the follow-up question (回访) on the channels, end to end on SQLite and PostgreSQL:
a case resolved through storage.actions starts its round, the periodic job asks it, and the
retiree answers through the real app: a signed SMS or WhatsApp webhook over real HTTP, a button
pressed in the fake Telegram Bot API, or a key on the follow-up call the real worker places
through the fake Twilio REST API (the fake caller picks up). Not done or not satisfied reopens
the case and tells its owner; a redelivery answers nothing twice; only the person asked can
answer."""

from __future__ import annotations

import asyncio
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from bot.channels import senders_for
from bot.channels.twilio import messaging as twilio_messaging
from bot.channels.twilio.voice.sender import CallSender
from bot.conversation.follow_up_answers import parse_button
from bot.runtime.app import create_app
from bot.runtime.configure import load_deployment
from bot.runtime.periodic import run_all_once
from bot.runtime.worker import OutboxWorker
from config.settings import Settings
from storage import actions
from storage.db import transaction
from storage.models import (
    Case,
    CaseEvent,
    CaseStatus,
    ConversationState,
    Direction,
    FollowUp,
    FollowUpStatus,
    Message,
    MessageStatus,
    MessagingIdentity,
    OutboxItem,
    Retiree,
    Role,
    Staff,
)
from storage.permissions import Actor
from tests.bot.channels.telegram import test_telegram as tg
from tests.bot.channels.twilio import test_voice as voice
from tests.bot.channels.twilio.test_messaging import hotline as messaging_app
from tests.factories import make_retiree, make_staff, make_unit_tree
from tests.fakes.caller import FakeCaller, Press, Silence, serve
from tests.fakes.telegram_api import FakeTelegramApi
from tests.fakes.twilio_rest import FakeTwilio

SHANGHAI = ZoneInfo("Asia/Shanghai")
RESOLVED_AT = datetime(2026, 11, 24, 7, 30, tzinfo=SHANGHAI).astimezone(UTC)  # a Tuesday
ASKED_AT = RESOLVED_AT + timedelta(hours=2)  # 9:30, when the round is due
ANSWERED_AT = datetime(2026, 11, 24, 10, 0, tzinfo=SHANGHAI).astimezone(UTC)
PERSON = "+8613800000001"
OWNER_PHONE = "+8613700000009"
OTHER = "+8613800000077"

THANKS_NOT_SATISFIED = "对不起，让您不满意了。我们已经告诉负责的工作人员，他们会再联系您。"
THANKS_NOT_DONE = "对不起，事情还没办好。我们已经重新处理，负责的工作人员会尽快联系您。"
THANKS_SATISFIED = "谢谢您！祝您身体健康。"


@dataclass(frozen=True)
class Asked:
    case: str  # the case number
    follow_up: int
    question: OutboxItem


def resolve_and_ask(
    engine: Engine,
    *,
    channel: str,
    address: str | None = None,
    retiree_phone: str = PERSON,
    telegram_user: int | None = None,
    owner_phone: str = OWNER_PHONE,
    ask: bool = True,
) -> Asked:
    """王秀英's help request (filed on ``channel`` from ``address``) claimed and resolved by a
    staff member through storage.actions, then the periodic jobs at the time the round is due."""
    with transaction(engine) as session:
        tree = make_unit_tree(session)
        retiree = make_retiree(
            session, tree.community_a1, name="王秀英", phone=retiree_phone, age=75
        )
        if telegram_user is not None:
            retiree.identities.append(
                MessagingIdentity(channel="telegram", address=str(telegram_user))
            )
        staff = make_staff(session, Role.STAFF, [tree.station_a], name="钱社工", phone=owner_phone)
        number, follow_up_id = resolve_case(session, retiree, staff, channel, address)
    if ask:
        deployment = load_deployment(Settings(_env_file=None))
        assert run_all_once(engine, deployment, now=ASKED_AT)["follow_ups"] == 1
    with transaction(engine) as session:
        question = session.scalars(
            select(OutboxItem).where(OutboxItem.payload["kind"].as_string() == "follow_up")
        ).first()
    return Asked(number, follow_up_id, question)  # type: ignore[arg-type]


def resolve_case(
    session: Session, retiree: Retiree, staff: Staff, channel: str, address: str | None
) -> tuple[str, int]:
    """``retiree``'s help request (filed on ``channel`` from ``address``) claimed and resolved by
    ``staff`` through storage.actions: its number and the follow-up round that started."""
    filed_at = RESOLVED_AT - timedelta(hours=2)
    case = actions.file_case(
        session,
        category="help_request",
        channel=channel,
        actor=Actor.system("retiree"),
        retiree=retiree,
        summary="帮忙买菜",
        now=filed_at,
    )
    if address is not None:  # the message that filed it, as the engine records it
        session.add(
            Message(
                channel=channel,
                direction=Direction.INBOUND,
                status=MessageStatus.RECEIVED,
                address=address,
                provider_id="filing-1",
                text="帮我买菜",
                retiree_id=retiree.id,
                case_id=case.id,
                created_at=filed_at,
            )
        )
    actions.claim(session, case, Actor.person(staff), now=filed_at)
    actions.resolve(session, case, Actor.person(staff), outcome="菜已送到", now=RESOLVED_AT)
    follow_up = session.scalars(select(FollowUp).where(FollowUp.case_id == case.id)).one()
    assert follow_up.status == FollowUpStatus.PENDING  # resolving started the round
    return case.number, follow_up.id


def case_of(engine: Engine, number: str) -> Case:
    with transaction(engine) as session:
        return session.scalars(select(Case).where(Case.number == number)).one()


def round_of(engine: Engine, follow_up_id: int) -> FollowUp:
    with transaction(engine) as session:
        found = session.get(FollowUp, follow_up_id)
        assert found is not None
        return found


def outbox_of(engine: Engine, kind: str) -> list[OutboxItem]:
    with transaction(engine) as session:
        return list(
            session.scalars(
                select(OutboxItem)
                .where(OutboxItem.payload["kind"].as_string() == kind)
                .order_by(OutboxItem.id)
            )
        )


def events_of(engine: Engine, number: str) -> list[tuple[str, str, str]]:
    with transaction(engine) as session:
        return [
            (e.action, e.actor_label, e.note or e.reason)
            for e in session.scalars(
                select(CaseEvent)
                .join(Case, Case.id == CaseEvent.case_id)
                .where(Case.number == number)
                .order_by(CaseEvent.id)
            )
        ]


def count(engine: Engine, model: type) -> int:
    with transaction(engine) as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


# -- SMS and WhatsApp ------------------------------------------------------------------------------


class Clock:
    """When each message arrives: ANSWERED_AT, then a minute later for each one."""

    def __init__(self) -> None:
        self.now = ANSWERED_AT - timedelta(minutes=1)

    def __call__(self) -> datetime:
        self.now += timedelta(minutes=1)
        return self.now


@pytest.fixture
def sms(
    db_url: str,
    engine: Engine,
    trained_nlu_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Any:
    monkeypatch.setattr(twilio_messaging, "utcnow", Clock())

    def start() -> Any:
        return messaging_app(db_url, engine, trained_nlu_dir, tmp_path)

    return start


@pytest.mark.parametrize("sender", [PERSON, f"whatsapp:{PERSON}"], ids=["sms", "whatsapp"])
def test_a_text_of_2_reopens_the_case_tells_the_owner_and_a_redelivery_answers_once(
    sms: Any, engine: Engine, sender: str
) -> None:
    channel = twilio_messaging.channel_of(sender)
    asked = resolve_and_ask(engine, channel=channel, address=sender)
    assert (asked.question.channel, asked.question.address) == (channel, sender)
    assert "请回复数字" in asked.question.payload["text"]
    with sms() as twilio:
        response = twilio.message("２", "SM0101", sender)  # a full-width 2 from a Chinese keyboard
        assert response.status_code == 200, response.text
        stored = (count(engine, Message), count(engine, OutboxItem), count(engine, CaseEvent))
        again = twilio.message("２", "SM0101", sender)  # Twilio delivers it again
        assert again.status_code == 200
        assert (count(engine, Message), count(engine, OutboxItem), count(engine, CaseEvent)) == (
            stored
        )

    case = case_of(engine, asked.case)
    assert case.status == CaseStatus.CLAIMED  # back with its owner
    answered = round_of(engine, asked.follow_up)
    assert (answered.status, answered.done, answered.satisfied) == (
        FollowUpStatus.ANSWERED,
        True,
        False,
    )
    [reply] = outbox_of(engine, "reply")
    assert (reply.channel, reply.address, reply.idempotency_key) == (
        channel,
        sender,
        f"reply:{channel}:SM0101:0",
    )
    assert reply.payload["text"] == THANKS_NOT_SATISFIED
    [told] = outbox_of(engine, "follow_up_reopened")
    assert (told.channel, told.address) == ("sms", OWNER_PHONE)
    assert (
        told.payload["text"]
        == f"个案 {asked.case} 回访：老人不满意，个案已重新打开，请尽快联系老人。"
    )
    with transaction(engine) as session:
        inbound = session.scalars(select(Message).where(Message.provider_id == "SM0101")).one()
        assert (inbound.text, inbound.status, inbound.case_id) == ("2", "follow_up", case.id)
        assert inbound.retiree_id == case.retiree_id
        assert session.scalars(select(ConversationState)).all() == []  # no turn ran
    assert events_of(engine, asked.case)[-2:] == [
        ("follow_up_answered", "retiree", "回访回答：办好了，但不满意"),
        ("reopen", "retiree", "回访：老人说办好了但不满意"),
    ]


def test_a_text_of_1_leaves_the_case_resolved(sms: Any, engine: Engine) -> None:
    asked = resolve_and_ask(engine, channel="sms", address=PERSON)
    with sms() as twilio:
        assert twilio.message("1", "SM0201").status_code == 200
    assert case_of(engine, asked.case).status == CaseStatus.RESOLVED
    assert round_of(engine, asked.follow_up).satisfied is True
    assert [i.payload["text"] for i in outbox_of(engine, "reply")] == [THANKS_SATISFIED]
    assert outbox_of(engine, "follow_up_reopened") == []


def test_any_other_text_and_other_numbers_run_a_normal_turn(sms: Any, engine: Engine) -> None:
    asked = resolve_and_ask(engine, channel="sms", address=PERSON)
    with sms() as twilio:
        assert twilio.message("你好", "SM0301").status_code == 200
        assert twilio.message("3", "SM0302", OTHER).status_code == 200  # not asked: a turn
    assert round_of(engine, asked.follow_up).status == FollowUpStatus.ASKED
    assert case_of(engine, asked.case).status == CaseStatus.RESOLVED
    with transaction(engine) as session:
        turns = {s.address: s.state["turns"] for s in session.scalars(select(ConversationState))}
        assert turns == {PERSON: 1, OTHER: 1}
        statuses = session.scalars(
            select(Message.status).where(Message.provider_id.in_(["SM0301", "SM0302"]))
        ).all()
        assert sorted(statuses) == ["received", "received"]
    replies = outbox_of(engine, "reply")
    assert len(replies) == 2 and THANKS_NOT_DONE not in [r.payload["text"] for r in replies]


def test_a_digit_in_the_middle_of_a_conversation_answers_the_conversation(
    sms: Any, engine: Engine
) -> None:
    """The question was sent at 9:30; at 10:00 the person starts a request and is offered
    numbered choices: their "1" picks one of those, and the follow-up waits."""
    asked = resolve_and_ask(engine, channel="sms", address=PERSON)
    with sms() as twilio:
        twilio.message("我想报销药费，大概三百块，是上个月住院的", "SM0401")
        twilio.message("1", "SM0402")
    assert round_of(engine, asked.follow_up).status == FollowUpStatus.ASKED
    texts = [r.payload["text"] for r in outbox_of(engine, "reply")]
    assert texts[0].startswith("票据是请工作人员上门来取") and texts[1].startswith("我核对一下")


# -- Telegram ----------------------------------------------------------------------------------------


@pytest.fixture
def fake() -> Iterator[FakeTelegramApi]:
    with FakeTelegramApi(token=tg.TOKEN) as api:
        yield api


def test_a_telegram_button_answers_and_nobody_else_can(
    db_url: str, engine: Engine, trained_nlu_dir: Path, tmp_path: Path, fake: FakeTelegramApi
) -> None:
    stranger = tg.PERSON + 100
    asked = resolve_and_ask(engine, channel="telegram", telegram_user=tg.PERSON)
    assert (asked.question.channel, asked.question.address) == ("telegram", str(tg.PERSON))
    settings = tg.settings_for(db_url, tmp_path, trained_nlu_dir, fake)
    worker = OutboxWorker(engine, senders_for(settings))
    try:
        asyncio.run(worker.run_once())  # the claim and resolve notices, and the question
    finally:
        asyncio.run(worker.aclose())
    # The worker sends several at once: the question is the one with the buttons.
    [question] = [c for c in tg.sent_to(fake, tg.PERSON) if "请点下面的按钮" in c["text"]]
    fu = asked.follow_up
    assert tg.keyboard(question) == [
        ("1 办好了，满意", f"fu:{fu}:1"),
        ("2 办好了，不满意", f"fu:{fu}:2"),
        ("3 还没办好", f"fu:{fu}:3"),
    ]
    [message] = [
        m
        for (chat, _), m in fake.messages.items()
        if chat == tg.PERSON and "请点下面的按钮" in m["text"]
    ]
    with tg.running_app(db_url, engine, trained_nlu_dir, tmp_path, fake):
        # Somebody else presses the button (a forged or forwarded press): refused.
        tg.ok(fake.push(fake.callback_update(stranger, f"fu:{fu}:1", message=message)))
        [refusal] = fake.calls_to("answerCallbackQuery")
        assert refusal["show_alert"] is True
        assert refusal["text"] == "这条回访不是问您的，不能由您回答。"
        assert round_of(engine, fu).status == FollowUpStatus.ASKED

        press = fake.callback_update(tg.PERSON, f"fu:{fu}:3", message=message)
        tg.ok(fake.push(press))
        tg.ok(fake.push(press))  # Telegram delivers it again
        edited = fake.calls_to("editMessageText")
        assert len(edited) == 1 and edited[0]["text"] == question["text"] + "\n\n✅ 3 还没办好"
        assert "reply_markup" not in edited[0]  # the buttons go: it cannot be answered twice
        assert tg.texts_to(fake, tg.PERSON)[-1] == THANKS_NOT_DONE
        assert tg.texts_to(fake, tg.PERSON).count(THANKS_NOT_DONE) == 1
    assert case_of(engine, asked.case).status == CaseStatus.CLAIMED
    answered = round_of(engine, fu)
    assert (answered.status, answered.done) == (FollowUpStatus.ANSWERED, False)
    assert [e[0] for e in events_of(engine, asked.case)].count("follow_up_answered") == 1
    [told] = outbox_of(engine, "follow_up_reopened")
    assert told.address == OWNER_PHONE


def test_button_data() -> None:
    assert parse_button("fu:12:3") == (12, "3")
    for data in ("fu:12:4", "fu::1", "fu:x:1", "collect", "fu:12:1:1", "#1"):
        assert parse_button(data) is None


# -- the follow-up call --------------------------------------------------------------------------


@dataclass
class Line:
    caller: FakeCaller
    twilio: FakeTwilio
    worker: OutboxWorker


@pytest.fixture
def line(db_url: str, engine: Engine, trained_nlu_dir: Path, tmp_path: Path) -> Iterator[Line]:
    shutil.copytree(trained_nlu_dir / "nlu-cache", tmp_path / "nlu-cache")
    with FakeTwilio() as twilio:
        settings = voice.settings_for(db_url, tmp_path, twilio_api_url=twilio.url)
        worker = OutboxWorker(engine, senders_for(settings))
        with serve(create_app(settings, engine)) as local, httpx.Client(timeout=60) as client:
            try:
                yield Line(
                    FakeCaller(local, voice.PUBLIC_URL, voice.TOKEN, client=client), twilio, worker
                )
            finally:
                asyncio.run(worker.aclose())


def place_the_call(line: Line, engine: Engine) -> tuple[Asked, dict[str, Any]]:
    """A phone caller's case resolved; the worker places the follow-up call."""
    asked = resolve_and_ask(engine, channel="phone", address=PERSON)
    assert (asked.question.channel, asked.question.address) == ("voice", PERSON)
    asyncio.run(line.worker.run_once())
    [placed] = [c for c in line.twilio.calls if c["to"] == PERSON]
    return asked, placed


def test_the_worker_places_the_follow_up_call_and_pressing_3_reopens_the_case(
    line: Line, engine: Engine
) -> None:
    asked, placed = place_the_call(line, engine)
    gather = ET.fromstring(placed["twiml"]).find("Gather")
    assert gather is not None
    assert gather.attrib["action"] == (
        f"{voice.PUBLIC_URL}/twilio/voice/follow-up?fu={asked.follow_up}"
    )
    assert (gather.attrib["input"], gather.attrib["numDigits"]) == ("dtmf", "1")
    assert gather.attrib["actionOnEmptyResult"] == "true"
    call = line.caller.pick_up(placed, [Press("3")])
    assert call.said[0] == call.said[1] and "还没办好，请按3" in call.said[0]  # asked twice
    assert call.said[-1] == THANKS_NOT_DONE and call.ended_by == "app"
    assert case_of(engine, asked.case).status == CaseStatus.CLAIMED
    assert round_of(engine, asked.follow_up).done is False
    [told] = outbox_of(engine, "follow_up_reopened")
    assert told.address == OWNER_PHONE
    # Twilio repeats the webhook: nothing is answered twice.
    events = count(engine, CaseEvent)
    assert line.caller.replay(call.exchanges[-1]).status_code == 200
    assert count(engine, CaseEvent) == events


def test_no_key_says_goodbye_and_the_round_stays_asked(line: Line, engine: Engine) -> None:
    asked, placed = place_the_call(line, engine)
    call = line.caller.pick_up(placed, [Silence()])
    assert call.said[-1] == "没有收到您的按键。我们以后再联系您。再见。"
    assert round_of(engine, asked.follow_up).status == FollowUpStatus.ASKED
    assert case_of(engine, asked.case).status == CaseStatus.RESOLVED


def test_another_key_hears_the_question_again(line: Line, engine: Engine) -> None:
    asked, placed = place_the_call(line, engine)
    call = line.caller.pick_up(placed, [Press("7"), Press("1")])
    assert call.said.count(call.said[0]) == 3  # twice at first, once more after the 7
    assert call.said[-1] == THANKS_SATISFIED
    assert round_of(engine, asked.follow_up).satisfied is True
    assert case_of(engine, asked.case).status == CaseStatus.RESOLVED


def test_the_follow_up_webhook_is_signed_and_answers_only_the_number_called(
    line: Line, engine: Engine
) -> None:
    asked, placed = place_the_call(line, engine)
    url = f"{voice.PUBLIC_URL}/twilio/voice/follow-up?fu={asked.follow_up}"
    params = line.caller.outbound_params(placed, "in-progress") | {"Digits": "3"}
    assert line.caller.post(url, params, signature=None).status_code == 403
    assert line.caller.post(url, params, signature="forged").status_code == 403
    somebody_else = line.caller.post(url, params | {"To": OTHER, "Called": OTHER})
    assert somebody_else.status_code == 200 and "<Hangup" in somebody_else.text
    assert round_of(engine, asked.follow_up).status == FollowUpStatus.ASKED
    assert case_of(engine, asked.case).status == CaseStatus.RESOLVED


def test_without_a_public_url_the_call_only_asks(db_url: str, tmp_path: Path) -> None:
    with FakeTwilio() as twilio:
        settings = voice.settings_for(db_url, tmp_path, twilio_api_url=twilio.url, public_url="")
        sender = CallSender(settings)
        payload = {"kind": "follow_up", "follow_up": 5, "text": "请按1", "language": "zh"}

        async def send() -> None:
            try:
                outcome = await sender.send("voice", PERSON, payload, "k1")
                assert outcome.sent
            finally:
                await sender.aclose()

        asyncio.run(send())
        [placed] = twilio.calls
    doc = ET.fromstring(placed["twiml"])
    assert [verb.tag for verb in doc] == ["Say", "Pause", "Say"]
