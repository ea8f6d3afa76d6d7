"""Twilio's side of a call, both ways: what its webhooks carry in (the step a call is at, read
from and written to the action URLs Twilio calls back; who is calling; the engine's inbound
messages made from the form) and the TwiML we answer with (how the line speaks and listens: the
voices, the <Gather> and <Dial>, speech hints taken from the NLU's lexicon). Every text comes
from the engine or the catalogs."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import yaml
from fastapi import Request, Response
from twilio.twiml.voice_response import Gather, VoiceResponse

from bot.conversation.dialogue import HANDOVER_UNANSWERED
from bot.conversation.messages import Inbound, Reply, Style, render
from config.i18n import DEFAULT_LANGUAGE, Catalogs
from config.settings import Settings
from nlu.features import CONCEPTS_FILE
from nlu.rules import EmergencyRules
from storage.alert_chain import Target
from storage.phones import InvalidPhoneNumber, normalize_phone

# -- what the webhooks carry in ----------------------------------------------------------------

CHANNEL = "phone"
PREFIX = "/twilio/voice"
# A call that is over (Twilio's CallStatus); "canceled": hung up before it was answered.
FINAL_STATUSES = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})
# A <Dial> that reached somebody (DialCallStatus).
ANSWERED = frozenset({"completed", "answered"})
EMERGENCY, HAND_OVER = "emergency", "handover"
# An emergency's alert call (storage/alert_chain.py): its Gather's action and status callback,
# each with the outbox item's idempotency key (``k``).
ALERT_PATH = f"{PREFIX}/alert"
STATUS_PATH = f"{PREFIX}/status"


def alert_url(public_url: str, key: str) -> str:
    return f"{public_url.rstrip('/')}{ALERT_PATH}?{urlencode({'k': key})}"


def status_url(public_url: str, key: str) -> str:
    return f"{public_url.rstrip('/')}{STATUS_PATH}?{urlencode({'k': key})}"


@dataclass(frozen=True)
class Step:
    """The call's place, read from and written to the query string of Twilio's callbacks."""

    n: int = 1  # the number of the next turn (a turn's provider id is "{CallSid}:{n}")
    lang: str = DEFAULT_LANGUAGE
    emergency_called: bool = False  # the emergency chain of calls ran in this call
    extra: dict[str, str] = field(default_factory=dict)  # route-specific (kind, i, h, said, ...)

    @classmethod
    def read(cls, request: Request) -> Step:
        return cls.of(request.query_params)

    @classmethod
    def of(cls, query: Mapping[str, str]) -> Step:
        """The step a query string (as a mapping) names."""
        n = query.get("n", "1")
        lang = query.get("lang", DEFAULT_LANGUAGE)
        extra = {k: v for k, v in query.items() if k not in ("n", "lang", "e")}
        return cls(
            n=int(n) if n.isdigit() else 1,
            lang=lang if lang in ("zh", "en") else DEFAULT_LANGUAGE,
            emergency_called=query.get("e") == "1",
            extra=extra,
        )

    def url(self, route: str, **extra: object) -> str:
        """A relative URL: Twilio resolves it against the public URL it called, and signs that."""
        params: dict[str, object] = {"n": self.n, "lang": self.lang}
        if self.emergency_called:
            params["e"] = 1
        params.update({k: v for k, v in extra.items() if v is not None})
        return f"{PREFIX}/{route}?{urlencode(params)}"

    def but(self, **changes: Any) -> Step:
        values = {"n": self.n, "lang": self.lang, "emergency_called": self.emergency_called}
        values.update(changes)
        return Step(**values)

    def number(self, name: str, default: int = 0) -> int:
        value = self.extra.get(name, "")
        return int(value) if value.isdigit() else default


@dataclass(frozen=True)
class Caller:
    """Who is on a call, as the call screening names them to whoever picks up."""

    name: str
    community: str  # "" when the registry has none


def caller_address(form: dict[str, Any]) -> str:
    """The conversation's address: the caller's number (on a call we placed, "outbound-api",
    the number we rang: a check-in answered with 2 goes on as a conversation with them); a
    withheld number ("anonymous", "+266696687") gets one of its own per call, so two such
    callers never share a conversation."""
    placed = str(form.get("Direction", "")) == "outbound-api"
    number = str(form.get("To" if placed else "From", ""))
    try:
        normalize_phone(number)
    except InvalidPhoneNumber:
        return f"withheld:{form.get('CallSid', '')}"
    return number


def to_float(value: object) -> float | None:
    try:
        return float(str(value))
    except ValueError:
        return None


def turn_inbound(
    form: dict[str, Any],
    step: Step,
    *,
    text: str = "",
    digits: str = "",
    metadata: dict[str, Any] | None = None,
) -> Inbound:
    """What the caller said or pressed at ``step``, as the engine's turn ``{CallSid}:{n}``."""
    return _inbound(form, str(step.n), text=text, digits=digits, metadata=metadata or {})


