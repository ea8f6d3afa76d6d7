"""Senders: the provider calls that deliver outbox items (bot/runtime/worker.py runs them).

- ``TwilioSender``: channels "sms", "whatsapp" (Messages API, ``whatsapp:+...`` addresses) and
  "voice" (an outbound call that speaks the text twice; an emergency's alert call says it and
  asks for 1 to take it, with a status callback: bot/channels/twilio/voice/chain.py; a follow-up
  call asks its question twice and hears 1, 2 or 3: bot/channels/twilio/voice/follow_up.py), through
  the twilio library's async client. ``settings.twilio_api_url`` points it elsewhere (a test
  fake, a gateway).
- ``TelegramSender``: channel "telegram", through python-telegram-bot's ``Bot``; the payload's
  "choices" become an inline keyboard.
- ``senders_for(settings)``: the senders of the configured providers, by outbox channel.

A sender may also have ``after_sent(session, item, outcome)``: the worker calls it in the
transaction that marks the item sent (TwilioSender records the outbound SMS/WhatsApp message of
bot/channels/twilio/messaging/ there, whose status callbacks, sent to
``{public_url}/twilio/messaging/status`` when public_url is set, then update it; and an alert
call's CallSid on its outbox item).

A sender never raises for what a provider says: it returns a ``SendOutcome`` — sent, retry
(timeouts, connection errors, 5xx, 429 with the provider's Retry-After) or failed for good (an
invalid or unsubscribed number, a bot the person blocked).

Idempotency, honestly
---------------------
Every outbox item has an idempotency key, unique in the outbox (``{case}:{kind}:{channel}:
{address}`` for the engine's notifications, ``reply:{channel}:{MessageSid}:{part}`` for replies),
so nothing is queued twice. Delivery to the provider is
*at least once*: the worker marks an item sent only after the provider accepted it, in a second
short transaction. If the worker dies between the provider's answer and that commit, or a
request times out after the provider took it, the item is sent again: **at most one duplicate per
such crash or timeout**, never a lost notification. No provider we use gives exactly once:

- Twilio (SMS, WhatsApp, calls): we send the key in the ``I-Twilio-Idempotency-Token`` header of
  every create. Twilio documents that header only on the webhooks it sends *to us* (the same token
  on each of its retries); its REST reference for Messages and Calls documents no idempotency
  parameter or header, and we found no statement that ``POST /Messages.json`` or ``/Calls.json``
  deduplicates on it. So: at most one duplicate. (Sending the header costs nothing and lets a gateway
  in ``twilio_api_url`` that does honour it give exactly once.)
  A duplicate emergency *call* is the costliest case: the person's phone rings twice.
- Telegram Bot API: ``sendMessage`` has no idempotency key at all: at most one duplicate.

Exactly once would need the provider to deduplicate by our key; the fake Twilio API in the tests
can act so (``honour_idempotency``) to show that the key reaches the provider unchanged.
"""

from __future__ import annotations

import base64
import contextvars
import warnings
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import structlog
from sqlalchemy.orm import Session
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response as TwilioResponse
from twilio.twiml.voice_response import VoiceResponse

from bot.channels.base import Sender, SendOutcome
from bot.channels.twilio.voice import chain
from bot.channels.twilio.voice import follow_up as follow_up_call
from config.i18n import Catalogs
from config.settings import Settings
from storage.models import OutboxItem

log = structlog.get_logger(__name__)

IDEMPOTENCY_HEADER = "I-Twilio-Idempotency-Token"
TWILIO_CHANNELS = ("sms", "whatsapp", "voice")
MESSAGING_STATUS_PATH = "/twilio/messaging/status"  # bot/channels/twilio/messaging/
# Twilio error codes that say "this recipient cannot be reached this way": not worth retrying.
TWILIO_PERMANENT_CODES = {
    21211: "invalid 'To' number",
    21214: "'To' number cannot be reached",
    21217: "phone number does not appear to be valid",
    21401: "invalid phone number",
    21407: "this phone number type does not support SMS",
    21408: "permission to send to this region is not enabled",
    21421: "phone number is invalid",
    21610: "the recipient unsubscribed (replied STOP)",
    21612: "cannot route to this number",
    21614: "'To' number is not a mobile number",
    63003: "invalid WhatsApp recipient",
    63016: "outside the WhatsApp 24-hour window (needs an approved template)",
}
# Statuses that are worth another attempt: the request may succeed later.
_RETRY_STATUSES = {401, 403, 408, 409, 425, 429}  # 401/403: credentials, fixed by an operator
TWILIO_TIMEOUT_S = 15.0
ALERT_GATHER_TIMEOUT_S = 8  # seconds to press 1 after an alert call's question
FOLLOW_UP_GATHER_TIMEOUT_S = 8  # seconds to press 1, 2 or 3 after a follow-up call's question
TELEGRAM_TIMEOUT_S = 10.0
CALLBACK_DATA_MAX_BYTES = 64


