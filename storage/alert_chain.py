"""An emergency's alerts: who is alerted, the alert messages, and the alert calls that go one
after another until somebody presses 1 to take it. This module owns the chain's states; the
voice channels only place the calls and speak (Twilio's TwiML: bot/channels/twilio/voice/).

When an emergency is filed (`alert_emergency`, in the turn's transaction), the on-duty staff
(`on_duty_staff`: the unit's own first, then the units above) and the retiree's emergency
contacts get an urgent message at once (SMS or Telegram, `message_channel`), and the first of
the alert calls is queued. Each call is an outbox item (channel "voice", kind
``emergency_call``) whose payload holds the chain's state, so any server or worker takes the
next step and a restart loses nothing. One call goes through these states::

        queued by alert_emergency (wave 1), pass_on (the next callee), ring_again (wave 2)
                                       |
       held ---- release_held ------> queued (outbox: pending) ---- stand_down, ----> called off
    (the caller is being put                |                       supersede_waves  (cancelled)
     through to the same people,            | the worker places it: record_placed
     or a call of the earlier               v
     wave still rings)               ringing (sent, no outcome)
                                            |
          +---------------------------------+------------------------------------+
          | acknowledge (1 pressed)                                              | call_ended (final, no 1)
          v                                                                      | give_up_if_dead (not placed)
    taken, or not_needed when somebody took it before                            | time_out (no status in CALL_TIMEOUT)
    (a staff member who takes it claims the case:                                v
     storage.actions.take_alert)                         pass_on: passed ---> the next callee queued,
                                                                  or, after the last, a note: nobody took it;
                                                                  not_needed when the case was taken or
                                                                  withdrawn meanwhile; a newer wave goes on instead

The payload: ``chain`` (the people still to call after this one, in order), ``order`` (this
call's place), ``wave`` (2: the escalation's calls, storage/escalation.py), ``held`` (why it
waits: HELD_FOR_CALLER or HELD_FOR_RINGING), ``call_sid`` and ``call_status`` (what the voice
line said of it), ``taken`` (this callee pressed 1) and ``outcome``, set once: ``taken``,
``passed`` (with ``passed_because``), ``not_needed`` or ``called_off``.

When the case is taken anywhere else (console, Telegram) or withdrawn, storage.actions calls
`stand_down_for`: the calls not placed yet are called off (a withdrawn emergency's alert
messages not sent yet are withheld too) and the timeline says whose. An answer on the caller's
own line never takes the emergency (a voicemail answers a phone too): only a 1 pressed on an
alert call does (`answered_on_the_line`).

Every change locks the case row first (``FOR NO KEY UPDATE``: it does not block the notes and
events written meanwhile), then the item: two servers handling the same chain take turns, a
repeated callback finds the outcome set and does nothing, and queuing the next call twice
queues it once (its idempotency key).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import ColumnElement, Engine, exists, select
from sqlalchemy.orm import Session

from config.i18n import Catalogs
from storage import family, outbox, timeline
from storage.db import transaction
from storage.identities import retiree_by_phone
from storage.models import (
    Case,
    CaseStatus,
    EmergencyContact,
    OutboxItem,
    OutboxStatus,
    Retiree,
    Role,
    Staff,
    Unit,
    staff_units,
)
from storage.permissions import Actor
from storage.phones import InvalidPhoneNumber, normalize_phone
from storage.site import site_of
from storage.types import utcnow

log = structlog.get_logger(__name__)

URGENT = 1
EMERGENCY = "emergency"  # the category whose cases have alert calls
LABEL = "call_chain"  # the actor label of the chain's notes on the case's timeline
EMERGENCY_CALL = "emergency_call"  # the payload kind of an emergency's alert calls
ALERT_MESSAGE = "emergency_alert"  # the payload kind of its alert messages (SMS, Telegram)
# How long an alert call may take: long enough to ring (twilio_ring_timeout_s, at most 60 s),
# say the alert and ask for 1 twice.
CALL_TIMEOUT = timedelta(seconds=150)
LOOK_BACK = timedelta(days=2)  # older calls are not looked at for a missing status any more
# Channels where the person who told the emergency is on the line and is put through to the
# on-duty staff and the emergency contacts by the channel itself.
LIVE_CALL_CHANNELS = frozenset({"phone"})
# How long the alert calls wait for the caller's own call to reach somebody: the numbers
# ring 20 s each (twilio_ring_timeout_s), after a few sentences. Released sooner by the call.
PUT_THROUGH_HOLD = timedelta(seconds=90)
# Outcomes, and why a call was passed on.
TAKEN, PASSED, NOT_NEEDED, CALLED_OFF = "taken", "passed", "not_needed", "called_off"
TIMED_OUT, UNDELIVERABLE = "no_status_in_time", "undeliverable"
HELD = "held"  # the payload key of a call held back, and why:
HELD_FOR_CALLER, HELD_FOR_RINGING = "caller", "ringing"


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


# -- who is alerted ------------------------------------------------------------------------------


def on_duty_staff(session: Session, unit: Unit) -> list[Staff]:
    """Staff on duty for ``unit``: those of the unit itself first, then of the units above.
    When nobody is marked on duty, every active staff member of those units (never nobody)."""
    chain = _units_up(unit)
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


@dataclass(frozen=True)
class Target:
    """A number a caller is put through to: an on-duty staff member or an emergency contact."""

    phone: str
    contact: bool = False


def put_through_to(session: Session, caller: str, *, emergency: bool) -> list[Target]:
    """Whom a voice line puts ``caller`` through to, in order: the on-duty staff of the
    caller's community (then of the units above; the top unit's for an unknown caller), and in
    an emergency then the caller's emergency contacts; each number once, never the caller's."""
    try:
        retiree = retiree_by_phone(session, normalize_phone(caller))
    except InvalidPhoneNumber:  # "anonymous", a withheld number
        retiree = None
    unit = retiree.community if retiree is not None else None
    if unit is None:
        unit = session.scalars(
            select(Unit).where(Unit.parent_id.is_(None)).order_by(Unit.id).limit(1)
        ).first()
    found = [Target(s.phone) for s in on_duty_staff(session, unit) if s.phone] if unit else []
    if emergency and retiree is not None:
        found += [Target(c.phone, contact=True) for c in retiree.emergency_contacts]
    seen = {caller}
    unique = []
    for target in found:
        if target.phone and target.phone not in seen:
            seen.add(target.phone)
            unique.append(target)
    return unique


def message_channel(staff: Staff) -> tuple[str, str] | None:
    """Where a message to ``staff`` goes: their Telegram chat, else their WeCom account, else
    an SMS; None if none."""
    if staff.telegram_user_id is not None:
        return "telegram", str(staff.telegram_user_id)
    if staff.wecom_user_id:
        return "wecom", staff.wecom_user_id
    if staff.phone:
        return "sms", staff.phone
    return None


def _units_up(unit: Unit) -> list[int]:
    ids: list[int] = []
    current: Unit | None = unit
    while current is not None:
        ids.append(current.id)
        current = current.parent
    return ids


# -- the start: an emergency is filed -------------------------------------------------------------


def alert_emergency(
    session: Session,
    case: Case,
    retiree: Retiree | None,
    said: str,
    caller: str,
    catalogs: Catalogs,
    lang: str,
) -> int:
    """Urgent messages to the on-duty staff, the emergency contacts and the family who may know
    of emergencies (storage/family.py), all at once, and the
    first of the calls that go to them one after another (each number called once). An
    emergency told on a live call is put through to the same people by the call itself, so its
    alert calls are held meanwhile (PUT_THROUGH_HOLD; the voice line releases them sooner), or
    each phone would ring twice at once. Returns how many notifications were queued now."""
    name = retiree.name if retiree is not None else _text(catalogs, "unknown_caller", lang)
    address = retiree.address if retiree is not None and retiree.address else "-"
    staff_text = _text(
        catalogs,
        "staff_alert",
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
        target = message_channel(staff)
        if target is not None:
            _enqueue_message(session, case, *target, staff_text, lang)
            queued += 1
    contacts = retiree.emergency_contacts if retiree is not None else []
    for contact in contacts:
        text = _text(catalogs, "contact_alert", lang, number=case.number, name=name)
        callees.append(Callee(contact.phone, text, _contact_name(contact, catalogs, lang)))
        _enqueue_message(session, case, "sms", contact.phone, text, lang)
        queued += 1
    if retiree is not None:  # family who may know of emergencies, not told as a contact above
        told = {contact.phone for contact in contacts}
        key = f"{case.number}:emergency"
        queued += family.tell(
            session,
            retiree,
            family.EMERGENCIES,
            key=key,
            now=utcnow(),
            case=case,
            skip=told,
            case_number=case.number,
        )
    callees = _each_number_once(callees)
    if callees:
        live = case.channel in LIVE_CALL_CHANNELS
        enqueue_call(
            session,
            case_id=case.id,
            case_number=case.number,
            callees=callees,
            order=1,
            language=lang,
            prompt=_text(catalogs, "heard.press_one", lang),
            held_until=utcnow() + PUT_THROUGH_HOLD if live else None,
        )
        queued += 1
    return queued


def ring_again(
    session: Session, case: Case, text: str, catalogs: Catalogs, lang: str, *, now: datetime
) -> list[Callee]:
    """The second wave (the escalation of an emergency nobody took): the on-duty staff are rung
    again, saying ``text``, going on from the last call's place. This wave takes over: the
    first wave's calls not placed yet are called off, and one still ringing is waited for
    (held), so nobody's phone rings twice at once. Returns who will be called."""
    callees = _each_number_once(
        [Callee(p.phone, text, p.name) for p in on_duty_staff(session, case.unit) if p.phone]
    )
    if not callees:
        return []
    calls = alert_calls(session, case.id)
    order = max((int(c.payload.get("order") or 0) for c in calls), default=0) + 1
    ringing = supersede_waves(session, case.id)
    enqueue_call(
        session,
        case_id=case.id,
        case_number=case.number,
        callees=callees,
        order=order,
        language=lang,
        prompt=_text(catalogs, "heard.press_one", lang),
        now=now,
        wave=2,
        held_until=now + CALL_TIMEOUT if ringing else None,
        held_for=HELD_FOR_RINGING,
    )
    return callees


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
    held_for: str = HELD_FOR_CALLER,
) -> None:
    """Queue the alert call to ``callees[0]``, due now (or held until ``held_until``, for
    ``held_for``); its payload carries the others, to be called in turn if this one is not
    taken. Queuing the same call again does nothing (its idempotency key, which has the wave
    from the second on), so two servers passing the emergency on at once ring the next once."""
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
        payload[HELD] = held_for
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


