"""Notifications the conversation causes (emergency alerts, a cancelled case for its assignee),
written to the outbox in the turn's transaction; the worker sends them (bot/channels, issue 5).

An outbox payload is {"kind", "case", "text", "language"}. The messages of an emergency (SMS,
Telegram) go to everyone at once; its calls go one after another (staff first, then the next,
then the emergency contacts): only the first is queued here, and its payload carries the rest
("chain", "order", "who", "prompt"; bot/channels/twilio_voice/chain.py queues each next call
when the one before was not taken).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from config.i18n import Catalogs
from storage import outbox
from storage.models import Case, EmergencyContact, Retiree, Role, Staff, Unit, staff_units

URGENT = 1
EMERGENCY_CALL = "emergency_call"  # the payload kind of an emergency's alert calls


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


def _message_channel(staff: Staff) -> tuple[str, str] | None:
    if staff.telegram_user_id is not None:
        return "telegram", str(staff.telegram_user_id)
    if staff.phone:
        return "sms", staff.phone
    return None


def alert_emergency(
    session: Session,
    case: Case,
    retiree: Retiree | None,
    said: str,
    caller: str,
    catalogs: Catalogs,
    lang: str,
) -> int:
    """Urgent messages to the on-duty staff and the emergency contacts, all at once, and the
    first of the calls that go to them one after another (each number called once). Returns
    how many notifications were queued now."""
    name = retiree.name if retiree is not None else catalogs.text("notify.unknown_caller", lang)
    address = retiree.address if retiree is not None and retiree.address else "-"
    staff_text = catalogs.text(
        "notify.emergency_staff",
        lang,
        number=case.number,
        name=name,
        phone=caller,
        address=address,
        said=said,
    )
    queued = 0
    callees: list[Callee] = []
    for staff in on_duty_staff(session, case.unit):
        if staff.phone:
            callees.append(Callee(staff.phone, staff_text, staff.name))
        target = _message_channel(staff)
        if target is not None:
            _enqueue(session, case, *target, "emergency_alert", staff_text, lang)
            queued += 1
    contacts = retiree.emergency_contacts if retiree is not None else []
    for contact in contacts:
        text = catalogs.text("notify.emergency_contact", lang, number=case.number, name=name)
        callees.append(Callee(contact.phone, text, _contact_name(contact, catalogs, lang)))
        _enqueue(session, case, "sms", contact.phone, "emergency_alert", text, lang)
        queued += 1
    callees = _each_number_once(callees)
    if callees:
        enqueue_call(
            session,
            case_id=case.id,
            case_number=case.number,
            callees=callees,
            order=1,
            language=lang,
            prompt=catalogs.text("twilio_voice.alert.press_one", lang),
        )
        queued += 1
    return queued


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
) -> None:
    """Queue the alert call to ``callees[0]``, due now; its payload carries the others, to be
    called in turn if this one is not taken. Queuing the same call again does nothing (its
    idempotency key), so two servers passing the emergency on at once ring the next once."""
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
    outbox.enqueue(
        session,
        channel="voice",
        address=first.address,
        payload=payload,
        idempotency_key=f"{case_number}:{EMERGENCY_CALL}:voice:{first.address}",
        priority=URGENT,
        case_id=case_id,
        now=now,
    )


def _contact_name(contact: EmergencyContact, catalogs: Catalogs, lang: str) -> str:
    if not contact.relation:
        return contact.name
    return catalogs.text(
        "twilio_voice.alert.contact", lang, name=contact.name, relation=contact.relation
    )


def _each_number_once(callees: list[Callee]) -> list[Callee]:
    """A number that is both a staff member's and a contact's is called once, in its first
    place (a second call to it would share the first one's idempotency key)."""
    seen: set[str] = set()
    unique = []
    for callee in callees:
        if callee.address not in seen:
            seen.add(callee.address)
            unique.append(callee)
    return unique


def tell_assignee(
    session: Session,
    case: Case,
    kind: str,
    text_key: str,
    catalogs: Catalogs,
    lang: str,
    **params: str,
) -> bool:
    """A message to the person working on ``case`` (say, the retiree cancelled it)."""
    if case.assignee is None:
        return False
    target = _message_channel(case.assignee)
    if target is None:
        return False
    text = catalogs.text(text_key, lang, number=case.number, **params)
    _enqueue(session, case, *target, kind, text, lang, priority=2)
    return True


def _enqueue(
    session: Session,
    case: Case,
    channel: str,
    address: str,
    kind: str,
    text: str,
    lang: str,
    *,
    priority: int = URGENT,
) -> None:
    payload: dict[str, object] = {"kind": kind, "case": case.number, "text": text, "language": lang}
    outbox.enqueue(
        session,
        channel=channel,
        address=address,
        payload=payload,
        idempotency_key=f"{case.number}:{kind}:{channel}:{address}",
        priority=priority,
        case_id=case.id,
    )
