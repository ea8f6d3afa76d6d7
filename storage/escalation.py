"""Escalation of cases nobody claimed, a periodic job (bot/runtime/periodic.py runs ``run_due``).

- An open case past its claim deadline: its unit's staff (staff and admins of that unit, not
  volunteers) are reminded by message (``escalation_notified`` on the timeline). Still unclaimed
  a grace period later (half the category's claim window, at least MIN_GRACE), it moves up one
  level (storage.actions.escalate: community → station → center, priority raised, a fresh claim
  deadline there), where the same begins again. A unit with nobody to remind moves it up at once.
  A case moved up is posted to its new unit's Telegram group (the ``on_moved`` hook).
- At the top level (the center) it can move no further: its staff are reminded again at most
  once per claim window (at least MIN_GRACE apart).
- An emergency unclaimed EMERGENCY_AFTER after it was filed, whose alert calls nobody took:
  the on-duty staff are rung again (a second wave of the chained alert calls,
  storage/alert_chain.py) and the staff of the unit above get an urgent message,
  once per emergency (``emergency_reescalated``); that counts as the unit's reminder, so the
  emergency moves up after its grace period like any case. The second wave takes over from
  the first: its calls not placed yet are called off, and one still ringing is waited for.

What has been done lives on the case's timeline: a reminder counts for the case's stay in its
queue, which starts at its claim deadline or at its last change (escalation, transfer, release,
reopening: Case.updated_at), whichever is later. Cases are locked with SKIP LOCKED on PostgreSQL
and looked at again once locked, so two workers never handle one case twice; every outbox item
has a key made of that state, so nothing is queued twice for one reminder. Reminders carry no
personal data of the retiree: the console shows the details to those who open the case.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import Select, exists, literal, select
from sqlalchemy import case as case_when
from sqlalchemy.orm import Session

from config.categories import Category, CategoryConfig
from config.i18n import Catalogs
from storage import actions, outbox, timeline
from storage.alert_chain import (
    ALERT_MESSAGE,
    EMERGENCY,
    URGENT,
    message_channel,
    ring_again,
    taken_clause,
)
from storage.db import for_this_worker
from storage.deadlines import deadline_after
from storage.models import (
    Case,
    CaseEvent,
    CaseStatus,
    Role,
    Staff,
    Unit,
    staff_units,
)
from storage.permissions import Actor
from storage.site import Site, site_of
from storage.types import UTCDateTime

log = structlog.get_logger(__name__)

EMERGENCY_AFTER = timedelta(minutes=2)
MIN_GRACE = timedelta(minutes=10)
BATCH = 100  # cases looked at per run and per kind; the rest wait for the next run (15 s)
NOTIFIED, REESCALATED = "escalation_notified", "emergency_reescalated"
REMINDERS = (NOTIFIED, REESCALATED)
NOTICE_KIND = "escalation_notice"  # the outbox payload kind of a reminder
STATION_ALERT_KIND = ALERT_MESSAGE  # as the emergency's first alerts (worker.kind.*)
SYSTEM = Actor.system()
# Told of a case moved to another unit's queue, in the transaction that moved it.
MovedHook = Callable[[Session, Sequence[Case]], object]


def run_due(
    session: Session,
    now: datetime,
    categories: CategoryConfig,
    *,
    limit: int = BATCH,
    on_moved: MovedHook | None = None,
) -> int:
    """Ring again for emergencies, then remind or escalate every case that is due; returns how
    many cases were handled. ``on_moved(session, [case])`` is called for each case moved up, in
    this transaction (bot/runtime/periodic.py posts it to the new unit's Telegram group)."""
    site = site_of(session)
    catalogs, lang = site.catalogs, site.language
    handled = 0
    for case in list(session.scalars(_due_emergencies(session, now, limit))):
        # Looked at again once locked: another worker may have just done it.
        if session.scalar(select(_rung_again(case.id) | taken_clause(case.id))):
            continue
        reescalate_emergency(session, case, catalogs, lang, now=now)
        handled += 1
    session.flush()
    for case in list(session.scalars(_due_cases(session, now, categories, limit))):
        cat = categories.get(case.category)
        if _remind_or_escalate(
            session, case, cat, categories, catalogs, lang, now=now, on_moved=on_moved
        ):
            handled += 1
    return handled


# -- which cases are due ---------------------------------------------------------------------


def claim_window(cat: Category, now: datetime, site: Site) -> timedelta:
    """How long the category gives to claim a case filed ``now``."""
    hours = None if cat.around_the_clock else site.service_hours.default
    due = deadline_after(
        now, cat.claim_within, site.tz, estimate=True, listed=site.working_days, hours=hours
    )
    return due - now


def grace(cat: Category, now: datetime, site: Site) -> timedelta:
    """How long a unit has, once reminded, before its case moves up."""
    return max(claim_window(cat, now, site) / 2, MIN_GRACE)


def remind_every(cat: Category, now: datetime, site: Site) -> timedelta:
    """How often the top level is reminded of a case it has not claimed."""
    return max(claim_window(cat, now, site), MIN_GRACE)


def _stay_start(case: Case) -> datetime:
    """Since when the case waits unclaimed in its present queue (see the module docstring)."""
    assert case.claim_deadline is not None
    return max(case.claim_deadline, case.updated_at)


def _locked(session: Session, query: Select[tuple[Case]]) -> Select[tuple[Case]]:
    """Lock the cases picked (others skip them on PostgreSQL; SQLite writers take turns)."""
    return for_this_worker(session, query.execution_options(populate_existing=True), Case)


def _rung_again(case_id: Any) -> Any:
    return exists().where(CaseEvent.case_id == case_id, CaseEvent.action == REESCALATED)


def _due_emergencies(session: Session, now: datetime, limit: int) -> Select[tuple[Case]]:
    """Open emergencies filed EMERGENCY_AFTER ago, not rung again yet, whose alert calls
    nobody took."""
    query = (
        select(Case)
        .where(
            Case.status == CaseStatus.OPEN,
            Case.category == EMERGENCY,
            Case.created_at <= now - EMERGENCY_AFTER,
            ~_rung_again(Case.id),
            ~taken_clause(Case.id),
        )
        .order_by(Case.created_at, Case.id)
        .limit(limit)
    )
    return _locked(session, query)


def _due_cases(
    session: Session, now: datetime, categories: CategoryConfig, limit: int
) -> Select[tuple[Case]]:
    """Open cases past their claim deadline with no reminder in their present stay more recent
    than their category's grace period (at the top level: its reminder period). Being exact
    here, not in Python, keeps cases that wait for nothing out of the batch."""

    def moment(value: datetime) -> Any:
        return literal(value.astimezone(UTC), UTCDateTime())

    site = site_of(session)
    whens: list[tuple[Any, Any]] = []
    for name, cat in categories.categories.items():
        top = Unit.parent_id.is_(None)
        whens.append(((Case.category == name) & top, moment(now - remind_every(cat, now, site))))
        whens.append((Case.category == name, moment(now - grace(cat, now, site))))
    recent_reminder = exists().where(
        CaseEvent.case_id == Case.id,
        CaseEvent.action.in_(REMINDERS),
        CaseEvent.at >= Case.claim_deadline,
        CaseEvent.at >= Case.updated_at,
        CaseEvent.at > case_when(*whens),
    )
    query = (
        select(Case)
        .join(Unit, Unit.id == Case.unit_id)
        .where(
            Case.status == CaseStatus.OPEN,
            Case.claim_deadline <= now,
            Case.category.in_(sorted(categories.categories)),
            ~recent_reminder,
        )
        .order_by(Case.claim_deadline, Case.id)
        .limit(limit)
    )
    return _locked(session, query)


def _reminders(session: Session, case: Case, *, since: datetime) -> list[CaseEvent]:
    """The case's reminders since ``since``, oldest first: a fresh read, so a reminder another
    worker committed meanwhile is seen."""
    return list(
        session.scalars(
            select(CaseEvent)
            .where(
                CaseEvent.case_id == case.id,
                CaseEvent.action.in_(REMINDERS),
                CaseEvent.at >= since,
            )
            .order_by(CaseEvent.at, CaseEvent.id)
        )
    )


# -- reminding and escalating ----------------------------------------------------------------


def _remind_or_escalate(
    session: Session,
    case: Case,
    cat: Category,
    categories: CategoryConfig,
    catalogs: Catalogs,
    lang: str,
    *,
    now: datetime,
    on_moved: MovedHook | None = None,
) -> bool:
    """Remind the case's unit, or move the case up, whichever is due (the case is locked)."""
    stay_start = _stay_start(case)
    reminded = _reminders(session, case, since=stay_start)
    parent = case.unit.parent
    staff = unit_staff(session, case.unit)
    if not reminded:
        if not staff and parent is not None:
            reason = "reason_nobody"
            _escalate(session, case, parent, categories, catalogs, lang, reason, now, on_moved)
        else:
            remind_unit(session, case, cat, staff, catalogs, lang, now=now, nth=1)
        return True
    last = reminded[-1].at
    if parent is None:
        if now < last + remind_every(cat, now, site_of(session)):
            return False
        remind_unit(session, case, cat, staff, catalogs, lang, now=now, nth=len(reminded) + 1)
        return True
    if now < last + grace(cat, now, site_of(session)):
        return False  # another worker reminded them a moment ago
    _escalate(session, case, parent, categories, catalogs, lang, "reason", now, on_moved)
    return True


def unit_staff(session: Session, unit: Unit) -> list[Staff]:
    """The active staff and admins of ``unit`` itself who can be sent a message."""
    staff = session.scalars(
        select(Staff)
        .join(staff_units, staff_units.c.staff_id == Staff.id)
        .where(
            staff_units.c.unit_id == unit.id,
            Staff.active.is_(True),
            Staff.role.in_([Role.STAFF, Role.ADMIN]),
        )
        .order_by(Staff.id)
    )
    return [s for s in staff if message_channel(s) is not None]


def remind_unit(
    session: Session,
    case: Case,
    cat: Category,
    staff: list[Staff],
    catalogs: Catalogs,
    lang: str,
    *,
    now: datetime,
    nth: int,
) -> None:
    """Remind ``staff`` (the case's unit's) that the case waits; ``nth`` reminder of its stay."""
    assert case.claim_deadline is not None
    unit, parent = case.unit, case.unit.parent
    overdue = duration(now - case.claim_deadline, catalogs, lang)
    params = {
        "number": case.number,
        "unit": unit.name(lang),
        "category": cat.name.get(lang),
        "overdue": overdue,
    }
    if parent is None:
        text = catalogs.text("escalation.notice_top", lang, **params)
    else:
        wait = duration(grace(cat, now, site_of(session)), catalogs, lang)
        text = catalogs.text(
            "escalation.notice", lang, grace=wait, parent=parent.name(lang), **params
        )
    stay = int(_stay_start(case).timestamp())
    key = f"{case.number}:{NOTICE_KIND}:{stay}:{nth}"
    _message_staff(session, staff, case, NOTICE_KIND, text, lang, key, 2, now)
    note = catalogs.text(
        "escalation.notified", lang, overdue=overdue, unit=unit.name(lang), count=len(staff)
    )
    overdue_s = int((now - case.claim_deadline).total_seconds())
    data = {"unit": unit.id, "told": [s.id for s in staff], "overdue_s": overdue_s, "nth": nth}
    timeline.record(session, case, NOTIFIED, now=now, note=note, data=data)
    log.info("case_reminded", case=case.number, unit=unit.code, told=len(staff), nth=nth)


def _message_staff(
    session: Session,
    people: Sequence[Staff],
    case: Case,
    kind: str,
    text: str,
    lang: str,
    key: str,
    priority: int,
    now: datetime,
) -> None:
    """Queue ``text`` about ``case`` to each of ``people`` on their messaging channel (all have
    one: `unit_staff` and the notice's staff list keep to those who do), once per ``key``."""
    for person in people:
        target = message_channel(person)
        assert target is not None
        channel, address = target
        outbox.enqueue(
            session,
            channel=channel,
            address=address,
            payload={"kind": kind, "case": case.number, "text": text, "language": lang},
            idempotency_key=f"{key}:{channel}:{address}",
            priority=priority,
            case_id=case.id,
            now=now,
        )


def _escalate(
    session: Session,
    case: Case,
    parent: Unit,
    categories: CategoryConfig,
    catalogs: Catalogs,
    lang: str,
    reason_key: str,
    now: datetime,
    on_moved: MovedHook | None = None,
) -> None:
    assert case.claim_deadline is not None
    unit_code = case.unit.code
    reason = catalogs.text(
        f"escalation.{reason_key}",
        lang,
        overdue=duration(now - case.claim_deadline, catalogs, lang),
        unit=case.unit.name(lang),
        parent=parent.name(lang),
    )
    actions.escalate(session, case, SYSTEM, reason=reason, categories=categories, now=now)
    log.info("case_escalated", case=case.number, from_unit=unit_code, to_unit=parent.code)
    if on_moved is not None:
        on_moved(session, [case])


def reescalate_emergency(
    session: Session, case: Case, catalogs: Catalogs, lang: str, *, now: datetime
) -> None:
    """Ring the on-duty staff again (the next wave of the chained alert calls) and send the
    staff of the unit above an urgent message; note both on the timeline."""
    unit, station = case.unit, case.unit.parent
    minutes = int((now - case.created_at).total_seconds() // 60)
    params = {"number": case.number, "unit": unit.name(lang), "minutes": minutes}
    text = catalogs.text("escalation.emergency.rering", lang, **params)
    callees = ring_again(session, case, text, catalogs, lang, now=now)
    alerted: list[Staff] = []
    if station is not None:
        alert = catalogs.text("escalation.emergency.station_alert", lang, **params)
        alerted = unit_staff(session, station)
        key = f"{case.number}:emergency_station_alert"
        _message_staff(session, alerted, case, STATION_ALERT_KIND, alert, lang, key, URGENT, now)
    if station is not None:
        note = catalogs.text(
            "escalation.emergency.note",
            lang,
            minutes=minutes,
            calls=len(callees),
            station=station.name(lang),
            alerted=len(alerted),
        )
    else:
        note = catalogs.text(
            "escalation.emergency.note_no_station", lang, minutes=minutes, calls=len(callees)
        )
    data = {
        "calls": [c.who for c in callees],
        "station": station.id if station is not None else None,
        "alerted": [s.id for s in alerted],
    }
    timeline.record(session, case, REESCALATED, now=now, note=note, data=data)
    log.warning("emergency_reescalated", case=case.number, calls=len(callees), alerted=len(alerted))


def duration(length: timedelta, catalogs: Catalogs, lang: str) -> str:
    """A length of time as staff read it: minutes below two hours, hours below two days."""
    minutes = max(0, int(length.total_seconds() // 60))
    if minutes < 120:
        return catalogs.text("escalation.duration.minutes", lang, n=minutes)
    if minutes < 48 * 60:
        return catalogs.text("escalation.duration.hours", lang, n=minutes // 60)
    return catalogs.text("escalation.duration.days", lang, n=minutes // (24 * 60))