# -- what happens to a call -----------------------------------------------------------------------


def record_placed(item: OutboxItem, call_sid: str) -> None:
    """The voice line took the call (the worker, in the transaction that marks the item sent)."""
    if is_alert_call(item.channel, item.payload) and call_sid:
        item.payload = {**item.payload, "call_sid": call_sid}


def call_ended(
    session: Session,
    key: str,
    call_sid: str,
    status: str,
    *,
    final: bool,
    now: datetime,
    catalogs: Catalogs,
) -> OutboxItem | None:
    """A status of the alert call ``key`` (the voice line's word for it, recorded on the item);
    a ``final`` one with no 1 pressed passes the emergency on. None when ``key`` is no alert
    call of ours."""
    item = _locked(session, key)
    if item is None:
        return None
    item.payload = {**item.payload, "call_status": status, "call_sid": call_sid}
    if final:
        pass_on(session, item, status, now=now, catalogs=catalogs)
    return item


@dataclass(frozen=True)
class Pressed:
    """What the callee who pressed 1 hears: the emergency is theirs (the default), somebody
    took it first (``taken_by``: in the console, on Telegram, on an earlier call), or it was
    withdrawn. ``staff``: the staff member who pressed 1 and is to own its case (None for
    family, or when it was too late), ``case_id`` its case."""

    taken_by: str = ""
    withdrawn: bool = False
    staff: Staff | None = None
    case_id: int | None = None

    @property
    def too_late(self) -> bool:
        return self.withdrawn or bool(self.taken_by)


