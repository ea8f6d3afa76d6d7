"""Case actions: the only code that changes cases. Each writes a case event.

Claiming and resolving also tell the retiree who asked, through the outbox in the same
transaction (storage/notices.py).

Every action takes the caller's session and never commits; the caller's transaction does.
A refused action raises a CaseError subclass saying why. After a CaseConflict (somebody else
changed the case at the same time) the caller must roll back and may try again.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

import structlog
from sqlalchemy import (
    Integer,
    String,
    bindparam,
    column,
    exists,
    func,
    literal,
    select,
    update,
)
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from config.categories import CategoryConfig
from config.i18n import Catalogs
from storage import alert_chain, family, follow_ups, timeline
from storage.db import dialect_insert
from storage.deadlines import CalendarNotCovered, deadline_after
from storage.errors import (
    CaseConflict,
    CaseError,
    IllegalTransition,
    InvalidCaseInput,
    NotFound,
    NotPermitted,
)
from storage.models import (
    Case,
    CaseEvent,
    CaseNumberCounter,
    CaseStatus,
    OutboxItem,
    OutboxStatus,
    Retiree,
    Role,
    Staff,
    Unit,
    UnitLevel,
)
from storage.notices import fact_columns, facts_from, tell_claimed, tell_resolved
from storage.permissions import Actor, may_see_case, unit_tree
from storage.priority import case_priority
from storage.queues import CLAIM_ORDER, ClaimScope, claim_scope, waiting_filter
from storage.site import Site, site_of
from storage.types import UTCDateTime, utcnow

log = structlog.get_logger(__name__)

OPEN, CLAIMED, RESOLVED, CLOSED, CANCELLED = (
    CaseStatus.OPEN,
    CaseStatus.CLAIMED,
    CaseStatus.RESOLVED,
    CaseStatus.CLOSED,
    CaseStatus.CANCELLED,
)

# From which statuses each action may start.
ALLOWED_FROM: dict[str, tuple[CaseStatus, ...]] = {
    "claim": (OPEN,),
    "release": (CLAIMED,),
    "transfer": (OPEN, CLAIMED),
    "escalate": (OPEN,),
    "resolve": (CLAIMED,),
    "close": (RESOLVED,),
    "reopen": (RESOLVED, CLOSED),
    "cancel": (OPEN, CLAIMED),
}
LEVEL_ORDER = {UnitLevel.COMMUNITY: 0, UnitLevel.STATION: 1, UnitLevel.CENTER: 2}


def _categories(session: Session, categories: CategoryConfig | None) -> CategoryConfig:
    return categories if categories is not None else site_of(session).categories


def _check_status(case: Case, action: str) -> None:
    allowed = ALLOWED_FROM[action]
    if case.status not in allowed:
        raise IllegalTransition(case.number, action, case.status.value, tuple(allowed))


def _require_person(actor: Actor, action: str) -> Staff:
    if actor.staff is None:
        raise NotPermitted(actor.describe(), action, "only a staff member or volunteer can")
    if not actor.staff.active:
        raise NotPermitted(actor.describe(), action, "the account is not active")
    return actor.staff


def _require_scope(
    session: Session, actor: Actor, case: Case, action: str, categories: CategoryConfig
) -> None:
    """Staff actors must serve the case's unit (and volunteers only eligible categories)."""
    if actor.staff is None:
        return
    why = may_see_case(session, actor.staff, case, categories)
    if why:
        raise NotPermitted(actor.describe(), f"{action} case {case.number}", why)


def _require_staff_role(actor: Actor, case: Case, action: str) -> None:
    if actor.staff is not None and actor.staff.role == Role.VOLUNTEER:
        raise NotPermitted(
            actor.describe(), f"{action} case {case.number}", "only staff can do that"
        )


def _authorize_staff(
    session: Session, case: Case, actor: Actor, action: str, categories: CategoryConfig
) -> None:
    """Staff-only actions: the status allows it, the actor is not a volunteer, and serves the
    case's unit (the system may always)."""
    _check_status(case, action)
    _require_staff_role(actor, case, action)
    _require_scope(session, actor, case, action, categories)


