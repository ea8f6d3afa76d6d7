"""The registry of retirees in the console: who may open whom, the search list and the profile.

Staff and admins only: volunteers see a retiree only on a case they took (console/case_view.py).
An admin sees every retiree. Staff see the retirees of the communities under their units, and a
retiree with no community yet (a registration whose address was not recognised) when one of that
retiree's cases is in a unit they serve: staff verify such registrations and set the community.

The list shows what it takes to pick the right person (name, community, age band, markers),
never a phone number or an address; those are on the profile, and every showing of a profile is
written to the audit log.

On PostgreSQL with 100,000 retirees the list relies on: ``ix_retirees_community_status`` (scope and
the community filter; ``IS NULL`` for registrations without a community), the unique index on
``retiree_phones.number`` (phone search), ``ix_cases_retiree_id`` and ``ix_cases_unit_id`` (the
no-community rule), and a LIMIT with one COUNT per page. A name search is a ``LIKE '%..%'`` scan
of the table (no trigram index exists).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from urllib.parse import urlencode

from sqlalchemy import ColumnElement, and_, case, exists, false, func, or_, select
from sqlalchemy.orm import Session, joinedload, load_only, selectinload

from console.case_view import age_band
from storage.audit import viewed_retiree
from storage.models import (
    Case,
    Hardship,
    Retiree,
    RetireePhone,
    RetireeStatus,
    Role,
    SelfCare,
    Staff,
    Unit,
    UnitLevel,
    Visit,
)
from storage.permissions import units_in_scope
from storage.phones import InvalidPhoneNumber
from storage.priority import vulnerability_factors
from storage.registry_format import to_e164

PAGE_SIZE = 50
RECENT_CASES = 10
# What a list row needs (the notes, the largest columns, stay on the profile).
LIST_COLUMNS = (
    Retiree.name,
    Retiree.birth_date,
    Retiree.community_id,
    Retiree.lives_alone,
    Retiree.self_care,
    Retiree.hardship,
    Retiree.status,
)


class RegistryRefused(Exception):
    """A registry page or form refused: shown as the error page with ``status``."""

    def __init__(self, key: str, status: int = 403) -> None:
        self.key, self.status = key, status
        super().__init__(key)


def require_registry_role(staff: Staff) -> None:
    """Volunteers never see the registry: personal data beyond their own cases is not theirs."""
    if staff.role == Role.VOLUNTEER:
        raise RegistryRefused("console.registry.errors.staff_only")


# --------------------------------------------------------------------------- scope


@dataclass(frozen=True)
class Scope:
    """The units a person serves (None: the whole centre)."""

    unit_ids: frozenset[int] | None

    @property
    def everything(self) -> bool:
        return self.unit_ids is None

    def condition(self) -> ColumnElement[bool] | None:
        """The retirees in scope, as a WHERE condition (None: no condition)."""
        if self.unit_ids is None:
            return None
        units = sorted(self.unit_ids)
        if not units:
            return false()
        has_case_here = exists(
            select(Case.id).where(Case.retiree_id == Retiree.id, Case.unit_id.in_(units))
        )
        return or_(
            Retiree.community_id.in_(units),
            and_(Retiree.community_id.is_(None), has_case_here),
        )

    def covers(self, community_id: int | None) -> bool:
        return self.unit_ids is None or (community_id is not None and community_id in self.unit_ids)


def registry_scope(session: Session, staff: Staff) -> Scope:
    if staff.role == Role.ADMIN:
        return Scope(None)
    return Scope(frozenset(units_in_scope(session, staff)))


def communities_in_scope(session: Session, scope: Scope, lang: str) -> list[tuple[int, str]]:
    """(id, name) of the communities a person may choose, by code."""
    query = select(Unit).where(Unit.level == UnitLevel.COMMUNITY).order_by(Unit.code)
    return [(u.id, u.name(lang)) for u in session.scalars(query) if scope.covers(u.id)]


def may_open(session: Session, scope: Scope, retiree: Retiree) -> bool:
    if scope.unit_ids is None or scope.covers(retiree.community_id):
        return True
    if retiree.community_id is not None or not scope.unit_ids:
        return False
    query = select(Case.id).where(
        Case.retiree_id == retiree.id, Case.unit_id.in_(sorted(scope.unit_ids))
    )
    return session.scalars(query.limit(1)).first() is not None


# --------------------------------------------------------------------------- the list


class Marker(StrEnum):
    """Priority markers (重点服务对象), named as storage.priority names them."""

    AGE_80 = "age_80_plus"
    AGE_90 = "age_90_plus"
    ALONE = "lives_alone"
    DEPENDENT = "not_self_caring"
    DIBAO = "dibao_household"


@dataclass(frozen=True)
class Search:
    name: str = ""
    phone: str = ""
    community_id: int | None = None
    status: RetireeStatus | None = None
    markers: tuple[Marker, ...] = ()
    page: int = 1

    def query_string(self, page: int) -> str:
        """The search as a URL query, for the pager links."""
        pairs: list[tuple[str, str]] = [("name", self.name), ("phone", self.phone)]
        pairs.append(("community", str(self.community_id or "")))
        pairs.append(("status", self.status.value if self.status else ""))
        pairs += [("marker", m.value) for m in self.markers]
        pairs.append(("page", str(page)))
        return urlencode(pairs)


@dataclass(frozen=True)
class ListRow:
    id: int
    name: str
    community: str
    age_band: str
    status: RetireeStatus
    markers: list[str]


@dataclass(frozen=True)
class SearchPage:
    search: Search
    rows: list[ListRow]
    total: int
    communities: list[tuple[int, str]]
    errors: dict[str, str] = field(default_factory=dict)  # field -> catalog key

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // PAGE_SIZE))


def years_before(day: date, years: int) -> date:
    """The same calendar day ``years`` earlier (29 February becomes 28 February)."""
    try:
        return day.replace(year=day.year - years)
    except ValueError:
        return day.replace(year=day.year - years, day=28)


def marker_condition(marker: Marker, today: date) -> ColumnElement[bool]:
    """A marker as a WHERE condition: ages become a birth-date bound, so an index could serve."""
    if marker is Marker.AGE_80:
        return Retiree.birth_date <= years_before(today, 80)
    if marker is Marker.AGE_90:
        return Retiree.birth_date <= years_before(today, 90)
    if marker is Marker.ALONE:
        return Retiree.lives_alone.is_(True)
    if marker is Marker.DEPENDENT:
        return Retiree.self_care.in_([SelfCare.PARTLY_DEPENDENT, SelfCare.DEPENDENT])
    return Retiree.hardship == Hardship.DIBAO


def shown_markers(retiree: Retiree, today: date) -> list[str]:
    """The markers that hold, without 80+ when 90+ holds too."""
    found = vulnerability_factors(retiree, today)
    if Marker.AGE_90.value in found:
        found.remove(Marker.AGE_80.value)
    return found


def search_retirees(
    session: Session,
    staff: Staff,
    search: Search,
    today: date,
    lang: str,
) -> SearchPage:
    """One page of the retirees in ``staff``'s scope that match ``search``: registrations waiting
    for verification first, then by name."""
    scope = registry_scope(session, staff)
    communities = communities_in_scope(session, scope, lang)
    conditions: list[ColumnElement[bool]] = []
    errors: dict[str, str] = {}
    in_scope = scope.condition()
    if in_scope is not None:
        conditions.append(in_scope)
    if search.name:
        conditions.append(Retiree.name.icontains(search.name, autoescape=True))
    if search.phone:
        try:
            number = to_e164(search.phone)
        except InvalidPhoneNumber:
            errors["phone"] = "console.registry.errors.bad_phone"
        else:
            owner = select(RetireePhone.retiree_id).where(RetireePhone.number == number)
            conditions.append(Retiree.id.in_(owner))
    if search.community_id is not None:
        conditions.append(Retiree.community_id == search.community_id)
    if search.status is not None:
        conditions.append(Retiree.status == search.status)
    conditions += [marker_condition(m, today) for m in search.markers]
    if errors:
        return SearchPage(search, [], 0, communities, errors)
    total = session.scalar(select(func.count()).select_from(Retiree).where(*conditions)) or 0
    pending_first = case((Retiree.status == RetireeStatus.PENDING, 0), else_=1)
    found = session.scalars(
        select(Retiree)
        .where(*conditions)
        .options(load_only(*LIST_COLUMNS))
        .order_by(pending_first, Retiree.name, Retiree.id)
        .limit(PAGE_SIZE)
        .offset((max(search.page, 1) - 1) * PAGE_SIZE)
    ).all()
    names = _unit_names(session, {r.community_id for r in found if r.community_id}, lang)
    rows = [
        ListRow(
            id=r.id,
            name=r.name,
            community=names.get(r.community_id or 0, ""),
            age_band=age_band(r.birth_date, today),
            status=r.status,
            markers=shown_markers(r, today),
        )
        for r in found
    ]
    return SearchPage(search, rows, total, communities)


def _unit_names(session: Session, ids: set[int], lang: str) -> dict[int, str]:
    if not ids:
        return {}
    return {u.id: u.name(lang) for u in session.scalars(select(Unit).where(Unit.id.in_(ids)))}


# --------------------------------------------------------------------------- the profile


@dataclass(frozen=True)
class Profile:
    retiree: Retiree
    age: int | None
    age_band: str
    markers: list[str]
    recent_cases: list[Case]


def find_retiree(session: Session, retiree_id: int) -> Retiree:
    """The retiree with everything the profile shows, loaded in a fixed number of queries."""
    retiree = session.scalars(
        select(Retiree)
        .where(Retiree.id == retiree_id)
        .options(
            joinedload(Retiree.community),
            selectinload(Retiree.phones),
            selectinload(Retiree.emergency_contacts),
            selectinload(Retiree.identities),
            selectinload(Retiree.visits).joinedload(Visit.staff),
        )
    ).one_or_none()
    if retiree is None:
        raise RegistryRefused("console.registry.errors.not_found", status=404)
    return retiree


def open_retiree(session: Session, staff: Staff, retiree_id: int) -> Retiree:
    """The retiree, if ``staff`` may open their profile; raises RegistryRefused otherwise."""
    require_registry_role(staff)
    retiree = find_retiree(session, retiree_id)
    if not may_open(session, registry_scope(session, staff), retiree):
        raise RegistryRefused("console.registry.errors.not_permitted")
    return retiree


def audit_view(session: Session, staff: Staff, retiree: Retiree, page: str) -> None:
    """Every showing of a profile (or of its edit form) goes to the audit log."""
    viewed_retiree(session, staff, retiree.id, page=page)


def load_profile(session: Session, staff: Staff, retiree: Retiree, today: date) -> Profile:
    """The profile page's content; writes the view to the audit log."""
    recent = list(
        session.scalars(
            select(Case)
            .where(Case.retiree_id == retiree.id)
            .order_by(Case.created_at.desc(), Case.id.desc())
            .limit(RECENT_CASES)
        )
    )
    audit_view(session, staff, retiree, "profile")
    return Profile(
        retiree=retiree,
        age=retiree.age_on(today),
        age_band=age_band(retiree.birth_date, today),
        markers=shown_markers(retiree, today),
        recent_cases=recent,
    )
