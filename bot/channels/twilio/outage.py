"""The phone line and the text messages while the database cannot be reached.

Twilio does not wait for us: a call whose webhook fails hears Twilio's own "an application error
has occurred" (in English) and is cut off, and a message or status callback that fails is not
sent again (or a few times, within seconds). So every Twilio webhook is answered even then, and
what it carried is kept in the spool (storage/spool.py) until the database answers:

- A person on the line (the call comes in, a turn, a confirmation, after a <Dial>, after a
  voicemail) hears "sorry, the system has a problem", is put through to the community's own
  phones (HOTLINE_TWILIO_OUTAGE_NUMBERS, which need no database), and is told we will call back
  and to call 120 if in danger (`VoiceLine.outage`). This answer is given on any failure of
  such a webhook, not only the database's: nobody is ever cut off by our error. Kept: a
  **call** item; when the database is back it files a `callback` case (reason "outage", with
  the words heard), once per call (``{CallSid}:outage``); words of an emergency run as the
  turn they were instead, so the emergency is filed and its alert calls go at once
  (`file_outage_call`).
- An SMS or WhatsApp message, a delivery status, a call status, a key pressed by staff on a call
  we placed: answered as usual (empty TwiML, 204, "your key is noted"), kept as a **webhook**
  item; when the database is back it is run again through the same route (signed again with
  our auth token, marked as a replay with the app's secret `replay_token` and the time it first
  came, which a message's turn takes as its own): the turn runs and its reply goes out through
  the outbox. Provider ids make a webhook run twice change nothing.

Order: while anything waits in the spool, new messages and status callbacks are spooled behind
it instead of being handled at once, so that a person's messages are answered in the order they
were sent, and a call's status (which files a call-back for a call in which nothing was said)
comes after the call's own item. Live calls are always tried at once.

Only a webhook whose signature was checked is kept (a forged one is still refused with 403),
and only a database failure keeps it (another error is a bug, which running it again would not
mend: it is logged, and a caller still gets the outage answer). Each `hotline serve` process
runs a `Replayer`: every few seconds, when the spool has items and the database answers, one
process at a time (a lock file) takes them, oldest first; a webhook that fails again because
the database went away is put back with everything after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import os
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import structlog
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.routing import APIRoute
from sqlalchemy.exc import SQLAlchemyError
from twilio.request_validator import RequestValidator

from bot.channels.base import Replay
from bot.channels.twilio.signature import FORM_STATE, verified_form
from bot.runtime.flock import try_flock
from config.settings import Settings
from storage.db import is_database_down, ping
from storage.spool import Spool, Taken
from storage.types import utcnow

log = structlog.get_logger(__name__)

CALL = "call"  # kept: file a call-back when the database is back
WEBHOOK = "webhook"  # kept: run the webhook again when the database is back
REPLAY_HEADER = "X-Hotline-Replay"  # the app's own replay token (`replay_token`)
RECEIVED_HEADER = "X-Hotline-Received"  # on a replay: when the webhook first came (ISO 8601)
OUTAGE = "outage"  # the call-back's reason (callback.reason.outage)
SPOOL_FOLDER = "spool"
LOCK_FILE = "spool.lock"
REPLAY_EVERY_S = 2.0
WHEN_DOWN = "when_down"  # the endpoint attribute `when_down` sets

Answer = Callable[[Request], Response]
F = TypeVar("F", bound=Callable[..., Awaitable[Response]])


@dataclass(frozen=True)
class WhenDown:
    """What a Twilio webhook does when the database cannot be reached."""

    keep: str | None  # CALL, WEBHOOK, or None (nothing to keep)
    answer: Answer  # what Twilio is told instead
    in_order: bool = False  # spooled without trying while earlier items wait
    caller: bool = False  # a person on the line: any failure gets ``answer``


def when_down(plan: WhenDown) -> Callable[[F], F]:
    """Mark a route's endpoint (under the ``@router.post``) with its `WhenDown`."""

    def mark(endpoint: F) -> F:
        setattr(endpoint, WHEN_DOWN, plan)
        return endpoint

    return mark


def spool_of(settings: Settings) -> Spool:
    return Spool(Path(settings.data_dir) / SPOOL_FOLDER)


def replay_token() -> str:
    """A secret of one app (``app.state.replay_token``): its `Replayer` sends it in
    REPLAY_HEADER, which is how a route knows a request for a replay of its own. A header
    anyone could send would let a signed webhook jump the queue, or backdate itself."""
    return secrets.token_urlsafe(24)


def is_replay(request: Request) -> bool:
    sent = request.headers.get(REPLAY_HEADER)
    token: str | None = getattr(request.app.state, "replay_token", None)
    return sent is not None and token is not None and hmac.compare_digest(sent, token)


def first_received(request: Request) -> datetime | None:
    """When a replayed webhook first came (the spool kept it then); None for any other."""
    sent = request.headers.get(RECEIVED_HEADER)
    if sent is None or not is_replay(request):
        return None
    return datetime.fromisoformat(sent)