def hand_over_unanswered(form: dict[str, Any], asked_in: int, recording_url: str | None) -> Inbound:
    """The engine's event for a hand-over nobody took; one per hand-over (the voicemail's
    callback and the call's end both send it: the second is answered as a repeat)."""
    metadata: dict[str, Any] = {"event": HANDOVER_UNANSWERED}
    if recording_url:
        metadata["recording_url"] = recording_url
    return _inbound(form, f"handover:{asked_in}", metadata=metadata)


def _inbound(form: dict[str, Any], part: str, **fields: Any) -> Inbound:
    """The engine's message ``{CallSid}:{part}`` from the caller of the call ``form`` is about."""
    return Inbound(
        channel=CHANNEL,
        address=caller_address(form),
        provider_id=f"{form.get('CallSid', '')}:{part}",
        received_at=datetime.now(UTC),
        **fields,
    )


# -- the TwiML we answer with ---------------------------------------------------------------

GATHER_TIMEOUT_S = 6  # seconds of nothing before a Gather gives up (older callers are slow)
VOICEMAIL_MAX_S = 120
VOICEMAIL_SILENCE_S = 10
HINTS_PER_CONCEPT = 6  # speech hints: the first words of each concept of the NLU's lexicon
HINT_CONCEPTS_LEFT_OUT = frozenset({"chitchat"})
_HAN = re.compile(r"[\u3400-\u9fff]")


