"""`POST /nlu/parse`: what the NLU makes of a text, as Rasa's /model/parse JSON."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future
from typing import Any

import structlog
from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from bot.conversation.engine import freeze_startup_objects
from config.settings import Settings
from console.auth import any_token
from nlu.parser import NluParser, get_parser

log = structlog.get_logger(__name__)
router = APIRouter(tags=["nlu"])


class ParseRequest(BaseModel):
    text: str = Field(description="What the person said or wrote.", max_length=100_000)


class ParserLoader:
    """Loads (or trains) the parser in a background thread, so start-up never waits for it;
    the first requests wait until it is ready."""

    def __init__(self, settings: Settings) -> None:
        self._future: Future[NluParser] = Future()
        self._thread = threading.Thread(
            target=self._load, args=(settings,), name="nlu-loader", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def _load(self, settings: Settings) -> None:
        try:
            parser = get_parser(settings)
            freeze_startup_objects()  # the model is loaded: spare it from the collector
            self._future.set_result(parser)
            log.info("nlu_ready", backend=settings.nlu_backend)
        except BaseException as exc:  # handed to the requests that wait for it
            log.error("nlu_failed", error=str(exc))
            self._future.set_exception(exc)

    async def parser(self) -> NluParser:
        return await asyncio.wrap_future(self._future)


@router.post("/nlu/parse", dependencies=[Depends(any_token)])
async def parse(body: ParseRequest, request: Request) -> dict[str, Any]:
    """Intent, ranking, entities and tokens of ``text`` (Rasa's /model/parse format), for a
    holder of a personal token (``Authorization: Bearer hlt_...``): what retirees say is not
    for anyone to probe."""
    parser = await request.app.state.nlu.parser()
    return await run_in_threadpool(parser.parse, body.text)
