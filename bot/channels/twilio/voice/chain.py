"""An emergency's alert calls, one after another: the on-duty staff first, then the next, then
the emergency contacts, until somebody presses 1 to take it (bot/conversation/notify.py queues the first).

Each call is an outbox item (channel "voice", kind "emergency_call"), placed by the worker with
TwiML that says the alert and asks for 1 (``/twilio/voice/alert``) and a status callback
(``/twilio/voice/status``); both URLs carry the item's idempotency key (``k``), signed by Twilio.
The chain's state lives in the items' payloads, so any server or worker takes the next step and
a restart loses nothing:

- ``chain``: the people still to call after this one, in order; ``order``: this call's place;
- ``call_sid``, ``call_status``: what Twilio said of this call (placed; its final status);
- ``taken``: this person pressed 1; ``outcome``, set once: ``taken``, ``passed`` (not taken: the
  next call was queued, or after the last a note tells staff nobody took it) or ``not_needed``
  (somebody else had taken it).

A call is passed on when its status callback ends it without a 1 (no-answer, busy, failed,
canceled, or answered with no key), when it cannot be placed (the item died), or when no status
came within ``CALL_TIMEOUT`` of placing it (the worker's upkeep, ``overdue``). Pressing 1 calls
off the calls queued but not yet placed and notes on the case who took it.

Every change locks the case row first (``FOR NO KEY UPDATE``: it does not block the notes and
events written meanwhile), then the item: two servers handling the same chain take turns, a
repeated callback finds the outcome set and does nothing, and queuing the next call twice queues
it once (its idempotency key).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import structlog
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from bot.channels.twilio.voice.steps import FINAL_STATUSES, PREFIX
from bot.conversation.notify import Callee, enqueue_call
from config.i18n import Catalogs
from storage import actions
from storage.db import transaction
from storage.errors import CaseError
from storage.models import Case, CaseStatus, OutboxItem, OutboxStatus, Role, Staff
from storage.permissions import Actor
from storage.staff_alerts import CALL_TIMEOUT as CALL_TIMEOUT
from storage.staff_alerts import CHAIN_LABEL, callee_of, joined, stand_down, wave_of
from storage.staff_alerts import alert_calls as _calls_of
from storage.staff_alerts import is_alert_call as is_chain_call

log = structlog.get_logger(__name__)

ALERT_PATH = f"{PREFIX}/alert"
STATUS_PATH = f"{PREFIX}/status"
LOOK_BACK = timedelta(days=2)  # older calls are not looked at for a missing status any more
LABEL = CHAIN_LABEL  # the actor label of the notes on the case
TAKEN, PASSED, NOT_NEEDED = "taken", "passed", "not_needed"
TIMED_OUT, UNDELIVERABLE = "no_status_in_time", "undeliverable"
HELD = "held"  # the payload key of a call held back (storage.staff_alerts.enqueue_call)
HELD_FOR_CALLER, HELD_FOR_RINGING = "caller", "ringing"


def settled(payload: dict[str, Any] | None) -> bool:
    """This call's part of the chain is decided: placing it (again) is no use."""
    return bool((payload or {}).get("outcome"))


def alert_url(public_url: str, key: str) -> str:
    return f"{public_url.rstrip('/')}{ALERT_PATH}?{urlencode({'k': key})}"


def status_url(public_url: str, key: str) -> str:
    return f"{public_url.rstrip('/')}{STATUS_PATH}?{urlencode({'k': key})}"


# -- what happens to a call ------------------------------------------------------------------


def record_placed(item: OutboxItem, call_sid: str) -> None:
    """Twilio took the call (the worker, in the transaction that marks the item sent)."""
    if is_chain_call(item.channel, item.payload) and call_sid:
        item.payload = {**item.payload, "call_sid": call_sid}


def call_ended(
    session: Session, key: str, call_sid: str, status: str, *, now: datetime, catalogs: Catalogs
) -> OutboxItem | None:
    """A status callback of the alert call ``key``: recorded on the item; a final status with no
    1 pressed passes the emergency on. None when ``key`` is no alert call of ours."""
    item = _locked(session, key)
    if item is None:
        return None
    item.payload = {**item.payload, "call_status": status, "call_sid": call_sid}
    if status in FINAL_STATUSES:
        pass_on(session, item, status, now=now, catalogs=catalogs)
    return item


