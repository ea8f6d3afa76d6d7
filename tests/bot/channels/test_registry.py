"""The channel registry: which channels are on and which outbox senders they give."""

from __future__ import annotations

from bot.channels import missing_senders, senders_for
from bot.channels.telegram.sender import TelegramSender
from bot.channels.twilio.messaging.sender import MessagingSender
from bot.channels.twilio.voice.sender import CallSender
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
            "http://x", twilio_whatsapp_from="whatsapp:+15005550007", telegram_bot_token="1:A"
        )
    )
    assert sorted(everything) == ["sms", "telegram", "voice", "whatsapp"]
    assert everything["sms"] is everything["whatsapp"]  # one client, one connection pool
    assert isinstance(everything["telegram"], TelegramSender)
    assert sorted(missing_senders(twilio_settings("http://x"))) == ["telegram", "whatsapp"]
    assert sorted(missing_senders(Settings(_env_file=None))) == [
        "sms",
        "telegram",
        "voice",
        "whatsapp",
    ]