def _authorize_assignee_or_staff(
    session: Session, case: Case, actor: Actor, action: str, categories: CategoryConfig
) -> None:
    """The case's assignee may; anyone else must be staff serving the case's unit."""
    _check_status(case, action)
    if actor.staff is not None and actor.staff.id != case.assignee_id:
        _require_staff_role(actor, case, f"{action} someone else's")
        _require_scope(session, actor, case, action, categories)


def _require_text(value: str, message: str, what: str) -> None:
    """``value`` must say something; ``what`` names the field for the person's text."""
    if not value.strip():
        raise InvalidCaseInput(message, key=f"console.errors.required.{what}")


def _flush(session: Session, case: Case) -> None:
    """Write the change; the version check turns a concurrent change into CaseConflict."""
    number = case.number  # read now: a failed flush expires the object
    try:
        session.flush()
    except StaleDataError as exc:
        raise CaseConflict(number) from exc


def _moved(
    session: Session,
    case: Case,
    action: str,
    actor: Actor,
    from_status: CaseStatus,
    now: datetime,
    **event: Any,
) -> None:
    """The change to ``case`` is made: stamp it, write it (a concurrent change of the same case
    is CaseConflict) and put it on the timeline (``event``: its reason, note or data)."""
    case.updated_at = now
    _flush(session, case)
    timeline.record(session, case, action, actor=actor, from_status=from_status, now=now, **event)


def _take_first_contact(case: Case, staff: Staff) -> None:
    """首问负责: the first staff member to take a case stays accountable for it."""
    if case.first_contact_owner_id is None and staff.role in (Role.STAFF, Role.ADMIN):
        case.first_contact_owner_id = staff.id


def queue_unit_for(session: Session, base: Unit, level: str) -> Unit:
    """The unit at ``level`` above (or at) ``base``; ``base`` itself if it is already higher."""
    wanted = UnitLevel(level)
    if LEVEL_ORDER[base.level] >= LEVEL_ORDER[wanted]:
        return base
    unit: Unit | None = base
    while unit is not None and LEVEL_ORDER[unit.level] < LEVEL_ORDER[wanted]:
        unit = unit.parent
    if unit is None:
        raise InvalidCaseInput(f"unit {base.code} has no {level} above it")
    return unit


def _deadlines(
    case: Case, categories: CategoryConfig, start: datetime, site: Site, unit: Unit
) -> tuple[datetime, datetime, list[str]]:
    """The claim and resolve deadlines of ``case`` in the queue of ``unit`` from ``start``."""
    cat = categories.get(case.category)
    hours = None if cat.around_the_clock else site.hours_for(unit)
    problems: list[str] = []
    deadlines: list[datetime] = []
    for within in (cat.claim_within, cat.resolve_within):
        try:
            deadlines.append(
                deadline_after(start, within, site.tz, listed=site.working_days, hours=hours)
            )
        except CalendarNotCovered as exc:
            # The holidays of that year are not known yet (config/working_days.yml): the case
            # gets a deadline counted Monday to Friday, so it is still escalated when missed,
            # and its timeline says the deadline is an estimate.
            deadlines.append(
                deadline_after(
                    start, within, site.tz, estimate=True, listed=site.working_days, hours=hours
                )
            )
            problems.append(f"{exc}; estimated counting Monday to Friday")
    return deadlines[0], deadlines[1], problems


