"""Home visits (上门走访): recording one, and the two lists of visits due in each community.

The service promise: a home visit within five working days of registration, then one visit
every quarter. The lists say it this way:

- **First visit due**: a registered retiree (status pending or active, registration date known)
  who has never been visited. Due on the registration date + 5 working days, counted with China's
  public holidays and make-up working days (storage/deadlines.py); overdue once that day has
  passed. Where the holiday calendar does not reach yet (a new year before chinesecalendar or
  config/working_days.yml has it), the days are counted Monday to Friday and the date is shown
  as an estimate, with a notice saying what to add: a date that may be a holiday off is better
  than none, and a late visit is still flagged.
- **Quarterly visit due**: an active retiree already visited once (or registered before dates
  were kept) with no visit in the current calendar quarter (January–March, April–June, ...).
  Due by the quarter's last day; overdue when the previous quarter passed without a visit too
  (the last visit is older than the previous quarter's first day, or there is none).

Inactive retirees (deceased, moved away) are in neither list; retirees without a community are
registrations to verify and are found on the registry page instead.

On PostgreSQL the lists rely on ``ix_retirees_community_status`` and
``ix_visits_retiree_visited`` (retiree_id, visited_on), from which the last visit of each retiree
is read without the table; the counts per community read the visits of the communities in view
once (one GROUP BY).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import NamedTuple

from sqlalchemy import ColumnElement, and_, case, func, or_, select
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from config.working_days import WorkingDays
from console.web import form_text, parse_day
from storage.audit import record_access
from storage.deadlines import CalendarNotCovered, add_working_days
from storage.models import Retiree, RetireeStatus, Staff, Visit
from storage.site import site_of

FIRST_VISIT_WORKING_DAYS = 5
LIST_LIMIT = 200
NOTES_LIMIT = 4000
EARLIEST_VISIT = date(2000, 1, 1)


# --------------------------------------------------------------------------- dates


class Due(NamedTuple):
    day: date
    estimated: bool  # counted Monday to Friday: the holiday calendar does not cover it yet


def first_visit_due(registered_on: date, listed: WorkingDays | None = None) -> Due:
    """Registration + 5 working days (an estimate where the holiday calendar and the days
    ``listed`` by the deployment end)."""
    days = FIRST_VISIT_WORKING_DAYS
    try:
        return Due(add_working_days(registered_on, days, listed=listed), False)
    except CalendarNotCovered:
        return Due(add_working_days(registered_on, days, estimate=True, listed=listed), True)


def quarter_start(day: date) -> date:
    return date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)


def quarter_end(day: date) -> date:
    start = quarter_start(day)
    following = date(start.year + (start.month == 10), (start.month + 2) % 12 + 1, 1)
    return following - timedelta(days=1)


def previous_quarter_start(day: date) -> date:
    return quarter_start(quarter_start(day) - timedelta(days=1))


def overdue_cutoff(today: date, listed: WorkingDays | None = None) -> Due:
    """The latest registration date whose first visit was due before ``today`` (due dates only
    grow with the registration date); estimated when a due date it looked at was."""
    day = today - timedelta(days=FIRST_VISIT_WORKING_DAYS)
    estimated = False
    while True:
        due = first_visit_due(day, listed)
        estimated = estimated or due.estimated
        if due.day < today:
            return Due(day, estimated)
        day -= timedelta(days=1)


@dataclass(frozen=True)
class Period:
    """The dates the lists are computed for."""

    today: date
    quarter_start: date
    quarter_end: date
    previous_start: date
    cutoff: date  # registered on or before: first visit overdue
    cutoff_estimated: bool = False
    working_days: WorkingDays | None = None  # the deployment's (config/working_days.yml)

    @classmethod
    def on(cls, today: date, listed: WorkingDays | None = None) -> Period:
        cutoff = overdue_cutoff(today, listed)
        return cls(
            today=today,
            quarter_start=quarter_start(today),
            quarter_end=quarter_end(today),
            previous_start=previous_quarter_start(today),
            cutoff=cutoff.day,
            cutoff_estimated=cutoff.estimated,
            working_days=listed,
        )


# --------------------------------------------------------------------------- recording


@dataclass
class VisitForm:
    visited_on: str = ""
    notes: str = ""
    errors: dict[str, str] = field(default_factory=dict)  # field -> catalog key

    @classmethod
    def parse(cls, form: FormData) -> VisitForm:
        return cls(visited_on=form_text(form, "visited_on"), notes=form_text(form, "notes"))

    def check(self, today: date) -> date | None:
        """The visit's date, or None with the problems in ``errors``."""
        try:
            day = parse_day(self.visited_on)
        except ValueError:
            self.errors["visited_on"] = "console.registry.errors.bad_visit_date"
            day = None
        if day is not None and not EARLIEST_VISIT <= day <= today:
            self.errors["visited_on"] = "console.registry.errors.bad_visit_date"
        if len(self.notes) > NOTES_LIMIT:
            self.errors["notes"] = "console.registry.errors.notes_too_long"
        return None if self.errors else day