def acknowledge(
    session: Session, key: str, call_sid: str, *, now: datetime, catalogs: Catalogs
) -> Pressed:
    """The callee of ``key`` pressed 1: the emergency is theirs, unless it was taken or
    withdrawn before. The calls queued but not yet placed are called off, and the case's
    timeline says who pressed 1 (once, however often the voice line repeats the webhook).
    The claim of the case by a staff member who pressed 1 is storage.actions.take_alert's."""
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
        note = _text(catalogs, "pressed_withdrawn", lang, who=who, phone=phone)
    elif before.taken_by:
        note = _text(catalogs, "pressed_taken", lang, who=who, phone=phone, owner=before.taken_by)
    else:
        note = _text(catalogs, "taken", lang, who=who, phone=phone)
    if called_off:
        names = joined([callee_of(i) for i in called_off], catalogs, lang)
        note += _text(catalogs, "called_off", lang, names=names)
    _note(session, item, note, now)
    log.info(
        "emergency_call_taken",
        case=item.payload.get("case"),
        order=item.payload.get("order"),
        too_late=before.too_late,
    )
    if before.too_late:
        return before
    return Pressed(staff=_staff_with_phone(session, item.address), case_id=item.case_id)


def heard_after_pressing(catalogs: Catalogs, pressed: Pressed, lang: str) -> str:
    """What the callee who pressed 1 hears (on any voice line)."""
    if pressed.withdrawn:
        return _text(catalogs, "heard.withdrawn", lang)
    if pressed.taken_by:
        return _text(catalogs, "heard.taken_by", lang, who=pressed.taken_by)
    return _text(catalogs, "heard.taken", lang)