def file_case(
    session: Session,
    *,
    category: str,
    channel: str,
    actor: Actor,
    retiree: Retiree | None = None,
    unit: Unit | None = None,
    summary: str = "",
    details: dict[str, Any] | None = None,
    original_text: str = "",
    categories: CategoryConfig | None = None,
    raise_for: Sequence[str] = (),
    now: datetime | None = None,
) -> Case:
    """File a new case in the queue of the unit its category belongs to.

    The queue is found from ``unit`` (if given) or the retiree's community, walking up to the
    category's queue level. Priority starts at the category's default and is raised for the
    retiree's age, living alone, self-care and dibao status, and once for each of ``raise_for``
    (reasons in the request itself), never above the configured ceiling.
    """
    cats = _categories(session, categories)
    try:
        cat = cats.get(category)
    except KeyError as exc:
        raise InvalidCaseInput(str(exc.args[0])) from None
    now = now or utcnow()
    base = unit or (retiree.community if retiree is not None else None)
    if base is None:
        raise InvalidCaseInput(
            "a case needs a unit: the retiree has no community and none was given"
        )
    queue = queue_unit_for(session, base, cat.queue_level)
    local_today = now.astimezone(site_of(session).tz).date()
    priority, raised_by = case_priority(cat, cats.priority, retiree, local_today, raise_for)
    case = Case(
        number=next_case_number(session, local_today.year),
        retiree=retiree,
        category=category,
        priority=priority,
        status=OPEN,
        channel=channel,
        summary=summary[:300],
        details=dict(details or {}),
        original_text=original_text,
        unit=queue,
        created_at=now,
        updated_at=now,
    )
    case.claim_deadline, case.resolve_deadline, problems = _deadlines(
        case, cats, now, site_of(session), queue
    )
    session.add(case)
    session.flush()
    data: dict[str, Any] = {"priority": priority}
    if raised_by:
        data["priority_raised_by"] = raised_by
    if problems:
        data["deadline_problems"] = problems
    timeline.record(session, case, "file", actor=actor, from_status=None, now=now, data=data)
    log.info("case_filed", case=case.number, category=category, priority=priority, unit=queue.code)
    return case


def claim(
    session: Session,
    case: Case,
    actor: Actor,
    *,
    categories: CategoryConfig | None = None,
    now: datetime | None = None,
) -> Case:
    """``actor`` takes ``case`` from its queue. Raises CaseConflict if someone was faster."""
    staff = _require_person(actor, "claim cases")
    _check_status(case, "claim")
    _require_scope(session, actor, case, "claim", _categories(session, categories))
    return _apply_claim(session, case, actor, staff, now or utcnow())


def _apply_claim(session: Session, case: Case, actor: Actor, staff: Staff, now: datetime) -> Case:
    case.status = CLAIMED
    case.assignee_id = staff.id
    case.claimed_at = now
    _take_first_contact(case, staff)
    _moved(session, case, "claim", actor, OPEN, now)
    tell_claimed(session, case, staff, now=now)
    _stand_down_alerts(session, case, "claim", staff.name, now)
    return case


def claim_next(
    session: Session,
    actor: Actor,
    *,
    unit_ids: set[int] | None = None,
    categories: CategoryConfig | None = None,
    now: datetime | None = None,
) -> Case | None:
    """Claim the best waiting case of ``actor``'s queues: highest priority, earliest claim
    deadline, oldest. None when nothing is waiting.

    On PostgreSQL the chosen row is locked with FOR UPDATE SKIP LOCKED, so concurrent claimers
    on any number of servers each get a different case. SQLite transactions begin IMMEDIATE
    and so run one at a time; the version check guards both.
    """
    staff = _require_person(actor, "claim cases")
    scope = claim_scope(session, staff, _categories(session, categories), unit_ids=unit_ids)
    now = now or utcnow()
    if session.get_bind().dialect.name == "postgresql":
        return _claim_next_in_one_statement(session, actor, staff, scope, now)
    case = session.scalars(
        select(Case)
        .where(*waiting_filter(scope))
        .order_by(*CLAIM_ORDER)
        .limit(1)
        .execution_options(populate_existing=True)
    ).first()
    if case is None:
        return None
    return _apply_claim(session, case, actor, staff, now)


def _claim_next_in_one_statement(
    session: Session, actor: Actor, staff: Staff, scope: ClaimScope, now: datetime
) -> Case | None:
    """PostgreSQL: pick, lock, claim and write the claim event in one round trip.

    The same change as _apply_claim, as one statement built once: the ORM path costs three
    round trips and about 2 ms of Python per claim, which caps a 2-core server well below
    1,000 claims/s (see benchmarks/queue_bench.py).
    """
    takes_ownership = staff.role in (Role.STAFF, Role.ADMIN)
    statement = _one_statement_claim(scope.categories is not None, takes_ownership)
    params: dict[str, Any] = {
        "unit_ids": scope.unit_ids,
        "staff_id": staff.id,
        "now": now,
        "actor_label": actor.label,
    }
    if scope.categories is not None:
        params["categories"] = scope.categories
    row = session.execute(statement, params).first()
    if row is None:
        return None
    case, *facts, alerts_waiting = row
    # The statement also read what telling the retiree needs; its subqueries could not see
    # the claim event it wrote, hence uncounted=1.
    tell_claimed(session, case, staff, now=now, facts=facts_from(facts, uncounted=1))
    if alerts_waiting:  # read by the statement too: most claims look no further
        _stand_down_alerts(session, case, "claim", staff.name, now)
    return case