# -- Twilio -------------------------------------------------------------------------------------


class _TwilioCall:
    """What one send tells the HTTP client (the idempotency token) and learns from it (the last
    response, whose headers a TwilioRestException does not carry)."""

    def __init__(self, idempotency_key: str) -> None:
        self.idempotency_key = idempotency_key
        self.last_response: TwilioResponse | None = None


# One per send: each send runs in its own task, whose context keeps it apart from the others.
_CURRENT_CALL: contextvars.ContextVar[_TwilioCall | None] = contextvars.ContextVar(
    "twilio_call", default=None
)


def rewrite_twilio_url(url: str, api_url: str) -> str:
    """``https://api.twilio.com/2010-04-01/...`` (or any ``*.twilio.com`` host) → the same path
    under ``api_url`` (its own path, if any, goes first)."""
    if not api_url:
        return url
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if host != "twilio.com" and not host.endswith(".twilio.com"):
        return url
    base = urlsplit(api_url.rstrip("/"))
    return urlunsplit((base.scheme, base.netloc, base.path + parts.path, parts.query, ""))


class HotlineTwilioHttpClient(AsyncTwilioHttpClient):
    """The twilio library's aiohttp client with: a base URL other than api.twilio.com, a default
    timeout (the library's async client has none), our idempotency token on each request of a
    send, and the last response kept for the send (Retry-After of a 429)."""

    def __init__(self, api_url: str = "", timeout_s: float = TWILIO_TIMEOUT_S) -> None:
        super().__init__(pool_connections=True, timeout=timeout_s)
        self.api_url = api_url

    async def request(  # type: ignore[override]
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> TwilioResponse:
        headers = dict(headers or {})
        if auth is not None:  # aiohttp deprecates auth=; the same Basic header, sent directly
            raw = f"{auth[0]}:{auth[1]}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(raw).decode("ascii")
        call = _CURRENT_CALL.get()
        if call is not None and method.upper() == "POST":
            headers[IDEMPOTENCY_HEADER] = call.idempotency_key
        response = await super().request(
            method,
            rewrite_twilio_url(url, self.api_url),
            params=params,
            data=data,
            headers=headers,
            auth=None,
            timeout=timeout if timeout is not None else self.timeout,
            allow_redirects=allow_redirects,
        )
        if call is not None:
            call.last_response = response
        return response


def _retry_after_s(response: TwilioResponse | None) -> float | None:
    """Seconds from a Retry-After header (seconds or an HTTP date)."""
    if response is None or not response.headers:
        return None
    value = None
    for name, header in response.headers.items():
        if name.lower() == "retry-after":
            value = str(header).strip()
            break
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    from storage.types import utcnow

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - utcnow()).total_seconds())


def _whatsapp(address: str) -> str:
    return address if address.startswith("whatsapp:") else f"whatsapp:{address}"


def speech_twiml(text: str, settings: Settings, language: str | None = None) -> str:
    """TwiML that says ``text`` twice (a pause between), in the voice of ``language``."""
    english = language == "en"
    voice = settings.twilio_voice_en if english else settings.twilio_voice
    lang = "en-US" if english else settings.twilio_voice_language
    response = VoiceResponse()
    response.say(text, voice=voice, language=lang)
    response.pause(length=1)
    response.say(text, voice=voice, language=lang)
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
    english = language == "en"
    voice = settings.twilio_voice_en if english else settings.twilio_voice
    lang = "en-US" if english else settings.twilio_voice_language
    response = VoiceResponse()
    gather = response.gather(
        input="dtmf",
        num_digits=1,
        timeout=timeout_s,
        action=action,
        method="POST",
        action_on_empty_result=True,
    )
    gather.say(first, voice=voice, language=lang)
    gather.pause(length=1)
    gather.say(then, voice=voice, language=lang)
    return str(response)