@dataclass(frozen=True)
class Pressed:
    """What the callee who pressed 1 hears: the emergency is theirs (the default), somebody
    took it first (``taken_by``: in the console, on Telegram, on an earlier call), or it was
    withdrawn."""

    taken_by: str = ""
    withdrawn: bool = False

    @property
    def too_late(self) -> bool:
        return self.withdrawn or bool(self.taken_by)


def acknowledge(
    session: Session, key: str, call_sid: str, *, now: datetime, catalogs: Catalogs
) -> Pressed:
    """The callee of ``key`` pressed 1: the emergency is theirs, unless it was taken or
    withdrawn before. The calls queued but not yet placed are called off, and the case's
    timeline says who pressed 1 (once, however often Twilio repeats the webhook)."""
    item = _locked(session, key)
    if item is None or item.payload.get("taken"):
        return Pressed()
    before = _taken_before(session, item)
    item.payload = {
        **item.payload,
        "taken": True,
        "outcome": item.payload.get("outcome") or (NOT_NEEDED if before.too_late else TAKEN),
        "call_sid": item.payload.get("call_sid") or call_sid,
    }
    called_off = stand_down(session, item.case_id or 0, keep=item.id)
    lang = _language(item)
    who, phone = callee_of(item), item.address
    if before.withdrawn:
        note = catalogs.text("twilio_voice.chain.pressed_withdrawn", lang, who=who, phone=phone)
    elif before.taken_by:
        note = catalogs.text(
            "twilio_voice.chain.pressed_taken", lang, who=who, phone=phone, owner=before.taken_by
        )
    else:
        note = catalogs.text("twilio_voice.chain.taken", lang, who=who, phone=phone)
    if called_off:
        names = joined([callee_of(i) for i in called_off], catalogs, lang)
        note += catalogs.text("twilio_voice.chain.called_off", lang, names=names)
    _note(session, item, note, now)
    if not before.too_late:
        _claim_for_staff(session, item, now)
    log.info(
        "emergency_call_taken",
        case=item.payload.get("case"),
        order=item.payload.get("order"),
        too_late=before.too_late,
    )
    return before


def _taken_before(session: Session, item: OutboxItem) -> Pressed:
    """Whether the case of ``item`` was taken by somebody else than its callee, or withdrawn,
    before the callee pressed 1."""
    found = session.execute(
        select(Case.status, Staff.name, Staff.phone)
        .outerjoin(Staff, Staff.id == Case.assignee_id)
        .where(Case.id == item.case_id)
    ).first()
    if found is None:
        return Pressed()
    status, owner, owner_phone = found
    if status == CaseStatus.OPEN or owner_phone == item.address:
        return Pressed()
    if status == CaseStatus.CANCELLED or not owner:
        return Pressed(withdrawn=True)
    return Pressed(taken_by=owner)


def _claim_for_staff(session: Session, item: OutboxItem, now: datetime) -> None:
    """A staff member who pressed 1 owns the case from now on, as if they had claimed it in the
    console (the case leaves the queue, the retiree is told). Family who press 1 do not: the
    case stays in the staff's queue. Nothing when the case is not open any more."""
    case = session.get(Case, item.case_id) if item.case_id is not None else None
    staff = session.scalars(
        select(Staff)
        .where(Staff.phone == item.address, Staff.active.is_(True))
        .where(Staff.role.in_([Role.STAFF, Role.ADMIN]))
        .order_by(Staff.id)
        .limit(1)
    ).first()
    if case is None or staff is None or case.status != CaseStatus.OPEN:
        return
    try:
        with session.begin_nested():
            actions.claim(session, case, Actor.person(staff), now=now)
    except CaseError as exc:  # out of their units, or claimed this instant
        log.warning("emergency_call_claim_failed", case=case.number, error=str(exc)[:200])


def _taken_elsewhere(session: Session, item: OutboxItem, now: datetime, catalogs: Catalogs) -> bool:
    """The case is not open any more (claimed in the console or on Telegram, or withdrawn): the
    chain stops at ``item``; the timeline says who is not called. The case is locked."""
    status, owner = session.execute(
        select(Case.status, Staff.name)
        .outerjoin(Staff, Staff.id == Case.assignee_id)
        .where(Case.id == item.case_id)
    ).one()
    if status == CaseStatus.OPEN:
        return False
    item.payload = {**item.payload, "outcome": NOT_NEEDED}
    rest = [Callee.from_json(c).who for c in item.payload.get("chain") or []]
    if rest:
        lang = _language(item)
        why = "cancel" if status == CaseStatus.CANCELLED else "claim"
        names = joined(rest, catalogs, lang)
        note = catalogs.text(f"staff_alerts.stood_down_{why}", lang, who=owner or "", names=names)
        _note(session, item, note, now)
    log.info("emergency_chain_stopped", case=item.payload.get("case"), status=status.value)
    return True


