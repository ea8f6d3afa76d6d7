"""The figures of the Reports page: the cases a unit and the units below it filed in a period, how
fast they were claimed and resolved, deadlines met, follow-up answers and staff load.

Everything is counted in the database (GROUP BY, percentiles in SQL): a quarter of a large centre
is a few hundred grouped rows, never its cases. Reports hold counts only, no personal data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Integer, and_, case, cast, distinct, func, or_, select
from sqlalchemy.orm import Session

from storage import campaigns
from storage.check_ins import plan_of
from storage.models import (
    Campaign,
    CampaignKind,
    CampaignTarget,
    CarePlan,
    Case,
    CaseStatus,
    CheckIn,
    CheckInStatus,
    FollowUp,
    FollowUpStatus,
    Retiree,
    RetireeStatus,
    Role,
    Staff,
    Unit,
    UnitLevel,
    staff_units,
)
from storage.permissions import descendants_and_self, unit_tree
from storage.site import site_of

# Staffing standards from the source documents (see /work/shared/domain.md):
# - the oil-field retiree centre staffs "basically 1 : 50" (one staff member per 50 retirees);
#   compared with every paid worker of the unit and the units below it;
# - Urumqi: each community has 1 full-time worker per 500 retirees and 1 part-time worker per
#   further 500, so a community of N retirees needs ceil(N / 500) workers; compared per community.
RETIREES_PER_STAFF = 50
RETIREES_PER_COMMUNITY_WORKER = 500
# Paid workers; volunteers are counted and shown, but not against the standards.
WORKER_ROLES = (Role.STAFF, Role.ADMIN)
SERVED = (RetireeStatus.ACTIVE, RetireeStatus.PENDING)

PERCENTILES = (0.5, 0.9)
STATUS_ORDER = tuple(CaseStatus)
STILL_OPEN = (CaseStatus.OPEN, CaseStatus.CLAIMED)
FOLLOW_UP_RESULTS = (
    "done_satisfied",
    "done_not_satisfied",
    "not_done",
    "answered_incomplete",  # answered, but without saying done or not (or satisfied or not)
    "unanswered",  # every attempt went unanswered
    "waiting",  # still to be asked, or asked and awaiting the answer
)


@dataclass(frozen=True)
class Period:
    """From ``first`` to ``last``, both included, in the centre's local dates."""

    first: date
    last: date

    def bounds(self, zone: ZoneInfo) -> tuple[datetime, datetime]:
        """[start, end) in UTC: local midnight of ``first`` to local midnight after ``last``."""
        start = datetime.combine(self.first, time(), zone)
        end = datetime.combine(self.last + timedelta(days=1), time(), zone)
        return start.astimezone(UTC), end.astimezone(UTC)


def quarter_of(day: date) -> tuple[int, int]:
    return day.year, (day.month - 1) // 3 + 1


def quarter_period(year: int, quarter: int) -> Period:
    first = date(year, 3 * quarter - 2, 1)
    after = date(year + 1, 1, 1) if quarter == 4 else date(year, 3 * quarter + 1, 1)
    return Period(first, after - timedelta(days=1))


@dataclass(frozen=True)
class UnitInfo:
    id: int
    code: str
    level: UnitLevel
    name_zh: str
    name_en: str

    def name(self, language: str) -> str:
        return self.name_en if language == "en" else self.name_zh


@dataclass(frozen=True)
class Timing:
    """How long something took, in minutes (None when nothing was counted)."""

    count: int
    median: float | None
    p90: float | None


@dataclass(frozen=True)
class Deadlines:
    """Met and missed deadlines; ``pending``: not done yet and not yet due (not in the share)."""

    met: int = 0
    missed: int = 0
    pending: int = 0

    @property
    def due(self) -> int:
        return self.met + self.missed

    @property
    def share(self) -> float | None:
        return self.met / self.due if self.due else None


