"""Check-ins (主动关爱): every older person living alone is asked each day (or each week) how
they are, and nobody who does not answer is left alone.

- **Plans.** A retiree's plan is the registry's (`CarePlan`), else the first default of
  config/care.yml their profile matches (age, living alone, self-care), else none. A plan says
  how often, in which window of the day, on which channels in order (the phone line first,
  then WeChat or SMS) and whether their family is told.
- **The day's check-ins** (``plan_day``): one row per person and day (a unique key: never
  twice), due at a moment in their window spread by their id, so a community is not all rung
  in the same minute. A moment in the quiet hours (config/care.yml ``quiet_hours``: never at
  night) is moved to their end, or the day has no check-in when the window is all night.
- **The ladder** (``run_due``, a periodic job): a due check-in does its next rung and waits the
  rung's minutes for an answer. ``ask`` puts the question in the outbox: a call on the voice
  line ("好请按1，需要帮助请按2") or a message ("回复1/2"), on the plan's next reachable channel.
  ``tell_family`` tells the family linked with the retiree's consent to know of check-ins
  (storage/family.py), when the plan allows it.
  ``visit`` files a call-back case in their community's queue at the priority their profile
  gives, for someone to go round that day. A rung that would contact somebody in the quiet
  hours is skipped. Each rung is a line of the check-in's timeline (`CheckInEvent`).
  At most ``per_minute`` check-ins are handled a minute.
- **Answers** (``answer``): 1 is well, and the day is done. 2 is "I need help": the person is
  talked with as if they had called (the voice line goes on into the conversation; a message
  gets "please tell us what you need"), and if no request of theirs is filed within
  ``help_wait_minutes``, the visit case is filed all the same. An answer after the day is
  over changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from config.care import CareConfig, PlanRule, Rung, due_on
from config.categories import CategoryConfig
from storage import actions, family, outbox
from storage.db import for_this_worker, insert_statement
from storage.models import (
    CarePlan,
    Case,
    CheckIn,
    CheckInDay,
    CheckInEvent,
    CheckInStatus,
    MessagingIdentity,
    Retiree,
    RetireePhone,
    RetireeStatus,
)
from storage.permissions import Actor
from storage.site import site_of

log = structlog.get_logger(__name__)

LEEWAY_S = 300  # the end of a window where no first question is planned (see spread)

KIND = "check_in"  # the outbox payload's kind, and the call's
CHOICES = ("1", "2")
WELL, HELP = "1", "2"
WORKER = Actor.system("check_ins")
RETIREE = Actor.system("retiree")
OPEN = (CheckInStatus.SCHEDULED, CheckInStatus.ASKED, CheckInStatus.NEEDS_HELP)
PRIORITY = 3  # the outbox priority of a question (an emergency's calls are 1)


# -- plans ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    rule: PlanRule
    quiet_days: tuple[str, ...] = ()
    own: bool = False  # set in the registry (else a default of config/care.yml)


def plan_of(retiree: Retiree, row: CarePlan | None, care: CareConfig, today: date) -> Plan | None:
    """The plan ``retiree`` has: the registry's row, else the defaults; None when none."""
    if row is not None:
        if not row.enabled:
            return None
        return Plan(PlanRule.model_validate(row.rule), tuple(row.quiet_days or ()), own=True)
    rule = care.default_for(
        age=retiree.age_on(today), lives_alone=retiree.lives_alone, self_care=retiree.self_care
    )
    return Plan(rule) if rule is not None else None