def record_visit(
    session: Session, staff: Staff, retiree: Retiree, visited_on: date, notes: str
) -> Visit:
    """A home visit by ``staff``; written to the audit log (without the notes)."""
    visit = Visit(retiree=retiree, visited_on=visited_on, staff_id=staff.id, notes=notes)
    session.add(visit)
    session.flush()
    record_access(
        session,
        actor=staff,
        actor_label=staff.role.value,
        action="record_visit",
        subject_type="retiree",
        subject_id=retiree.id,
        detail={"visit": visit.id},
    )
    return visit


# --------------------------------------------------------------------------- the lists


def _due_conditions(
    last: ColumnElement[date], period: Period
) -> tuple[ColumnElement[bool], ColumnElement[bool]]:
    """(first visit due, quarterly visit due) given ``last``, the retiree's last visit date."""
    first = and_(
        last.is_(None),
        Retiree.registered_on.is_not(None),
        Retiree.status.in_([RetireeStatus.PENDING, RetireeStatus.ACTIVE]),
    )
    quarterly = and_(
        Retiree.status == RetireeStatus.ACTIVE,
        or_(
            last < period.quarter_start,
            and_(last.is_(None), Retiree.registered_on.is_(None)),
        ),
    )
    return first, quarterly


def _overdue_conditions(
    last: ColumnElement[date], period: Period
) -> tuple[ColumnElement[bool], ColumnElement[bool]]:
    first_overdue = Retiree.registered_on <= period.cutoff
    quarterly_overdue = or_(last.is_(None), last < period.previous_start)
    return first_overdue, quarterly_overdue


@dataclass(frozen=True)
class CommunityCounts:
    community_id: int
    name: str
    first_due: int = 0
    first_overdue: int = 0
    quarterly_due: int = 0
    quarterly_overdue: int = 0


def count_due(
    session: Session, communities: list[tuple[int, str]], period: Period
) -> list[CommunityCounts]:
    """Both lists' sizes for each community, in one query."""
    if not communities:
        return []
    in_scope = [cid for cid, _ in communities]
    last_visits = (  # the visits of these communities' retirees only
        select(Visit.retiree_id, func.max(Visit.visited_on).label("last"))
        .join(Retiree, Retiree.id == Visit.retiree_id)
        .where(Retiree.community_id.in_(in_scope))
        .group_by(Visit.retiree_id)
        .subquery()
    )
    last = last_visits.c.last
    first, quarterly = _due_conditions(last, period)
    first_overdue, quarterly_overdue = _overdue_conditions(last, period)

    def count_if(condition: ColumnElement[bool]) -> ColumnElement[int]:
        return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

    query = (
        select(
            Retiree.community_id,
            count_if(first),
            count_if(and_(first, first_overdue)),
            count_if(quarterly),
            count_if(and_(quarterly, quarterly_overdue)),
        )
        .select_from(Retiree)
        .outerjoin(last_visits, last_visits.c.retiree_id == Retiree.id)
        .where(
            Retiree.community_id.in_(in_scope),
            Retiree.status != RetireeStatus.INACTIVE,
        )
        .group_by(Retiree.community_id)
    )
    counts = {row[0]: tuple(int(n) for n in row[1:]) for row in session.execute(query)}
    return [CommunityCounts(cid, name, *counts.get(cid, (0, 0, 0, 0))) for cid, name in communities]


@dataclass(frozen=True)
class FirstVisitRow:
    retiree_id: int
    name: str
    status: RetireeStatus
    registered_on: date
    due: date
    overdue: bool
    estimated: bool = False  # the due date is counted Monday to Friday (see the module)


