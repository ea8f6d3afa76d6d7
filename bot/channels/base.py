"""What every channel shares: the app's conversation engine (ready once the NLU model is
loaded), running a turn (or other database work) from an async route without blocking the event
loop, and the status a channel reports at start-up.

Turns run on a few worker threads (``turn_threads``, default 2), not on the 40 of the app's
default thread pool: a turn holds Python's interpreter lock except while it waits for the
database, so 40 threads at once mostly pass that lock around (and wait for pooled connections);
a webhook then queues for a thread instead, which costs less CPU per message
(benchmarks/webhook_bench.py). The console keeps the default pool, so a long report does not
hold up a turn.

The outbox's senders
--------------------
Each channel package offers its senders (``senders(settings)``: an ``OutboxSenders``); the
registry in bot/channels/__init__.py collects them for the worker (bot/runtime/worker.py). A
sender may also have ``after_sent(session, item, outcome)``, called in the transaction that
marks the item sent (where a message went, so its status callbacks or later edits find it), and
``upkeep(session, catalogs=..., language=...)``, called every few seconds, and ``attach(db)``,
called once by the worker with its database engine (for a sender that reads records of its own:
WeChat's customer-service window and its shared access token).

Idempotency, honestly
---------------------
Every outbox item has an idempotency key, unique in the outbox (``{case}:{kind}:{channel}:
{address}`` for the engine's notifications, ``reply:{channel}:{MessageSid}:{part}`` for replies),
so nothing is queued twice. Delivery to the provider is *at least once*: the worker records each
item's outcome right after the provider answered it, in a short transaction of its own (retried
through a short database outage). What can still happen:

- the worker dies (kill -9, a lost machine) while a request is out, or the database stays away
  longer than the retries: the item stays ``sending`` until storage.outbox.STUCK_AFTER (60 s)
  has passed, then it is put back marked ``unsure_since``;
- a request times out after the provider took it.

Before sending an unsure item again, the worker asks the sender whether the provider has it
already (``find_sent(channel, address, payload, since)``, where a sender can answer):

- Twilio SMS and WhatsApp: yes. The messages sent to that number from ours since the unsure
  attempt began are listed, and one with the same text counts as this item's
  (bot/channels/twilio/messaging/sender.py). Twilio has no idempotency key for creates: the key
  goes in the ``I-Twilio-Idempotency-Token`` header, hashed (bot/channels/twilio/rest.py), which
  only a gateway in ``twilio_api_url`` honours.
- Twilio calls: no. A call resource does not say what it said, so a call placed to the same
  number in the meantime (another alert, a follow-up) cannot be told apart; an emergency call
  rung twice is better than one not rung. At most one duplicate per crash.
- Telegram Bot API: no (``sendMessage`` has no key and nothing lists what a bot sent): at most
  one duplicate per crash.

benchmarks/outbox_crash.py counts lost and duplicated replies under kill -9 and a database
restart. Exactly once would need the provider to deduplicate by our key; the fake Twilio API in
the tests can act so (``honour_idempotency``).
"""

from __future__ import annotations

import asyncio
import unicodedata
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any, Protocol, TypeVar

import anyio.to_thread
from anyio import CapacityLimiter
from fastapi import Request
from sqlalchemy import Engine

from bot.conversation.deployment import Deployment
from bot.conversation.engine import ConversationEngine, FiledHook, TurnHook, TurnResult
from bot.conversation.messages import Inbound
from config.loader import ConfigError
from config.settings import Settings
from nlu.parser import NluParser