@dataclass(frozen=True)
class UnitLoad:
    """One community: retirees served and the people of that community unit."""

    unit: UnitInfo
    retirees: int
    staff: int
    volunteers: int

    @property
    def needed(self) -> int:
        return math.ceil(self.retirees / RETIREES_PER_COMMUNITY_WORKER)

    @property
    def meets(self) -> bool:
        return self.staff >= self.needed


@dataclass(frozen=True)
class StaffLoad:
    """Retirees served and the people of the whole subtree (each person counted once)."""

    retirees: int
    staff: int
    volunteers: int
    communities: list[UnitLoad]

    @property
    def per_staff(self) -> float | None:
        return self.retirees / self.staff if self.staff else None

    @property
    def needed(self) -> int:
        return math.ceil(self.retirees / RETIREES_PER_STAFF)

    @property
    def meets(self) -> bool:
        return self.staff >= self.needed

    @property
    def communities_meeting(self) -> int:
        return sum(1 for c in self.communities if c.meets)


CHECK_IN_RESULTS = ("well", "needs_help", "not_reached", "waiting")
_CHECK_IN_RESULT = {
    CheckInStatus.WELL: "well",
    CheckInStatus.NEEDS_HELP: "needs_help",
    CheckInStatus.HELPED: "needs_help",
    CheckInStatus.VISIT: "not_reached",
    CheckInStatus.SCHEDULED: "waiting",
    CheckInStatus.ASKED: "waiting",
}


@dataclass(frozen=True)
class CheckIns:
    """Proactive care in the period (storage/check_ins.py), for the people of the subtree's
    communities: how the check-ins went, who has a plan, and how many of them were checked on."""

    results: list[tuple[str, int]]  # CHECK_IN_RESULTS, cancelled ones left out
    planned: int  # active people whose plan (their own or the default) has check-ins
    covered: int  # of them, checked on at least once in the period
    asked: int  # check-ins whose question was put
    answered: int  # of those, answered (1 or 2)

    @property
    def total(self) -> int:
        return sum(n for _, n in self.results)


@dataclass(frozen=True)
class Campaigns:
    """The campaigns started in the period (storage/campaigns.py), counting the people of the
    subtree's communities: per kind, what was sent, delivered, answered, and the visits made."""

    by_kind: list[tuple[str, campaigns.Counts]]  # greeting, notice, visits: those there were
    started: int


@dataclass(frozen=True)
class Report:
    unit: UnitInfo
    period: Period
    now: datetime
    total: int
    by_category: list[tuple[str, int]]
    by_status: list[tuple[str, int]]
    by_channel: list[tuple[str, int]]
    claim_time: Timing
    resolve_time: Timing  # created_at → resolved_at (the work done), not the later closing
    claim_deadlines: Deadlines
    resolve_deadlines: Deadlines
    follow_ups: list[tuple[str, int]]
    load: StaffLoad
    check_ins: CheckIns
    campaigns: Campaigns

    @property
    def follow_ups_total(self) -> int:
        return sum(n for _, n in self.follow_ups)


def build_report(
    session: Session, unit: UnitInfo, period: Period, zone: ZoneInfo, now: datetime
) -> Report:
    """The figures for ``unit`` and every unit below it, cases counted by the day they were
    filed; deadlines still running at ``now`` are pending, past it missed."""
    subtree = Subtree.of(session, unit.id)
    start, end = period.bounds(zone)
    filed = [subtree.holds(Case.unit_id), Case.created_at >= start, Case.created_at < end]
    groups = _case_groups(session, filed, now)
    claim_time, resolve_time = timings(
        session, filed, ((Case.created_at, Case.claimed_at), (Case.created_at, Case.resolved_at))
    )
    return Report(
        unit=unit,
        period=period,
        now=now,
        total=sum(g["n"] for g in groups),
        by_category=_tally(groups, "category"),
        by_status=_tally(groups, "status", order=[s.value for s in STATUS_ORDER]),
        by_channel=_tally(groups, "channel"),
        claim_time=claim_time,
        resolve_time=resolve_time,
        claim_deadlines=_deadlines(groups, "claim"),
        resolve_deadlines=_deadlines(groups, "resolve"),
        follow_ups=_follow_ups(session, filed),
        load=_staff_load(session, subtree),
        check_ins=_check_ins(session, subtree, period),
        campaigns=_campaigns(session, subtree, start, end),
    )


