"""Places the outbox's calls through Twilio's Calls API: a notice said twice; an emergency's
alert call, which says it and asks for 1 to take it, with a status callback
(storage/alert_chain.py); a follow-up call, which asks its question twice and hears 1, 2 or 3
(``follow_up.py``); a check-in call, which asks how they are and hears 1 or 2."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session
from twilio.twiml.voice_response import VoiceResponse

from bot.channels import calls
from bot.channels.base import SendOutcome
from bot.channels.twilio.rest import TwilioRestSender
from bot.channels.twilio.voice import follow_up as follow_up_call
from bot.channels.twilio.voice.wire import alert_url, status_url
from config.settings import Settings
from storage import alert_chain
from storage.models import OutboxItem

ALERT_GATHER_TIMEOUT_S = 8  # seconds to press 1 after an alert call's question
FOLLOW_UP_GATHER_TIMEOUT_S = 8  # seconds to press 1, 2 or 3 after a follow-up call's question


def _voice(settings: Settings, language: str | None) -> dict[str, str]:
    english = language == "en"
    return {
        "voice": settings.twilio_voice_en if english else settings.twilio_voice,
        "language": "en-US" if english else settings.twilio_voice_language,
    }


def speech_twiml(text: str, settings: Settings, language: str | None = None) -> str:
    """TwiML that says ``text`` twice (a pause between), in the voice of ``language``."""
    voice = _voice(settings, language)
    response = VoiceResponse()
    response.say(text, **voice)
    response.pause(length=1)
    response.say(text, **voice)
    return str(response)


def alert_twiml(
    text: str, prompt: str, action: str, settings: Settings, language: str | None = None
) -> str:
    """TwiML of an emergency's alert call: the alert, then ``prompt`` (press 1 to take it) in a
    one-key Gather whose ``action`` hears the key (or nothing: the route asks once more)."""
    return _keypad_twiml(text, prompt, action, ALERT_GATHER_TIMEOUT_S, settings, language)


def follow_up_twiml(text: str, action: str, settings: Settings, language: str | None = None) -> str:
    """TwiML of a follow-up call: its question twice (a pause between) in a one-key keypad Gather
    whose ``action`` hears 1, 2 or 3 (or nothing: the route says goodbye)."""
    return _keypad_twiml(text, text, action, FOLLOW_UP_GATHER_TIMEOUT_S, settings, language)


def _keypad_twiml(
    first: str,
    then: str,
    action: str,
    timeout_s: int,
    settings: Settings,
    language: str | None,
) -> str:
    """``first``, a pause, ``then``, inside a one-key keypad Gather posting to ``action``
    (also when no key was pressed)."""
    voice = _voice(settings, language)
    response = VoiceResponse()
    gather = response.gather(
        input="dtmf",
        num_digits=1,
        timeout=timeout_s,
        action=action,
        method="POST",
        action_on_empty_result=True,
    )
    gather.say(first, **voice)
    gather.pause(length=1)
    gather.say(then, **voice)
    return str(response)


class CallSender(TwilioRestSender):
    """Outbound calls through Twilio."""

    channels = ("voice",)

    async def _send_text(
        self, channel: str, address: str, text: str, payload: dict[str, Any], key: str
    ) -> SendOutcome:
        options = dict(
            to=address,
            from_=self.settings.twilio_from_number,
            timeout=self.settings.twilio_ring_timeout_s,
            **self._call(text, payload, key),
        )
        return await self._create(lambda client: client.calls.create_async(**options), key)

    def _call(self, text: str, payload: dict[str, Any], key: str) -> dict[str, str]:
        """An emergency's alert call asks for 1 and reports how it ended, to the voice line's
        routes (which need public_url; without it the call only says its text twice, and the
        chain moves on when the call times out). A follow-up call hears 1, 2 or 3 there (without
        public_url it only asks: the round stays unanswered, asked again later). Any other call
        says its text twice."""
        base = self.settings.public_url.rstrip("/")
        language = payload.get("language")
        if base and calls.is_follow_up_call("voice", payload):
            action = follow_up_call.follow_up_url(base, int(payload["follow_up"]))
            return {"twiml": follow_up_twiml(text, action, self.settings, language)}
        if base and calls.kind_of("voice", payload) == calls.CallKind.CHECK_IN:
            action = follow_up_call.check_in_url(base, int(payload["check_in"]))
            return {"twiml": follow_up_twiml(text, action, self.settings, language)}
        if not (base and alert_chain.is_alert_call("voice", payload)):
            return {"twiml": speech_twiml(text, self.settings, language)}
        prompt = str(payload.get("prompt") or "")
        action = alert_url(base, key)
        return {
            "twiml": alert_twiml(text, prompt, action, self.settings, language),
            "status_callback": status_url(base, key),
            "status_callback_method": "POST",
        }

    def after_sent(self, session: Session, item: OutboxItem, outcome: SendOutcome) -> None:
        """In the transaction that marks ``item`` sent: the CallSid of an emergency's alert call,
        on its outbox item."""
        if outcome.provider_id:
            alert_chain.record_placed(item, outcome.provider_id)
