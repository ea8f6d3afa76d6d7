"""Notifications the conversation causes (emergency alerts, a cancelled case for its assignee),
written to the outbox in the turn's transaction; the worker sends them (bot/channels, issue 5).

An outbox payload is {"kind", "case", "text", "language"} plus, for a call, "order": the order
in which calls are placed (staff first, then the next, then the emergency contacts).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from config.i18n import Catalogs
from storage import outbox
from storage.models import Case, Retiree, Role, Staff, Unit, staff_units

URGENT = 1


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
    """Urgent calls and messages to the on-duty staff, then to the emergency contacts.
    Returns how many notifications were queued."""
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
    order = 0
    for staff in on_duty_staff(session, case.unit):
        if staff.phone:
            order += 1
            _enqueue(session, case, "voice", staff.phone, "emergency_call", staff_text, lang, order)
            queued += 1
        target = _message_channel(staff)
        if target is not None:
            _enqueue(session, case, *target, "emergency_alert", staff_text, lang)
            queued += 1
    contacts = retiree.emergency_contacts if retiree is not None else []
    for contact in contacts:
        text = catalogs.text("notify.emergency_contact", lang, number=case.number, name=name)
        order += 1
        _enqueue(session, case, "voice", contact.phone, "emergency_call", text, lang, order)
        _enqueue(session, case, "sms", contact.phone, "emergency_alert", text, lang)
        queued += 2
    return queued


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
    order: int | None = None,
    *,
    priority: int = URGENT,
) -> None:
    payload: dict[str, object] = {"kind": kind, "case": case.number, "text": text, "language": lang}
    if order is not None:
        payload["order"] = order
    outbox.enqueue(
        session,
        channel=channel,
        address=address,
        payload=payload,
        idempotency_key=f"{case.number}:{kind}:{channel}:{address}",
        priority=priority,
        case_id=case.id,
    )
