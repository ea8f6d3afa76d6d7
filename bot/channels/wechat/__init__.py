"""The WeChat Official Account (服务号) for retirees and their families.

``GET /wechat`` answers WeChat's URL check (the ``echostr``, once the signature is ours);
``POST /wechat`` takes each message and event. `wire` checks the signature (and decrypts in safe
mode) and reads the XML, `inbound` does what the message asks, `sender` sends the outbox's
"wechat" items (replies that missed the webhook's budget, notices, follow-up questions) within
WeChat's customer-service window, or by template message or SMS when it has closed.

WeChat waits 5 seconds for an answer and then asks again (three times, the same ``MsgId``): a
turn done within ``HOTLINE_WECHAT_REPLY_WITHIN_S`` (4 s) is answered in the HTTP reply; a slower
one gets "success" at once and its reply goes by the customer-service API. A request refused
(a forged signature, an old timestamp, XML that is not WeChat's) gets its HTTP status with what
was wrong, and nothing is stored.

Off (and said so at start-up) until HOTLINE_WECHAT_TOKEN, HOTLINE_WECHAT_APP_ID and
HOTLINE_WECHAT_APP_SECRET are set; README.md says where in the account's settings each comes from.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import structlog
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import PlainTextResponse

from bot.channels.base import Conversations, Mounted, OutboxSenders, conversations
from bot.channels.wechat import wire
from bot.channels.wechat.inbound import WeChatLine, answer
from bot.channels.wechat.sender import CHANNEL
from bot.conversation.deployment import Deployment
from config.loader import ConfigError
from config.settings import Settings
from config.wechat import load_wechat

log = structlog.get_logger(__name__)

NAME = "wechat"
PATH = "/wechat"
SETTINGS = "HOTLINE_WECHAT_TOKEN, HOTLINE_WECHAT_APP_ID or HOTLINE_WECHAT_APP_SECRET"


def why_off(settings: Settings) -> str:
    return "" if settings.wechat_enabled else f"no {SETTINGS}"


def senders(settings: Settings) -> OutboxSenders:
    if not settings.wechat_enabled:
        return OutboxSenders(off={CHANNEL: SETTINGS.replace(" or ", " and ")})
    from bot.channels.wechat.sender import WeChatSender

    return OutboxSenders(on={CHANNEL: WeChatSender(settings, load_wechat(settings.config_dir))})


def mount(app: FastAPI, deployment: Deployment) -> Mounted:
    settings = deployment.settings
    why = why_off(settings)
    if why:
        return Mounted(NAME, enabled=False, why=why)
    try:
        config = load_wechat(settings.config_dir)
    except ConfigError as exc:
        return Mounted(NAME, enabled=False, why=str(exc))
    router = APIRouter(tags=["wechat"])

    @router.get(PATH)
    async def verify(request: Request) -> Response:
        """WeChat's check of the server URL: the echostr back, once the signature is ours."""
        _checked(settings, request)
        return PlainTextResponse(str(request.query_params.get("echostr", "")))

    @router.post(PATH)
    async def message(
        request: Request, talk: Annotated[Conversations, Depends(conversations)]
    ) -> Response:
        """A message or event from a person: the answer, or "success" (see the docstring)."""
        arrived = asyncio.get_running_loop().time()
        query = _checked(settings, request)
        try:
            incoming = wire.read(settings, query, await request.body())
        except wire.WireError as exc:
            log.warning("wechat_refused", status=exc.status, why=exc.why)
            raise HTTPException(exc.status, detail=exc.why) from None
        line = WeChatLine(talk, config, settings.wechat_reply_within_s, config.link_words)
        text = await answer(line, incoming, arrived)
        if not text:
            return PlainTextResponse("success")
        xml = wire.passive_reply(settings, incoming, query, text)
        return Response(xml, media_type="application/xml")

    app.include_router(router)
    return Mounted(NAME, enabled=True)


def _checked(settings: Settings, request: Request) -> wire.Query:
    query = wire.Query.of(request.query_params)
    try:
        wire.check(settings, query)
    except wire.WireError as exc:
        log.warning("wechat_refused", status=exc.status, why=exc.why)
        raise HTTPException(exc.status, detail=exc.why) from None
    return query
