"""WeChat's side of the webhook: the signature, safe mode (AES), the XML, and the passive reply,
with wechatpy doing the cryptography and the parsing. Everything that can be wrong with a request
raises `WireError` with the HTTP status to answer and what was wrong; nothing is stored before
a request has passed all of it.

- Plain mode: ``signature`` = sha1 of the sorted token, ``timestamp`` and ``nonce``.
- Safe mode (``encrypt_type=aes``): the body's ``Encrypt`` is checked against ``msg_signature``
  and decrypted with the EncodingAESKey; the AppID inside must be ours. The reply is encrypted.
  With an EncodingAESKey set, a plain message is refused (the account is in safe mode, so a
  plain one was not sent by WeChat).
- Replays: a timestamp more than `MAX_SKEW_S` from our clock is refused, so a captured request
  cannot be played again later; within that window a repeat is recognised by its id.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from xml.parsers.expat import ExpatError

from wechatpy import create_reply, parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidAppIdException, InvalidSignatureException
from wechatpy.utils import check_signature

from bot.channels.base import without_nul
from config.settings import Settings

MAX_SKEW_S = 300
MAX_BODY = 64 * 1024  # a text message is at most 2,048 bytes; events are smaller
MAX_TEXT = 2000  # characters of a message kept (WeChat caps a text at 2,048 bytes)


class WireError(Exception):
    def __init__(self, status: int, why: str) -> None:
        super().__init__(why)
        self.status = status
        self.why = why


class Kind(StrEnum):
    TEXT = "text"
    VOICE = "voice"
    CLICK = "click"  # a menu button
    SUBSCRIBE = "subscribe"
    UNSUBSCRIBE = "unsubscribe"
    OTHER = "other"  # a picture, a location, a link, an event we do not act on


@dataclass(frozen=True)
class Incoming:
    """One message or event from a person (``openid``: their OpenID for our account)."""

    kind: Kind
    openid: str
    account: str  # our account's id (ToUserName), for the passive reply
    provider_id: str  # MsgId, or for events (which have none) the OpenID and the time
    received_at: datetime
    text: str = ""  # a text, a voice message's Recognition
    media_id: str = ""  # a voice message's audio, kept by WeChat for 3 days
    media_format: str = ""  # amr, speex
    key: str = ""  # a menu button's EventKey
    raw_type: str = ""  # MsgType (and Event) as WeChat named it
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """As the spool keeps it while the database is down."""
        return {
            **asdict(self),
            "kind": self.kind.value,
            "received_at": self.received_at.isoformat(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Incoming:
        return cls(
            **{
                **data,
                "kind": Kind(data["kind"]),
                "received_at": datetime.fromisoformat(data["received_at"]),
            }
        )


@dataclass(frozen=True)
class Query:
    """The webhook's query string, as WeChat sends it."""

    signature: str
    timestamp: str
    nonce: str
    encrypt_type: str = ""
    msg_signature: str = ""

    @classmethod
    def of(cls, params: Any) -> Query:
        return cls(
            signature=str(params.get("signature", "")),
            timestamp=str(params.get("timestamp", "")),
            nonce=str(params.get("nonce", "")),
            encrypt_type=str(params.get("encrypt_type", "")).lower(),
            msg_signature=str(params.get("msg_signature", "")),
        )


def check(settings: Settings, query: Query, *, now: float | None = None) -> None:
    """The plain signature (on every request, the URL check too) and the timestamp's age."""
    if not (query.signature and query.timestamp and query.nonce):
        raise WireError(403, "signature, timestamp and nonce are required")
    try:
        check_signature(settings.wechat_token, query.signature, query.timestamp, query.nonce)
    except InvalidSignatureException:
        raise WireError(403, "the signature does not match our token") from None
    try:
        sent = int(query.timestamp)
    except ValueError:
        raise WireError(403, "the timestamp is not a number") from None
    skew = abs((time.time() if now is None else now) - sent)
    if skew > MAX_SKEW_S:
        raise WireError(403, f"the timestamp is {skew:.0f} s from our clock (a replay?)")