def release_held(session: Session, case_number: str, *, now: datetime) -> int:
    """The caller's own call is through with the numbers it was put through to (bot/conversation/notify.py
    holds the alert calls meanwhile): the emergency's held alert call is due now. Returns how
    many were released."""
    case = _locked_case(session, case_number)
    return 0 if case is None else _release_held(session, case, now)


def _release_held(session: Session, case: Case, now: datetime) -> int:
    """`release_held` of ``case``, locked by the caller."""
    held = [
        c
        for c in _calls_of(session, case.id)
        if c.status == OutboxStatus.PENDING
        and c.payload.get(HELD) == HELD_FOR_CALLER
        and not settled(c.payload)
    ]
    for item in held:
        _release(item, now)
    if held:
        log.info("emergency_calls_released", case=case.number, calls=len(held))
    return len(held)


def _release(item: OutboxItem, now: datetime) -> None:
    """A held call is due now."""
    item.payload = {k: v for k, v in item.payload.items() if k != HELD}
    item.next_attempt_at = min(item.next_attempt_at, now)


def answered_on_the_line(
    session: Session,
    case_number: str,
    phone: str,
    *,
    family: bool,
    now: datetime,
    catalogs: Catalogs,
) -> None:
    """The caller's own call was put through to ``phone`` and answered: the timeline says who
    (once, however often Twilio repeats the callback). It does not take the emergency: a phone's
    voicemail answers too, so only a 1 pressed on an alert call does. A staff member's answer
    leaves the alert calls held until the caller's call with them ends (or the hold runs out),
    so their phone does not ring twice at once; a family member's releases them now, as staff
    must still know."""
    case = _locked_case(session, case_number)
    if case is None:
        return
    calls = _calls_of(session, case.id)
    lang = _language(calls[-1]) if calls else "zh"
    who = _name_of(session, case, phone)
    if family:
        _release_held(session, case, now)
        key = "twilio_voice.chain.family_answered"
    else:
        key = "twilio_voice.chain.answered_on_the_line"
    note = catalogs.text(key, lang, who=who, phone=phone)
    if not any(e.note == note for e in case.events):
        actions.add_note(session, case, Actor.system(LABEL), note, now=now)
    log.info("emergency_answered_on_the_line", case=case_number, family=family)


def pass_on(
    session: Session, item: OutboxItem, reason: str, *, now: datetime, catalogs: Catalogs
) -> None:
    """This call was not taken (``reason``): queue the next one, or, after the last, tell staff
    on the case that nobody took the emergency. Once per call (its outcome); nothing when
    somebody already took it. The case and ``item`` are locked by the caller."""
    if settled(item.payload):
        return
    calls = _calls_of(session, item.case_id)
    if any(c.payload.get("taken") for c in calls):
        item.payload = {**item.payload, "outcome": NOT_NEEDED}
        return
    if _taken_elsewhere(session, item, now, catalogs):
        return
    payload = item.payload
    item.payload = {**payload, "outcome": PASSED, "passed_because": reason}
    newer = [c for c in calls if wave_of(c) > wave_of(item)]
    if newer:
        # A later wave took over (the escalation rang again while this call rang): it goes on
        # from here, this wave does not.
        for call in newer:
            if call.status == OutboxStatus.PENDING and call.payload.get(HELD) == HELD_FOR_RINGING:
                _release(call, now)
        log.info("emergency_call_superseded", case=payload.get("case"), order=payload.get("order"))
        return
    rest = [Callee.from_json(c) for c in payload.get("chain") or []]
    log.info(
        "emergency_call_passed_on",
        case=payload.get("case"),
        order=payload.get("order"),
        reason=reason,
        left=len(rest),
    )
    if rest:
        enqueue_call(
            session,
            case_id=item.case_id or 0,
            case_number=str(payload.get("case")),
            callees=rest,
            order=int(payload.get("order") or 0) + 1,
            language=_language(item),
            prompt=str(payload.get("prompt") or ""),
            now=now,
            wave=int(payload.get("wave") or 1),
        )
        return
    lang = _language(item)
    tried = joined([callee_of(c) for c in calls], catalogs, lang)
    _note(session, item, catalogs.text("twilio_voice.chain.nobody", lang, tried=tried), now)