@dataclass(frozen=True)
class Subtree:
    """A unit and the units below it; ``whole``: that is every unit of the centre."""

    ids: list[int]
    whole: bool

    @classmethod
    def of(cls, session: Session, unit_id: int) -> Subtree:
        tree = unit_tree(session)
        ids = descendants_and_self(tree, {unit_id})
        return cls(sorted(ids), len(ids) == len(tree))

    def holds(self, column: Any) -> ColumnElement[bool]:
        """``column`` names a unit of the subtree. For the whole centre no list of ids: the
        planners then scan instead of probing an index once per unit (ten times slower on
        SQLite for a centre of 200 communities)."""
        return column.is_not(None) if self.whole else column.in_(self.ids)


def _case_groups(
    session: Session, filed: list[ColumnElement[bool]], now: datetime
) -> list[dict[str, Any]]:
    """Cases grouped by category, status and channel, with their deadline outcomes: a deadline
    is met when the step was done by then, missed when done later or still undone past it."""
    claim, resolve = Case.claim_deadline, Case.resolve_deadline
    waiting = Case.status == CaseStatus.OPEN
    running = Case.status.in_(STILL_OPEN)
    outcomes = {
        "claim_met": and_(Case.claimed_at.is_not(None), Case.claimed_at <= claim),
        "claim_missed": or_(
            Case.claimed_at > claim,
            and_(Case.claimed_at.is_(None), waiting, claim < now),
        ),
        "claim_pending": and_(Case.claimed_at.is_(None), waiting, claim >= now),
        "resolve_met": and_(Case.resolved_at.is_not(None), Case.resolved_at <= resolve),
        "resolve_missed": or_(
            Case.resolved_at > resolve,
            and_(Case.resolved_at.is_(None), running, resolve < now),
        ),
        "resolve_pending": and_(Case.resolved_at.is_(None), running, resolve >= now),
    }
    columns = [func.sum(case((cond, 1), else_=0)).label(name) for name, cond in outcomes.items()]
    query = (
        select(Case.category, Case.status, Case.channel, func.count().label("n"), *columns)
        .where(*filed)
        .group_by(Case.category, Case.status, Case.channel)
    )
    rows = session.execute(query).mappings().all()
    return [{**row, "status": CaseStatus(row["status"]).value} for row in rows]


def _tally(
    groups: list[dict[str, Any]], key: str, order: list[str] | None = None
) -> list[tuple[str, int]]:
    """Counts by one column: in ``order`` (every value, zeros too) or largest first."""
    counts: dict[str, int] = {}
    for group in groups:
        counts[group[key]] = counts.get(group[key], 0) + group["n"]
    if order is not None:
        return [(value, counts.get(value, 0)) for value in order]
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def _deadlines(groups: list[dict[str, Any]], step: str) -> Deadlines:
    return Deadlines(
        met=sum(int(g[f"{step}_met"] or 0) for g in groups),
        missed=sum(int(g[f"{step}_missed"] or 0) for g in groups),
        pending=sum(int(g[f"{step}_pending"] or 0) for g in groups),
    )


