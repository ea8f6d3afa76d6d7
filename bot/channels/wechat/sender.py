"""Sends the outbox's "wechat" items: replies and notices to a person's OpenID.

WeChat lets an account write to a person freely only for a while after the person last wrote,
pressed a menu button or followed (the customer-service window): 48 hours, and at most
`WINDOW_MESSAGES` messages in it. The sender counts both from the messages table (the person's
last inbound message; the customer-service messages recorded since, provider id ``cs:...``) and
WeChat's own refusals (45015 out of time, 45047 too many) count as a closed window too. What
does not fit:

- a notice (a case taken on, done, a follow-up question) goes as the template message
  HOTLINE_WECHAT_NOTICE_TEMPLATE_ID (fields from config/wechat.yml), else by SMS to the linked
  retiree's first phone (a new outbox item), else it fails with the reason (staff see it among
  the failed deliveries);
- a reply to a turn (it is sent seconds after the person wrote, so this is rare) is not sent.

The outbox also carries the fetching of a voice message's audio (``fetch_media``): WeChat keeps
it three days, and the worker's retries are what such a fetch needs. The audio is kept on the
case (storage/attachments.py).

The access token is kept in the database (`ProviderToken`), shared by every server: fetching a
new token ends the old one five minutes later, so servers with a token each would end each
other's. wechatpy's client fetches again, and retries once, when WeChat says a token is no
longer valid.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import requests
import structlog
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from wechatpy import WeChatClient
from wechatpy.exceptions import APILimitedException, WeChatClientException
from wechatpy.session import SessionStorage

from bot.channels.base import SendOutcome
from config.settings import Settings
from config.wechat import WeChatConfig
from storage import attachments, messages
from storage.db import dialect_insert, transaction
from storage.models import (
    Direction,
    Message,
    MessageStatus,
    MessagingIdentity,
    OutboxItem,
    ProviderToken,
    RetireePhone,
)
from storage.outbox import enqueue
from storage.types import utcnow

log = structlog.get_logger(__name__)

CHANNEL = "wechat"
WINDOW = timedelta(hours=48)
WINDOW_MESSAGES = 5
# What the provider ids of our outbound records start with: customer-service messages count
# against the window; the webhook's own answers (passive) and template messages do not.
CUSTOMER_SERVICE, PASSIVE, TEMPLATE, BY_SMS = "cs:", "passive:", "tpl:", "sms:"
MEDIA = "media:"  # a voice message's audio fetched (FETCH_MEDIA), not a message
FETCH_MEDIA = "fetch_media"  # an outbox item that fetches audio instead of sending
WINDOW_CLOSED = (45015, 45047)  # reply time out of the window; too many messages in it
GONE = (40003, 43004, 43019)  # not an OpenID of ours; does not follow us; blocked us
LIMITED_RETRY_S = 60.0
TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Window:
    last_inbound: datetime | None
    used: int

    def fits(self, now: datetime) -> bool:
        return (
            self.last_inbound is not None
            and now < self.last_inbound + WINDOW
            and self.used < WINDOW_MESSAGES
        )


def window(session: Session, openid: str, now: datetime) -> Window:
    """The person's customer-service window as our records show it."""
    last = session.scalar(
        select(func.max(Message.created_at)).where(
            Message.channel == CHANNEL,
            Message.address == openid,
            Message.direction == Direction.INBOUND,
        )
    )
    if last is None or now >= last + WINDOW:
        return Window(last, 0)
    used = session.scalar(
        select(func.count()).where(
            Message.channel == CHANNEL,
            Message.address == openid,
            Message.direction == Direction.OUTBOUND,
            Message.provider_id.like(f"{CUSTOMER_SERVICE}%"),
            Message.created_at >= last,
        )
    )
    return Window(last, int(used or 0))