def give_up_if_dead(session: Session, key: str, *, now: datetime, catalogs: Catalogs) -> bool:
    """The call ``key`` could not be placed (its item died): pass the emergency on. True when
    it was passed on now."""
    item = _locked(session, key)
    if item is None or item.status != OutboxStatus.DEAD or settled(item.payload):
        return False
    pass_on(session, item, UNDELIVERABLE, now=now, catalogs=catalogs)
    return True


def overdue(session: Session, *, now: datetime, timeout: timedelta = CALL_TIMEOUT) -> list[str]:
    """Keys of alert calls that are not settled although they should be: placed ``timeout``
    ago with no final status since, or dead. Read without locks (see `time_out`)."""
    rows = session.execute(
        select(
            OutboxItem.idempotency_key,
            OutboxItem.status,
            OutboxItem.sent_at,
            OutboxItem.payload,
        )
        .where(
            OutboxItem.channel == "voice",
            OutboxItem.status.in_([OutboxStatus.SENT, OutboxStatus.DEAD]),
            OutboxItem.created_at >= now - LOOK_BACK,
        )
        .order_by(OutboxItem.id)
    ).all()
    return [
        key
        for key, status, sent_at, payload in rows
        if is_chain_call("voice", payload)
        and not settled(payload)
        and _is_overdue(status, sent_at, now, timeout)
    ]


def time_out(
    session: Session,
    key: str,
    *,
    now: datetime,
    catalogs: Catalogs,
    timeout: timedelta = CALL_TIMEOUT,
) -> bool:
    """Pass the call ``key`` on if it is still overdue once locked (another worker may have
    passed it on meanwhile, or its status came in). True when it was passed on now."""
    item = _locked(session, key)
    if item is None or settled(item.payload):
        return False
    if not _is_overdue(item.status, item.sent_at, now, timeout):
        return False
    reason = UNDELIVERABLE if item.status == OutboxStatus.DEAD else TIMED_OUT
    pass_on(session, item, reason, now=now, catalogs=catalogs)
    return True


# -- for the webhooks (each in a transaction of its own, on a worker thread) ---------------------


def release_now(db: Engine, case: str) -> int:
    """The caller's own call is through with the numbers: the held alert calls go now."""
    with transaction(db) as session:
        return release_held(session, case, now=datetime.now(UTC))


def answered_now(db: Engine, catalogs: Catalogs, case: str, phone: str, family: bool) -> None:
    """The caller's own call was answered by ``phone`` (see `answered_on_the_line`)."""
    with transaction(db) as session:
        answered_on_the_line(
            session, case, phone, family=family, now=datetime.now(UTC), catalogs=catalogs
        )


# -- helpers ---------------------------------------------------------------------------------


def _is_overdue(
    status: OutboxStatus, sent_at: datetime | None, now: datetime, timeout: timedelta
) -> bool:
    if status == OutboxStatus.DEAD:
        return True
    return status == OutboxStatus.SENT and sent_at is not None and sent_at <= now - timeout


def _locked(session: Session, key: str) -> OutboxItem | None:
    """The alert call ``key``, its case row locked first, then the item (see the docstring)."""
    case_id = session.scalar(select(OutboxItem.case_id).where(OutboxItem.idempotency_key == key))
    if case_id is None:
        return None
    session.execute(select(Case.id).where(Case.id == case_id).with_for_update(key_share=True))
    item = session.scalars(
        select(OutboxItem)
        .where(OutboxItem.idempotency_key == key)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()
    if item is None or not is_chain_call(item.channel, item.payload):
        return None
    return item


def _locked_case(session: Session, number: str) -> Case | None:
    """The case ``number``, locked as every change of its chain locks it."""
    return session.scalars(
        select(Case)
        .where(Case.number == number)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    ).one_or_none()


def _name_of(session: Session, case: Case, phone: str) -> str:
    """Who has the number: a staff member's name, the retiree's emergency contact's, or the
    number itself."""
    name = session.scalar(select(Staff.name).where(Staff.phone == phone).limit(1))
    if name:
        return str(name)
    contacts = case.retiree.emergency_contacts if case.retiree is not None else []
    return next((c.name for c in contacts if c.phone == phone), phone)


def _note(session: Session, item: OutboxItem, text: str, now: datetime) -> None:
    case = session.get(Case, item.case_id) if item.case_id is not None else None
    if case is not None:
        actions.add_note(session, case, Actor.system(LABEL), text, now=now)


def _language(item: OutboxItem) -> str:
    return str(item.payload.get("language") or "zh")