class TwilioSender:
    """SMS, WhatsApp and calls through Twilio (see the module docstring)."""

    channels = TWILIO_CHANNELS

    def __init__(self, settings: Settings, *, timeout_s: float = TWILIO_TIMEOUT_S) -> None:
        self.settings = settings
        self.timeout_s = timeout_s
        self._client: Any = None
        self._http: HotlineTwilioHttpClient | None = None

    def _twilio(self) -> Any:
        """The client, made on first use: aiohttp wants a running event loop."""
        if self._client is None:
            from twilio.rest import Client

            self._http = HotlineTwilioHttpClient(self.settings.twilio_api_url, self.timeout_s)
            self._client = Client(
                self.settings.twilio_account_sid,
                self.settings.twilio_auth_token,
                http_client=self._http,
            )
        return self._client

    async def send(
        self, channel: str, address: str, payload: dict[str, Any], idempotency_key: str
    ) -> SendOutcome:
        text = str(payload.get("text") or "")
        if channel not in self.channels:
            return SendOutcome.failed(f"twilio cannot send on channel {channel!r}")
        if channel == "whatsapp" and not self.settings.twilio_whatsapp_from:
            return SendOutcome.retry("no WhatsApp sender configured (HOTLINE_TWILIO_WHATSAPP_FROM)")
        if not text.strip():
            return SendOutcome.failed("nothing to say: the payload has no text")
        call = _TwilioCall(idempotency_key)
        token = _CURRENT_CALL.set(call)
        try:
            client = self._twilio()
            if channel == "voice":
                created = await client.calls.create_async(
                    to=address,
                    from_=self.settings.twilio_from_number,
                    timeout=self.settings.twilio_ring_timeout_s,
                    **self._call(text, payload, idempotency_key),
                )
            elif channel == "whatsapp":
                created = await client.messages.create_async(
                    to=_whatsapp(address),
                    from_=_whatsapp(self.settings.twilio_whatsapp_from),
                    body=text,
                    **self._status_callback(),
                )
            else:
                created = await client.messages.create_async(
                    to=address,
                    from_=self.settings.twilio_from_number,
                    body=text,
                    **self._status_callback(),
                )
        except TwilioRestException as exc:
            return self._refused(exc, call.last_response)
        except TimeoutError:
            return SendOutcome.retry(f"twilio: no answer within {self.timeout_s:g} s")
        except (aiohttp.ClientError, OSError) as exc:
            return SendOutcome.retry(f"twilio: connection failed: {type(exc).__name__}: {exc}")
        except TwilioException as exc:
            return SendOutcome.retry(f"twilio: {exc}")
        finally:
            _CURRENT_CALL.reset(token)
        return SendOutcome.ok(getattr(created, "sid", None))

    def _call(self, text: str, payload: dict[str, Any], key: str) -> dict[str, str]:
        """An emergency's alert call asks for 1 and reports how it ended, to the voice line's
        routes (which need public_url; without it the call only says its text twice, and the
        chain moves on when the call times out). A follow-up call hears 1, 2 or 3 there (without
        public_url it only asks: the round stays unanswered, asked again later). Any other call
        says its text twice."""
        base = self.settings.public_url.rstrip("/")
        language = payload.get("language")
        if base and follow_up_call.is_follow_up_call("voice", payload):
            action = follow_up_call.follow_up_url(base, int(payload["follow_up"]))
            return {"twiml": follow_up_twiml(text, action, self.settings, language)}
        if not (base and chain.is_chain_call("voice", payload)):
            return {"twiml": speech_twiml(text, self.settings, language)}
        prompt = str(payload.get("prompt") or "")
        action = chain.alert_url(base, key)
        return {
            "twiml": alert_twiml(text, prompt, action, self.settings, language),
            "status_callback": chain.status_url(base, key),
            "status_callback_method": "POST",
        }

    def _status_callback(self) -> dict[str, str]:
        """Delivery reports of messages go to the messaging channel's status route."""
        base = self.settings.public_url.rstrip("/")
        return {"status_callback": f"{base}{MESSAGING_STATUS_PATH}"} if base else {}

    def after_sent(self, session: Session, item: OutboxItem, outcome: SendOutcome) -> None:
        """In the transaction that marks ``item`` sent: the outbound message record of an SMS or
        WhatsApp message (bot/channels/twilio/messaging/), which its status callbacks update;
        the CallSid of an emergency's alert call, on its outbox item."""
        if item.channel == "voice" and outcome.provider_id:
            chain.record_placed(item, outcome.provider_id)
            return
        if item.channel not in ("sms", "whatsapp") or not outcome.provider_id:
            return
        try:
            from bot.channels.twilio.messaging import record_sent
        except ImportError:  # the messaging channel is not built: nothing to record
            return
        record_sent(session, item, outcome.provider_id)

    @staticmethod
    def _refused(exc: TwilioRestException, response: TwilioResponse | None) -> SendOutcome:
        status = int(exc.status or 0)
        code = exc.code
        why = TWILIO_PERMANENT_CODES.get(code or 0) or (exc.msg or "").strip()
        error = f"twilio {status}" + (f" code {code}" if code else "") + f": {why}"
        if status == 429:
            return SendOutcome.retry(error, _retry_after_s(response))
        if status >= 500 or status in _RETRY_STATUSES or status < 400:
            return SendOutcome.retry(error, _retry_after_s(response))
        # Any other 4xx: this request will be refused again (invalid number, unsubscribed, ...).
        return SendOutcome.failed(error)

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
            self._client = None


