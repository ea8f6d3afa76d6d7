"""The WeChat sender through a real outbox worker round, at the fake WeChat API: the 48-hour /
5-message customer-service window, and what goes instead when a notice no longer fits it."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from bot.channels.wechat.sender import WINDOW_MESSAGES, WeChatSender
from bot.runtime.worker import OutboxWorker
from config.wechat import load_wechat
from storage import messages
from storage.db import transaction
from storage.models import Direction, Message, MessageStatus, OutboxItem, OutboxStatus
from storage.outbox import enqueue
from storage.types import utcnow
from tests.bot.channels.wechat.conftest import OPENID, PHONE, outbox, registered, settings_for
from tests.fakes.wechat_api import FakeWeChatApi

NOTICE = {
    "kind": "case_claimed",
    "case": "2026-000007",
    "text": "您的事情已经有人接手了，编号2026-000007。",
}


def sender_for(engine: Engine, fake: FakeWeChatApi, tmp_path: Path, **overrides: Any) -> Any:
    db_url = engine.url.render_as_string(hide_password=False)
    settings = settings_for(db_url, tmp_path, wechat_api_url=fake.url, **overrides)
    return WeChatSender(settings, load_wechat(settings.config_dir))


def wrote_us(engine: Engine, hours_ago: float, provider_id: str = "in-1") -> None:
    """The person's last message to us, ``hours_ago``."""
    with transaction(engine) as session:
        messages.record_once(
            session,
            channel="wechat",
            direction=Direction.INBOUND,
            address=OPENID,
            provider_id=provider_id,
            text="你好",
            status=MessageStatus.RECEIVED,
            now=utcnow() - timedelta(hours=hours_ago),
        )


def send(engine: Engine, sender: Any, payload: dict[str, Any], key: str) -> OutboxItem:
    """``payload`` to the person through one worker round; the item after it."""
    with transaction(engine) as session:
        item_id = enqueue(
            session, channel="wechat", address=OPENID, payload=payload, idempotency_key=key
        )
    return send_item(engine, sender, item_id)


def send_item(engine: Engine, sender: Any, item: OutboxItem | int) -> OutboxItem:
    """One worker round that sends ``item`` (waiting in the outbox); the item after it."""
    item_id = item if isinstance(item, int) else item.id

    async def one_round() -> None:
        worker = OutboxWorker(engine, {"wechat": sender})
        await worker.run_once()
        await sender.aclose()

    asyncio.run(one_round())
    with transaction(engine) as session:
        item = session.get(OutboxItem, item_id)
        assert item is not None
        return item


def test_inside_the_window_a_customer_service_message_and_five_at_most(
    engine: Engine, fake_api: FakeWeChatApi, tmp_path: Path
) -> None:
    registered(engine)
    wrote_us(engine, hours_ago=47)
    sender = sender_for(engine, fake_api, tmp_path, wechat_notice_template_id="TPL-1")
    for n in range(WINDOW_MESSAGES + 1):
        assert send(engine, sender, NOTICE, f"notice-{n}").status == OutboxStatus.SENT
    assert [m["text"]["content"] for m in fake_api.custom] == [NOTICE["text"]] * WINDOW_MESSAGES
    [template] = fake_api.templates  # the sixth no longer fits
    assert template["touser"] == OPENID and template["template_id"] == "TPL-1"
    assert template["data"] == {
        "character_string1": {"value": "2026-000007"},
        "thing2": {"value": NOTICE["text"][:20]},
        "time3": {"value": f"{utcnow():%Y-%m-%d}"},
    }
    with transaction(engine) as session:
        ids = session.scalars(
            select(Message.provider_id).where(Message.direction == Direction.OUTBOUND)
        ).all()
    assert sorted(ids) == sorted([f"cs:notice-{n}" for n in range(5)] + ["tpl:1001"])
    assert fake_api.tokens_issued == 1  # one token, kept in the database


def test_after_48_hours_a_notice_goes_by_sms_to_the_linked_phone(
    engine: Engine, fake_api: FakeWeChatApi, tmp_path: Path
) -> None:
    registered(engine)
    wrote_us(engine, hours_ago=49)
    item = send(engine, sender_for(engine, fake_api, tmp_path), NOTICE, "notice-late")
    assert item.status == OutboxStatus.SENT
    assert fake_api.custom == [] and fake_api.templates == []
    [sms] = outbox(engine, "sms")
    assert (sms.address, sms.idempotency_key) == (PHONE, "notice-late:sms")
    assert sms.payload == {**NOTICE, "instead_of": "wechat"}


def test_a_notice_with_no_way_left_fails_and_says_why(
    engine: Engine, fake_api: FakeWeChatApi, tmp_path: Path
) -> None:
    wrote_us(engine, hours_ago=49)  # an account linked to nobody: no phone
    item = send(engine, sender_for(engine, fake_api, tmp_path), NOTICE, "notice-lost")
    assert item.status == OutboxStatus.DEAD
    assert "48-hour" in item.last_error and "HOTLINE_WECHAT_NOTICE_TEMPLATE_ID" in item.last_error


def test_a_reply_outside_the_window_is_not_sent(
    engine: Engine, fake_api: FakeWeChatApi, tmp_path: Path
) -> None:
    registered(engine)
    reply = {"kind": "reply", "text": "好的", "language": "zh"}
    item = send(engine, sender_for(engine, fake_api, tmp_path), reply, "reply-late")
    assert item.status == OutboxStatus.DEAD and "window" in item.last_error
    assert outbox(engine, "sms") == []


@pytest.mark.parametrize(
    ("errcode", "status", "goes_by"),
    [
        (45015, OutboxStatus.SENT, "template"),  # WeChat says the window closed
        (45047, OutboxStatus.SENT, "template"),  # too many messages
        (43004, OutboxStatus.DEAD, None),  # unfollowed us
        (45009, OutboxStatus.PENDING, None),  # the API's daily limit: later
    ],
)
def test_what_wechat_refuses(
    engine: Engine,
    fake_api: FakeWeChatApi,
    tmp_path: Path,
    errcode: int,
    status: OutboxStatus,
    goes_by: str | None,
) -> None:
    registered(engine)
    wrote_us(engine, hours_ago=1)
    fake_api.fail("/cgi-bin/message/custom/send", errcode)
    sender = sender_for(engine, fake_api, tmp_path, wechat_notice_template_id="TPL-1")
    item = send(engine, sender, NOTICE, f"notice-{errcode}")
    assert item.status == status
    assert len(fake_api.templates) == (1 if goes_by == "template" else 0)
    if status == OutboxStatus.PENDING:
        assert item.next_attempt_at >= utcnow() + timedelta(seconds=50)


def test_an_ended_token_is_fetched_again_once_for_every_server(
    engine: Engine, fake_api: FakeWeChatApi, tmp_path: Path
) -> None:
    registered(engine)
    wrote_us(engine, hours_ago=1)
    first, second = sender_for(engine, fake_api, tmp_path), sender_for(engine, fake_api, tmp_path)
    assert send(engine, first, NOTICE, "a").status == OutboxStatus.SENT
    assert send(engine, second, NOTICE, "b").status == OutboxStatus.SENT
    assert fake_api.tokens_issued == 1  # the second server used the first one's token
    fake_api.end_tokens()
    assert send(engine, second, NOTICE, "c").status == OutboxStatus.SENT
    assert fake_api.tokens_issued == 2
    assert len(fake_api.custom) == 3
