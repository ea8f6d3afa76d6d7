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
from datetime import datetime
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import PlainTextResponse

from bot.channels.base import Conversations, Mounted, OutboxSenders, channel_config, conversations
from bot.channels.wechat import wire
from bot.channels.wechat.inbound import WeChatLine, answer, queue_answer
from bot.channels.wechat.sender import CHANNEL
from bot.conversation.deployment import Deployment
from config.settings import Settings
from config.wechat import load_wechat
from storage.db import is_database_down
from storage.spool import Spool
from storage.types import utcnow

log = structlog.get_logger(__name__)

NAME = "wechat"
PATH = "/wechat"
KEPT = "wechat"  # the spool's kind of a message kept while the database is down
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
    config = channel_config(NAME, why_off(settings), lambda: load_wechat(settings.config_dir))
    if isinstance(config, Mounted):
        return config
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
        spool: Spool = request.app.state.spool
        line = line_of(talk, spool)
        if spool.waiting():  # behind what waits for the database, in the order it came
            text = await _kept(line, spool, incoming, "behind")
        else:
            try:
                text = await answer(line, incoming, arrived)
            except Exception as exc:
                if not is_database_down(exc):
                    raise
                log.warning("database_down_wechat_kept", error=str(exc)[:200])
                text = await _kept(line, spool, incoming, type(exc).__name__)
        if not text:
            return PlainTextResponse("success")
        xml = wire.passive_reply(settings, incoming, query, text)
        return Response(xml, media_type="application/xml")

    def line_of(talk: Conversations, spool: Spool) -> WeChatLine:
        def keep(incoming: wire.Incoming, why: str) -> None:
            spool.put(_spooled(incoming, why))

        return WeChatLine(talk, config, settings.wechat_reply_within_s, keep=keep)

    async def replay(item: dict[str, Any], _received: datetime) -> None:
        """A message kept while the database was down: handled now; what it is answered goes
        by the worker (WeChat was told the message is kept)."""
        talk: Conversations = app.state.conversations
        incoming = wire.Incoming.from_json(item["incoming"])
        text = await answer(line_of(talk, app.state.spool), incoming, 0.0, waiting=False)
        if text:
            await talk.run(queue_answer, talk, incoming, text)

    app.include_router(router)
    return Mounted(NAME, enabled=True, replays={KEPT: replay})


async def _kept(line: WeChatLine, spool: Spool, incoming: wire.Incoming, why: str) -> str:
    """Keep ``incoming`` for when the database is back; what the person is told meanwhile."""
    await asyncio.to_thread(spool.put, _spooled(incoming, why))
    return line.catalogs.text("wechat.kept", line.talk.settings.default_language)


def _spooled(incoming: wire.Incoming, why: str) -> dict[str, Any]:
    return {
        "kind": KEPT,
        "incoming": incoming.to_json(),
        "received_at": utcnow().isoformat(),
        "why": why,
    }


def _checked(settings: Settings, request: Request) -> wire.Query:
    query = wire.Query.of(request.query_params)
    try:
        wire.check(settings, query)
    except wire.WireError as exc:
        log.warning("wechat_refused", status=exc.status, why=exc.why)
        raise HTTPException(exc.status, detail=exc.why) from None
    return query