# -- Telegram -----------------------------------------------------------------------------------


def telegram_bot(settings: Settings, *, timeout_s: float = TELEGRAM_TIMEOUT_S) -> Any:
    """A python-telegram-bot ``Bot`` for our token and Bot API base (``telegram_api_url``).
    Its connection pool lets several sends run at once (the library's default is one)."""
    import telegram
    from telegram.request import HTTPXRequest

    api = settings.telegram_api_url.rstrip("/")
    request = HTTPXRequest(
        connection_pool_size=16,
        read_timeout=timeout_s,
        write_timeout=timeout_s,
        connect_timeout=timeout_s,
        pool_timeout=timeout_s,
    )
    return telegram.Bot(
        settings.telegram_bot_token,
        base_url=f"{api}/bot",
        base_file_url=f"{api}/file/bot",
        request=request,
    )


def inline_keyboard(choices: Any) -> Any:
    """An inline keyboard from ``[[value, label], ...]``, one button a row (big, for older eyes).
    A value longer than Telegram's 64 bytes of callback_data cannot be a button: it is left out
    (and logged) rather than cut, which would make it mean something else."""
    from telegram import InlineKeyboardButton, InlineKeyboardMarkup

    rows = []
    for choice in choices or []:
        value, label = str(choice[0]), str(choice[1])
        if not 1 <= len(value.encode()) <= CALLBACK_DATA_MAX_BYTES:
            log.warning("telegram_choice_too_long", bytes=len(value.encode()), label=label[:40])
            continue
        rows.append([InlineKeyboardButton(label, callback_data=value)])
    return InlineKeyboardMarkup(rows) if rows else None


def _seconds(value: Any) -> float:
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value)