def timings(
    session: Session, conditions: list[ColumnElement[bool]], spans: tuple[tuple[Any, Any], ...]
) -> list[Timing]:
    """Median and 90th percentile in minutes of each span (start, end) over the rows where
    ``end`` is set, computed in the database. The one place where the two databases differ:
    PostgreSQL has percentile_cont (all spans in one scan); SQLite gets the same interpolation
    from the rows next to each wanted rank, one query per span."""
    if session.get_bind().dialect.name == "postgresql":
        columns: list[Any] = []
        for start, end in spans:  # percentile_cont and count skip the rows without ``end``
            # Ranking the intervals themselves sorts twice as fast as their numeric seconds.
            columns.append(func.count(end))
            columns += [
                func.extract("epoch", func.percentile_cont(p).within_group(end - start))
                for p in PERCENTILES
            ]
        row = list(session.execute(select(*columns).where(*conditions)).one())
        width = 1 + len(PERCENTILES)
        found = [(int(row[i]), row[i + 1 : i + width]) for i in range(0, len(row), width)]
    else:
        found = [
            _ranked_percentiles(
                session, (func.julianday(end) - func.julianday(start)) * 86400.0, conditions
            )
            for start, end in spans
        ]
    return [
        Timing(count, *(None if v is None else float(v) / 60 for v in values))
        for count, values in found
    ]


def _ranked_percentiles(
    session: Session, value: ColumnElement[Any], where: list[ColumnElement[bool]]
) -> tuple[int, list[float | None]]:
    """percentile_cont by hand: rank the values in SQL, fetch only the two rows around each
    wanted rank (1 + (n − 1)·p) and interpolate between them."""
    ranked = (
        select(
            value.label("v"),
            func.row_number().over(order_by=value).label("rn"),
            func.count().over().label("n"),
        )
        .where(*where, value.is_not(None))
        .subquery()
    )
    picks = []
    for p in PERCENTILES:
        below = cast((ranked.c.n - 1) * p, Integer) + 1
        picks += [ranked.c.rn == below, ranked.c.rn == below + 1]
    rows = session.execute(select(ranked.c.rn, ranked.c.n, ranked.c.v).where(or_(*picks))).all()
    if not rows:
        return 0, [None for _ in PERCENTILES]
    n = int(rows[0].n)
    at = {int(r.rn): float(r.v) for r in rows}
    values: list[float | None] = []
    for p in PERCENTILES:
        rank = (n - 1) * p
        below = int(rank)
        low = at[below + 1]
        values.append(low + (rank - below) * (at.get(below + 2, low) - low))
    return n, values


def _follow_ups(session: Session, filed: list[ColumnElement[bool]]) -> list[tuple[str, int]]:
    """What the follow-ups of the period's cases found, one row per resolution asked about."""
    rows = session.execute(
        select(FollowUp.status, FollowUp.done, FollowUp.satisfied, func.count())
        .join(Case, FollowUp.case_id == Case.id)
        .where(*filed, FollowUp.status != FollowUpStatus.CANCELLED)
        .group_by(FollowUp.status, FollowUp.done, FollowUp.satisfied)
    ).all()
    counts = dict.fromkeys(FOLLOW_UP_RESULTS, 0)
    for status, done, satisfied, n in rows:
        counts[follow_up_result(FollowUpStatus(status), done, satisfied)] += n
    return list(counts.items())


def follow_up_result(status: FollowUpStatus, done: bool | None, satisfied: bool | None) -> str:
    if status == FollowUpStatus.UNANSWERED:
        return "unanswered"
    if status != FollowUpStatus.ANSWERED:
        return "waiting"
    if done is False:
        return "not_done"
    if done is True and satisfied is True:
        return "done_satisfied"
    if done is True and satisfied is False:
        return "done_not_satisfied"
    return "answered_incomplete"