T = TypeVar("T")
Replay = Callable[[dict[str, Any], datetime], Awaitable[None]]
NUL = "\x00"  # PostgreSQL cannot store it in a text


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
    block the event loop; must not raise for a provider's refusal (return an outcome).

    May also have ``find_sent(channel, address, payload, since) -> SendOutcome | None``: the
    provider's record of this item if it took it since ``since`` (an attempt whose outcome was
    lost), None when it has none or cannot tell (see "Idempotency, honestly" above)."""

    async def send(
        self, channel: str, address: str, payload: dict[str, Any], idempotency_key: str
    ) -> SendOutcome: ...


@dataclass
class OutboxSenders:
    """What a channel package sends from the outbox: a sender for each outbox channel it
    serves (``on``), for each it would serve but cannot now, the settings it lacks (``off``),
    and those a process of its own sends (``elsewhere``: the SIP line's calls, by `hotline sip`),
    which the app's worker leaves alone."""

    on: dict[str, Sender] = field(default_factory=dict)
    off: dict[str, str] = field(default_factory=dict)
    elsewhere: dict[str, str] = field(default_factory=dict)  # channel: the command that sends it


@dataclass
class Mounted:
    """A channel after `mount`: on or off (and why), and what it needs at start and stop."""

    name: str
    enabled: bool
    why: str = ""  # when off: the setting that is missing
    on_startup: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    on_shutdown: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # Called in the transaction that filed cases (e.g. post them to volunteers on Telegram).
    on_filed: list[FiledHook] = field(default_factory=list)
    # What the channel kept in the spool while the database was down, run again when it is
    # back: the item's "kind" → ``replay(item, received_at)`` (bot/channels/twilio/outage.py).
    replays: dict[str, Replay] = field(default_factory=dict)

    def describe(self) -> str:
        return f"{self.name}: on" if self.enabled else f"{self.name}: off ({self.why})"


def channel_config(name: str, why_off: str, load: Callable[[], T]) -> T | Mounted:
    """A channel's own configuration (its YAML in config/), once its settings are there; else
    the channel off, saying why: the settings it lacks, or what is wrong in its YAML."""
    if why_off:
        return Mounted(name, enabled=False, why=why_off)
    try:
        return load()
    except ConfigError as exc:
        return Mounted(name, enabled=False, why=str(exc))


class Conversations:
    """The app's one ConversationEngine, built when the parser is ready."""

    def __init__(
        self,
        deployment: Deployment,
        db: Engine,
        parser: Callable[[], Awaitable[NluParser]],
        on_filed: Sequence[FiledHook] = (),
    ) -> None:
        self.deployment = deployment
        self.settings: Settings = deployment.settings
        self.db = db
        self._parser = parser
        self._on_filed = list(on_filed)
        self._engine: ConversationEngine | None = None
        self._lock = asyncio.Lock()
        self._threads: CapacityLimiter | None = None

    async def run(self, func: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """``func(*args, **kwargs)`` on one of the channels' ``turn_threads`` worker threads."""
        if self._threads is None:  # made in the event loop, on first use
            self._threads = CapacityLimiter(self.settings.turn_threads)
        return await anyio.to_thread.run_sync(partial(func, *args, **kwargs), limiter=self._threads)

    async def engine(self) -> ConversationEngine:
        if self._engine is None:
            async with self._lock:
                if self._engine is None:
                    parser = await self._parser()
                    self._engine = ConversationEngine(
                        self.db, parser, self.deployment, on_filed=self._on_filed
                    )
        return self._engine

    async def turn(self, inbound: Inbound, then: TurnHook | None = None) -> TurnResult:
        """One turn, run on a worker thread (the engine talks to the database synchronously);
        ``then`` writes what must commit with the turn (see `ConversationEngine.handle`)."""
        engine = await self.engine()
        return await self.run(engine.handle, inbound, then=then)

    async def close(self, channel: str, address: str) -> list[str]:
        engine = await self.engine()
        return await self.run(engine.close_conversation, channel, address)


def conversations(request: Request) -> Conversations:
    """FastAPI dependency: the app's conversations."""
    return request.app.state.conversations


def without_nul(value: Any) -> Any:
    """``value`` (a text, or lists and dicts of them, as JSON gives) with every NUL taken out."""
    if isinstance(value, str):
        return value.replace(NUL, "")
    if isinstance(value, list):
        return [without_nul(v) for v in value]
    if isinstance(value, dict):
        return {without_nul(k): without_nul(v) for k, v in value.items()}
    return value


_KEYCAP = str.maketrans("", "", "\ufe0f\u20e3")  # 1️⃣ is "1", a variation selector, a keycap


def typed_number(body: str) -> str:
    """A choice typed the way phones type it ("１" from a Chinese keyboard, "①", "1️⃣", "1.")
    as plain digits, which the engine matches against the numbered choices; other text as is."""
    plain = unicodedata.normalize("NFKC", body).translate(_KEYCAP).strip(" ()（）.。、")
    if plain.isascii() and plain.isdecimal():
        return plain
    return body


def split_body(text: str, limit: int) -> list[str]:
    """``text`` in parts of at most ``limit`` characters, cut at line ends where possible."""
    parts: list[str] = []
    current = ""
    for line in text.split("\n"):
        while len(line) > limit:
            if current:
                parts.append(current)
                current = ""
            parts.append(line[:limit])
            line = line[limit:]
        joined = f"{current}\n{line}" if current else line
        if len(joined) > limit:
            parts.append(current)
            current = line
        else:
            current = joined
    if current or not parts:
        parts.append(current)
    return parts