@lru_cache(maxsize=4)
def _one_statement_claim(by_category: bool, takes_ownership: bool) -> Any:
    """UPDATE the best open case in scope (locked with SKIP LOCKED) and INSERT its claim
    event, returning the claimed case as an ORM object and the facts storage.notices needs to
    tell the retiree (saving the claim a round trip), and whether alert calls of the case
    wait to be placed (_stand_down_alerts)."""
    cases = Case.__table__
    now = bindparam("now", type_=UTCDateTime())
    staff_id = bindparam("staff_id", type_=Integer())
    conditions = [Case.status == OPEN, Case.unit_id.in_(bindparam("unit_ids", expanding=True))]
    if by_category:
        conditions.append(Case.category.in_(bindparam("categories", expanding=True)))
    picked = (
        select(Case.id)
        .where(*conditions)
        .order_by(*CLAIM_ORDER)
        .limit(1)
        .with_for_update(skip_locked=True)
        .cte("picked")
    )
    owner: Any = cases.c.first_contact_owner_id
    if takes_ownership:
        owner = func.coalesce(cases.c.first_contact_owner_id, staff_id)
    claimed = (
        update(cases)
        .where(cases.c.id == picked.c.id)
        .values(
            status=CLAIMED,
            assignee_id=staff_id,
            claimed_at=now,
            updated_at=now,
            first_contact_owner_id=owner,
            version=cases.c.version + 1,
        )
        .returning(*cases.c)
        .cte("claimed")
    )
    event = timeline.insert_from(
        select(
            claimed.c.id,
            now,
            staff_id,
            bindparam("actor_label", type_=String()),
            literal("claim"),
            literal(OPEN.value),
            literal(CLAIMED.value),
            literal(""),
            literal(""),
            literal({}, CaseEvent.__table__.c.data.type),
        )
    ).cte("claim_event")
    facts = fact_columns(
        case_id=claimed.c.id,
        retiree_id=claimed.c.retiree_id,
        channel=claimed.c.channel,
        filed_at=claimed.c.created_at,
        action=literal("claim"),
    )
    alerts_waiting = (
        exists()
        .where(
            OutboxItem.case_id == claimed.c.id,
            OutboxItem.channel == "voice",
            OutboxItem.status == OutboxStatus.PENDING,
        )
        .label("alerts_waiting")
    )
    columns = [*facts, alerts_waiting]
    return (
        select(Case, *(column(f.name, f.type) for f in columns))
        .from_statement(select(claimed, *columns).add_cte(event))
        .execution_options(populate_existing=True)
    )


def release(
    session: Session,
    case: Case,
    actor: Actor,
    *,
    reason: str = "",
    categories: CategoryConfig | None = None,
    now: datetime | None = None,
) -> Case:
    """Put a claimed case back in its queue (its assignee, or staff of the unit)."""
    _authorize_assignee_or_staff(session, case, actor, "release", _categories(session, categories))
    now = now or utcnow()
    previous = case.assignee_id
    case.status = OPEN
    case.assignee_id = None
    _moved(
        session,
        case,
        "release",
        actor,
        CLAIMED,
        now,
        reason=reason,
        data={"previous_assignee": previous},
    )
    return case


