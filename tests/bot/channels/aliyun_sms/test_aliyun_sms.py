"""Alibaba Cloud SMS through the real SDK at a fake API on 127.0.0.1: each kind of message as
its approved template, what Aliyun refuses, a lost attempt found by its OutId, and a channel
whose templates are wrong staying off and saying why."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from bot.channels import aliyun_sms, senders_for
from bot.channels.aliyun_sms.sender import AliyunSmsSender
from bot.channels.base import SendOutcome
from config.settings import CONFIG_DIR, Settings
from config.sms_templates import FIELDS, load_sms_templates
from storage.types import utcnow
from tests.fakes.aliyun_sms import FakeAliyunSms

KEY_ID, SIGN = "LTAI-test-key", "社区一键通"
TAKES = {
    "SMS_000000001": {"code"},
    "SMS_000000002": {"number", "name", "time"},
    **{f"SMS_00000000{n}": {"number"} for n in range(3, 9)},
    "SMS_000000013": {"name"},
    "SMS_200000001": {"name"},  # a campaign's own approved template
}
CLAIMED = {
    "kind": "case_claimed",
    "case": "2026-000007",
    "text": "【社区一键通】您的求助（编号2026-000007）已由社工张接手……",
    "language": "zh",
    "fields": {"who": "社工张", "by": "12月9日星期三 10:00"},
}


@pytest.fixture
def fake() -> Iterator[FakeAliyunSms]:
    with FakeAliyunSms(KEY_ID, SIGN, TAKES) as server:
        yield server


def settings_for(fake: FakeAliyunSms, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "aliyun_sms_access_key_id": KEY_ID,
        "aliyun_sms_access_key_secret": "secret",
        "aliyun_sms_sign_name": SIGN,
        "aliyun_sms_endpoint": fake.endpoint,
        "aliyun_sms_protocol": "HTTP",
        **overrides,
    }
    return Settings(**values, _env_file=None)


def sender_for(fake: FakeAliyunSms, **overrides: Any) -> AliyunSmsSender:
    settings = settings_for(fake, **overrides)
    return AliyunSmsSender(settings, load_sms_templates(settings.config_dir))


def send(sender: AliyunSmsSender, payload: dict[str, Any], to: str = "+8613800000001") -> Any:
    return asyncio.run(sender.send("sms", to, payload, "key-1"))


def test_a_notice_goes_as_its_template_with_its_variables(fake: FakeAliyunSms) -> None:
    outcome = send(sender_for(fake), CLAIMED)
    assert outcome == SendOutcome.ok("000001^0")
    [sent] = fake.sent
    assert sent["PhoneNum"] == "13800000001"
    assert sent["TemplateCode"] == "SMS_000000002"
    assert sent["Params"] == {
        "number": "2026-000007",
        "name": "社工张",
        "time": "12月9日星期三 10:00",
    }
    link = {"kind": "link_code", "text": "…", "code": "428613"}
    assert send(sender_for(fake), link).sent
    assert fake.sent[-1]["Params"] == {"code": "428613"}


def test_a_campaign_goes_as_its_own_template_or_the_shipped_one(fake: FakeAliyunSms) -> None:
    """A greeting (storage/campaigns.py) names the template the account had approved for it;
    without one, config/sms_templates.yml's ``campaign`` template goes."""
    greeting = {
        "kind": "campaign",
        "campaign": 3,
        "text": "王阿姨您好，中秋快乐！",
        "name": "王阿姨",
    }
    assert send(sender_for(fake), {**greeting, "sms_template": "SMS_200000001"}).sent
    assert send(sender_for(fake), greeting).sent
    assert [(s["TemplateCode"], s["Params"]) for s in fake.sent] == [
        ("SMS_200000001", {"name": "王阿姨"}),
        ("SMS_000000013", {"name": "王阿姨"}),
    ]


@pytest.mark.parametrize(
    ("payload", "to", "says"),
    [
        (
            {"kind": "reply", "text": "好的"},
            "+8613800000001",
            "no approved SMS template for 'reply'",
        ),
        ({"kind": "case_resolved", "text": "办好了"}, "+8613800000001", "no 'case'"),
        (CLAIMED, "+14155550100", "not a mainland China number"),
    ],
    ids=["free-text", "missing-field", "abroad"],
)
def test_what_cannot_be_a_template_is_never_sent(
    fake: FakeAliyunSms, payload: dict[str, Any], to: str, says: str
) -> None:
    outcome = send(sender_for(fake), payload, to)
    assert outcome.permanent and says in outcome.error
    assert fake.sent == [] and fake.requests == []


