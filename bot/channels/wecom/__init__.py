"""The WeCom (企业微信) app for volunteers and staff: new cases come to them as button cards, a
tap claims (cards.py, staff.py), they list their cases and close them by text, and alerts and
reminders meant for them reach them here (storage.alert_chain.message_channel: a staff member
with a WeCom UserID).

``GET /wecom`` answers WeCom's URL check (the echostr, decrypted, once ``msg_signature`` is
ours); ``POST /wecom`` takes each callback, always encrypted: a forged or replayed one
(``msg_signature``, a timestamp more than 5 minutes from our clock) gets 403 and changes
nothing, XML that is not WeCom's 400. A staff member's WeCom UserID is set with
`hotline users add --wecom-user` or `hotline users set-wecom`.

Off (and said so at start-up) until HOTLINE_WECOM_CORP_ID, HOTLINE_WECOM_AGENT_ID,
HOTLINE_WECOM_SECRET, HOTLINE_WECOM_TOKEN and HOTLINE_WECOM_AES_KEY are set.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Any
from xml.parsers.expat import ExpatError

import structlog
import xmltodict
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import PlainTextResponse
from wechatpy.enterprise.crypto import WeChatCrypto
from wechatpy.enterprise.exceptions import InvalidCorpIdException
from wechatpy.exceptions import InvalidSignatureException

from bot.channels.base import (
    Conversations,
    Mounted,
    OutboxSenders,
    channel_config,
    conversations,
    without_nul,
)
from bot.channels.wecom import cards
from bot.channels.wecom.staff import Callback, handle
from bot.conversation.deployment import Deployment
from config.settings import Settings
from config.wecom import load_wecom
from storage.db import transaction

log = structlog.get_logger(__name__)

NAME = CHANNEL = cards.CHANNEL
PATH = "/wecom"
MAX_SKEW_S = 300
MAX_BODY = 64 * 1024
SETTINGS = (
    "HOTLINE_WECOM_CORP_ID, HOTLINE_WECOM_AGENT_ID, HOTLINE_WECOM_SECRET, "
    "HOTLINE_WECOM_TOKEN or HOTLINE_WECOM_AES_KEY"
)


def why_off(settings: Settings) -> str:
    return "" if settings.wecom_enabled else f"no {SETTINGS}"


def senders(settings: Settings) -> OutboxSenders:
    if not settings.wecom_enabled:
        return OutboxSenders(off={CHANNEL: SETTINGS.replace(" or ", " and ")})
    from bot.channels.wecom.sender import WeComSender

    return OutboxSenders(on={CHANNEL: WeComSender(settings)})


def mount(app: FastAPI, deployment: Deployment) -> Mounted:
    settings = deployment.settings
    config = channel_config(NAME, why_off(settings), lambda: load_wecom(settings.config_dir))
    if isinstance(config, Mounted):
        return config
    crypto = WeChatCrypto(settings.wecom_token, settings.wecom_aes_key, settings.wecom_corp_id)
    desk = cards.desk_for(deployment)
    router = APIRouter(tags=["wecom"])

    @router.get(PATH)
    async def verify(request: Request) -> Response:
        """WeCom's check of the callback URL: the echostr, decrypted."""
        query = request.query_params
        _fresh(str(query.get("timestamp", "")))
        try:
            echo = crypto.check_signature(
                query.get("msg_signature", ""),
                query.get("timestamp", ""),
                query.get("nonce", ""),
                query.get("echostr", ""),
            )
        except (InvalidSignatureException, InvalidCorpIdException, ValueError, KeyError) as exc:
            raise _refused(403, f"the URL check does not verify ({type(exc).__name__})") from None
        return PlainTextResponse(echo if isinstance(echo, str) else echo.decode())

    @router.post(PATH)
    async def callback(
        request: Request, talk: Annotated[Conversations, Depends(conversations)]
    ) -> Response:
        """A tap or a message from a staff member: handled, its answer through the outbox."""
        query = request.query_params
        timestamp = str(query.get("timestamp", ""))
        _fresh(timestamp)
        body = await request.body()
        if len(body) > MAX_BODY:
            raise _refused(413, f"the body has {len(body)} bytes, more than {MAX_BODY}")
        try:
            xml = crypto.decrypt_message(
                body.decode("utf-8"),
                query.get("msg_signature", ""),
                timestamp,
                query.get("nonce", ""),
            )
        except InvalidSignatureException:
            raise _refused(403, "msg_signature does not match the message") from None
        except InvalidCorpIdException:
            raise _refused(403, "the message is for another CorpID") from None
        except (ExpatError, KeyError, ValueError, TypeError, UnicodeDecodeError) as exc:
            raise _refused(400, f"the encrypted message cannot be read ({exc})") from None
        try:
            fields = xmltodict.parse(without_nul(xml if isinstance(xml, str) else xml.decode()))
            read = Callback.of(without_nul(dict(fields["xml"])), _received(fields["xml"]))
        except (ExpatError, KeyError, ValueError, TypeError) as exc:
            raise _refused(400, f"not a WeCom callback ({type(exc).__name__}: {exc})") from None

        def run() -> None:
            with transaction(talk.db) as session:
                handle(session, read, desk, config)

        await talk.run(run)
        return PlainTextResponse("")

    app.include_router(router)
    return Mounted(NAME, enabled=True, on_filed=[cards.announcer(deployment)])


def _fresh(timestamp: str) -> None:
    try:
        skew = abs(time.time() - int(timestamp))
    except ValueError:
        raise _refused(403, "the timestamp is not a number") from None
    if skew > MAX_SKEW_S:
        raise _refused(403, f"the timestamp is {skew:.0f} s from our clock (a replay?)")


def _received(xml: dict[str, Any]) -> datetime:
    try:
        return datetime.fromtimestamp(int(xml.get("CreateTime") or 0), UTC)
    except (ValueError, OverflowError):
        return datetime.now(UTC)


def _refused(status: int, why: str) -> HTTPException:
    log.warning("wecom_refused", status=status, why=why)
    return HTTPException(status, detail=why)