def heard_without_key(catalogs: Catalogs, lang: str) -> str:
    """What the callee who pressed nothing hears before the call ends (the chain moves on)."""
    return _text(catalogs, "heard.not_taken", lang)


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


def _staff_with_phone(session: Session, phone: str) -> Staff | None:
    """The active staff member (not a volunteer) with ``phone``: family who press 1 are none."""
    return session.scalars(
        select(Staff)
        .where(Staff.phone == phone, Staff.active.is_(True))
        .where(Staff.role.in_([Role.STAFF, Role.ADMIN]))
        .order_by(Staff.id)
        .limit(1)
    ).first()


def pass_on(
    session: Session, item: OutboxItem, reason: str, *, now: datetime, catalogs: Catalogs
) -> None:
    """This call was not taken (``reason``): queue the next one, or, after the last, tell staff
    on the case that nobody took the emergency. Once per call (its outcome); nothing when
    somebody already took it. The case and ``item`` are locked by the caller."""
    if settled(item.payload):
        return
    calls = alert_calls(session, item.case_id)
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
            wave=wave_of(item),
        )
        return
    lang = _language(item)
    tried = joined([callee_of(c) for c in calls], catalogs, lang)
    _note(session, item, _text(catalogs, "nobody", lang, tried=tried), now)


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
        note = _text(catalogs, f"stood_down_{why}", lang, who=owner or "", names=names)
        _note(session, item, note, now)
    log.info("emergency_chain_stopped", case=item.payload.get("case"), status=status.value)
    return True


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
        if is_alert_call("voice", payload)
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


# -- the caller's own call ------------------------------------------------------------------------


def release_held(session: Session, case_number: str, *, now: datetime) -> int:
    """The caller's own call is through with the numbers it was put through to: the
    emergency's held alert call is due now. Returns how many were released."""
    case = _locked_case(session, case_number)
    return 0 if case is None else _release_held(session, case, now)


