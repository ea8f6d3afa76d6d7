"""End to end: a request filed through the conversation engine (SMS, a phone call, Telegram),
claimed and resolved through storage.actions, and the retiree's notices delivered by the outbox
worker (what `hotline worker --once` runs) to the fake Twilio REST API and the fake Telegram Bot
API, through the real twilio and python-telegram-bot clients, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select

from bot.channels import senders_for
from bot.channels.twilio.rest import IDEMPOTENCY_HEADER, idempotency_token
from bot.conversation.engine import ConversationEngine
from bot.conversation.messages import Inbound
from bot.runtime.worker import OutboxWorker
from config.settings import Settings
from storage import actions
from storage.db import transaction
from storage.models import (
    MessagingIdentity,
    OutboxItem,
    OutboxStatus,
    RetireePhone,
    Role,
    Staff,
)
from storage.permissions import Actor
from tests.factories import make_retiree, make_staff, make_unit_tree
from tests.fakes.telegram_api import FakeTelegramApi
from tests.fakes.twilio_rest import FakeTwilio

SID = "AC" + "2" * 32
OUR_NUMBER = "+15005550006"
TOKEN = "123:ABC"
RETIREE_PHONE = "+8613800000021"
OTHER_PHONE = "+8613800000022"  # the retiree's second phone: the call comes from it
TELEGRAM_USER = 7001
# Monday 7 December 2026, 10:00 in Shanghai. Medication-cost reimbursement is resolved within
# 5 working days: by Monday 14 December at 10:00.
FILED = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)
MEDICATION = ("我想报销药费，门诊的，三百块", "上门来取", "对")


@pytest.fixture
def twilio() -> Iterator[FakeTwilio]:
    with FakeTwilio() as fake:
        yield fake


@pytest.fixture
def telegram() -> Iterator[FakeTelegramApi]:
    with FakeTelegramApi(token=TOKEN) as fake:
        yield fake


def settings(twilio: FakeTwilio | None = None, telegram: FakeTelegramApi | None = None) -> Settings:
    values: dict[str, Any] = {"_env_file": None}
    if twilio is not None:
        values.update(
            twilio_account_sid=SID,
            twilio_auth_token="secret",
            twilio_from_number=OUR_NUMBER,
            twilio_api_url=twilio.url,
        )
    if telegram is not None:
        values.update(telegram_bot_token=TOKEN, telegram_api_url=telegram.url)
    return Settings(**values)


def people(engine: Engine) -> int:
    """A retiree with two phones and a Telegram account; the volunteer 王芳 of their
    community. Returns the volunteer's id."""
    with transaction(engine) as session:
        tree = make_unit_tree(session)
        retiree = make_retiree(session, tree.community_a1, phone=RETIREE_PHONE, name="张大爷")
        retiree.phones.append(RetireePhone(number=OTHER_PHONE))
        session.add(
            MessagingIdentity(retiree=retiree, channel="telegram", address=str(TELEGRAM_USER))
        )
        volunteer = make_staff(
            session, Role.VOLUNTEER, [tree.community_a1], name="王芳", phone="+8613700007777"
        )
        return volunteer.id


def converse(bot: ConversationEngine, channel: str, address: str, lines: Sequence[str]) -> str:
    """The conversation through the engine; returns the number of the one case it filed."""
    filed: list[str] = []
    for n, text in enumerate(lines):
        result = bot.handle(
            Inbound(
                channel=channel,
                address=address,
                provider_id=f"{channel}:{address}:{n}",
                received_at=FILED + timedelta(seconds=n),
                text=text,
            )
        )
        filed += [case.number for case in result.cases]
    assert len(filed) == 1, filed
    return filed[0]


async def worker_once(engine: Engine, config: Settings, at: datetime) -> int:
    """What `hotline worker --once` does (bot/cli/worker.py), with the clock at ``at``."""
    worker = OutboxWorker(
        engine, senders_for(config), language=config.default_language, clock=lambda: at
    )
    total = 0
    try:
        await worker.maintain()
        while (attempted := await worker.run_once()) > 0:
            total += attempted
    finally:
        await worker.aclose()
    return total


def claim(engine: Engine, number: str, staff_id: int, at: datetime) -> None:
    with transaction(engine) as session:
        staff = session.get(Staff, staff_id)
        assert staff is not None
        actions.claim(session, actions.get_case(session, number), Actor.person(staff), now=at)


