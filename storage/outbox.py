"""The outbox: notifications written in the same transaction as the change that caused them,
then sent (and retried) by a worker (bot/runtime/worker.py). Nothing is enqueued twice for one
idempotency key.

Life of an item: ``pending`` → (claim_due) ``sending`` → ``sent``, or back to ``pending`` for a
later attempt (mark_failed), or ``dead`` (a permanent refusal, or the last attempt failed). A
worker that dies while sending, or that cannot record an outcome (the database went away), leaves
its items ``sending``; release_stuck puts them back once STUCK_AFTER has passed, marked
``unsure_since`` (the provider may have them already: the worker asks it first where the
provider can say, bot/runtime/worker.py). An item that dies with a case adds a note to the
case's timeline, so staff see it; failed_deliveries lists the dead ones for the console.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from config.i18n import DEFAULT_LANGUAGE, Catalogs
from storage import timeline
from storage.db import insert_statement
from storage.models import Case, OutboxItem, OutboxStatus
from storage.permissions import Actor
from storage.site import site_of
from storage.types import utcnow

log = structlog.get_logger(__name__)

# Seconds to wait before attempt n+1 after n failures; the last failure makes the item dead.
RETRY_DELAYS = (10, 30, 120, 600, 1800, 3600)
# How long an item whose channel has no sender waits (still pending) before it is given up.
NO_SENDER_GIVE_UP_AFTER = timedelta(seconds=sum(RETRY_DELAYS))
# The actor label of the notes the worker adds to cases.
WORKER_LABEL = "worker"
# An item 'sending' this long was left by a worker that died (a live worker records each
# outcome within its send timeout, bot/runtime/worker.py, well under this).
STUCK_AFTER = timedelta(seconds=60)


def enqueue(
    session: Session,
    *,
    channel: str,
    address: str,
    payload: dict[str, Any],
    idempotency_key: str,
    priority: int = 3,
    case_id: int | None = None,
    now: datetime | None = None,
    not_before: datetime | None = None,
) -> int:
    """Add a notification unless one with the same key exists; return the stored one's id.
    It is due at once, or at ``not_before`` (a call held back; see storage/alert_chain.py).

    One statement when the key is new (a turn's reply is on every webhook's path; the caller
    that wants the row loads it with ``session.get``)."""
    now = now or utcnow()
    row = {
        "channel": channel,
        "address": address,
        "payload": payload,
        "idempotency_key": idempotency_key,
        "priority": priority,
        "case_id": case_id,
        "now": now,
        "due": not_before or now,
    }
    added = session.execute(_insert_once(session), row).scalar()
    if added is not None:
        return int(added)
    return session.execute(_ID_OF_KEY, {"key": idempotency_key}).scalar_one()


_ID_OF_KEY = select(OutboxItem.id).where(OutboxItem.idempotency_key == bindparam("key"))


def _insert_once(session: Session) -> Any:
    table = OutboxItem.__table__
    return insert_statement(
        session,
        "outbox.enqueue",
        lambda insert: (
            insert(table)
            .values(
                channel=bindparam("channel"),
                address=bindparam("address"),
                payload=bindparam("payload", type_=table.c.payload.type),
                idempotency_key=bindparam("idempotency_key"),
                priority=bindparam("priority"),
                status=OutboxStatus.PENDING.value,
                attempts=0,
                next_attempt_at=bindparam("due", type_=table.c.next_attempt_at.type),
                last_error="",
                case_id=bindparam("case_id"),
                created_at=bindparam("now", type_=table.c.created_at.type),
            )
            .on_conflict_do_nothing(index_elements=["idempotency_key"])
            .returning(table.c.id)
        ),
    )


def claim_due(
    session: Session,
    *,
    limit: int = 20,
    now: datetime | None = None,
    channels: Collection[str] | None = None,
) -> list[OutboxItem]:
    """Take up to ``limit`` items that are due, most urgent first, and mark them sending.

    Only items of ``channels`` when given (a worker takes only what it has senders for).
    Rows are locked with SKIP LOCKED on PostgreSQL, so several senders share the work; on SQLite
    every transaction begins IMMEDIATE, so claims are serialized.
    """
    now = now or utcnow()
    query = select(OutboxItem).where(
        OutboxItem.status == OutboxStatus.PENDING, OutboxItem.next_attempt_at <= now
    )
    if channels is not None:
        if not channels:
            return []
        query = query.where(OutboxItem.channel.in_(sorted(channels)))
    items = list(
        session.scalars(
            query.order_by(OutboxItem.priority, OutboxItem.next_attempt_at, OutboxItem.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    for item in items:
        item.status = OutboxStatus.SENDING
        item.attempts += 1
        item.next_attempt_at = now  # "sending since", for release_stuck
    session.flush()
    return items


def held(session: Session, item_id: int, attempt: int) -> OutboxItem | None:
    """The item, locked, if it is still ``sending`` for the claim that made ``attempt``; None if
    it was released and claimed again (or settled) meanwhile: then that claim decides, not us."""
    item = session.scalars(
        select(OutboxItem).where(OutboxItem.id == item_id).with_for_update()
    ).one_or_none()
    if item is None or item.status != OutboxStatus.SENDING or item.attempts != attempt:
        return None
    return item


def mark_sent(item: OutboxItem, *, now: datetime | None = None) -> None:
    item.status = OutboxStatus.SENT
    item.sent_at = now or utcnow()
    item.last_error = ""
    item.unsure_since = None


def mark_failed(
    item: OutboxItem,
    error: str,
    *,
    retry_after_s: float | None = None,
    permanent: bool = False,
    now: datetime | None = None,
    catalogs: Catalogs | None = None,
    language: str | None = None,
) -> None:
    """Schedule the next attempt, or give up (dead): at once when ``permanent`` (an invalid
    number, a blocked bot), otherwise after the last attempt.

    The next attempt comes after the back-off of RETRY_DELAYS, or after ``retry_after_s`` (the
    provider's Retry-After) when that is later: never earlier than the provider asked. An item of
    a case that dies adds a note to the case's timeline (in ``language``, the catalogs' default
    when None).
    """
    now = now or utcnow()
    item.last_error = error[:2000]
    if permanent or item.attempts > len(RETRY_DELAYS):
        _die(item, error, now=now, catalogs=catalogs, language=language)
        return
    delay = float(RETRY_DELAYS[max(item.attempts, 1) - 1])
    if retry_after_s is not None and retry_after_s > delay:
        delay = float(retry_after_s)
    item.status = OutboxStatus.PENDING
    item.next_attempt_at = now + timedelta(seconds=delay)


def release_stuck(
    session: Session,
    *,
    older_than: timedelta = STUCK_AFTER,
    now: datetime | None = None,
    catalogs: Catalogs | None = None,
    language: str | None = None,
) -> int:
    """Put back items left 'sending' by a sender that died mid-way; returns how many.

    The provider may or may not have taken such an item: it is marked ``unsure_since`` (when
    that attempt began), and the next attempt asks the provider first where it can; elsewhere
    sending it again can duplicate it once (see bot/runtime/worker.py). An item whose last
    attempt it was dies instead (with its case note).
    """
    now = now or utcnow()
    stuck = session.scalars(
        select(OutboxItem)
        .where(
            OutboxItem.status == OutboxStatus.SENDING,
            OutboxItem.next_attempt_at <= now - older_than,
        )
        .with_for_update(skip_locked=True)
    ).all()
    for item in stuck:
        if item.attempts > len(RETRY_DELAYS):
            cats = catalogs or site_of(session).catalogs
            error = cats.text("worker.worker_stopped", language)
            item.last_error = error
            _die(item, error, now=now, catalogs=cats, language=language)
            continue
        item.unsure_since = item.unsure_since or item.next_attempt_at  # "sending since"
        item.status = OutboxStatus.PENDING
        item.next_attempt_at = now
    if stuck:
        log.warning("outbox_released", count=len(stuck), ids=[i.id for i in stuck])
    return len(stuck)


def flag_unsendable(
    session: Session,
    *,
    channels_with_sender: Collection[str],
    now: datetime | None = None,
    give_up_after: timedelta = NO_SENDER_GIVE_UP_AFTER,
    catalogs: Catalogs | None = None,
    language: str | None = None,
) -> int:
    """Say why due items of channels without a sender wait: their last_error names the missing
    sender. They stay pending (no attempt is used up), so they go as soon as a worker with that
    sender runs; one still waiting ``give_up_after`` after it was queued dies, so that staff see
    it. Returns how many items were flagged or given up."""
    now = now or utcnow()
    cats = catalogs or site_of(session).catalogs
    query = select(OutboxItem).where(
        OutboxItem.status == OutboxStatus.PENDING, OutboxItem.next_attempt_at <= now
    )
    if channels_with_sender:
        query = query.where(OutboxItem.channel.not_in(sorted(channels_with_sender)))
    changed = 0
    for item in session.scalars(query.with_for_update(skip_locked=True)):
        error = cats.text("worker.no_sender", language, channel=item.channel)
        if item.created_at <= now - give_up_after:
            item.last_error = error
            _die(item, error, now=now, catalogs=cats, language=language)
            changed += 1
        elif item.last_error != error:
            item.last_error = error
            changed += 1
    return changed


def failed_deliveries(
    session: Session, unit_ids: Collection[int] | None = None, *, limit: int = 200
) -> Sequence[OutboxItem]:
    """Dead items, newest first, for the console: those of cases in ``unit_ids`` when given
    (items without a case only when not), all of them otherwise."""
    query = select(OutboxItem).where(OutboxItem.status == OutboxStatus.DEAD)
    if unit_ids is not None:
        query = query.join(Case, Case.id == OutboxItem.case_id).where(
            Case.unit_id.in_(sorted(unit_ids))
        )
    return session.scalars(
        query.order_by(OutboxItem.created_at.desc(), OutboxItem.id.desc()).limit(limit)
    ).all()


def requeue(item: OutboxItem, *, now: datetime | None = None) -> None:
    """Send a dead item again, from a fresh set of attempts (staff asked for it)."""
    item.status = OutboxStatus.PENDING
    item.attempts = 0
    item.next_attempt_at = now or utcnow()


def _die(
    item: OutboxItem,
    error: str,
    *,
    now: datetime,
    catalogs: Catalogs | None,
    language: str | None,
) -> None:
    item.status = OutboxStatus.DEAD
    log.warning(
        "outbox_dead",
        id=item.id,
        channel=item.channel,
        kind=(item.payload or {}).get("kind"),
        case_id=item.case_id,
        attempts=item.attempts,
        error=error[:300],
    )
    session = Session.object_session(item)
    if item.case_id is None or session is None:
        return
    case = session.get(Case, item.case_id)
    if case is None:
        return
    note = _death_note(item, error, catalogs or site_of(session).catalogs, language)
    timeline.record(session, case, "note", actor=Actor.system(WORKER_LABEL), note=note, now=now)


def _death_note(item: OutboxItem, error: str, catalogs: Catalogs, language: str | None) -> str:
    kind = str((item.payload or {}).get("kind") or "")
    lang = language if language in catalogs.texts else DEFAULT_LANGUAGE
    known = catalogs.texts.get(lang, {})
    kind_text = catalogs.text(
        f"worker.kind.{kind}" if f"worker.kind.{kind}" in known else "worker.kind.other", lang
    )
    return catalogs.text(
        "worker.delivery_failed",
        lang,
        kind=kind_text,
        channel=item.channel,
        address=item.address,
        attempts=str(item.attempts),
        error=error[:300] or "-",
    )