def _release_held(session: Session, case: Case, now: datetime) -> int:
    """`release_held` of ``case``, locked by the caller."""
    held = [
        c
        for c in alert_calls(session, case.id)
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
    (once, however often the voice line repeats the callback). It does not take the emergency:
    a phone's voicemail answers too, so only a 1 pressed on an alert call does. A staff
    member's answer leaves the alert calls held until the caller's call with them ends (or the
    hold runs out), so their phone does not ring twice at once; a family member's releases
    them now, as staff must still know."""
    case = _locked_case(session, case_number)
    if case is None:
        return
    calls = alert_calls(session, case.id)
    lang = _language(calls[-1]) if calls else "zh"
    who = _name_of(session, case, phone)
    if family:
        _release_held(session, case, now)
    key = "family_answered" if family else "answered_on_the_line"
    note = _text(catalogs, key, lang, who=who, phone=phone)
    if not any(e.note == note for e in case.events):
        timeline.record(session, case, "note", actor=Actor.system(LABEL), now=now, note=note)
    log.info("emergency_answered_on_the_line", case=case_number, family=family)


def release_now(db: Engine, case: str) -> int:
    """`release_held` in a transaction of its own (for a webhook, on a worker thread)."""
    with transaction(db) as session:
        return release_held(session, case, now=datetime.now(UTC))


def answered_now(db: Engine, catalogs: Catalogs, case: str, phone: str, family: bool) -> None:
    """`answered_on_the_line` in a transaction of its own (for a webhook)."""
    with transaction(db) as session:
        answered_on_the_line(
            session, case, phone, family=family, now=datetime.now(UTC), catalogs=catalogs
        )


# -- the emergency is taken or withdrawn elsewhere ------------------------------------------------


def stand_down_for(session: Session, case: Case, why: str, who: str, now: datetime) -> None:
    """An emergency taken by somebody (``why`` "claim": in the console, on Telegram, on the
    phone) or withdrawn ("cancel") needs no more alert calls: those not placed yet are called
    off, and the timeline says whose. A call ringing now ends as it ends; the chain does not
    go on after it (`pass_on`). A withdrawn one's alert messages not sent yet are withheld
    too (nobody is told of an emergency that is not one; taken is not withdrawn: then the
    messages still go, and the family still learns what happened)."""
    if case.category != EMERGENCY:
        return
    called_off = stand_down(session, case.id)
    withheld = withhold_messages(session, case.id) if why == "cancel" else []
    if not (called_off or withheld):
        return
    site = site_of(session)
    catalogs, lang = site.catalogs, site.language
    notes = []
    if called_off:
        names = joined([callee_of(c) for c in called_off], catalogs, lang)
        notes.append(_text(catalogs, f"stood_down_{why}", lang, who=who, names=names))
    if withheld:
        notes.append(_text(catalogs, "messages_withheld", lang, count=len(withheld)))
    for note in notes:
        timeline.record(session, case, "note", actor=Actor.system(LABEL), now=now, note=note)


def stand_down(session: Session, case_id: int, *, keep: int | None = None) -> list[OutboxItem]:
    """The case's alert calls not placed yet are called off, held ones included, except the
    item ``keep``. Returns those called off."""
    waiting = [
        c
        for c in alert_calls(session, case_id)
        if c.id != keep and c.status == OutboxStatus.PENDING
    ]
    return call_off(session, waiting)


def withhold_messages(session: Session, case_id: int) -> list[OutboxItem]:
    """The case's alert messages not sent yet are not sent (`call_off`). Returns those."""
    waiting = session.scalars(
        select(OutboxItem).where(
            OutboxItem.case_id == case_id, OutboxItem.status == OutboxStatus.PENDING
        )
    ).all()
    return call_off(session, [i for i in waiting if (i.payload or {}).get("kind") == ALERT_MESSAGE])


def supersede_waves(session: Session, case_id: int) -> bool:
    """A new wave of the case's alert calls is about to be queued: it takes over from the
    earlier ones. Their calls not placed yet are called off; returns whether one is still
    ringing (placed, its outcome not known), which the new wave waits for (held; the end of
    that call releases it, `pass_on`, and does not go on with its own wave). The case is
    locked by the caller."""
    live = [c for c in alert_calls(session, case_id) if not settled(c.payload)]
    call_off(session, [c for c in live if c.status == OutboxStatus.PENDING])
    return any(c.status in (OutboxStatus.SENDING, OutboxStatus.SENT) for c in live)


def call_off(session: Session, items: Sequence[OutboxItem]) -> list[OutboxItem]:
    """Cancel those of ``items`` still queued and not being placed (a worker that holds one
    places it; its callee hears the emergency is taken only by pressing 1 too). They stay in
    the outbox as "cancelled", settled (``outcome``: called off), and are never sent. Returns
    those called off."""
    if not items:
        return []
    locked = set(
        session.scalars(
            select(OutboxItem.id)
            .where(OutboxItem.id.in_([c.id for c in items]))
            .where(OutboxItem.status == OutboxStatus.PENDING)
            .with_for_update(skip_locked=True)
        )
    )
    called_off = [c for c in items if c.id in locked]
    for item in called_off:
        item.status = OutboxStatus.CANCELLED
        item.payload = {**item.payload, "outcome": CALLED_OFF}
    return called_off


# -- reading the chain ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Said:
    """What an alert call says, the question it asks, and its language."""

    text: str
    prompt: str
    language: str


def said_on(session: Session, key: str) -> Said | None:
    """What the alert call ``key`` says; None when ``key`` is no alert call of ours."""
    item = session.scalars(
        select(OutboxItem).where(OutboxItem.idempotency_key == key)
    ).one_or_none()
    if item is None or not is_alert_call(item.channel, item.payload):
        return None
    payload = item.payload
    return Said(str(payload.get("text") or ""), str(payload.get("prompt") or ""), _language(item))


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


def settled(payload: dict[str, Any] | None) -> bool:
    """This call's part of the chain is decided: placing it (again) is no use."""
    return bool((payload or {}).get("outcome"))


def taken_clause(case_id: Any) -> ColumnElement[bool]:
    """SQL: somebody pressed 1 on one of the case's alert calls (for the escalation's query)."""
    return exists().where(
        OutboxItem.case_id == case_id,
        OutboxItem.channel == "voice",
        OutboxItem.payload["taken"].as_boolean().is_(True),
    )


def wave_of(item: OutboxItem) -> int:
    return int((item.payload or {}).get("wave") or 1)


def callee_of(item: OutboxItem) -> str:
    return str((item.payload or {}).get("who") or item.address)


def joined(names: Iterable[str], catalogs: Catalogs, lang: str) -> str:
    """Names in a row, for a note on the case's timeline ("张三、李四")."""
    return _text(catalogs, "separator", lang).join(names)


# -- helpers --------------------------------------------------------------------------------------


def _text(catalogs: Catalogs, key: str, lang: str, **params: Any) -> str:
    return catalogs.text(f"alert_chain.{key}", lang, **params)


def _enqueue_message(
    session: Session, case: Case, channel: str, address: str, text: str, lang: str
) -> None:
    payload = {"kind": ALERT_MESSAGE, "case": case.number, "text": text, "language": lang}
    outbox.enqueue(
        session,
        channel=channel,
        address=address,
        payload=payload,
        idempotency_key=f"{case.number}:{ALERT_MESSAGE}:{channel}:{address}",
        priority=URGENT,
        case_id=case.id,
    )


def _contact_name(contact: EmergencyContact, catalogs: Catalogs, lang: str) -> str:
    if not contact.relation:
        return contact.name
    return _text(catalogs, "contact", lang, name=contact.name, relation=contact.relation)


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
    if item is None or not is_alert_call(item.channel, item.payload):
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
        timeline.record(session, case, "note", actor=Actor.system(LABEL), now=now, note=text)


def _language(item: OutboxItem) -> str:
    return str(item.payload.get("language") or "zh")