@pytest.mark.parametrize(
    ("code", "status", "permanent", "retry_after"),
    [
        ("isv.BUSINESS_LIMIT_CONTROL", 200, False, 60.0),
        ("isv.MOBILE_NUMBER_ILLEGAL", 200, True, None),
        ("isv.SMS_TEMPLATE_ILLEGAL", 200, True, None),
        ("ServiceUnavailable", 503, False, None),
    ],
)
def test_what_aliyun_refuses(
    fake: FakeAliyunSms, code: str, status: int, permanent: bool, retry_after: float | None
) -> None:
    fake.fail(code, status=status)
    outcome = send(sender_for(fake), CLAIMED)
    assert not outcome.sent
    assert outcome.permanent is permanent
    assert outcome.retry_after_s == retry_after
    assert code in outcome.error


def test_a_wrong_sign_name_is_aliyuns_refusal_said_plainly(fake: FakeAliyunSms) -> None:
    outcome = send(sender_for(fake, aliyun_sms_sign_name="别的签名"), CLAIMED)
    assert outcome.permanent and "isv.SMS_SIGNATURE_ILLEGAL" in outcome.error


def test_a_lost_attempt_is_found_by_its_out_id_and_not_sent_again(fake: FakeAliyunSms) -> None:
    sender = sender_for(fake)
    since = utcnow() - timedelta(seconds=5)
    assert send(sender, CLAIMED).sent  # Aliyun took it; say the worker died before recording
    found = asyncio.run(sender.find_sent("sms", "+8613800000001", CLAIMED, since))
    assert found is not None and found.sent
    other = {**CLAIMED, "case": "2026-000008"}
    assert asyncio.run(sender.find_sent("sms", "+8613800000001", other, since)) is None
    later = utcnow() + timedelta(minutes=5)  # an identical message sent before the attempt
    assert asyncio.run(sender.find_sent("sms", "+8613800000001", CLAIMED, later)) is None


def test_it_takes_the_sms_channel_over_from_twilio_when_on(fake: FakeAliyunSms) -> None:
    twilio = {
        "twilio_account_sid": "AC" + "1" * 32,
        "twilio_auth_token": "t",
        "twilio_from_number": "+15005550006",
    }
    on = senders_for(settings_for(fake, **twilio))
    assert isinstance(on["sms"], AliyunSmsSender)
    assert "voice" in on  # Twilio keeps its calls


def test_every_kind_that_may_go_by_sms_has_a_shipped_template() -> None:
    shipped = load_sms_templates(CONFIG_DIR)
    assert set(shipped.templates) == set(FIELDS)


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        (("  staff_reply:", "  no_such_kind:"), "no such kind of SMS: no_such_kind"),
        (
            ("{number: case, name: who, time: by}", "{number: case, text: text}"),
            "'text' is not a field of case_claimed",
        ),
        (("SMS_000000003", "SMS_THREE"), "case_resolved.template"),
    ],
    ids=["unknown-kind", "free-text-field", "bad-code"],
)
def test_wrong_templates_keep_the_channel_off_and_say_why(
    fake: FakeAliyunSms, tmp_path: Path, edit: tuple[str, str], says: str
) -> None:
    from bot.runtime.configure import load_deployment

    shutil.copytree(CONFIG_DIR, tmp_path / "config", ignore=shutil.ignore_patterns("*.py"))
    file = tmp_path / "config" / "sms_templates.yml"
    file.write_text(file.read_text().replace(*edit))
    settings = settings_for(fake, config_dir=tmp_path / "config")
    mounted = aliyun_sms.mount(FastAPI(), load_deployment(settings))
    assert not mounted.enabled
    assert "sms_templates.yml" in mounted.why and says in mounted.why
    assert "sms" not in senders_for(settings)
    half = aliyun_sms.mount(FastAPI(), load_deployment(Settings(_env_file=None)))
    assert half.describe().startswith("aliyun_sms: off (no HOTLINE_ALIYUN_SMS_ACCESS_KEY_ID")
