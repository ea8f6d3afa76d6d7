"""The senders against fake provider APIs (real HTTP servers on 127.0.0.1) through the real
twilio and python-telegram-bot clients: what goes over the wire, and how refusals map to
retry / permanent failure."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from xml.etree import ElementTree

import pytest

from bot.channels.twilio.messaging.sender import MessagingSender
from bot.channels.twilio.rest import IDEMPOTENCY_HEADER, idempotency_token, rewrite_twilio_url
from bot.channels.twilio.voice.sender import CallSender
from config.settings import Settings
from storage.types import utcnow
from tests.bot.channels.sending import TO, send
from tests.fakes.twilio_rest import FakeTwilio, TwilioReply

SID = "AC" + "0" * 32
FROM = "+15005550006"


def twilio_settings(url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "twilio_account_sid": SID,
        "twilio_auth_token": "secret",
        "twilio_from_number": FROM,
        "twilio_api_url": url,
        "_env_file": None,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def twilio() -> Iterator[FakeTwilio]:
    with FakeTwilio() as fake:
        yield fake


# -- Twilio -------------------------------------------------------------------------------------


def test_rewrite_twilio_url() -> None:
    url = "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages.json?x=1"
    assert rewrite_twilio_url(url, "http://127.0.0.1:9000") == (
        "http://127.0.0.1:9000/2010-04-01/Accounts/AC1/Messages.json?x=1"
    )
    assert rewrite_twilio_url(url, "https://gw.example.org/twilio/").startswith(
        "https://gw.example.org/twilio/2010-04-01/"
    )
    assert rewrite_twilio_url("https://api.sydney.us1.twilio.com/x", "http://h:1") == "http://h:1/x"
    assert rewrite_twilio_url("https://example.org/x", "http://h:1") == "https://example.org/x"
    assert rewrite_twilio_url(url, "") == url


@pytest.mark.asyncio
async def test_sms_goes_through_the_messages_api(twilio: FakeTwilio) -> None:
    outcome = await send(MessagingSender(twilio_settings(twilio.url)), "sms")
    assert outcome.sent and outcome.provider_id == twilio.messages[0]["sid"]
    (request,) = twilio.creates("Messages")
    assert request.path == f"/2010-04-01/Accounts/{SID}/Messages.json"
    assert request.form == {"To": TO, "From": FROM, "Body": "您好，测试"}
    assert request.header(IDEMPOTENCY_HEADER) == idempotency_token("K-1:sms")
    assert (request.header("Authorization") or "").startswith("Basic ")


@pytest.mark.asyncio
async def test_no_phone_number_reaches_a_log_or_the_idempotency_header(
    twilio: FakeTwilio, caplog: pytest.LogCaptureFixture
) -> None:
    """The twilio library logs each request's headers at INFO; the idempotency key names the
    recipient ("…:sms:+8613…"). Neither the logs (at any level) nor the header carry the number."""
    caplog.set_level(logging.DEBUG)
    key = f"2026-000001:reply:sms:{TO}"
    sender = MessagingSender(twilio_settings(twilio.url))
    try:
        assert (await sender.send("sms", TO, {"text": "您好"}, key)).sent
    finally:
        await sender.aclose()
    (request,) = twilio.creates("Messages")
    assert request.header(IDEMPOTENCY_HEADER) == idempotency_token(key)
    assert TO[-8:] not in (request.header(IDEMPOTENCY_HEADER) or "")
    assert caplog.records  # the client does log (its method and path)
    assert not [r.getMessage() for r in caplog.records if TO[-8:] in r.getMessage()]


@pytest.mark.asyncio
async def test_a_lost_attempt_is_found_among_the_messages_twilio_has(twilio: FakeTwilio) -> None:
    """find_sent: a message from our number to the address, with the item's text, created since
    the lost attempt began. Another text, another number, or an older one is not it."""
    sender = MessagingSender(twilio_settings(twilio.url))
    try:
        since = utcnow()
        assert (await sender.send("sms", TO, {"text": "您的药费报销已经办好了"}, "K-9")).sent
        assert (await sender.send("sms", TO, {"text": "别的消息"}, "K-10")).sent
        found = await sender.find_sent("sms", TO, {"text": "您的药费报销已经办好了"}, since)
        assert found is not None and found.sent
        assert found.provider_id == twilio.messages[0]["sid"]
        other_text = await sender.find_sent("sms", TO, {"text": "还没发过"}, since)
        other_number = await sender.find_sent(
            "sms", "+8613800000099", {"text": "您的药费报销已经办好了"}, since
        )
        later = await sender.find_sent(
            "sms", TO, {"text": "您的药费报销已经办好了"}, since + timedelta(minutes=5)
        )
        assert other_text is None and other_number is None and later is None
        listing = next(r for r in twilio.requests if r.method == "GET")
        assert listing.query["To"] == [TO] and listing.query["From"] == [FROM]
        twilio.script(TwilioReply.server_error(), resource="Messages")
        assert await sender.find_sent("sms", TO, {"text": "您的药费报销已经办好了"}, since) is None
    finally:
        await sender.aclose()


@pytest.mark.asyncio
async def test_status_callback_when_the_public_url_is_known(twilio: FakeTwilio) -> None:
    settings = twilio_settings(twilio.url, public_url="https://hotline.example.org/")
    assert (await send(MessagingSender(settings), "sms")).sent
    assert twilio.creates()[0].form["StatusCallback"] == (
        "https://hotline.example.org/twilio/messaging/status"
    )


@pytest.mark.asyncio
async def test_whatsapp_uses_whatsapp_addresses(twilio: FakeTwilio) -> None:
    settings = twilio_settings(twilio.url, twilio_whatsapp_from="+15005550007")
    assert (await send(MessagingSender(settings), "whatsapp", "whatsapp:+8613800000002")).sent
    form = twilio.creates()[0].form
    assert form["To"] == "whatsapp:+8613800000002"
    assert form["From"] == "whatsapp:+15005550007"


@pytest.mark.asyncio
async def test_whatsapp_without_a_sender_number_waits(twilio: FakeTwilio) -> None:
    outcome = await send(MessagingSender(twilio_settings(twilio.url)), "whatsapp")
    assert not outcome.sent and not outcome.permanent
    assert "WHATSAPP_FROM" in outcome.error
    assert twilio.requests == []


@pytest.mark.asyncio
async def test_a_call_says_the_text_twice(twilio: FakeTwilio) -> None:
    settings = twilio_settings(twilio.url)
    outcome = await send(CallSender(settings), "voice", text="紧急：王大爷需要帮助")
    assert outcome.sent and outcome.provider_id.startswith("CA")
    (request,) = twilio.creates("Calls")
    assert request.form["To"] == TO and request.form["From"] == FROM
    assert request.form["Timeout"] == str(settings.twilio_ring_timeout_s)
    assert request.header(IDEMPOTENCY_HEADER) == idempotency_token("K-1:voice")
    says = ElementTree.fromstring(request.form["Twiml"]).findall("Say")
    assert [s.text for s in says] == ["紧急：王大爷需要帮助"] * 2
    assert {(s.get("voice"), s.get("language")) for s in says} == {("Polly.Zhiyu", "cmn-CN")}


@pytest.mark.asyncio
@pytest.mark.parametrize("public_url", ["https://hotline.example.org", ""], ids=["url", "no-url"])
async def test_an_emergency_alert_call_asks_for_1_and_reports_how_it_ended(
    twilio: FakeTwilio, public_url: str
) -> None:
    settings = twilio_settings(twilio.url, public_url=public_url)
    alert = {"kind": "emergency_call", "order": 1, "chain": [], "prompt": "要接手请按1。"}
    outcome = await send(CallSender(settings), "voice", text="紧急：王大爷需要帮助", **alert)
    assert outcome.sent
    (request,) = twilio.creates("Calls")
    doc = ElementTree.fromstring(request.form["Twiml"])
    if not public_url:  # nowhere to report a key or a status: the text twice, as any call
        assert [s.text for s in doc.findall("Say")] == ["紧急：王大爷需要帮助"] * 2
        assert "StatusCallback" not in request.form
        return
    assert request.form["StatusCallback"] == (
        "https://hotline.example.org/twilio/voice/status?k=K-1%3Avoice"
    )
    assert request.form["StatusCallbackMethod"] == "POST"
    (gather,) = doc.findall("Gather")
    assert gather.get("action") == "https://hotline.example.org/twilio/voice/alert?k=K-1%3Avoice"
    assert (gather.get("input"), gather.get("numDigits")) == ("dtmf", "1")
    assert gather.get("actionOnEmptyResult") == "true"
    assert [s.text for s in gather.findall("Say")] == ["紧急：王大爷需要帮助", "要接手请按1。"]


@pytest.mark.asyncio
async def test_an_english_call_uses_the_english_voice(twilio: FakeTwilio) -> None:
    await send(CallSender(twilio_settings(twilio.url)), "voice", text="Help", language="en")
    says = ElementTree.fromstring(twilio.creates()[0].form["Twiml"]).findall("Say")
    assert says[0].get("voice") == "Polly.Joanna" and says[0].get("language") == "en-US"


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_errors_are_retried(twilio: FakeTwilio, status: int) -> None:
    twilio.script(TwilioReply.server_error(status))
    outcome = await send(MessagingSender(twilio_settings(twilio.url)), "sms")
    assert not outcome.sent and not outcome.permanent
    assert outcome.error.startswith(f"twilio {status}")
    assert twilio.messages == []


@pytest.mark.asyncio
async def test_429_is_retried_after_the_retry_after_header(twilio: FakeTwilio) -> None:
    twilio.script(TwilioReply.rate_limited(retry_after=7))
    outcome = await send(MessagingSender(twilio_settings(twilio.url)), "sms")
    assert not outcome.sent and not outcome.permanent
    assert outcome.retry_after_s == 7
    assert "429" in outcome.error


@pytest.mark.asyncio
async def test_429_without_retry_after(twilio: FakeTwilio) -> None:
    twilio.script(TwilioReply.rate_limited(retry_after=None))
    outcome = await send(MessagingSender(twilio_settings(twilio.url)), "sms")
    assert not outcome.permanent and outcome.retry_after_s is None


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "reply, code",
    [
        (TwilioReply.invalid_to(), 21211),
        (TwilioReply.unsubscribed(), 21610),
        (TwilioReply.error(400, 21614, "'To' number is not a valid mobile number"), 21614),
    ],
)
async def test_refused_numbers_fail_for_good(twilio: FakeTwilio, reply: TwilioReply, code: int):
    twilio.script(reply)
    outcome = await send(MessagingSender(twilio_settings(twilio.url)), "sms")
    assert not outcome.sent and outcome.permanent
    assert f"code {code}" in outcome.error


@pytest.mark.asyncio
async def test_bad_credentials_are_retried(twilio: FakeTwilio) -> None:
    twilio.script(TwilioReply.error(401, 20003, "Authenticate"))
    outcome = await send(MessagingSender(twilio_settings(twilio.url)), "sms")
    assert not outcome.permanent


@pytest.mark.asyncio
async def test_a_timeout_is_retried(twilio: FakeTwilio) -> None:
    twilio.script(TwilioReply.hang(2))
    sender = MessagingSender(twilio_settings(twilio.url), timeout_s=0.3)
    outcome = await send(sender, "sms")
    assert not outcome.sent and not outcome.permanent
    assert "no answer" in outcome.error


@pytest.mark.asyncio
async def test_a_connection_failure_is_retried() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    outcome = await send(MessagingSender(twilio_settings(f"http://127.0.0.1:{port}")), "sms")
    assert not outcome.sent and not outcome.permanent
    assert "connection" in outcome.error


@pytest.mark.asyncio
async def test_concurrent_sends_keep_their_own_tokens(twilio: FakeTwilio) -> None:
    import asyncio

    sender = MessagingSender(twilio_settings(twilio.url))
    try:
        outcomes = await asyncio.gather(
            *(
                sender.send("sms", f"+86138000000{n:02d}", {"text": f"t{n}"}, f"key-{n}")
                for n in range(12)
            )
        )
    finally:
        await sender.aclose()
    assert all(o.sent for o in outcomes)
    pairs = {(r.form["To"][-2:], r.header(IDEMPOTENCY_HEADER)) for r in twilio.creates()}
    assert pairs == {(f"{n:02d}", idempotency_token(f"key-{n}")) for n in range(12)}