def transfer(
    session: Session,
    case: Case,
    actor: Actor,
    *,
    reason: str,
    to_unit: Unit | None = None,
    to_staff: Staff | None = None,
    categories: CategoryConfig | None = None,
    now: datetime | None = None,
) -> Case:
    """Hand a case to another unit's queue or to a person, with a reason. The first-contact
    owner stays as it was."""
    cats = _categories(session, categories)
    _authorize_staff(session, case, actor, "transfer", cats)
    _require_text(reason, "a transfer needs a reason", "reason")
    if to_unit is None and to_staff is None:
        raise InvalidCaseInput(
            "a transfer needs a unit or a person to go to",
            key="console.errors.required.transfer_to",
        )
    now = now or utcnow()
    before = case.status
    from_unit, from_assignee = case.unit_id, case.assignee_id
    if to_unit is not None:
        case.unit = to_unit
        case.unit_id = to_unit.id
    if to_staff is not None:
        why = may_see_case(session, to_staff, case, cats)
        if why:
            raise NotPermitted(
                f"{to_staff.role.value} #{to_staff.id}", f"take case {case.number}", why
            )
        case.status = CLAIMED
        case.assignee_id = to_staff.id
        case.claimed_at = now
        _take_first_contact(case, to_staff)
    else:
        case.status = OPEN
        case.assignee_id = None
    _moved(
        session,
        case,
        "transfer",
        actor,
        before,
        now,
        reason=reason,
        data={
            "from_unit": from_unit,
            "to_unit": case.unit_id,
            "from_assignee": from_assignee,
            "to_assignee": case.assignee_id,
        },
    )
    return case


def escalate(
    session: Session,
    case: Case,
    actor: Actor,
    *,
    reason: str,
    categories: CategoryConfig | None = None,
    now: datetime | None = None,
) -> Case:
    """Move an unclaimed case up one level (community → station → center) and raise its
    priority; it gets a fresh claim deadline there."""
    cats = _categories(session, categories)
    _authorize_staff(session, case, actor, "escalate", cats)
    parent_id = unit_tree(session).get(case.unit_id)
    if parent_id is None:
        raise IllegalTransition(case.number, "escalate", "at the top level", ())
    now = now or utcnow()
    from_unit, from_priority = case.unit_id, case.priority
    case.unit_id = parent_id
    ceiling = 1 if case.category == "emergency" else cats.priority.ceiling
    case.priority = max(case.priority - 1, ceiling, 1)
    case.escalations += 1
    parent = session.get(Unit, parent_id)
    assert parent is not None
    case.claim_deadline, _, _ = _deadlines(case, cats, now, site_of(session), parent)
    _moved(
        session,
        case,
        "escalate",
        actor,
        OPEN,
        now,
        reason=reason,
        data={
            "from_unit": from_unit,
            "to_unit": parent_id,
            "from_priority": from_priority,
            "to_priority": case.priority,
        },
    )
    session.refresh(case, ["unit"])  # the unit it moved to, for whoever shows it next
    return case


def add_note(
    session: Session,
    case: Case,
    actor: Actor,
    note: str,
    *,
    categories: CategoryConfig | None = None,
    now: datetime | None = None,
) -> CaseEvent:
    """Add a note to the case's timeline (any status): its assignee, staff serving its unit, or
    a volunteer of its unit while nobody else has it (a volunteer's note on a case someone else
    claimed is refused: it is theirs to write)."""
    _require_text(note, "a note cannot be empty", "note")
    if actor.staff is not None and actor.staff.id != case.assignee_id:
        if case.assignee_id is not None:
            _require_staff_role(actor, case, "add a note to someone else's")
        _require_scope(session, actor, case, "add a note to", _categories(session, categories))
    now = now or utcnow()
    return timeline.record(
        session, case, "note", actor=actor, from_status=case.status, now=now, note=note
    )


def resolve(
    session: Session,
    case: Case,
    actor: Actor,
    *,
    outcome: str,
    categories: CategoryConfig | None = None,
    now: datetime | None = None,
) -> Case:
    """The work is done: record the outcome. Its assignee, or staff of the unit. The retiree is
    told, and a follow-up round (回访) starts where storage.follow_ups.wanted says so."""
    _authorize_assignee_or_staff(session, case, actor, "resolve", _categories(session, categories))
    _require_text(outcome, "resolving a case needs its outcome", "outcome")
    now = now or utcnow()
    case.status = RESOLVED
    case.outcome = outcome
    case.resolved_at = now
    _moved(session, case, "resolve", actor, CLAIMED, now, note=outcome)
    tell_resolved(session, case, now=now)
    family.tell_outcome(session, case, now=now)
    if follow_ups.wanted(case):
        follow_ups.start(session, case, now=now)
    return case


