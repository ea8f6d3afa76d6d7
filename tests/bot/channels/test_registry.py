"""The channel registry: which channels are on and which outbox senders they give."""

from __future__ import annotations

from bot.channels import missing_senders, outbox_senders, senders_for
from bot.channels.telegram.sender import TelegramSender
from bot.channels.twilio.messaging.sender import MessagingSender
from bot.channels.twilio.voice.sender import CallSender
from bot.channels.wechat.sender import WeChatSender
from config.settings import Settings
from tests.bot.channels.twilio.test_senders import twilio_settings


def test_senders_for_only_the_configured_providers() -> None:
    assert senders_for(Settings(_env_file=None)) == {}
    twilio_only = senders_for(twilio_settings("http://x"))
    assert sorted(twilio_only) == ["sms", "voice"]
    assert isinstance(twilio_only["sms"], MessagingSender)
    assert isinstance(twilio_only["voice"], CallSender)
    everything = senders_for(
        twilio_settings(
            "http://x",
            twilio_whatsapp_from="whatsapp:+15005550007",
            telegram_bot_token="1:A",
            wechat_token="t",
            wechat_app_id="wx1",
            wechat_app_secret="s",
        )
    )
    assert sorted(everything) == ["sms", "telegram", "voice", "wechat", "whatsapp"]
    assert isinstance(everything["wechat"], WeChatSender)
    assert everything["sms"] is everything["whatsapp"]  # one client, one connection pool
    assert isinstance(everything["telegram"], TelegramSender)
    assert sorted(missing_senders(twilio_settings("http://x"))) == [
        "telegram",
        "wechat",
        "wecom",
        "whatsapp",
    ]
    assert sorted(missing_senders(Settings(_env_file=None))) == [
        "sms",
        "telegram",
        "voice",
        "wechat",
        "wecom",
        "whatsapp",
    ]


def test_with_the_sip_line_configured_its_process_places_the_calls() -> None:
    """Twilio keeps the messages; the calls go over the SIP line, by `hotline sip`: the app's
    worker has no sender for them, and they are not missing one."""
    sip = {"sip_registrar": "sip:127.0.0.1:5060", "sip_user": "8001"}
    offer = outbox_senders(twilio_settings("http://x", **sip))
    assert "voice" not in offer.on and "voice" not in offer.off
    assert offer.elsewhere == {"voice": "`hotline sip`"}
    assert isinstance(offer.on["sms"], MessagingSender)
    without = outbox_senders(Settings(_env_file=None))
    assert "HOTLINE_SIP_REGISTRAR and HOTLINE_SIP_USER" in without.off["voice"]
    assert without.elsewhere == {}