class TelegramSender:
    """Telegram messages through the Bot API (see the module docstring)."""

    channels = ("telegram",)

    def __init__(self, settings: Settings, *, bot: Any = None) -> None:
        self.settings = settings
        self._bot = bot

    @property
    def bot(self) -> Any:
        if self._bot is None:
            self._bot = telegram_bot(self.settings)
        return self._bot

    def after_sent(self, session: Session, item: OutboxItem, outcome: SendOutcome) -> None:
        """In the transaction that marks ``item`` sent: where a new-case post went, so that once
        somebody claims the case the others' copies say who took it."""
        if not outcome.provider_id:
            return
        from bot.channels.telegram.staff import record_sent

        record_sent(session, item, outcome.provider_id)

    async def send(
        self, channel: str, address: str, payload: dict[str, Any], idempotency_key: str
    ) -> SendOutcome:
        from telegram.error import (
            BadRequest,
            ChatMigrated,
            Forbidden,
            InvalidToken,
            NetworkError,
            RetryAfter,
            TelegramError,
            TimedOut,
        )

        from bot.channels.telegram.staff import EDIT_POST

        if channel != "telegram":
            return SendOutcome.failed(f"telegram cannot send on channel {channel!r}")
        text = str(payload.get("text") or "")
        if not text.strip():
            return SendOutcome.failed("nothing to say: the payload has no text")
        try:
            chat_id: int | str = int(address)
        except ValueError:
            chat_id = address  # "@channelname"
        markup = inline_keyboard(payload.get("choices")) if payload.get("choices") else None
        edit = payload.get("kind") == EDIT_POST
        try:
            if edit:  # a post's new text, without its buttons (telegram_staff.keep_posts_up)
                message = await self.bot.edit_message_text(
                    text=text, chat_id=chat_id, message_id=int(payload["message_id"])
                )
            else:
                message = await self.bot.send_message(
                    chat_id=chat_id, text=text, reply_markup=markup
                )
        except RetryAfter as exc:
            delay = getattr(exc, "_retry_after", None)
            if delay is None:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    delay = exc.retry_after
            return SendOutcome.retry(f"telegram: {exc.message}", _seconds(delay))
        except Forbidden as exc:  # blocked by the user, deactivated, kicked from the group
            return SendOutcome.failed(f"telegram forbidden: {exc.message}")
        except ChatMigrated as exc:
            return SendOutcome.failed(f"telegram: the group moved to chat {exc.new_chat_id}")
        except InvalidToken as exc:  # a configuration mistake: retry once it is fixed
            return SendOutcome.retry(f"telegram: invalid bot token: {exc.message}")
        except BadRequest as exc:  # chat not found, text refused: the same request fails again
            if edit and "not modified" in exc.message:  # edited already (a tap on it, say)
                return SendOutcome.ok(None)
            return SendOutcome.failed(f"telegram bad request: {exc.message}")
        except TimedOut as exc:
            return SendOutcome.retry(f"telegram: timed out: {exc.message}")
        except NetworkError as exc:  # connection failures, 5xx
            return SendOutcome.retry(f"telegram: network error: {exc.message}")
        except TelegramError as exc:
            return SendOutcome.retry(f"telegram: {exc.message}")
        if edit or not hasattr(message, "message_id"):  # an edit may answer True
            return SendOutcome.ok(None)
        return SendOutcome.ok(f"{message.chat_id}:{message.message_id}")

    def upkeep(self, session: Session, *, catalogs: Catalogs, language: str | None) -> int:
        """In the worker's upkeep (every few seconds): the posts of cases taken elsewhere, or
        released, are kept up with them (texts in the deployment's language, like the posts)."""
        from bot.channels.telegram.staff import keep_posts_up
        from config.categories import get_categories

        return keep_posts_up(
            session,
            catalogs=catalogs,
            categories=get_categories(),
            language=self.settings.default_language,
            timezone=self.settings.timezone,
        )

    async def aclose(self) -> None:
        if self._bot is not None:
            await self._bot.shutdown()


# -- which ----------------------------------------------------------------------------------------


def senders_for(settings: Settings) -> dict[str, Sender]:
    """The senders of the configured providers, by outbox channel (none for one that is off)."""
    senders: dict[str, Sender] = {}
    if settings.twilio_enabled:
        twilio = TwilioSender(settings)
        senders["sms"] = twilio
        senders["voice"] = twilio
        if settings.twilio_whatsapp_from:
            senders["whatsapp"] = twilio
    if settings.telegram_enabled:
        senders["telegram"] = TelegramSender(settings)
    return senders


def missing_senders(settings: Settings) -> dict[str, str]:
    """The outbox channels without a sender and the setting that would give them one."""
    missing: dict[str, str] = {}
    if not settings.twilio_enabled:
        why = "HOTLINE_TWILIO_ACCOUNT_SID, _AUTH_TOKEN and _FROM_NUMBER"
        missing.update(dict.fromkeys(("sms", "voice"), why))
    if not (settings.twilio_enabled and settings.twilio_whatsapp_from):
        missing["whatsapp"] = "HOTLINE_TWILIO_WHATSAPP_FROM (and the Twilio account)"
    if not settings.telegram_enabled:
        missing["telegram"] = "HOTLINE_TELEGRAM_BOT_TOKEN"
    return missing