def close(
    session: Session,
    case: Case,
    actor: Actor,
    *,
    note: str = "",
    categories: CategoryConfig | None = None,
    now: datetime | None = None,
) -> Case:
    """Close a resolved case (staff only)."""
    _authorize_staff(session, case, actor, "close", _categories(session, categories))
    now = now or utcnow()
    case.status = CLOSED
    case.closed_at = now
    _moved(session, case, "close", actor, RESOLVED, now, note=note)
    return case


def reopen(
    session: Session,
    case: Case,
    actor: Actor,
    *,
    reason: str,
    categories: CategoryConfig | None = None,
    now: datetime | None = None,
) -> Case:
    """Reopen a resolved or closed case. It goes back to its assignee if they are still
    active, otherwise to its unit's queue. An unanswered follow-up round is moot: cancelled."""
    _authorize_staff(session, case, actor, "reopen", _categories(session, categories))
    _require_text(reason, "reopening a case needs a reason", "reason")
    now = now or utcnow()
    before = case.status
    assignee = session.get(Staff, case.assignee_id) if case.assignee_id else None
    if assignee is not None and assignee.active:
        case.status = CLAIMED
    else:
        case.status = OPEN
        case.assignee_id = None
    case.resolved_at = None
    case.closed_at = None
    _moved(session, case, "reopen", actor, before, now, reason=reason)
    follow_ups.cancel_open(session, case)
    return case


def cancel(
    session: Session,
    case: Case,
    actor: Actor,
    *,
    reason: str,
    categories: CategoryConfig | None = None,
    now: datetime | None = None,
) -> Case:
    """Withdraw a case that is not done yet, with the reason (the retiree's or staff's)."""
    _authorize_staff(session, case, actor, "cancel", _categories(session, categories))
    _require_text(reason, "cancelling a case needs a reason", "reason")
    now = now or utcnow()
    before = case.status
    case.status = CANCELLED
    case.cancelled_at = now
    _moved(session, case, "cancel", actor, before, now, reason=reason)
    follow_ups.cancel_open(session, case)  # none is open for a case not resolved: defensive
    _stand_down_alerts(session, case, "cancel", "", now)
    return case


def _stand_down_alerts(session: Session, case: Case, why: str, who: str, now: datetime) -> None:
    """An emergency taken (``why`` "claim") or withdrawn ("cancel"): its alert calls not placed
    yet are called off (storage/alert_chain.py)."""
    alert_chain.stand_down_for(session, case, why, who, now)


def take_alert(
    session: Session, key: str, call_sid: str, *, now: datetime, catalogs: Catalogs
) -> alert_chain.Pressed:
    """Somebody pressed 1 on the alert call ``key`` (storage.alert_chain.acknowledge). A staff
    member who did owns the case from now on, as if they had claimed it in the console (the
    case leaves the queue, the retiree is told); family who press 1 do not: the case stays in
    the staff's queue. Nothing is claimed when the case is not open any more."""
    pressed = alert_chain.acknowledge(session, key, call_sid, now=now, catalogs=catalogs)
    case = session.get(Case, pressed.case_id) if pressed.case_id is not None else None
    if pressed.staff is None or case is None or case.status != OPEN:
        return pressed
    try:
        with session.begin_nested():
            claim(session, case, Actor.person(pressed.staff), now=now)
    except CaseError as exc:  # out of their units, or claimed this instant
        log.warning("emergency_call_claim_failed", case=case.number, error=str(exc)[:200])
    return pressed


# -- case numbers: people read them aloud and type them: YEAR-NNNNNN, unique, never reused ----


def next_case_number(session: Session, year: int) -> str:
    """Take the next number of ``year``. The counter row stays locked until the caller commits,
    so two transactions never get the same number; a rolled-back number is simply skipped."""
    table = CaseNumberCounter.__table__
    insert = dialect_insert(session)
    session.execute(insert(table).values(year=year, last=0).on_conflict_do_nothing())
    last = session.execute(
        update(table)
        .where(table.c.year == year)
        .values(last=table.c.last + 1)
        .returning(table.c.last)
    ).scalar_one()
    return format_case_number(year, last)


def format_case_number(year: int, sequence: int) -> str:
    return f"{year}-{sequence:06d}"


def get_case(session: Session, number: str) -> Case:
    case = session.scalars(select(Case).where(Case.number == number)).first()
    if case is None:
        raise NotFound(f"no case numbered {number}")
    return case