@dataclass(frozen=True)
class QuarterlyRow:
    retiree_id: int
    name: str
    last_visit: date | None
    overdue: bool


def _last_visit_of_each() -> ColumnElement[date]:
    """The retiree's last visit, read per row (a community's retirees only)."""
    return (
        select(func.max(Visit.visited_on))
        .where(Visit.retiree_id == Retiree.id)
        .correlate(Retiree)
        .scalar_subquery()
    )


def first_visits_due(session: Session, community_id: int, period: Period) -> list[FirstVisitRow]:
    """Never visited, oldest registration first."""
    last = _last_visit_of_each()
    first, _ = _due_conditions(last, period)
    query = (
        select(Retiree.id, Retiree.name, Retiree.status, Retiree.registered_on)
        .where(Retiree.community_id == community_id, first)
        .order_by(Retiree.registered_on, Retiree.id)
        .limit(LIST_LIMIT)
    )
    rows = []
    for rid, name, status, registered_on in session.execute(query):
        due = first_visit_due(registered_on, period.working_days)
        overdue = due.day < period.today
        rows.append(
            FirstVisitRow(rid, name, status, registered_on, due.day, overdue, due.estimated)
        )
    return rows


def quarterly_visits_due(session: Session, community_id: int, period: Period) -> list[QuarterlyRow]:
    """Not visited this quarter, the longest unvisited first."""
    last = _last_visit_of_each()
    _, quarterly = _due_conditions(last, period)
    _, overdue = _overdue_conditions(last, period)
    query = (
        select(Retiree.id, Retiree.name, last.label("last_visit"), overdue.label("overdue"))
        .where(Retiree.community_id == community_id, quarterly)
        .order_by(last.asc().nulls_first(), Retiree.id)
        .limit(LIST_LIMIT)
    )
    return [
        QuarterlyRow(rid, name, last_visit, bool(late))
        for rid, name, last_visit, late in session.execute(query)
    ]


@dataclass(frozen=True)
class VisitStatus:
    """One retiree's place in the two lists, for the profile page."""

    first_due: date | None = None  # never visited: the first visit is due on this day
    first_overdue: bool = False
    first_due_estimated: bool = False
    quarter_end: date | None = None  # not visited this quarter: due by this day
    quarterly_overdue: bool = False
    last_visit: date | None = None


def visit_status(retiree: Retiree, today: date, listed: WorkingDays | None = None) -> VisitStatus:
    """The same rules as the lists, for one retiree whose visits are loaded."""
    last = max((v.visited_on for v in retiree.visits), default=None)
    if retiree.status == RetireeStatus.INACTIVE:
        return VisitStatus(last_visit=last)
    if last is None and retiree.registered_on is not None:
        due = first_visit_due(retiree.registered_on, listed)
        return VisitStatus(
            first_due=due.day, first_overdue=due.day < today, first_due_estimated=due.estimated
        )
    if retiree.status == RetireeStatus.ACTIVE and (last is None or last < quarter_start(today)):
        overdue = last is None or last < previous_quarter_start(today)
        return VisitStatus(
            quarter_end=quarter_end(today), quarterly_overdue=overdue, last_visit=last
        )
    return VisitStatus(last_visit=last)


@dataclass(frozen=True)
class VisitsPage:
    period: Period
    counts: list[CommunityCounts]
    selected: CommunityCounts | None
    first: list[FirstVisitRow]
    quarterly: list[QuarterlyRow]

    @property
    def calendar_missing(self) -> bool:
        """The holiday calendar does not cover today's or a listed registration's due date, so
        some of the page's dates are estimates."""
        return self.period.cutoff_estimated or any(row.estimated for row in self.first)


def load_visits_page(
    session: Session,
    communities: list[tuple[int, str]],
    community_id: int | None,
    today: date,
) -> VisitsPage:
    """The counts of every community given; the two lists of ``community_id`` (or of the only
    community, when there is one)."""
    period = Period.on(today, site_of(session).working_days)
    counts = count_due(session, communities, period)
    if community_id is None and len(counts) == 1:
        community_id = counts[0].community_id
    selected = next((c for c in counts if c.community_id == community_id), None)
    if selected is None:
        return VisitsPage(period, counts, None, [], [])
    return VisitsPage(
        period,
        counts,
        selected,
        first_visits_due(session, selected.community_id, period),
        quarterly_visits_due(session, selected.community_id, period),
    )
