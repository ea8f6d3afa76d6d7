"""What every channel shares: the app's conversation engine (ready once the NLU model is
loaded), running a turn from an async route without blocking the event loop, and the status a
channel reports at start-up."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Engine

from bot.engine import ConversationEngine, FiledHook, TurnHook, TurnResult
from bot.messages import Inbound
from config.settings import Settings
from nlu.parser import NluParser


@dataclass(frozen=True)
class SendOutcome:
    """What happened to one outbox item: sent, to be retried (after ``retry_after_s`` if the
    provider said), or failed for good (an invalid number, a bot the person blocked)."""

    sent: bool
    provider_id: str | None = None
    error: str = ""
    permanent: bool = False
    retry_after_s: float | None = None

    @classmethod
    def ok(cls, provider_id: str | None = None) -> SendOutcome:
        return cls(sent=True, provider_id=provider_id)

    @classmethod
    def retry(cls, error: str, retry_after_s: float | None = None) -> SendOutcome:
        return cls(sent=False, error=error, retry_after_s=retry_after_s)

    @classmethod
    def failed(cls, error: str) -> SendOutcome:
        return cls(sent=False, error=error, permanent=True)


class Sender(Protocol):
    """Sends outbox items of some channels ("sms", "whatsapp", "voice", "telegram"). Must not
    block the event loop; must not raise for a provider's refusal (return an outcome)."""

    async def send(
        self, channel: str, address: str, payload: dict[str, Any], idempotency_key: str
    ) -> SendOutcome: ...


@dataclass
class Mounted:
    """A channel after `mount`: on or off (and why), and what it needs at start and stop."""

    name: str
    enabled: bool
    why: str = ""  # when off: the setting that is missing
    on_startup: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    on_shutdown: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    senders: dict[str, Sender] = field(default_factory=dict)  # outbox channel -> its sender
    # Called in the transaction that filed cases (e.g. post them to volunteers on Telegram).
    on_filed: list[FiledHook] = field(default_factory=list)

    def describe(self) -> str:
        return f"{self.name}: on" if self.enabled else f"{self.name}: off ({self.why})"


class Conversations:
    """The app's one ConversationEngine, built when the parser is ready."""

    def __init__(
        self,
        settings: Settings,
        db: Engine,
        parser: Callable[[], Awaitable[NluParser]],
        on_filed: Sequence[FiledHook] = (),
    ) -> None:
        self.settings = settings
        self.db = db
        self._parser = parser
        self._on_filed = list(on_filed)
        self._engine: ConversationEngine | None = None
        self._lock = asyncio.Lock()

    async def engine(self) -> ConversationEngine:
        if self._engine is None:
            async with self._lock:
                if self._engine is None:
                    parser = await self._parser()
                    self._engine = await run_in_threadpool(
                        partial(
                            ConversationEngine.create,
                            self.settings,
                            self.db,
                            parser,
                            on_filed=self._on_filed,
                        )
                    )
        return self._engine

    async def turn(self, inbound: Inbound, then: TurnHook | None = None) -> TurnResult:
        """One turn, run on a worker thread (the engine talks to the database synchronously);
        ``then`` writes what must commit with the turn (see `ConversationEngine.handle`)."""
        engine = await self.engine()
        return await run_in_threadpool(partial(engine.handle, inbound, then=then))

    async def close(self, channel: str, address: str) -> list[str]:
        engine = await self.engine()
        return await run_in_threadpool(engine.close_conversation, channel, address)


def conversations(request: Request) -> Conversations:
    """FastAPI dependency: the app's conversations."""
    return request.app.state.conversations
