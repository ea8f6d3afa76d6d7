"""The outbox worker: sends what the engine queued (SMS, WhatsApp, Telegram, calls) and retries.

One round (``run_once``):

1. claim due items in a short transaction (``storage.outbox.claim_due``: status ``sending``,
   one more attempt; SKIP LOCKED on PostgreSQL, so several workers never take the same item);
2. send each through the sender of its channel, several at once (bounded), with no database
   transaction open; an item an earlier attempt may have delivered (``unsure_since``: its
   worker died) is first looked for at the provider, where the sender can (``find_sent``);
3. record each outcome as soon as it is known, in a short transaction of its own (retried
   through a short database outage): sent; or pending again after the back-off or the
   provider's Retry-After; or dead at once for a permanent refusal (a note on the case's
   timeline shows it to staff). An outcome is recorded only while the item is still held by
   this claim (``storage.outbox.held``), so a worker that was too slow never overwrites the
   outcome of the worker that took the item over. A round sends nothing after its time is up
   (``stuck_after`` less a margin): a live worker never holds an item as long as a dead one.

The database work is synchronous and runs on a thread (``asyncio.to_thread``): the event loop
(shared with the web app under ``hotline serve``) is never blocked.

``run`` repeats rounds until asked to stop and, every ``maintenance_every_s``, flags due items
of channels that have no sender here: they stay pending, with a last_error naming the missing
setting, and go as soon as a worker with that sender runs (they are not claimed, so no attempt
is used up). More often, every ``upkeep_every_s`` (people are waiting on these), it puts back
items a dead worker left ``sending`` for ``stuck_after`` (``release_stuck``), passes on an
emergency whose placed call had no status in time, and runs each sender's ``upkeep`` hook, if it
has one (Telegram: the posts of cases taken elsewhere lose their Claim button within seconds).

An emergency's alert calls go one after another (storage/alert_chain.py): the worker
places the call that is due; the status callback, or pressing 1, decides what comes next. The
worker itself passes the emergency on when a call could not be placed (its item died: right
after the round) and, in its upkeep, when a placed call had no status within ``call_timeout``.
All of it is in the database, so any worker, or one restarted, carries on.

Delivery is at least once: a crash between sending and recording sends the item again about a
minute later, unless the provider can tell it has it (Twilio messages); see bot/channels/base.py
for what each provider offers and benchmarks/outbox_crash.py for the figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import structlog
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session

from bot.channels import outbox_senders
from bot.channels.base import Sender, SendOutcome
from bot.conversation.engine import ConversationEngine
from config.i18n import Catalogs
from config.settings import Settings
from storage import alert_chain, outbox
from storage.db import transaction
from storage.models import OutboxItem
from storage.site import site_of
from storage.types import utcnow

log = structlog.get_logger(__name__)

# Pauses between tries to record an outcome while the database is unreachable.
RECORD_RETRY_PAUSES_S = (0.5, 1.0, 2.0)
# A round stops sending this long before its items could be taken for a dead worker's: time to
# record the last outcomes (with the pauses above).
ROUND_MARGIN_S = 10.0


@dataclass(frozen=True)
class Claimed:
    """A claimed item as plain data (no ORM object crosses threads)."""

    id: int
    channel: str
    address: str
    payload: dict[str, Any]
    idempotency_key: str
    attempt: int
    priority: int
    case_id: int | None
    unsure_since: datetime | None = None  # an earlier attempt's outcome was lost


@dataclass(frozen=True)
class Attempt:
    item: Claimed
    outcome: SendOutcome
    ms: float


def mask(address: str) -> str:
    """An address for the logs: enough to tell numbers apart, not enough to call them."""
    head, sep, tail = address.rpartition(":")
    value = tail if sep else address
    shown = value[-4:] if len(value) > 4 else ""
    return f"{head}{sep}…{shown}"


class OutboxWorker:
    """Sends the outbox through ``senders`` (outbox channel → sender)."""

    def __init__(
        self,
        db_engine: Engine,
        senders: Mapping[str, Sender],
        *,
        batch_size: int = 20,
        concurrency: int = 8,
        send_timeout_s: float = 20.0,
        stuck_after: timedelta = outbox.STUCK_AFTER,
        maintenance_every_s: float = 60.0,
        upkeep_every_s: float = 5.0,
        catalogs: Catalogs | None = None,
        language: str | None = None,
        clock: Callable[[], datetime] = utcnow,
        call_timeout: timedelta = alert_chain.CALL_TIMEOUT,
        sent_elsewhere: Collection[str] = (),
        flag_unsendable: bool = True,
    ) -> None:
        if send_timeout_s + ROUND_MARGIN_S >= stuck_after.total_seconds():
            raise ValueError(
                f"send_timeout_s must be {ROUND_MARGIN_S:g} s shorter than stuck_after"
            )
        self.db = db_engine
        self.senders = dict(senders)
        for sender in {id(s): s for s in self.senders.values()}.values():
            attach = getattr(sender, "attach", None)
            if attach is not None:  # a sender that keeps records of its own (WeChat's window)
                attach(db_engine)
        self.batch_size = batch_size
        self.concurrency = max(1, concurrency)
        self.send_timeout_s = send_timeout_s
        self.stuck_after = stuck_after
        self.maintenance_every_s = maintenance_every_s
        self.upkeep_every_s = upkeep_every_s
        self.catalogs = catalogs
        self.language = language
        self.clock = clock
        self.call_timeout = call_timeout
        # Channels another process sends (`hotline sip`'s calls): not flagged as unsendable here.
        self.sent_elsewhere = frozenset(sent_elsewhere)
        # Off in a process that sends one channel for the app (`hotline sip`): the other
        # channels are the app's worker's to judge.
        self.flag_unsendable = flag_unsendable

    # -- one round ------------------------------------------------------------------------------

    async def run_once(self) -> int:
        """Claim what is due, send it, record the outcomes; returns how many were attempted."""
        if not self.senders:
            return 0
        claimed = await asyncio.to_thread(self._claim)
        if not claimed:
            return 0
        gate = asyncio.Semaphore(self.concurrency)
        # Claimed items count as 'sending since now': past this, nothing more is sent.
        deadline = time.monotonic() + self.stuck_after.total_seconds() - ROUND_MARGIN_S

        async def bounded(item: Claimed) -> Attempt:
            async with gate:
                attempt = await self._send(item, deadline)
            # Recorded at once: an outcome known but not recorded would be sent again if this
            # worker died now.
            await self._record_with_retries([attempt])
            return attempt

        # Most urgent first (an emergency's calls in their order); the gate bounds how many at once.
        ordered = sorted(claimed, key=lambda c: (c.priority, _order(c.payload), c.id))
        attempts = await asyncio.gather(*(bounded(item) for item in ordered))
        failed_calls = [
            a.item.idempotency_key
            for a in attempts
            if not a.outcome.sent and alert_chain.is_alert_call(a.item.channel, a.item.payload)
        ]
        if failed_calls:
            await asyncio.to_thread(self._pass_on_dead_calls, failed_calls)
        return len(attempts)

    async def _record_with_retries(self, attempts: list[Attempt]) -> None:
        """Record the outcomes, trying again through a short database outage: items whose
        outcome is never recorded stay 'sending' and are released as unsure (looked for at the
        provider, or sent again), so it is worth a few seconds."""
        for pause in (*RECORD_RETRY_PAUSES_S, None):
            try:
                await asyncio.to_thread(self._record, attempts)
                return
            except DBAPIError as exc:
                if pause is None:
                    raise
                log.warning(
                    "outbox_record_retry", error=f"{type(exc).__name__}: {exc}"[:300], pause=pause
                )
                await asyncio.sleep(pause)

    def _claim(self) -> list[Claimed]:
        with transaction(self.db) as session:
            items = outbox.claim_due(
                session, limit=self.batch_size, now=self.clock(), channels=self.senders.keys()
            )
            return [
                Claimed(
                    id=i.id,
                    channel=i.channel,
                    address=i.address,
                    payload=dict(i.payload or {}),
                    idempotency_key=i.idempotency_key,
                    attempt=i.attempts,
                    priority=i.priority,
                    case_id=i.case_id,
                    unsure_since=i.unsure_since,
                )
                for i in items
            ]

    async def _send(self, item: Claimed, deadline: float) -> Attempt:
        started = time.perf_counter()
        sender = self.senders.get(item.channel)
        left = min(self.send_timeout_s, deadline - time.monotonic())
        if alert_chain.is_alert_call(item.channel, item.payload) and alert_chain.settled(
            item.payload
        ):
            # An alert call whose part was decided while it waited for a retry (Twilio placed
            # it after all and said how it ended): not placed again.
            outcome = SendOutcome.ok(item.payload.get("call_sid"))
        elif sender is None:  # cannot happen (we claim only our channels); never drop the item
            outcome = SendOutcome.retry(f"no sender for channel {item.channel!r}")
        elif left <= 0:  # the round took too long (a provider hanging): not sent, tried again
            outcome = SendOutcome.retry("the round's time ran out before it was sent")
        else:
            try:
                outcome = await asyncio.wait_for(self._deliver(sender, item), timeout=left)
            except TimeoutError:
                outcome = SendOutcome.retry(f"no outcome within {left:.3g} s")
            except Exception as exc:  # a sender's bug must not lose the item or stop the round
                log.exception("outbox_sender_error", id=item.id, channel=item.channel)
                outcome = SendOutcome.retry(f"sender error: {type(exc).__name__}: {exc}")
        ms = round((time.perf_counter() - started) * 1000, 1)
        log.info(
            "outbox_attempt",
            id=item.id,
            channel=item.channel,
            to=mask(item.address),
            kind=item.payload.get("kind"),
            case=item.payload.get("case"),
            attempt=item.attempt,
            result="sent" if outcome.sent else ("failed" if outcome.permanent else "retry"),
            provider_id=outcome.provider_id,
            error=outcome.error[:300] or None,
            retry_after_s=outcome.retry_after_s,
            ms=ms,
        )
        return Attempt(item, outcome, ms)

    async def _deliver(self, sender: Sender, item: Claimed) -> SendOutcome:
        """Send ``item``, unless an earlier attempt whose outcome was lost delivered it and the
        provider says so (the sender's ``find_sent``, where it has one)."""
        find_sent = getattr(sender, "find_sent", None)
        if item.unsure_since is not None and find_sent is not None:
            found = await find_sent(item.channel, item.address, item.payload, item.unsure_since)
            if found is not None:
                log.info("outbox_found_sent", id=item.id, provider_id=found.provider_id)
                return cast(SendOutcome, found)
        return await sender.send(item.channel, item.address, item.payload, item.idempotency_key)

    def _record(self, attempts: list[Attempt]) -> None:
        now = self.clock()
        with transaction(self.db) as session:
            for attempt in attempts:
                item = outbox.held(session, attempt.item.id, attempt.item.attempt)
                if item is None:
                    log.warning(
                        "outbox_outcome_dropped",
                        id=attempt.item.id,
                        attempt=attempt.item.attempt,
                        sent=attempt.outcome.sent,
                        why="the item was released and claimed again meanwhile",
                    )
                    continue
                outcome = attempt.outcome
                if outcome.sent:
                    outbox.mark_sent(item, now=now)
                    self._after_sent(session, item, outcome)
                else:
                    outbox.mark_failed(
                        item,
                        outcome.error or "failed",
                        retry_after_s=outcome.retry_after_s,
                        permanent=outcome.permanent,
                        now=now,
                        catalogs=self.catalogs,
                        language=self.language,
                    )

    def _after_sent(self, session: Session, item: OutboxItem, outcome: SendOutcome) -> None:
        """A sender's ``after_sent(session, item, outcome)`` hook, if it has one (the outbound
        message record, say), in a savepoint: its failure is logged and never keeps the item
        from being marked sent (which would send it again)."""
        hook = getattr(self.senders.get(item.channel), "after_sent", None)
        if hook is None:
            return
        try:
            with session.begin_nested():
                hook(session, item, outcome)
        except Exception:
            log.exception("outbox_after_sent_failed", id=item.id, channel=item.channel)

    # -- an emergency's alert calls -----------------------------------------------------------

    def _pass_on_dead_calls(self, keys: list[str]) -> None:
        """Alert calls that just died (an invalid number, the last attempt): the next person is
        called now, not at the next upkeep. Each in its own short transaction."""
        catalogs = self.catalogs or site_of(self.db).catalogs
        for key in keys:
            with transaction(self.db) as session:
                if alert_chain.give_up_if_dead(session, key, now=self.clock(), catalogs=catalogs):
                    log.info("emergency_call_undeliverable", key=mask(key))

    def _time_out_calls(self, now: datetime) -> int:
        """Alert calls placed ``call_timeout`` ago with no status since (a lost callback, no
        public URL) and dead ones nobody passed on: the emergency goes to the next person."""
        catalogs = self.catalogs or site_of(self.db).catalogs
        with transaction(self.db) as session:
            keys = alert_chain.overdue(session, now=now, timeout=self.call_timeout)
        passed = 0
        for key in keys:
            with transaction(self.db) as session:
                passed += alert_chain.time_out(
                    session, key, now=now, catalogs=catalogs, timeout=self.call_timeout
                )
        return passed

    # -- upkeep -------------------------------------------------------------------------------

    async def maintain(self) -> None:
        """Flag items no sender here can send; and the upkeep (`keep_up`)."""
        await asyncio.to_thread(self._maintain)

    async def keep_up(self) -> None:
        """Put back items a dead worker left sending; pass on emergencies whose placed call had
        no status in time; the senders' upkeep."""
        await asyncio.to_thread(self._keep_up)

    def _keep_up(self) -> None:
        now = self.clock()
        with transaction(self.db) as session:
            released = outbox.release_stuck(
                session,
                older_than=self.stuck_after,
                now=now,
                catalogs=self.catalogs,
                language=self.language,
            )
        passed_on = self._time_out_calls(now)
        kept_up = self._senders_upkeep()
        if released or passed_on or kept_up:
            log.info(
                "outbox_upkeep",
                released=released,
                calls_passed_on=passed_on,
                senders_upkeep=kept_up,
            )

    def _maintain(self) -> None:
        now = self.clock()
        if self.flag_unsendable:
            with transaction(self.db) as session:
                flagged = outbox.flag_unsendable(
                    session,
                    channels_with_sender=self.senders.keys() | self.sent_elsewhere,
                    now=now,
                    catalogs=self.catalogs,
                    language=self.language,
                )
            if flagged:
                log.info("outbox_maintenance", flagged_without_sender=flagged)
        self._keep_up()

    def _senders_upkeep(self) -> int:
        """Each sender's ``upkeep(session, catalogs=, language=)`` hook, if it has one (the
        Telegram posts of cases taken elsewhere), in its own transaction: one that fails is
        logged and keeps neither the others nor the worker from going on."""
        done = 0
        for sender in {id(s): s for s in self.senders.values()}.values():
            hook = getattr(sender, "upkeep", None)
            if hook is None:
                continue
            try:
                with transaction(self.db) as session:
                    done += hook(
                        session,
                        catalogs=self.catalogs or site_of(self.db).catalogs,
                        language=self.language,
                    )
            except Exception:  # a sender's bug must not stop the maintenance
                log.exception("outbox_sender_upkeep_failed", sender=type(sender).__name__)
        return done

    # -- the loop -------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, interval_s: float = 1.0) -> None:
        """Send rounds until ``stop`` is set: at once again while a round was full, otherwise
        every ``interval_s``. Database errors are logged and retried (the loop keeps going)."""
        log.info("outbox_worker_started", channels=sorted(self.senders))
        next_maintenance = next_upkeep = time.monotonic()
        failures = 0
        while not stop.is_set():
            busy = False
            try:
                if time.monotonic() >= next_maintenance:
                    await self.maintain()
                    next_maintenance = time.monotonic() + self.maintenance_every_s
                    next_upkeep = time.monotonic() + self.upkeep_every_s
                elif time.monotonic() >= next_upkeep:
                    await self.keep_up()
                    next_upkeep = time.monotonic() + self.upkeep_every_s
                busy = await self.run_once() >= self.batch_size
                failures = 0
            except SQLAlchemyError as exc:
                failures += 1
                log.warning("outbox_db_error", error=f"{type(exc).__name__}: {exc}"[:300])
            except Exception:
                failures += 1
                log.exception("outbox_round_failed")
            if busy:
                await asyncio.sleep(0)  # let the app breathe between full rounds
                continue
            wait = interval_s * min(2**failures, 30) if failures else interval_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=wait)
        log.info("outbox_worker_stopped")

    async def aclose(self) -> None:
        """Close the senders' connections (each once)."""
        seen: set[int] = set()
        for sender in self.senders.values():
            close = getattr(sender, "aclose", None)
            if close is None or id(sender) in seen:
                continue
            seen.add(id(sender))
            try:
                await close()
            except Exception:
                log.exception("outbox_sender_close_failed")