class DatabaseTokens(SessionStorage):  # type: ignore[misc]
    """wechatpy's session storage, in `ProviderToken` rows: one token for every server. An
    expired token reads as none, so wechatpy fetches a new one."""

    def __init__(self, db: Engine, clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.clock = clock

    def get(self, key: str, default: Any = None) -> Any:
        with transaction(self.db) as session:
            row = session.get(ProviderToken, key)
            if row is None or (row.expires_at is not None and row.expires_at <= self.clock()):
                return default
            return row.value

    def set(self, key: str, value: Any, ttl: int | None = None) -> None:
        # A minute early, so a token is never used in its last seconds.
        expires = self.clock() + timedelta(seconds=max(0, ttl - 60)) if ttl else None
        with transaction(self.db) as session:  # two sends may fetch at once: the last one wins
            insert = dialect_insert(session)(ProviderToken).values(
                name=key, value=str(value), expires_at=expires
            )
            session.execute(
                insert.on_conflict_do_update(
                    index_elements=["name"],
                    set_={"value": insert.excluded.value, "expires_at": insert.excluded.expires_at},
                )
            )

    def delete(self, key: str) -> None:
        with transaction(self.db) as session:
            row = session.get(ProviderToken, key)
            if row is not None:
                session.delete(row)


class HotlineWeChatClient(WeChatClient):  # type: ignore[misc]
    """wechatpy's client at our API base (WeChat's, or a fake in the tests)."""

    def __init__(self, settings: Settings, session: SessionStorage) -> None:
        super().__init__(
            settings.wechat_app_id, settings.wechat_app_secret, session=session, timeout=TIMEOUT_S
        )
        self.API_BASE_URL = settings.wechat_api_url.rstrip("/") + "/"

    def fetch_access_token(self) -> dict[str, Any]:
        result: dict[str, Any] = self._fetch_access_token(
            url=f"{self.API_BASE_URL}token",
            params={"grant_type": "client_credential", "appid": self.appid, "secret": self.secret},
        )
        return result


def client_for(settings: Settings, db: Engine) -> HotlineWeChatClient:
    return HotlineWeChatClient(settings, DatabaseTokens(db))


class WeChatSender:
    """Customer-service messages, template messages, or an SMS instead (module docstring)."""

    channels = (CHANNEL,)

    def __init__(self, settings: Settings, config: WeChatConfig) -> None:
        self.settings = settings
        self.config = config
        self.db: Engine | None = None
        self._client: HotlineWeChatClient | None = None

    def attach(self, db: Engine) -> None:
        """The worker's database (the window's records, the shared token)."""
        self.db = db
        self._client = client_for(self.settings, db)

    async def send(
        self, channel: str, address: str, payload: dict[str, Any], idempotency_key: str
    ) -> SendOutcome:
        if self.db is None or self._client is None:
            return SendOutcome.retry("the WeChat sender has no database (attach was not called)")
        return await asyncio.to_thread(self._send, address, payload, idempotency_key)

    async def aclose(self) -> None:
        if self._client is not None:
            self._client._http.close()

    def _send(self, openid: str, payload: dict[str, Any], key: str) -> SendOutcome:
        assert self.db is not None
        if payload.get("kind") == FETCH_MEDIA:
            return self._fetch_media(payload)
        text = str(payload.get("text") or "")
        if not text:
            return SendOutcome.failed("nothing to send (no text)")
        now = utcnow()
        with transaction(self.db) as session:
            fits = window(session, openid, now).fits(now)
        if fits:
            outcome = self._call(lambda c: c.message.send_text(openid, text))
            if outcome is not None:
                return outcome if not outcome.sent else SendOutcome.ok(CUSTOMER_SERVICE + key)
        if payload.get("kind") == "reply":
            return SendOutcome.failed("the 48-hour customer-service window has closed")
        return self._outside_window(openid, payload, key, now)

    def _fetch_media(self, payload: dict[str, Any]) -> SendOutcome:
        """A voice message's audio, from WeChat (which keeps it 3 days) onto its case."""
        assert self.db is not None and self._client is not None
        media_id = str(payload.get("media_id") or "")
        try:
            response = self._client.media.download(media_id)
        except WeChatClientException as exc:
            error = f"WeChat error {exc.errcode}: {exc.errmsg}"
            return SendOutcome.failed(error) if exc.errcode == 40007 else SendOutcome.retry(error)
        except requests.RequestException as exc:
            return SendOutcome.retry(f"WeChat not reached: {type(exc).__name__}: {exc}"[:300])
        if isinstance(response, dict):  # JSON without an errcode: no file
            return SendOutcome.failed(f"WeChat sent no file for {media_id}: {response}"[:300])
        kind = response.headers.get("Content-Type", "") or f"audio/{payload.get('format') or 'amr'}"
        try:
            with transaction(self.db) as session:
                attachments.keep(
                    session,
                    case_number=str(payload.get("case") or "") or None,
                    source=f"{CHANNEL}:{media_id}",
                    kind="audio",
                    content_type=kind.split(";")[0].strip(),
                    data=response.content,
                )
        except attachments.TooLarge as exc:
            return SendOutcome.failed(str(exc))
        return SendOutcome.ok(MEDIA + media_id)

    def _outside_window(
        self, openid: str, payload: dict[str, Any], key: str, now: datetime
    ) -> SendOutcome:
        template_id = self.settings.wechat_notice_template_id
        if template_id:
            data = self._template_data(payload, now)
            outcome = self._call(lambda c: c.message.send_template(openid, template_id, data))
            if outcome is None:  # cannot be: a template message has no window
                return SendOutcome.retry("WeChat refused the template message as out of window")
            return outcome
        assert self.db is not None
        with transaction(self.db) as session:
            phone = session.scalar(
                select(RetireePhone.number)
                .join(MessagingIdentity, MessagingIdentity.retiree_id == RetireePhone.retiree_id)
                .where(MessagingIdentity.channel == CHANNEL, MessagingIdentity.address == openid)
                .order_by(RetireePhone.id)
                .limit(1)
            )
            if phone is None:
                return SendOutcome.failed(
                    "outside the 48-hour customer-service window, with no notice template "
                    "(HOTLINE_WECHAT_NOTICE_TEMPLATE_ID) and no phone of a linked retiree"
                )
            enqueue(
                session,
                channel="sms",
                address=phone,
                payload={**payload, "instead_of": CHANNEL},
                idempotency_key=f"{key}:sms",
                priority=2,
            )
        return SendOutcome.ok(BY_SMS + key)

    def _template_data(self, payload: dict[str, Any], now: datetime) -> dict[str, dict[str, str]]:
        template = self.config.notice_template
        places = {
            "case": str(payload.get("case") or ""),
            "text": " ".join(str(payload.get("text") or "").split()),
            "date": f"{now:%Y-%m-%d}",
        }
        return {
            name: {"value": value.format(**places)[: template.max_chars]}
            for name, value in template.data.items()
        }

    def _call(self, call: Callable[[HotlineWeChatClient], Any]) -> SendOutcome | None:
        """One API call; None when WeChat says the window is closed."""
        assert self._client is not None
        try:
            result = call(self._client)
        except APILimitedException as exc:
            return SendOutcome.retry(f"WeChat API limit: {exc.errmsg}", LIMITED_RETRY_S)
        except WeChatClientException as exc:
            code = exc.errcode
            if code in WINDOW_CLOSED:
                return None
            error = f"WeChat error {code}: {exc.errmsg}"
            if code in GONE:
                return SendOutcome.failed(error)
            return SendOutcome.retry(error)
        except requests.RequestException as exc:
            return SendOutcome.retry(f"WeChat not reached: {type(exc).__name__}: {exc}"[:300])
        msgid = result.get("msgid") if isinstance(result, dict) else None
        return SendOutcome.ok(f"{TEMPLATE}{msgid}" if msgid is not None else None)

    def after_sent(self, session: Session, item: OutboxItem, outcome: SendOutcome) -> None:
        """The outbound record (what the window counts); none for one that went by SMS."""
        provider_id = outcome.provider_id or ""
        if not provider_id or provider_id.startswith((BY_SMS, MEDIA)):
            return
        record_outbound(session, item.address, provider_id, item.payload, case_id=item.case_id)


def record_outbound(
    session: Session,
    openid: str,
    provider_id: str,
    payload: dict[str, Any],
    *,
    case_id: int | None = None,
    now: datetime | None = None,
) -> None:
    messages.record_once(
        session,
        channel=CHANNEL,
        direction=Direction.OUTBOUND,
        address=openid,
        provider_id=provider_id,
        text=str(payload.get("text") or ""),
        payload={"kind": payload.get("kind")},
        status=MessageStatus.SENT,
        case_id=case_id,
        now=now or utcnow(),
    )
