"""Notifications the conversation causes (emergency alerts, a cancelled case for its assignee),
written to the outbox in the turn's transaction; the worker sends them (bot/channels, issue 5).

An outbox payload is {"kind", "case", "text", "language"}. The messages of an emergency (SMS,
Telegram) go to everyone at once; its calls go one after another (staff first, then the next,
then the emergency contacts): only the first is queued here, and its payload carries the rest
("chain", "order", "who", "prompt"; bot/channels/twilio/voice/chain.py queues each next call
when the one before was not taken).

An emergency told on the phone line is put through to the same people by the call itself
(bot/channels/twilio/voice/handover.py), so its alert calls are held back meanwhile (``held``,
due PUT_THROUGH_HOLD later), or each of them would ring twice at once: once with the caller on
the line, once with the recorded alert. The voice channel releases them as soon as the
caller's call is through with the numbers (somebody talked with her, nobody answered, or she
hung up) or a family member answered; the hold's end starts them in any case, should those
callbacks never come. An answer on the line never takes the emergency (a voicemail answers a
phone too): only a 1 pressed on an alert call does. The messages are not held. Who is on duty and the alert calls themselves live in
storage/staff_alerts.py (the escalation job uses them too); their names stay importable here.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from config.i18n import Catalogs
from storage import outbox
from storage.models import Case, EmergencyContact, Retiree
from storage.staff_alerts import ALERT_MESSAGE, URGENT, Callee, enqueue_call, on_duty_staff
from storage.staff_alerts import EMERGENCY_CALL as EMERGENCY_CALL
from storage.staff_alerts import message_channel as _message_channel
from storage.types import utcnow

# Channels where the person who told the emergency is on the line and is put through to the
# on-duty staff and the emergency contacts by the channel itself.
LIVE_CALL_CHANNELS = frozenset({"phone"})
# How long the alert calls wait for the caller's own call to reach somebody: the numbers
# ring 20 s each (twilio_ring_timeout_s), after a few sentences. Released sooner by the call.
PUT_THROUGH_HOLD = timedelta(seconds=90)


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
    first of the calls that go to them one after another (each number called once; held back
    while a caller on the line is put through, see the module docstring). Returns how many
    notifications were queued now."""
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
            _enqueue(session, case, *target, ALERT_MESSAGE, staff_text, lang)
            queued += 1
    contacts = retiree.emergency_contacts if retiree is not None else []
    for contact in contacts:
        text = catalogs.text("notify.emergency_contact", lang, number=case.number, name=name)
        callees.append(Callee(contact.phone, text, _contact_name(contact, catalogs, lang)))
        _enqueue(session, case, "sms", contact.phone, ALERT_MESSAGE, text, lang)
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
            held_until=_held_until(case),
        )
        queued += 1
    return queued


def _held_until(case: Case) -> datetime | None:
    """The outbox's clock, as the call's own due time."""
    if case.channel not in LIVE_CALL_CHANNELS:
        return None
    return utcnow() + PUT_THROUGH_HOLD


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