def _check_ins(session: Session, subtree: Subtree, period: Period) -> CheckIns:
    in_period = [
        CheckIn.day >= period.first,
        CheckIn.day <= period.last,
        subtree.holds(Retiree.community_id),
    ]
    counts = dict.fromkeys(CHECK_IN_RESULTS, 0)
    asked = answered = 0
    was_asked = func.sum(case((CheckIn.attempts > 0, 1), else_=0))
    for status, n, n_asked in session.execute(
        select(CheckIn.status, func.count(), was_asked)
        .join(Retiree, Retiree.id == CheckIn.retiree_id)
        .where(*in_period)
        .group_by(CheckIn.status)
    ):
        result = _CHECK_IN_RESULT.get(CheckInStatus(status))
        if result is None:
            continue  # cancelled: the plan was switched off, or the person left
        counts[result] += n
        asked += int(n_asked or 0)
        answered += int(n_asked or 0) if result in ("well", "needs_help") else 0
    checked = set(
        session.scalars(
            select(CheckIn.retiree_id)
            .join(Retiree, Retiree.id == CheckIn.retiree_id)
            .where(*in_period, CheckIn.status != CheckInStatus.CANCELLED)
            .distinct()
        )
    )
    care = site_of(session).care
    planned = covered = 0
    for retiree, row in session.execute(
        select(Retiree, CarePlan)
        .outerjoin(CarePlan, CarePlan.retiree_id == Retiree.id)
        .where(Retiree.status == RetireeStatus.ACTIVE, subtree.holds(Retiree.community_id))
    ):
        if plan_of(retiree, row, care, period.last) is not None:
            planned += 1
            covered += retiree.id in checked
    return CheckIns(list(counts.items()), planned, covered, asked, answered)


def _campaigns(session: Session, subtree: Subtree, start: datetime, end: datetime) -> Campaigns:
    started = (
        Campaign.created_at >= start,
        Campaign.created_at < end,
        subtree.holds(Retiree.community_id),
    )
    by_kind = campaigns.tally(session, Campaign.kind, *started)
    count = session.scalar(
        select(func.count(distinct(Campaign.id)))
        .select_from(Campaign)
        .join(CampaignTarget, CampaignTarget.campaign_id == Campaign.id)
        .join(Retiree, Retiree.id == CampaignTarget.retiree_id)
        .where(*started)
    )
    kinds = [(k.value, by_kind[k]) for k in CampaignKind if k in by_kind]
    return Campaigns(kinds, int(count or 0))


def _staff_load(session: Session, subtree: Subtree) -> StaffLoad:
    in_units = subtree.holds(staff_units.c.unit_id)
    people = (
        select(staff_units.c.unit_id, Staff.role, func.count())
        .join(Staff, Staff.id == staff_units.c.staff_id)
        .where(in_units, Staff.active.is_(True))
        .group_by(staff_units.c.unit_id, Staff.role)
    )
    per_unit: dict[tuple[int, bool], int] = {}
    for unit_id, role, n in session.execute(people):
        key = (unit_id, Role(role) in WORKER_ROLES)
        per_unit[key] = per_unit.get(key, 0) + n
    # A person of two units is one person in the totals.
    everyone = (
        select(Staff.role, func.count(distinct(Staff.id)))
        .join(staff_units, Staff.id == staff_units.c.staff_id)
        .where(in_units, Staff.active.is_(True))
        .group_by(Staff.role)
    )
    totals = {Role(role): n for role, n in session.execute(everyone)}
    retirees = dict(
        session.execute(
            select(Retiree.community_id, func.count())
            .where(subtree.holds(Retiree.community_id), Retiree.status.in_(SERVED))
            .group_by(Retiree.community_id)
        ).all()
    )
    communities = [
        UnitLoad(
            u, retirees.get(u.id, 0), per_unit.get((u.id, True), 0), per_unit.get((u.id, False), 0)
        )
        for u in units(session, subtree.ids)
        if u.level == UnitLevel.COMMUNITY
    ]
    return StaffLoad(
        retirees=sum(retirees.values()),
        staff=sum(totals.get(role, 0) for role in WORKER_ROLES),
        volunteers=totals.get(Role.VOLUNTEER, 0),
        communities=communities,
    )


def units(session: Session, ids: list[int] | None = None) -> list[UnitInfo]:
    """Units (all, or those of ``ids``) by level and code, as the reports name them."""
    query = select(Unit.id, Unit.code, Unit.level, Unit.name_zh, Unit.name_en)
    if ids is not None:
        query = query.where(Unit.id.in_(ids))
    found = [
        UnitInfo(row.id, row.code, UnitLevel(row.level), row.name_zh, row.name_en)
        for row in session.execute(query)
    ]
    levels = list(UnitLevel)
    return sorted(found, key=lambda u: (levels.index(u.level), u.code))