def window_on(plan: Plan, day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The plan's window on ``day``, as moments."""
    window = plan.rule.window
    return (
        datetime.combine(day, window.start, tzinfo=zone),
        datetime.combine(day, window.end, tzinfo=zone),
    )


def spread(retiree_id: int, start: datetime, end: datetime) -> datetime:
    """A moment in [start, end - LEEWAY) that depends only on ``retiree_id``: the same person
    is rung at about the same time each day, and a community's people are spread over the
    window. The last minutes stay free, so that the job's period and its rate keep the first
    question inside the window (a short window: its first half)."""
    seconds = int((end - start).total_seconds())
    room = seconds - LEEWAY_S if seconds > 2 * LEEWAY_S else seconds // 2
    return start + timedelta(seconds=(retiree_id * 2_654_435_761) % max(room, 1))


# -- the day's check-ins --------------------------------------------------------------------------


def plan_day(session: Session, day: date, *, now: datetime, batch: int = 2000) -> int:
    """Make ``day``'s check-ins for everybody whose plan has one that day; returns how many
    new ones. Safe to run again and from several workers: a person has one a day at most."""
    site = site_of(session)
    care, zone = site.care, site.tz
    made = 0
    rows: list[dict[str, Any]] = []
    query = (
        select(Retiree, CarePlan)
        .outerjoin(CarePlan, CarePlan.retiree_id == Retiree.id)
        .where(Retiree.status == RetireeStatus.ACTIVE)
        .order_by(Retiree.id)
        .execution_options(yield_per=batch)
    )
    for retiree, row in session.execute(query):
        new = _new_row(retiree, plan_of(retiree, row, care, day), day, now, care, zone)
        if new is None:
            continue
        rows.append(new)
        if len(rows) >= batch:
            made += _insert_new(session, rows)
            rows = []
    made += _insert_new(session, rows)
    if made:
        log.info("check_ins_planned", day=day.isoformat(), count=made)
    return made


def _new_row(
    retiree: Retiree, plan: Plan | None, day: date, now: datetime, care: CareConfig, zone: ZoneInfo
) -> dict[str, Any] | None:
    """The row of ``retiree``'s check-in on ``day``; None when their plan has none that day,
    or its window is all night or already over at ``now``."""
    if plan is None or not due_on(plan.rule, day, plan.quiet_days):
        return None
    start, end = window_on(plan, day, zone)
    due = care.quiet_hours.after(spread(retiree.id, start, end), zone)
    if due >= end or now >= end:
        return None  # all the window is night, or it is over: nobody is rung out of it
    return {
        "retiree_id": retiree.id,
        "day": day,
        "status": CheckInStatus.SCHEDULED,
        "rung": 0,
        "attempts": 0,
        "channel": "",
        "address": "",
        "due_at": max(due, now),  # planned late in the window: from now
        "window_end": end,
        "created_at": now,
    }


def plan_retiree(session: Session, retiree: Retiree, day: date, *, now: datetime) -> bool:
    """After a change of ``retiree``'s plan: their check-in of ``day`` is made when the plan
    now has one (and none was made), or an open one is cancelled when it has none. True when
    they have an open check-in that day afterwards."""
    site = site_of(session)
    plan = plan_of(retiree, plan_row(session, retiree.id), site.care, day)
    new = _new_row(retiree, plan, day, now, site.care, site.tz)
    if new is None:
        session.execute(
            update(CheckIn)
            .where(CheckIn.retiree_id == retiree.id, CheckIn.day == day, CheckIn.status.in_(OPEN))
            .values(status=CheckInStatus.CANCELLED)
        )
        return False
    _insert_new(session, [new])
    return True


def _insert_new(session: Session, rows: list[dict[str, Any]]) -> int:
    if not rows:
        return 0
    statement = insert_statement(
        session,
        "check_ins_new",
        lambda insert: (
            insert(CheckIn.__table__)
            .on_conflict_do_nothing(index_elements=["retiree_id", "day"])
            .returning(CheckIn.__table__.c.id)
        ),
    )
    return len(session.execute(statement, rows).all())  # the new ones: a conflict returns none


# -- the ladder -----------------------------------------------------------------------------------


def due(session: Session, now: datetime, *, limit: int) -> list[CheckIn]:
    """Check-ins whose next rung is due, locked for this worker (SKIP LOCKED on PostgreSQL)."""
    query = (
        select(CheckIn)
        .where(CheckIn.status.in_(OPEN), CheckIn.due_at <= now)
        .order_by(CheckIn.due_at, CheckIn.id)
        .limit(limit)
    )
    return list(session.scalars(for_this_worker(session, query, CheckIn)))


def run_due(
    session: Session,
    now: datetime,
    categories: CategoryConfig,
    *,
    every_s: float = 60.0,
) -> int:
    """The periodic job: plan today once (the first run of the day), then climb one rung of
    each due check-in, at most the configured rate for a run every ``every_s`` seconds."""
    site = site_of(session)
    today = now.astimezone(site.tz).date()
    if _first_run_of(session, today, now):
        plan_day(session, today, now=now)
    limit = _room(session, site.care.per_minute, every_s, now)
    handled = 0
    for check_in in due(session, now, limit=limit):
        step(session, check_in, categories, now=now)
        handled += 1
    return handled


def room_in_rate(per_minute: int, every_s: float, last_minute: int) -> int:
    """How many a run every ``every_s`` seconds may handle: its share of ``per_minute``, less
    what all the workers did in the last minute (two workers that count at the same instant may
    together pass the rate by one run's share, no more). Campaigns are paced the same way."""
    share = max(1, int(per_minute * every_s / 60))
    return max(0, min(share, per_minute - last_minute))


def _room(session: Session, per_minute: int, every_s: float, now: datetime) -> int:
    """How many check-ins this run may ask (`room_in_rate`, counting the questions put)."""
    asked = session.scalar(
        select(func.count())
        .select_from(CheckIn)
        .where(CheckIn.asked_at > now - timedelta(minutes=1), CheckIn.asked_at <= now)
    )
    return room_in_rate(per_minute, every_s, int(asked or 0))


def _first_run_of(session: Session, day: date, now: datetime) -> bool:
    """Claim the planning of ``day`` (a row of check_in_days): True for the one transaction
    that inserts it; another worker's waits for that one to commit, then sees it planned."""
    statement = insert_statement(
        session,
        "check_in_days_new",
        lambda insert: (
            insert(CheckInDay.__table__)
            .on_conflict_do_nothing(index_elements=["day"])
            .returning(CheckInDay.__table__.c.day)
        ),
    )
    return session.execute(statement, {"day": day, "planned_at": now}).first() is not None


def step(session: Session, check_in: CheckIn, categories: CategoryConfig, *, now: datetime) -> None:
    """Do ``check_in``'s next rung (or, after a 2, the visit when nothing was filed)."""
    site = site_of(session)
    care = site.care
    retiree = check_in.retiree
    if retiree.status != RetireeStatus.ACTIVE:
        check_in.status = CheckInStatus.CANCELLED
        _event(session, check_in, "cancelled", now)
        return
    if check_in.status == CheckInStatus.NEEDS_HELP:
        _after_help(session, check_in, categories, now=now)
        return
    ladder = care.ladder
    rung = ladder[min(check_in.rung, len(ladder) - 1)]
    check_in.rung += 1
    check_in.due_at = now + timedelta(minutes=rung.wait_minutes)
    if rung.do == Rung.VISIT:
        _visit(session, check_in, categories, "check_in.visit_summary", now=now)
        return
    if care.quiet_hours.at(now, site.tz):
        _event(session, check_in, "skipped_quiet", now, rung=rung.do.value)
        check_in.due_at = now  # the next rung at once (the visit is filed at any hour)
        return
    plan = plan_of(retiree, plan_row(session, retiree.id), care, check_in.day)
    if rung.do == Rung.ASK:
        _ask(session, check_in, plan, now=now)
    else:
        _tell_family(session, check_in, plan, now=now)


def plan_row(session: Session, retiree_id: int) -> CarePlan | None:
    """The plan the registry set for the person, if it set one."""
    return session.scalars(select(CarePlan).where(CarePlan.retiree_id == retiree_id)).first()


def reachable(session: Session, retiree: Retiree, channels: Sequence[str]) -> list[tuple[str, str]]:
    """(channel, address) for each of ``channels`` the person can be reached on, in order."""
    phone = session.scalar(
        select(RetireePhone.number)
        .where(RetireePhone.retiree_id == retiree.id)
        .order_by(RetireePhone.id)
        .limit(1)
    )
    accounts = {
        channel: address
        for channel, address in session.execute(
            select(MessagingIdentity.channel, MessagingIdentity.address).where(
                MessagingIdentity.retiree_id == retiree.id
            )
        )
    }
    found = []
    for channel in channels:
        address = phone if channel in ("voice", "sms") else accounts.get(channel)
        if address:
            found.append((channel, address))
    return found


def _ask(session: Session, check_in: CheckIn, plan: Plan | None, *, now: datetime) -> None:
    retiree = check_in.retiree
    channels = plan.rule.channels if plan is not None else ("voice", "wechat", "sms")
    targets = reachable(session, retiree, channels)
    if not targets:
        _event(session, check_in, "no_channel", now)
        check_in.due_at = now  # straight on up the ladder
        return
    channel, address = targets[min(check_in.attempts, len(targets) - 1)]
    site = site_of(session)
    lang = retiree.preferred_language or site.language
    key = "check_in.question_voice" if channel == "voice" else "check_in.question"
    text = site.catalogs.text(key, lang, name=retiree.name)
    check_in.attempts += 1
    outbox.enqueue(
        session,
        channel=channel,
        address=address,
        payload={"kind": KIND, "check_in": check_in.id, "text": text, "language": lang},
        idempotency_key=f"{KIND}:{check_in.id}:{check_in.attempts}",
        priority=PRIORITY,
        now=now,
    )
    check_in.status = CheckInStatus.ASKED
    check_in.channel, check_in.address = channel, address
    check_in.asked_at = now
    _event(session, check_in, "asked", now, channel=channel, attempt=check_in.attempts)


def _tell_family(session: Session, check_in: CheckIn, plan: Plan | None, *, now: datetime) -> None:
    """The family who may know of check-ins (storage/family.py) are told it went unanswered,
    when the plan says so."""
    told = 0
    if plan is not None and plan.rule.tell_family:
        key = f"{KIND}:{check_in.id}"
        told = family.tell(session, check_in.retiree, family.CHECK_INS, key=key, now=now)
    if not told:
        _event(session, check_in, "no_family", now)
        check_in.due_at = now
        return
    _event(session, check_in, "family_told", now, count=told)


def _visit(
    session: Session,
    check_in: CheckIn,
    categories: CategoryConfig,
    summary_key: str,
    *,
    now: datetime,
) -> Case:
    """File the case for someone to go round (or ring them, after a 2 that led nowhere)."""
    site = site_of(session)
    retiree = check_in.retiree
    case = actions.file_case(
        session,
        category="callback",
        channel=check_in.channel or KIND,
        actor=WORKER,
        retiree=retiree,
        summary=site.catalogs.text(summary_key, site.language, day=check_in.day.isoformat()),
        details={"reason": KIND, "check_in": check_in.id, "day": check_in.day.isoformat()},
        categories=categories,
        now=now,
    )
    check_in.status = CheckInStatus.VISIT
    check_in.case_id = case.id
    _event(session, check_in, "visit", now, number=case.number)
    log.info("check_in_visit", check_in=check_in.id, case=case.number)
    return case


def _after_help(
    session: Session, check_in: CheckIn, categories: CategoryConfig, *, now: datetime
) -> None:
    """``help_wait_minutes`` after a 2: a request of theirs filed since, or the visit case."""
    assert check_in.answered_at is not None
    filed = session.scalar(
        select(Case.number)
        .where(
            Case.retiree_id == check_in.retiree_id,
            Case.created_at >= check_in.answered_at,
        )
        .order_by(Case.id)
        .limit(1)
    )
    if filed is not None:
        check_in.status = CheckInStatus.HELPED
        _event(session, check_in, "helped", now, number=filed)
        return
    _visit(session, check_in, categories, "check_in.help_summary", now=now)


# -- answers --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answered:
    label: str  # "well", "needs_help", or "over" (the day's check-in is done with)
    text: str  # what the person is told
    language: str
    retiree_id: int


def answer(session: Session, check_in: CheckIn, choice: str, *, now: datetime) -> Answered:
    """1 (well) or 2 (needs help) to ``check_in``; the first answer counts, a later one (or one
    after the ladder ended) changes nothing. ValueError for another choice."""
    if choice not in CHOICES:
        raise ValueError(f"a check-in answer is 1 or 2, not {choice!r}")
    site = site_of(session)
    retiree = check_in.retiree
    lang = retiree.preferred_language or site.language
    if check_in.status not in (CheckInStatus.SCHEDULED, CheckInStatus.ASKED):
        return Answered("over", site.catalogs.text("check_in.over", lang), lang, retiree.id)
    check_in.answered_at = now
    if choice == WELL:
        check_in.status = CheckInStatus.WELL
        label, key = "well", "check_in.well"
    else:
        check_in.status = CheckInStatus.NEEDS_HELP
        check_in.due_at = now + timedelta(minutes=site.care.help_wait_minutes)
        label, key = "needs_help", "check_in.help"
    _event(session, check_in, label, now, channel=check_in.channel)
    log.info("check_in_answered", check_in=check_in.id, answer=label)
    return Answered(label, site.catalogs.text(key, lang), lang, retiree.id)


def waiting_for(session: Session, channel: str, address: str, day: date) -> CheckIn | None:
    """The check-in a bare 1 or 2 from ``address`` on ``channel`` answers: the one asked there
    today and not answered yet."""
    return session.scalars(
        select(CheckIn)
        .where(
            CheckIn.channel == channel,
            CheckIn.address == address,
            CheckIn.day == day,
            CheckIn.status == CheckInStatus.ASKED,
        )
        .order_by(CheckIn.id.desc())
        .limit(1)
    ).first()


def is_check_in(payload: dict[str, Any] | None) -> bool:
    """Whether an outbox item is a check-in question (a call or a message)."""
    payload = payload or {}
    return payload.get("kind") == KIND and isinstance(payload.get("check_in"), int)


# -- the timeline ---------------------------------------------------------------------------------


def _event(session: Session, check_in: CheckIn, action: str, now: datetime, **data: Any) -> None:
    channel = str(data.pop("channel", "") or "")
    session.add(
        CheckInEvent(check_in_id=check_in.id, action=action, at=now, channel=channel, data=data)
    )


def timeline(session: Session, check_in_id: int) -> list[CheckInEvent]:
    return list(
        session.scalars(
            select(CheckInEvent)
            .where(CheckInEvent.check_in_id == check_in_id)
            .order_by(CheckInEvent.at, CheckInEvent.id)
        )
    )


def day_counts(session: Session, day: date) -> dict[str, int]:
    """How ``day``'s check-ins stand, by status."""
    rows = session.execute(
        select(CheckIn.status, func.count()).where(CheckIn.day == day).group_by(CheckIn.status)
    )
    return {status.value: count for status, count in rows}