def resolve(engine: Engine, number: str, staff_id: int, outcome: str, at: datetime) -> None:
    with transaction(engine) as session:
        staff = session.get(Staff, staff_id)
        assert staff is not None
        case = actions.get_case(session, number)
        actions.resolve(session, case, Actor.person(staff), outcome=outcome, now=at)


def outbox_items(engine: Engine, number: str) -> list[OutboxItem]:
    with transaction(engine) as session:
        return list(
            session.scalars(
                select(OutboxItem)
                .where(OutboxItem.idempotency_key.startswith(f"{number}:"))
                .order_by(OutboxItem.id)
            )
        )


@pytest.mark.asyncio
async def test_an_sms_request_is_told_by_sms_when_claimed_and_when_resolved(
    engine: Engine, bot: ConversationEngine, twilio: FakeTwilio
) -> None:
    volunteer = people(engine)
    number = converse(bot, "sms", RETIREE_PHONE, MEDICATION)
    config = settings(twilio)

    claim(engine, number, volunteer, FILED + timedelta(minutes=10))
    assert await worker_once(engine, config, FILED + timedelta(minutes=11)) == 1
    (claimed,) = twilio.creates("Messages")
    assert claimed.form["To"] == RETIREE_PHONE and claimed.form["From"] == OUR_NUMBER
    assert claimed.form["Body"] == (
        f"【社区一键通】您的求助（编号{number}）已由志愿者王芳接手，"
        "争取在12月14日星期一 10:00前为您办好。"
    )
    assert claimed.header(IDEMPOTENCY_HEADER) == idempotency_token(f"{number}:case_claimed:1")

    resolve(engine, number, volunteer, "报销款320元已转到您的银行卡", FILED + timedelta(days=2))
    assert await worker_once(engine, config, FILED + timedelta(days=2, minutes=1)) == 1
    resolved = twilio.creates("Messages")[-1]
    assert resolved.form["To"] == RETIREE_PHONE
    assert resolved.form["Body"] == (
        f"【社区一键通】您的求助（编号{number}）已办结：报销款320元已转到您的银行卡"
    )
    assert [i.status for i in outbox_items(engine, number)] == [OutboxStatus.SENT] * 2
    assert await worker_once(engine, config, FILED + timedelta(days=3)) == 0  # sent once


@pytest.mark.asyncio
async def test_a_phone_call_is_told_by_sms_to_the_number_that_called(
    engine: Engine, bot: ConversationEngine, twilio: FakeTwilio
) -> None:
    volunteer = people(engine)
    number = converse(bot, "phone", OTHER_PHONE, MEDICATION)
    claim(engine, number, volunteer, FILED + timedelta(minutes=10))
    assert await worker_once(engine, settings(twilio), FILED + timedelta(minutes=11)) == 1
    (sms,) = twilio.creates("Messages")
    assert sms.form["To"] == OTHER_PHONE  # not the first phone on file
    assert f"编号{number}" in sms.form["Body"] and "志愿者王芳" in sms.form["Body"]
    assert twilio.creates("Calls") == []  # a message, not a call


@pytest.mark.asyncio
async def test_a_telegram_request_is_told_in_its_chat_after_claim_next(
    engine: Engine, bot: ConversationEngine, telegram: FakeTelegramApi
) -> None:
    volunteer = people(engine)
    number = converse(bot, "telegram", str(TELEGRAM_USER), MEDICATION)
    with transaction(engine) as session:  # on PostgreSQL: the one-statement claim
        staff = session.get(Staff, volunteer)
        assert staff is not None
        case = actions.claim_next(session, Actor.person(staff), now=FILED + timedelta(minutes=3))
        assert case is not None and case.number == number
    config = settings(telegram=telegram)
    assert await worker_once(engine, config, FILED + timedelta(minutes=4)) == 1
    (sent,) = telegram.calls_to("sendMessage")
    assert sent["chat_id"] == TELEGRAM_USER
    assert sent["text"] == (
        f"【社区一键通】您的求助（编号{number}）已由志愿者王芳接手，"
        "争取在12月14日星期一 10:00前为您办好。"
    )
    assert "reply_markup" not in sent
    assert [i.status for i in outbox_items(engine, number)] == [OutboxStatus.SENT]
