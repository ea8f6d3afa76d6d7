"""Who on a unit's staff is alerted first, and an emergency's alert calls in the outbox (one
after another: bot/channels/twilio/voice/chain.py queues each next call). Used by the
conversation (bot/conversation/notify.py) and by the escalation of unclaimed cases (storage/escalation.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from config.i18n import Catalogs
from storage import outbox
from storage.models import OutboxItem, OutboxStatus, Role, Staff, Unit, staff_units

URGENT = 1
EMERGENCY = "emergency"  # the category whose cases have alert calls
CHAIN_LABEL = "call_chain"  # the actor label of the chain's notes on the case's timeline
CALLED_OFF = "called_off"  # the outcome of an alert call cancelled before it was placed
EMERGENCY_CALL = "emergency_call"  # the payload kind of an emergency's alert calls
ALERT_MESSAGE = "emergency_alert"  # the payload kind of its alert messages (SMS, Telegram)
# How long an alert call may take: long enough to ring (twilio_ring_timeout_s, at most 60 s),
# say the alert and ask for 1 twice.
CALL_TIMEOUT = timedelta(seconds=150)


@dataclass(frozen=True)
class Callee:
    """Someone an emergency's alert call goes to: the number, what is said, and who it is (the
    name the case's timeline shows when they take the emergency, or nobody does)."""

    address: str
    text: str
    who: str

    def to_json(self) -> dict[str, str]:
        return {"address": self.address, "text": self.text, "who": self.who}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Callee:
        return cls(str(data["address"]), str(data.get("text") or ""), str(data.get("who") or ""))


def _chain(unit: Unit) -> list[int]:
    ids: list[int] = []
    current: Unit | None = unit
    while current is not None:
        ids.append(current.id)
        current = current.parent
    return ids


def on_duty_staff(session: Session, unit: Unit) -> list[Staff]:
    """Staff on duty for ``unit``: those of the unit itself first, then of the units above.
    When nobody is marked on duty, every active staff member of those units (never nobody)."""
    chain = _chain(unit)
    rank = {unit_id: n for n, unit_id in enumerate(chain)}
    rows = session.execute(
        select(Staff, staff_units.c.unit_id)
        .join(staff_units, staff_units.c.staff_id == Staff.id)
        .where(
            staff_units.c.unit_id.in_(chain),
            Staff.active.is_(True),
            Staff.role.in_([Role.STAFF, Role.ADMIN]),
        )
    ).all()
    best: dict[int, tuple[int, Staff]] = {}
    for staff, unit_id in rows:
        if staff.id not in best or rank[unit_id] < best[staff.id][0]:
            best[staff.id] = (rank[unit_id], staff)
    ordered = [s for _, s in sorted(best.values(), key=lambda pair: (pair[0], pair[1].id))]
    on_duty = [s for s in ordered if s.on_duty]
    return on_duty or ordered


def message_channel(staff: Staff) -> tuple[str, str] | None:
    """Where a message to ``staff`` goes: their Telegram chat, else an SMS; None if neither."""
    if staff.telegram_user_id is not None:
        return "telegram", str(staff.telegram_user_id)
    if staff.phone:
        return "sms", staff.phone
    return None


def enqueue_call(
    session: Session,
    *,
    case_id: int,
    case_number: str,
    callees: Sequence[Callee],
    order: int,
    language: str,
    prompt: str,
    now: datetime | None = None,
    wave: int = 1,
    held_until: datetime | None = None,
    held_for: str = "caller",
) -> None:
    """Queue the alert call to ``callees[0]``, due now; its payload carries the others, to be
    called in turn if this one is not taken. Queuing the same call again does nothing (its
    idempotency key), so two servers passing the emergency on at once ring the next once.

    ``held_until``: the call waits until then (payload ``held``: ``held_for``) unless released
    sooner: "caller", the caller is on the line being put through to the same people
    (bot/conversation/notify.py); "ringing", a call of an earlier wave still rings (`supersede_waves`).

    ``wave``: 1 for the emergency's first calls; 2 for the calls of its escalation, which ring
    the same people again (its own keys, carried along the chain in the payload)."""
    first, rest = callees[0], callees[1:]
    payload: dict[str, object] = {
        "kind": EMERGENCY_CALL,
        "case": case_number,
        "text": first.text,
        "language": language,
        "order": order,
        "who": first.who,
        "prompt": prompt,
        "chain": [c.to_json() for c in rest],
    }
    if held_until is not None:
        payload["held"] = held_for
    key = f"{case_number}:{EMERGENCY_CALL}:voice:{first.address}"
    if wave > 1:
        payload["wave"] = wave
        key += f":{wave}"
    outbox.enqueue(
        session,
        channel="voice",
        address=first.address,
        payload=payload,
        idempotency_key=key,
        priority=URGENT,
        case_id=case_id,
        now=now,
        not_before=held_until,
    )


