"""Proactive care in the console (console/routes/care.py): a retiree's check-in plan on their
profile (the registry's own, config/care.yml's default, or none) and its form; the day's
check-ins of the communities a person serves (answered, waiting, escalated).

Every showing of the day's list is written to the audit log (it names people and says who did
not answer), as every change of a plan is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session, aliased
from starlette.datastructures import FormData

from config.care import CHANNELS, WEEKDAYS, CareConfig, PlanRule
from console.registry import Scope
from console.web import form_text, parse_day
from storage import check_ins, family
from storage.audit import record_access
from storage.models import (
    CarePlan,
    Case,
    CheckIn,
    CheckInStatus,
    FamilyMember,
    Retiree,
    Staff,
    Unit,
)
from storage.phones import InvalidPhoneNumber, normalize_phone

DEFAULT, OWN, OFF = "default", "own", "off"
MODES = (DEFAULT, OWN, OFF)
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# The day's list: who needs looking at first.
ORDER = (
    CheckInStatus.VISIT,
    CheckInStatus.NEEDS_HELP,
    CheckInStatus.ASKED,
    CheckInStatus.SCHEDULED,
    CheckInStatus.HELPED,
    CheckInStatus.WELL,
    CheckInStatus.CANCELLED,
)
ROWS_SHOWN = 500


# -- a retiree's plan -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PlanView:
    """What the profile shows: where the plan comes from and what it says."""

    mode: str  # DEFAULT (config/care.yml), OWN (set here) or OFF
    rule: PlanRule | None  # None: no check-ins
    quiet_days: tuple[str, ...] = ()
    updated_at: datetime | None = None


def plan_view(session: Session, retiree: Retiree, care: CareConfig, today: date) -> PlanView:
    row = check_ins.plan_row(session, retiree.id)
    plan = check_ins.plan_of(retiree, row, care, today)
    if row is None:
        return PlanView(DEFAULT, plan.rule if plan is not None else None)
    if not row.enabled:
        return PlanView(OFF, None, updated_at=row.updated_at)
    assert plan is not None
    return PlanView(OWN, plan.rule, plan.quiet_days, row.updated_at)


@dataclass
class PlanForm:
    """The plan form as typed; ``errors`` maps a field to a message key."""

    mode: str = DEFAULT
    cadence: str = "daily"
    weekdays: list[str] = field(default_factory=list)
    window_from: str = "09:00"
    window_to: str = "11:00"
    channels: list[str] = field(default_factory=lambda: ["voice", "wechat", "sms"])
    tell_family: bool = True
    quiet_days: str = ""
    errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, view: PlanView) -> PlanForm:
        form = cls(mode=view.mode)
        if view.rule is not None:
            rule = view.rule
            form.cadence = rule.cadence.value
            form.weekdays = list(rule.weekdays)
            form.window_from = f"{rule.window.start:%H:%M}"
            form.window_to = f"{rule.window.end:%H:%M}"
            form.channels = list(rule.channels)
            form.tell_family = rule.tell_family
        form.quiet_days = ", ".join(view.quiet_days)
        return form

    @classmethod
    def parse(cls, form: FormData) -> PlanForm:

        mode = form_text(form, "mode")
        return cls(
            mode=mode if mode in MODES else DEFAULT,
            cadence=form_text(form, "cadence"),
            weekdays=[d for d in WEEKDAYS if d in form.getlist("weekdays")],
            window_from=form_text(form, "window_from"),
            window_to=form_text(form, "window_to"),
            channels=[c for c in CHANNELS if c in form.getlist("channels")],
            tell_family=form_text(form, "tell_family") == "1",
            quiet_days=form_text(form, "quiet_days"),
        )

    def quiet_day_list(self) -> list[str]:
        return [d.strip().lower() for d in re.split(r"[,，\s]+", self.quiet_days) if d.strip()]

    def checked(self, care: CareConfig) -> PlanRule | None:
        """The plan the form sets (None for DEFAULT or OFF); fills ``errors`` when it is wrong."""
        self.errors = {}
        if self.mode != OWN:
            return None
        rule: PlanRule | None = None
        try:
            rule = PlanRule.model_validate(
                {
                    "cadence": self.cadence,
                    "weekdays": self.weekdays,
                    "window": {"from": self.window_from, "to": self.window_to},
                    "channels": self.channels,
                    "tell_family": self.tell_family,
                }
            )
        except ValidationError as exc:
            for error in exc.errors():
                where = str(error["loc"][0]) if error["loc"] else ""
                if where == "window":
                    self.errors["window"] = "console.care.errors.window"
                elif where == "cadence":
                    self.errors["cadence"] = "console.care.errors.cadence"
                elif "weekly" in str(error.get("msg", "")):
                    self.errors["weekdays"] = "console.care.errors.weekdays"
                else:
                    self.errors["channels"] = "console.care.errors.channels"
        if rule is not None and care.quiet_hours.covers(rule.window):
            self.errors["window"] = "console.care.errors.night"
        for day in self.quiet_day_list():
            if day not in WEEKDAYS and not _is_date(day):
                self.errors["quiet_days"] = "console.care.errors.quiet_days"
        return None if self.errors else rule


def _is_date(text: str) -> bool:
    if not _DAY.match(text):
        return False
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def save_plan(
    session: Session,
    staff: Staff,
    retiree: Retiree,
    form: PlanForm,
    care: CareConfig,
    *,
    today: date,
    now: datetime,
) -> bool:
    """Store the plan the form sets (audited) and make today's check-in agree with it; False
    (nothing stored) when the form has errors."""
    rule = form.checked(care)
    if form.errors:
        return False
    row = check_ins.plan_row(session, retiree.id)
    if form.mode == DEFAULT:
        if row is not None:
            session.delete(row)
    else:
        if row is None:
            row = CarePlan(retiree_id=retiree.id)
            session.add(row)
        row.enabled = form.mode == OWN
        row.rule = rule.model_dump(mode="json", by_alias=True) if rule is not None else {}
        row.quiet_days = form.quiet_day_list()
        row.updated_by_id = staff.id
        row.updated_at = now
    session.flush()
    record_access(
        session,
        actor=staff,
        actor_label=staff.role.value,
        action="update_care_plan",
        subject_type="retiree",
        subject_id=retiree.id,
        detail={"mode": form.mode},
    )
    check_ins.plan_retiree(session, retiree, today, now=now)
    return True


# -- the day's check-ins --------------------------------------------------------------------------


@dataclass(frozen=True)
class DayRow:
    check_in_id: int
    retiree_id: int
    name: str
    community: str
    status: CheckInStatus
    attempts: int
    channel: str
    asked_at: datetime | None
    answered_at: datetime | None
    case_number: str | None


@dataclass(frozen=True)
class DayPage:
    day: date
    counts: dict[str, int]  # by status
    total: int
    rows: list[DayRow]
    communities: list[tuple[int, str]]
    community_id: int | None

    @property
    def answered(self) -> int:
        return self.counts.get(CheckInStatus.WELL.value, 0)

    @property
    def asked_for_help(self) -> int:
        return sum(
            self.counts.get(s.value, 0) for s in (CheckInStatus.NEEDS_HELP, CheckInStatus.HELPED)
        )

    @property
    def escalated(self) -> int:
        return self.counts.get(CheckInStatus.VISIT.value, 0)

    @property
    def waiting(self) -> int:
        return sum(
            self.counts.get(s.value, 0) for s in (CheckInStatus.SCHEDULED, CheckInStatus.ASKED)
        )


def load_day(
    session: Session,
    staff: Staff,
    scope: Scope,
    communities: list[tuple[int, str]],
    day: date,
    community_id: int | None,
    lang: str,
) -> DayPage:
    """``day``'s check-ins of the people in ``scope`` (of one community when chosen): counts by
    status and the rows, those needing a look first. Audited: it names people."""
    conditions: list[Any] = [CheckIn.day == day]
    where = scope.condition()
    if where is not None:
        conditions.append(where)
    if community_id is not None:
        conditions.append(Retiree.community_id == community_id)
    counts = {
        status.value: n
        for status, n in session.execute(
            select(CheckIn.status, func.count())
            .join(Retiree, Retiree.id == CheckIn.retiree_id)
            .where(*conditions)
            .group_by(CheckIn.status)
        )
    }
    rank = case({status: n for n, status in enumerate(ORDER)}, value=CheckIn.status)
    filed = aliased(Case)  # not Case: the scope's condition correlates on that
    found = session.execute(
        select(CheckIn, Retiree.name, Unit, filed.number)
        .join(Retiree, Retiree.id == CheckIn.retiree_id)
        .outerjoin(Unit, Unit.id == Retiree.community_id)
        .outerjoin(filed, filed.id == CheckIn.case_id)
        .where(*conditions)
        .order_by(rank, CheckIn.due_at, CheckIn.id)
        .limit(ROWS_SHOWN)  # the first rows only: a centre's day may have ten thousand
    )
    rows = [
        DayRow(
            check_in_id=c.id,
            retiree_id=c.retiree_id,
            name=name,
            community=unit.name(lang) if unit is not None else "",
            status=c.status,
            attempts=c.attempts,
            channel=c.channel,
            asked_at=c.asked_at,
            answered_at=c.answered_at,
            case_number=number,
        )
        for c, name, unit, number in found
    ]
    record_access(
        session,
        actor=staff,
        actor_label=staff.role.value,
        action="view_check_ins",
        subject_type="check_ins",
        subject_id=None,
        detail={"day": day.isoformat(), "community": community_id, "shown": len(rows)},
    )
    return DayPage(
        day=day,
        counts=counts,
        total=sum(counts.values()),
        rows=rows,
        communities=communities,
        community_id=community_id,
    )


# -- family linked with consent -------------------------------------------------------------------


@dataclass
class FamilyForm:
    """The form that links a family member; ``errors`` maps a field to a message key."""

    name: str = ""
    relation: str = ""
    channel: str = "sms"
    address: str = ""
    may_know: list[str] = field(default_factory=lambda: list(family.TOPICS))
    may_ask: bool = False
    consent: str = ""
    consented_on: str = ""
    errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, form: FormData) -> FamilyForm:

        return cls(
            name=form_text(form, "name"),
            relation=form_text(form, "relation"),
            channel=form_text(form, "channel"),
            address=form_text(form, "address"),
            may_know=[t for t in family.TOPICS if t in form.getlist("may_know")],
            may_ask=form_text(form, "may_ask") == "1",
            consent=form_text(form, "consent"),
            consented_on=form_text(form, "consented_on"),
        )

    def checked(self, today: date) -> tuple[str, date] | None:
        """(the address as stored, the day of consent); None with ``errors`` filled."""
        self.errors = {}
        if not self.name:
            self.errors["name"] = "console.care.family.errors.name"
        if self.channel not in family.CHANNELS:
            self.errors["channel"] = "console.care.family.errors.channel"
        address = self.address
        if self.channel in ("sms", "whatsapp"):
            try:
                address = normalize_phone(self.address)
            except InvalidPhoneNumber:
                self.errors["address"] = "console.care.family.errors.phone"
            if self.channel == "whatsapp":
                address = f"whatsapp:{address}"  # as Twilio gives it
        elif not self.address or len(self.address) > 100:
            self.errors["address"] = "console.care.family.errors.account"
        if not self.may_know and not self.may_ask:
            self.errors["may_know"] = "console.care.family.errors.nothing"
        if not self.consent:
            self.errors["consent"] = "console.care.family.errors.consent"
        day: date | None = None
        try:
            day = parse_day(self.consented_on)
        except ValueError:
            self.errors["consented_on"] = "console.care.family.errors.consented_on"
        if day is not None and day > today:
            self.errors["consented_on"] = "console.care.family.errors.future"
        if self.errors or day is None:
            return None
        return address, day


def add_family(
    session: Session,
    staff: Staff,
    retiree: Retiree,
    form: FamilyForm,
    *,
    today: date,
    now: datetime,
) -> FamilyMember | None:
    """Link the family member of the form (audited: what they may be told, never who they
    are); None (nothing stored) when the form has errors or the same account is linked."""
    checked = form.checked(today)
    if checked is None:
        return None
    address, consented_on = checked
    already = session.scalar(
        select(FamilyMember.id).where(
            FamilyMember.retiree_id == retiree.id,
            FamilyMember.channel == form.channel,
            FamilyMember.address == address,
            FamilyMember.active.is_(True),
        )
    )
    if already is not None:
        form.errors["address"] = "console.care.family.errors.linked"
        return None
    member = family.add(
        session,
        retiree,
        name=form.name,
        relation=form.relation,
        channel=form.channel,
        address=address,
        may_know=form.may_know,
        may_ask=form.may_ask,
        consent=form.consent,
        consented_on=consented_on,
        recorded_by_id=staff.id,
        now=now,
    )
    _audit_family(session, staff, retiree, "add_family_member", member)
    return member


def remove_family(
    session: Session, staff: Staff, retiree: Retiree, member_id: int
) -> FamilyMember | None:
    """Unlink a family member of ``retiree`` (the consent is withdrawn); kept for the record."""
    member = session.get(FamilyMember, member_id)
    if member is None or member.retiree_id != retiree.id or not member.active:
        return None
    member.active = False
    _audit_family(session, staff, retiree, "remove_family_member", member)
    return member


def _audit_family(
    session: Session, staff: Staff, retiree: Retiree, action: str, member: FamilyMember
) -> None:
    record_access(
        session,
        actor=staff,
        actor_label=staff.role.value,
        action=action,
        subject_type="retiree",
        subject_id=retiree.id,
        detail={
            "family_member": member.id,
            "may_know": list(member.may_know),
            "may_ask": member.may_ask,
        },
    )


def family_of(session: Session, retiree: Retiree) -> list[FamilyMember]:
    return list(
        session.scalars(
            select(FamilyMember)
            .where(FamilyMember.retiree_id == retiree.id, FamilyMember.active.is_(True))
            .order_by(FamilyMember.id)
        )
    )