class VoiceLine:
    """The line's settings, texts and emergency rules, and the TwiML verbs built from them."""

    def __init__(self, settings: Settings, catalogs: Catalogs, rules: EmergencyRules) -> None:
        self.settings = settings
        self.catalogs = catalogs
        self.rules = rules
        self.hints = speech_hints(CONCEPTS_FILE)

    def text(self, key: str, lang: str, **params: Any) -> str:
        return self.catalogs.text(key, lang, **params)

    def voice(self, lang: str) -> dict[str, str]:
        if lang == "en":
            return {"voice": self.settings.twilio_voice_en, "language": "en-US"}
        return {
            "voice": self.settings.twilio_voice,
            "language": self.settings.twilio_voice_language,
        }

    def say(self, parent: VoiceResponse | Gather, text: str, lang: str) -> None:
        if text.strip():
            parent.say(text, **self.voice(lang))

    def speak(self, parent: VoiceResponse | Gather, replies: list[Reply]) -> None:
        """The replies, rendered for the voice (choices as keys, numbers digit by digit), in one
        <Say> per run of replies in the same language."""
        runs: list[tuple[str, list[str]]] = []
        for reply in replies:
            spoken = render(reply, Style.VOICE, self.catalogs)
            if runs and runs[-1][0] == reply.language:
                runs[-1][1].append(spoken)
            else:
                runs.append((reply.language, [spoken]))
        for lang, texts in runs:
            self.say(parent, " ".join(texts), lang)

    def gather(
        self, response: VoiceResponse, action: str, lang: str, *, one_key: bool, keys_only: bool
    ) -> Gather:
        attrs: dict[str, Any] = {
            "action": action,
            "method": "POST",
            "timeout": GATHER_TIMEOUT_S,
            "action_on_empty_result": True,
        }
        if keys_only:
            attrs["input"] = "dtmf"
        else:
            # No speechModel: Twilio picks the provider and model for the language and fails over
            # when one is down (its speech models changed during 2025).
            attrs.update(
                input="speech dtmf",
                language="en-US" if lang == "en" else self.settings.twilio_speech_language,
                speech_timeout="auto",
                hints=self.hints.get(lang, ""),
            )
        if one_key:
            attrs["num_digits"] = 1
        return response.gather(**attrs)

    def dial(
        self,
        response: VoiceResponse,
        target: Target,
        action: str,
        screen: str,
        answered: str | None = None,
    ) -> None:
        """Put the call through to ``target``; ``action`` when the <Dial> ends. ``screen`` (a
        relative URL) is run for whoever picks up before the call is connected: a key must be
        pressed, so that a voicemail is not taken for a person. ``answered`` (a relative URL) is
        told the moment the number answers (its status callback)."""
        dial = response.dial(
            action=action, method="POST", timeout=self.settings.twilio_ring_timeout_s
        )
        public = self.settings.public_url.rstrip("/")
        attrs: dict[str, str] = {"url": public + screen, "method": "POST"}
        if answered is not None:
            attrs.update(
                status_callback_event="answered",
                status_callback=public + answered,
                status_callback_method="POST",
            )
        dial.number(target.phone, **attrs)

    def screen(
        self, action: str, kind: str, family: bool, lang: str, who: Caller | None = None
    ) -> VoiceResponse:
        """What whoever picks up hears before the call is connected: who is calling (``who``,
        a registered caller: by name, and staff hear the community too) and why; a key (or
        none, as a voicemail does: actionOnEmptyResult) goes to ``action``."""
        key = "family" if family else "emergency" if kind == EMERGENCY else "help"
        response = VoiceResponse()
        gather = self.gather(response, action, lang, one_key=True, keys_only=True)
        if who is not None and (family or who.community):
            text = self.text(
                f"twilio_voice.screen.{key}_named", lang, name=who.name, community=who.community
            )
        else:
            text = self.text(f"twilio_voice.screen.{key}", lang)
        self.say(gather, text, lang)
        return response

    def outage(self, lang: str) -> VoiceResponse:
        """For a caller while the database cannot be reached (nothing can be filed): sorry, put
        through to the community's own phones (HOTLINE_TWILIO_OUTAGE_NUMBERS, ringing together,
        unscreened: the screening needs the database), then "we will call you back; if in
        danger call 120". Needs nothing but the settings and the catalogs."""
        response = VoiceResponse()
        self.say(response, self.text("twilio_voice.outage.sorry", lang), lang)
        numbers = self.settings.outage_number_list
        if numbers:
            self.say(response, self.text("twilio_voice.outage.connecting", lang), lang)
            dial = response.dial(timeout=self.settings.twilio_ring_timeout_s)
            for number in numbers:
                dial.number(number)
        self.say(response, self.text("twilio_voice.outage.call_back", lang), lang)
        response.hangup()
        return response

    def key_noted(self, lang: str) -> VoiceResponse:
        """For staff who pressed a key on a call we placed, while the database is down."""
        response = VoiceResponse()
        self.say(response, self.text("twilio_voice.outage.key_noted", lang), lang)
        response.hangup()
        return response


def speech_hints(concepts_file: Path) -> dict[str, str]:
    """Speech hints per language: the first words of each concept of the NLU's lexicon
    (报销, 药费, 住院, 救命, 转人工 ...), comma-separated as Twilio takes them."""
    data = yaml.safe_load(concepts_file.read_text(encoding="utf-8")) or {}
    words: dict[str, list[str]] = {"zh": [], "en": []}
    for concept, entries in (data.get("concepts") or {}).items():
        if concept in HINT_CONCEPTS_LEFT_OUT:
            continue
        taken = {"zh": 0, "en": 0}
        for entry in entries:
            word = str(entry).lstrip("=").strip()
            if not word or str(entry).startswith("~") or "," in word:
                continue
            lang = "zh" if _HAN.search(word) else "en"
            if taken[lang] < HINTS_PER_CONCEPT and word not in words[lang]:
                words[lang].append(word)
                taken[lang] += 1
    return {lang: ",".join(found) for lang, found in words.items()}


def twiml(response: VoiceResponse) -> Response:
    return Response(content=response.to_xml(), media_type="application/xml")
