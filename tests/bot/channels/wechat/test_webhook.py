"""The WeChat webhook over real HTTP: signatures, safe mode, one turn per message answered in the
webhook's own reply, redeliveries, what is refused."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from storage.db import transaction
from storage.models import Attachment, Case, Message, OutboxStatus
from tests.bot.channels.wechat.conftest import (
    outbox,
    registered,
    signature,
    text_xml,
)
from tests.bot.channels.wechat.test_sender import send_item, sender_for

ASKS_KIND = "好的，帮您办药费报销。请问是哪方面的药费？比如住院、门诊，还是药店买的药？"


def count(engine: Engine, model: type) -> int:
    with transaction(engine) as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def test_wechat_checks_the_url_with_our_signature(wechat: Any) -> None:
    with wechat() as side:
        now = str(int(time.time()))
        query = {"signature": signature(now, "n"), "timestamp": now, "nonce": "n", "echostr": "E1"}
        assert side.http.get(f"{side.url}/wechat", params=query).text == "E1"
        forged = {**query, "signature": signature(now, "n", token="not-ours")}
        refused = side.http.get(f"{side.url}/wechat", params=forged)
        assert refused.status_code == 403
        assert "signature" in refused.json()["detail"]


def test_a_linked_person_is_answered_in_the_webhook_reply(wechat: Any, engine: Engine) -> None:
    registered(engine)
    with wechat() as side:
        first = side.say("我想报销药费", msg_id=5001)
        assert side.reply_text(first) == ASKS_KIND
        again = side.say("我想报销药费", msg_id=5001)  # WeChat's retry: the same answer
        assert side.reply_text(again) == side.reply_text(first)
    [item] = outbox(engine, "wechat")
    assert item.status == OutboxStatus.SENT
    assert item.idempotency_key == "reply:wechat:5001:0"
    with transaction(engine) as session:
        inbound = session.scalars(
            select(Message).where(Message.provider_id == "5001", Message.direction == "inbound")
        ).one()
        assert inbound.retiree_id is not None
        out = session.scalars(select(Message).where(Message.provider_id.like("passive:%"))).one()
        assert out.provider_id == "passive:reply:wechat:5001:0"  # answered in the webhook
        assert out.text == side.reply_text(first)


def test_safe_mode_decrypts_and_answers_encrypted(wechat: Any, engine: Engine) -> None:
    registered(engine)
    key = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
    with wechat(wechat_aes_key=key) as side:
        answer = side.say("我想报销药费", msg_id=6001)
        assert "<Encrypt>" in answer.text and ASKS_KIND not in answer.text
        assert ASKS_KIND in side.reply_text(answer)
        plain = side.post(text_xml("我想报销药费", 6002), encrypt=False)
        assert plain.status_code == 403
        assert "safe mode" in plain.json()["detail"]
    with transaction(engine) as session:
        seen = session.scalars(select(Message.provider_id).where(Message.direction == "inbound"))
        assert list(seen) == ["6001"]  # the plain one was not kept


@pytest.mark.parametrize(
    ("tamper", "status", "says"),
    [
        ({"token": "forged-token"}, 403, "signature"),
        ({"timestamp": str(int(time.time()) - 3600)}, 403, "replay"),
    ],
    ids=["forged", "old"],
)
def test_forged_or_old_requests_are_refused_and_nothing_is_kept(
    wechat: Any, engine: Engine, tamper: dict[str, str], status: int, says: str
) -> None:
    with wechat() as side:
        refused = side.post(text_xml("我想报销药费", 7001), **tamper)
        assert refused.status_code == status
        assert says in refused.json()["detail"]
    assert count(engine, Message) == 0
    assert outbox(engine) == []


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ("<xml><ToUserName>gh</ToUserName>", "not a WeChat message"),
        ("not xml at all", "not a WeChat message"),
        ("<xml><MsgType>text</MsgType><Content>hi</Content></xml>", "FromUserName"),
    ],
    ids=["cut", "text", "no-sender"],
)
def test_bad_xml_is_refused_with_what_is_wrong(wechat: Any, body: str, says: str) -> None:
    with wechat() as side:
        refused = side.post(body)
        assert refused.status_code == 400
        assert says in refused.json()["detail"]


def test_nul_is_cleaned_and_a_long_text_is_cut(wechat: Any, engine: Engine) -> None:
    registered(engine)
    with wechat() as side:
        assert side.say("我想\x00报销药费", msg_id=8001).status_code == 200
        assert side.say("好" * 5000, msg_id=8002).status_code == 200
    with transaction(engine) as session:
        texts = dict(session.execute(select(Message.provider_id, Message.text)).all())
    assert texts["8001"] == "我想报销药费"
    assert len(texts["8002"]) == 2000


def test_a_slow_turn_gets_success_and_its_reply_waits_for_the_worker(
    wechat: Any, engine: Engine
) -> None:
    registered(engine)
    with wechat(wechat_reply_within_s=0.001) as side:
        answer = side.say("我想报销药费", msg_id=9001)
        assert answer.text == "success"
        deadline = time.monotonic() + 20
        while not outbox(engine, "wechat") and time.monotonic() < deadline:
            time.sleep(0.05)
    [item] = outbox(engine, "wechat")
    assert item.status == OutboxStatus.PENDING
    assert item.next_attempt_at > item.created_at  # held past the webhook's budget
    assert ASKS_KIND in item.payload["text"]


def test_a_voice_message_is_understood_by_its_recognition(wechat: Any, engine: Engine) -> None:
    from tests.bot.channels.wechat.conftest import voice_xml

    registered(engine)
    with wechat() as side:
        answer = side.post(voice_xml("我想报销药费。", 9101))
        assert ASKS_KIND in side.reply_text(answer)


def test_a_voice_message_without_recognition_is_filed_for_staff_to_hear(
    wechat: Any, engine: Engine, fake_api: Any, tmp_path: Path
) -> None:
    from tests.bot.channels.wechat.conftest import voice_xml

    registered(engine)
    with wechat() as side:
        answer = side.reply_text(side.post(voice_xml("", 9201, media_id="MEDIA-9")))
    assert "收到您的语音留言" in answer
    with transaction(engine) as session:
        case = session.scalars(select(Case)).one()
        assert case.category == "callback"
        assert case.details["reason"] == "voice_note"
        assert case.details["audio"] == {
            "channel": "wechat",
            "media_id": "MEDIA-9",
            "format": "amr",
        }
    assert case.number in answer
    # The worker fetches the audio from WeChat (kept there 3 days) onto the case.
    [fetch] = [i for i in outbox(engine, "wechat") if i.payload["kind"] == "fetch_media"]
    assert fetch.payload["case"] == case.number
    fake_api.add_media("MEDIA-9", b"#!AMR\n-the-voice")
    assert send_item(engine, sender_for(engine, fake_api, tmp_path), fetch).status == "sent"
    with transaction(engine) as session:
        [kept] = session.scalars(select(Attachment)).all()
        assert (kept.case_id, kept.data, kept.content_type) == (
            case.id,
            b"#!AMR\n-the-voice",
            "audio/amr",
        )


def test_a_voice_message_gone_from_wechat_is_a_failed_fetch_that_says_so(
    wechat: Any, engine: Engine, fake_api: Any, tmp_path: Path
) -> None:
    from tests.bot.channels.wechat.conftest import voice_xml

    registered(engine)
    with wechat() as side:
        side.post(voice_xml("", 9301, media_id="MEDIA-GONE"))
    [fetch] = [i for i in outbox(engine, "wechat") if i.payload["kind"] == "fetch_media"]
    failed = send_item(engine, sender_for(engine, fake_api, tmp_path), fetch)
    assert failed.status == "dead" and "40007" in failed.last_error


def test_the_channel_is_off_and_says_why_without_its_settings_or_with_a_bad_file(
    tmp_path: Path,
) -> None:
    from fastapi import FastAPI

    from bot.channels import wechat as wechat_channel
    from bot.runtime.configure import load_deployment
    from config.settings import CONFIG_DIR, Settings

    half = Settings(wechat_token="t", wechat_app_id="wx1", _env_file=None)
    off = wechat_channel.mount(FastAPI(), load_deployment(half))
    assert off.describe() == (
        "wechat: off (no HOTLINE_WECHAT_TOKEN, HOTLINE_WECHAT_APP_ID or HOTLINE_WECHAT_APP_SECRET)"
    )
    shutil.copytree(CONFIG_DIR, tmp_path / "config", ignore=shutil.ignore_patterns("*.py"))
    menu = tmp_path / "config" / "wechat.yml"
    menu.write_text(menu.read_text().replace("name: 紧急求助", "name: 紧急求助的按钮名字太长"))
    broken = Settings(
        wechat_token="t",
        wechat_app_id="wx1",
        wechat_app_secret="s",
        config_dir=tmp_path / "config",
        _env_file=None,
    )
    bad = wechat_channel.mount(FastAPI(), load_deployment(broken))
    assert not bad.enabled
    assert "wechat.yml" in bad.why and "menu.1.name" in bad.why


def test_an_encoding_aes_key_of_the_wrong_length_is_refused_at_start() -> None:
    from pydantic import ValidationError

    from config.settings import Settings

    with pytest.raises(ValidationError, match="43 characters, not 5"):
        Settings(wechat_aes_key="short", _env_file=None)