def _order(payload: dict[str, Any]) -> int:
    try:
        return int(payload.get("order") or 0)
    except (TypeError, ValueError):
        return 0


# -- inside `hotline serve` ---------------------------------------------------------------------


class RunningWorker:
    """A worker running as a task of the app's event loop."""

    def __init__(self, worker: OutboxWorker, task: asyncio.Task[None], stop: asyncio.Event):
        self.worker = worker
        self.task = task
        self._stop = stop

    async def stop(self, timeout_s: float = 20.0) -> None:
        """Let the round in progress finish (its sends have their own timeouts), then close.
        Past ``timeout_s`` the task is cancelled: its items stay 'sending' until released."""
        self._stop.set()
        try:
            await asyncio.wait_for(asyncio.shield(self.task), timeout=timeout_s)
        except TimeoutError:
            log.warning("outbox_worker_cancelled", after_s=timeout_s)
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        except Exception:
            log.exception("outbox_worker_crashed")
        finally:
            await self.worker.aclose()


async def sweep_idle_conversations(
    engine: Callable[[], Awaitable[ConversationEngine]],
    stop: asyncio.Event,
    every_s: float = 60.0,
) -> None:
    """Now and then, file the requests of conversations that went quiet half-way (the person
    hung up or walked away), so every contact reaches staff."""
    while not stop.is_set():
        try:
            conversation = await engine()
            filed = await asyncio.to_thread(conversation.close_idle)
            if filed:
                log.info("idle_conversations_closed", filed=filed)
        except SQLAlchemyError as exc:
            log.warning("idle_sweep_db_error", error=f"{type(exc).__name__}: {exc}"[:300])
        except Exception:
            log.exception("idle_sweep_failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=every_s)


def start_outbox_worker(
    settings: Settings,
    db_engine: Engine,
    *,
    interval_s: float = 1.0,
) -> RunningWorker | None:
    """Start the worker inside the app (``settings.run_worker``; off for multi-server set-ups,
    where `hotline worker` runs on its own), with the configured channels' senders. Call from a
    running loop."""
    if not settings.run_worker:
        log.info("outbox_worker_off", why="HOTLINE_RUN_WORKER=false: run `hotline worker`")
        return None
    offer = outbox_senders(settings)
    worker = OutboxWorker(
        db_engine,
        offer.on,
        language=settings.default_language,
        sent_elsewhere=offer.elsewhere.keys(),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop, interval_s=interval_s), name="outbox-worker")
    return RunningWorker(worker, task, stop)