def read(settings: Settings, query: Query, body: bytes) -> Incoming:
    """The message in a POST whose query has passed `check`."""
    if len(body) > MAX_BODY:
        raise WireError(413, f"the body has {len(body)} bytes, more than {MAX_BODY}")
    try:
        xml = body.decode("utf-8")
    except UnicodeDecodeError:
        raise WireError(400, "the body is not UTF-8") from None
    if settings.wechat_aes_key:
        if query.encrypt_type != "aes":
            raise WireError(403, "safe mode is set (EncodingAESKey), the message is not encrypted")
        try:
            xml = _crypto(settings).decrypt_message(
                xml, query.msg_signature, query.timestamp, query.nonce
            )
        except InvalidSignatureException:
            raise WireError(403, "msg_signature does not match the encrypted message") from None
        except InvalidAppIdException:
            raise WireError(403, "the message is for another AppID") from None
        except (ExpatError, KeyError, ValueError, TypeError) as exc:
            raise WireError(400, f"the encrypted message cannot be read ({exc})") from None
        if isinstance(xml, bytes):
            xml = xml.decode("utf-8", "replace")
    elif query.encrypt_type == "aes":
        raise WireError(400, "an encrypted message, but no EncodingAESKey is set")
    try:
        # No XML may hold a NUL, even escaped: taken out, as every webhook's text is.
        message = parse_message(without_nul(xml))
        if message is None:
            raise WireError(400, "the body is empty")
        return _incoming(message)
    except (ExpatError, KeyError, ValueError, TypeError, AttributeError) as exc:
        raise WireError(400, f"not a WeChat message ({type(exc).__name__}: {exc})") from None


def _incoming(message: Any) -> Incoming:
    openid = without_nul(str(message.source or "")).strip()
    if not openid:
        raise WireError(400, "FromUserName is missing")
    created = message.create_time
    if isinstance(created, datetime):
        received = created.astimezone(UTC) if created.tzinfo else created.replace(tzinfo=UTC)
    else:
        received = datetime.now(UTC)
    stamp = int(received.timestamp())
    msg_id = str(message.id or "")
    event = str(getattr(message, "event", "") or "").lower()
    raw_type = f"{message.type}:{event}" if event else str(message.type)
    common = {
        "openid": openid,
        "account": str(message.target or ""),
        "received_at": received,
        "raw_type": raw_type,
    }
    if message.type == "text":
        text = without_nul(str(message.content or ""))[:MAX_TEXT]
        return Incoming(Kind.TEXT, provider_id=msg_id or f"{openid}:{stamp}", text=text, **common)
    if message.type == "voice":
        return Incoming(
            Kind.VOICE,
            provider_id=msg_id or f"{openid}:{stamp}",
            text=without_nul(str(message.recognition or ""))[:MAX_TEXT],
            media_id=str(message.media_id or ""),
            media_format=str(message.format or ""),
            **common,
        )
    # Events have no MsgId: WeChat's advice is FromUserName + CreateTime.
    event_id = f"{openid}:{stamp}:{event}"
    if event in ("subscribe", "subscribe_scan"):
        return Incoming(Kind.SUBSCRIBE, provider_id=event_id, **common)
    if event == "unsubscribe":
        return Incoming(Kind.UNSUBSCRIBE, provider_id=event_id, **common)
    if event == "click":
        key = without_nul(str(getattr(message, "key", "") or ""))[:100]
        return Incoming(Kind.CLICK, provider_id=event_id, key=key, **common)
    extra: dict[str, Any] = {}
    if message.type == "location":
        extra["location"] = {
            "latitude": str(message.location_x),
            "longitude": str(message.location_y),
            "label": without_nul(str(message.label or "")),
        }
    elif message.type == "image":
        extra["media"] = [{"type": "image", "media_id": str(message.media_id or "")}]
    return Incoming(Kind.OTHER, provider_id=msg_id or event_id, extra=extra, **common)


def passive_reply(settings: Settings, incoming: Incoming, query: Query, text: str) -> str:
    """The XML answering ``incoming`` with ``text`` (encrypted in safe mode)."""
    xml = create_reply(text, _Addressed(incoming)).render()
    if not settings.wechat_aes_key:
        return xml
    return _crypto(settings).encrypt_message(xml, query.nonce, query.timestamp)


@dataclass(frozen=True)
class _Addressed:
    """What wechatpy's reply needs of the message it answers."""

    incoming: Incoming

    @property
    def source(self) -> str:
        return self.incoming.openid

    @property
    def target(self) -> str:
        return self.incoming.account


def _crypto(settings: Settings) -> WeChatCrypto:
    return WeChatCrypto(settings.wechat_token, settings.wechat_aes_key, settings.wechat_app_id)