def alert_calls(session: Session, case_id: int | None) -> list[OutboxItem]:
    """The case's alert calls so far, in the chain's order (the waves one after another)."""
    items = session.scalars(
        select(OutboxItem).where(OutboxItem.case_id == case_id, OutboxItem.channel == "voice")
    ).all()
    calls = [i for i in items if is_alert_call(i.channel, i.payload)]
    return sorted(calls, key=lambda i: (int(i.payload.get("order") or 0), i.id))


def is_alert_call(channel: str, payload: dict[str, Any] | None) -> bool:
    payload = payload or {}
    return (
        channel == "voice"
        and payload.get("kind") == EMERGENCY_CALL
        and isinstance(payload.get("chain"), list)
    )


def wave_of(item: OutboxItem) -> int:
    return int((item.payload or {}).get("wave") or 1)


def supersede_waves(session: Session, case_id: int) -> bool:
    """A new wave of the case's alert calls is about to be queued: it takes over from the
    earlier ones. Their calls not placed yet are called off (`call_off`); returns whether one
    is still ringing (placed, its outcome not known), which the new wave waits for (held; the
    end of that call releases it, bot/channels/twilio/voice/chain.py, and does not go on with
    its own wave). The case is locked by the caller."""
    live = [c for c in alert_calls(session, case_id) if not (c.payload or {}).get("outcome")]
    call_off(session, [c for c in live if c.status == OutboxStatus.PENDING])
    return any(c.status in (OutboxStatus.SENDING, OutboxStatus.SENT) for c in live)


def call_off(session: Session, calls: Sequence[OutboxItem]) -> list[OutboxItem]:
    """Cancel those of ``calls`` still queued and not being placed (a worker that holds one
    places it; its callee hears the emergency is taken only by pressing 1 too). They stay in
    the outbox as "cancelled", settled (``outcome``: called off), and are never sent. Returns
    those called off."""
    if not calls:
        return []
    locked = set(
        session.scalars(
            select(OutboxItem.id)
            .where(OutboxItem.id.in_([c.id for c in calls]))
            .where(OutboxItem.status == OutboxStatus.PENDING)
            .with_for_update(skip_locked=True)
        )
    )
    called_off = [c for c in calls if c.id in locked]
    for item in called_off:
        item.status = OutboxStatus.CANCELLED
        item.payload = {**item.payload, "outcome": CALLED_OFF}
    return called_off


def stand_down(session: Session, case_id: int, *, keep: int | None = None) -> list[OutboxItem]:
    """The emergency ``case_id`` is taken (or withdrawn): its alert calls not placed yet are
    called off, held ones included, except the item ``keep``. Returns those called off."""
    waiting = [
        c
        for c in alert_calls(session, case_id)
        if c.id != keep and c.status == OutboxStatus.PENDING
    ]
    return call_off(session, waiting)


def withhold_messages(session: Session, case_id: int) -> list[OutboxItem]:
    """The emergency ``case_id`` was withdrawn (a false alarm): its alert messages not sent
    yet are not sent (`call_off`); nobody is told of an emergency that is not one. Returns
    those withheld. (Taken is not withdrawn: then the messages still go, and the family still
    learns what happened.)"""
    waiting = session.scalars(
        select(OutboxItem).where(
            OutboxItem.case_id == case_id, OutboxItem.status == OutboxStatus.PENDING
        )
    ).all()
    return call_off(session, [i for i in waiting if (i.payload or {}).get("kind") == ALERT_MESSAGE])


def joined(names: Iterable[str], catalogs: Catalogs, lang: str) -> str:
    """Names in a row, for a note on the case's timeline ("张三、李四")."""
    return catalogs.text("staff_alerts.separator", lang).join(names)


def callee_of(item: OutboxItem) -> str:
    return str((item.payload or {}).get("who") or item.address)