class TwilioRoute(APIRoute):
    """An APIRoute whose endpoint, if marked with `when_down`, is answered and kept (see the
    module docstring) instead of failing while the database is down."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handle = super().get_route_handler()
        plan: WhenDown | None = getattr(self.endpoint, WHEN_DOWN, None)
        if plan is None:
            return handle

        async def guarded(request: Request) -> Response:
            spool: Spool = request.app.state.spool
            replay = is_replay(request)
            if plan.in_order and not replay and spool.waiting():
                form = await verified_form(request)  # a forged one: 403, nothing kept
                await _keep(spool, plan, request, form, "behind")
                return plan.answer(request)
            try:
                return await handle(request)
            except HTTPException:
                raise
            except Exception as exc:
                form = getattr(request.state, FORM_STATE, None)
                outage = is_database_down(exc)
                if replay or form is None or not (outage or plan.caller):
                    raise
                if outage:
                    log.warning(
                        "database_down_webhook_kept", path=request.url.path, error=str(exc)[:200]
                    )
                    await _keep(spool, plan, request, form, type(exc).__name__)
                else:
                    log.exception("voice_webhook_failed", path=request.url.path)
                return plan.answer(request)

        return guarded


async def _keep(
    spool: Spool, plan: WhenDown, request: Request, form: dict[str, Any], why: str
) -> None:
    """Put the webhook in the spool (on a thread: the file is flushed to disk)."""
    if plan.keep is None:
        return
    item = {
        "kind": plan.keep,
        "path": request.url.path,
        "query": request.url.query,
        "form": form,
        "received_at": utcnow().isoformat(),
        "why": why,
    }
    await asyncio.to_thread(spool.put, item)


def _put_back(items: list[Taken]) -> None:
    for item in items:
        item.put_back()


class StillDown(Exception):
    """A webhook handed back was answered 503: the database is down again."""


class Replayer:
    """Hands what the spool kept back to the app once the database answers (module docstring).
    ``file_call``: files the call-back of a kept call (the item, when it came; the phone
    line's `file_outage_call`, given by the app); ``replays``: how other channels' items are
    run again, by kind (WeChat's messages: bot/channels/wechat/__init__.py)."""

    def __init__(
        self,
        app: FastAPI,
        spool: Spool,
        file_call: Callable[[dict[str, Any], datetime], Awaitable[Any]] | None,
        every_s: float = REPLAY_EVERY_S,
        replays: dict[str, Replay] | None = None,
    ) -> None:
        self.app = app
        self.spool = spool
        self.settings: Settings = app.state.settings
        self.file_call = file_call
        self.replays = dict(replays or {})  # other channels' kinds of item (Mounted.replays)
        self.every_s = every_s
        self._validator = RequestValidator(self.settings.twilio_auth_token)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.drain()
            except Exception:  # the replayer must keep going: the spool keeps the items
                log.exception("spool_replay_failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.every_s)

    async def drain(self) -> int:
        """Hand back what waits, if the database answers; the number of items handled."""
        if not self.spool.waiting():
            return 0
        try:
            await run_in_threadpool(ping, self.app.state.engine)
        except SQLAlchemyError:
            return 0
        with self._one_process() as mine:
            if not mine:
                return 0
            taken = await asyncio.to_thread(self.spool.take)
            return await self._hand_back(taken)

    async def _hand_back(self, taken: list[Taken]) -> int:
        """Each item in turn (file operations on a thread: they are flushed to disk)."""
        handled = 0
        # In this process, not over the network: the app's own routes, as Twilio would call them.
        transport = httpx.ASGITransport(app=self.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://replay") as client:
            for i, item in enumerate(taken):
                done = await self._hand_back_one(client, item, left=len(taken) - i)
                if done is None:  # the database is down again: this one and the rest wait
                    await asyncio.to_thread(_put_back, taken[i:])
                    break
                handled += done
        if handled:
            log.info("spool_replayed", handled=handled, waiting=self.spool.count())
        return handled

    async def _hand_back_one(
        self, client: httpx.AsyncClient, item: Taken, left: int
    ) -> bool | None:
        """Handle ``item``: True when done, False when set aside for good (a bug), None when
        the database is down again (the item is left to be put back)."""
        try:
            await self._handle(client, item.item)
        except Exception as exc:
            if isinstance(exc, StillDown) or is_database_down(exc):
                log.warning("spool_replay_database_down", left=left)
                return None
            log.exception("spool_item_failed", path=item.item.get("path"), file=item.path.name)
            await asyncio.to_thread(item.failed, f"{type(exc).__name__}: {exc}"[:1000])
            return False
        await asyncio.to_thread(item.done)
        return True

    async def _handle(self, client: httpx.AsyncClient, item: dict[str, Any]) -> None:
        received = datetime.fromisoformat(item["received_at"])
        replay = self.replays.get(item["kind"])
        if replay is not None:
            await replay(item, received)
            return
        if item["kind"] == CALL:
            if self.file_call is None:
                raise RuntimeError("a kept call, but Twilio is not configured on this server")
            await self.file_call(item, received)
            return
        path, query, form = item["path"], item.get("query", ""), item["form"]
        target = path + (f"?{query}" if query else "")
        url = self.settings.public_url.rstrip("/") + target  # what Twilio signed
        headers = {
            "X-Twilio-Signature": self._validator.compute_signature(url, form),
            REPLAY_HEADER: self.app.state.replay_token,
            RECEIVED_HEADER: received.isoformat(),
        }
        response = await client.post(target, data=form, headers=headers)
        if response.status_code == 503:  # the database went away again (console's handler)
            raise StillDown(f"{path} answered 503")
        if response.status_code >= 400:  # refused (a bug): kept aside, never run again
            raise RuntimeError(f"{path} answered {response.status_code}: {response.text[:200]}")

    @contextlib.contextmanager
    def _one_process(self) -> Any:
        """One process of this machine at a time hands items back, so that a person's messages
        keep their order."""
        fd = try_flock(Path(self.settings.data_dir) / LOCK_FILE)
        if fd is None:
            yield False
            return
        try:
            yield True
        finally:
            os.close(fd)
