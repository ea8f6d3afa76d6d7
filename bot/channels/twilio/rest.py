"""What Twilio's two channels (the phone line and SMS/WhatsApp) share to send: the twilio
library's async client pointed at ``settings.twilio_api_url`` when set (a test fake, a gateway),
with a timeout, our idempotency token on every create, and what Twilio's refusals mean.

A sender never raises for what Twilio says: it returns a ``SendOutcome`` — sent, retry
(timeouts, connection errors, 5xx, 429 with Twilio's Retry-After) or failed for good (an invalid
or unsubscribed number).

Idempotency: every create carries a token made from the outbox item's key (a hash: the key
names the recipient's number) in the ``I-Twilio-Idempotency-Token`` header. Twilio documents that header only on the webhooks it sends *to us*; its REST reference
for Messages and Calls documents no idempotency parameter, so a crash between Twilio's answer and
our commit gives at most one duplicate (bot/channels/base.py says why no provider gives exactly
once). A gateway in ``twilio_api_url`` that honours the header gives exactly once.

Logs: the twilio library logs every request's URL, query and headers and every response's
headers at INFO; our client logs only the method, the path (no query) and the status, at DEBUG.
No phone number or idempotency key reaches a log.
"""

from __future__ import annotations

import base64
import contextvars
import hashlib
from collections.abc import Awaitable, Callable
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response as TwilioResponse

from bot.channels.base import SendOutcome
from config.settings import Settings
from storage.types import utcnow

IDEMPOTENCY_HEADER = "I-Twilio-Idempotency-Token"
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


def idempotency_token(key: str) -> str:
    """What an outbox item's ``key`` is sent to Twilio as: stable, unique, and without the
    phone number the key holds."""
    return hashlib.sha256(key.encode()).hexdigest()[:32]


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
            headers[IDEMPOTENCY_HEADER] = idempotency_token(call.idempotency_key)
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

    def log_request(self, kwargs: dict[str, Any]) -> None:
        """Instead of the library's INFO lines with the query and the headers: no personal data."""
        self.logger.debug("twilio_request %s %s", kwargs["method"], urlsplit(kwargs["url"]).path)

    def log_response(self, status_code: int, response: Any) -> None:
        self.logger.debug("twilio_response %s", status_code)


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
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - utcnow()).total_seconds())


class TwilioRestSender:
    """The base of the Twilio channels' senders: the client, made on first use (aiohttp wants a
    running event loop), one create with its idempotency token, and Twilio's answer as a
    ``SendOutcome``."""

    channels: tuple[str, ...] = ()

    def __init__(self, settings: Settings, *, timeout_s: float = TWILIO_TIMEOUT_S) -> None:
        self.settings = settings
        self.timeout_s = timeout_s
        self._client: Any = None
        self._http: HotlineTwilioHttpClient | None = None

    def _twilio(self) -> Any:
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
        """The item's text to ``address``, unless it cannot be sent at all (`_unsendable`)."""
        text = str(payload.get("text") or "")
        refused = self._unsendable(channel, text)
        if refused is not None:
            return refused
        return await self._send_text(channel, address, text, payload, idempotency_key)

    async def _send_text(
        self, channel: str, address: str, text: str, payload: dict[str, Any], key: str
    ) -> SendOutcome:
        """Send ``text`` (not empty, on one of `channels`): each channel's own create."""
        raise NotImplementedError

    def _unsendable(self, channel: str, text: str) -> SendOutcome | None:
        """Why an item cannot be sent at all (not ours, nothing to say), or None."""
        if channel not in self.channels:
            return SendOutcome.failed(f"twilio cannot send on channel {channel!r}")
        if not text.strip():
            return SendOutcome.failed("nothing to say: the payload has no text")
        return None

    async def _create(
        self, create: Callable[[Any], Awaitable[Any]], idempotency_key: str
    ) -> SendOutcome:
        """``create(client)`` (a message or a call) with ``idempotency_key`` on its request."""
        call = _TwilioCall(idempotency_key)
        token = _CURRENT_CALL.set(call)
        try:
            created = await create(self._twilio())
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
