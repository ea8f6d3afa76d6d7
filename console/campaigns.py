"""Campaigns in the console (console/routes/campaigns.py): the list with each campaign's
figures, the form that starts one (storage/campaigns.py does the work), a campaign's page, and
"my visits", where a volunteer or staff member finds the visits given to them and records each.

Refusals raise console.registry.RegistryRefused (the error page, as the registry's).
Who sees what: staff and admins start and follow campaigns of the communities they serve (an
admin's may be for the whole centre); a campaign's page names the people of a visit round, so
each showing is in the audit log. "My visits" shows the visitor the address and phone of the
people given to them, and no one else's: each showing is audited with the people it named.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from console.registry import RegistryRefused, Scope
from console.registry_visits import VisitForm, record_visit
from console.web import form_text, parse_day
from storage import campaigns
from storage.audit import record_access
from storage.campaigns import FACTORS, MESSAGE_CHANNELS, Audience, Counts, NewCampaign
from storage.models import (
    Campaign,
    CampaignKind,
    CampaignTarget,
    Retiree,
    RetireePhone,
    Role,
    Staff,
    TargetStatus,
    Unit,
)

LIST_LIMIT = 100
ROWS_SHOWN = 500
MAX_PER_MINUTE = 1000
_TEMPLATE = re.compile(r"^SMS_\d+$")
_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


# -- who may see which campaign -------------------------------------------------------------------


def may_see(scope: Scope, campaign: Campaign) -> bool:
    """An admin sees all; others the campaigns of communities they serve."""
    if scope.everything:
        return True
    communities = Audience.from_json(campaign.audience).communities
    return bool(communities) and any(scope.covers(c) for c in communities)


def open_campaign(session: Session, scope: Scope, campaign_id: int) -> Campaign:
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise RegistryRefused("console.campaigns.errors.unknown", 404)
    if not may_see(scope, campaign):
        raise RegistryRefused("console.registry.errors.not_permitted")
    return campaign


def visitors(session: Session, scope: Scope) -> list[Staff]:
    """Who may be given visits: the active staff and volunteers serving units in ``scope``."""
    people = session.scalars(
        select(Staff).where(Staff.active.is_(True)).order_by(Staff.role, Staff.name)
    ).all()
    if scope.everything:
        return list(people)
    return [p for p in people if any(scope.covers(u.id) for u in p.units)]


# -- the form -------------------------------------------------------------------------------------


@dataclass
class CampaignForm:
    """The form that starts a campaign; ``errors`` maps a field to a message key."""

    kind: str = CampaignKind.GREETING.value
    title: str = ""
    text_zh: str = ""
    text_en: str = ""
    communities: list[str] = field(default_factory=list)
    min_age: str = ""
    factors: list[str] = field(default_factory=list)
    channels: list[str] = field(default_factory=lambda: ["wechat", "sms"])
    per_minute: str = "60"
    start_day: str = ""
    start_time: str = ""
    due_on: str = ""
    assignees: list[str] = field(default_factory=list)
    sms_template: str = ""
    errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, form: FormData) -> CampaignForm:

        def texts(name: str) -> list[str]:
            return [v.strip() for v in form.getlist(name) if isinstance(v, str) and v.strip()]

        return cls(
            kind=form_text(form, "kind"),
            title=form_text(form, "title"),
            text_zh=form_text(form, "text_zh"),
            text_en=form_text(form, "text_en"),
            communities=texts("communities"),
            min_age=form_text(form, "min_age"),
            factors=texts("factors"),
            channels=texts("channels"),
            per_minute=form_text(form, "per_minute"),
            start_day=form_text(form, "start_day"),
            start_time=form_text(form, "start_time"),
            due_on=form_text(form, "due_on"),
            assignees=texts("assignees"),
            sms_template=form_text(form, "sms_template"),
        )

    def checked(
        self,
        *,
        communities: list[tuple[int, str]],
        visitors: list[Staff],
        scope: Scope,
        today: date,
        zone: ZoneInfo,
    ) -> NewCampaign | None:
        """The campaign asked for, or None with the problems in ``errors``."""
        self.errors = {}
        kinds = {k.value: k for k in CampaignKind}
        kind = kinds.get(self.kind)
        if kind is None:
            self.errors["kind"] = "console.campaigns.errors.kind"
        if not self.title or len(self.title) > campaigns.TITLE_LIMIT:
            self.errors["title"] = "console.campaigns.errors.title"
        chosen = self._communities(communities, scope)
        min_age = self._number("min_age", self.min_age, 50, 120, empty=None)
        if any(f not in FACTORS for f in self.factors):
            self.errors["factors"] = "console.campaigns.errors.factors"
        new = NewCampaign(
            kind=kind or CampaignKind.GREETING,
            title=self.title,
            audience=Audience(chosen, min_age, tuple(self.factors)),
        )
        if kind == CampaignKind.VISITS:
            self._visits(new, visitors, today)
        elif kind is not None:
            self._messages(new, today, zone)
        return None if self.errors else new

    def _communities(self, communities: list[tuple[int, str]], scope: Scope) -> tuple[int, ...]:
        mine = {cid for cid, _ in communities}
        chosen = tuple(int(c) for c in self.communities if c.isdecimal())
        if len(chosen) != len(self.communities) or not set(chosen) <= mine:
            self.errors["communities"] = "console.campaigns.errors.communities"
        if not chosen and not scope.everything:
            chosen = tuple(sorted(mine))  # all of theirs (an admin's none: the whole centre)
            if not chosen:
                self.errors["communities"] = "console.campaigns.errors.communities"
        return chosen

    def _number(
        self, name: str, text: str, low: int, high: int, *, empty: int | None
    ) -> int | None:
        if not text:
            return empty
        if not text.isdecimal() or not low <= int(text) <= high:
            self.errors[name] = f"console.campaigns.errors.{name}"
            return empty
        return int(text)

    def _messages(self, new: NewCampaign, today: date, zone: ZoneInfo) -> None:
        new.texts = {lang: t for lang, t in (("zh", self.text_zh), ("en", self.text_en)) if t}
        if not new.texts:
            self.errors["text_zh"] = "console.campaigns.errors.no_text"
        if any(len(t) > campaigns.TEXT_LIMIT for t in new.texts.values()):
            self.errors["text_zh"] = "console.campaigns.errors.text_too_long"
        if not self.channels or any(c not in MESSAGE_CHANNELS for c in self.channels):
            self.errors["channels"] = "console.campaigns.errors.channels"
        new.channels = tuple(c for c in MESSAGE_CHANNELS if c in self.channels)
        new.per_minute = (
            self._number("per_minute", self.per_minute, 1, MAX_PER_MINUTE, empty=60) or 60
        )
        if self.sms_template and not _TEMPLATE.match(self.sms_template):
            self.errors["sms_template"] = "console.campaigns.errors.sms_template"
        new.sms_template = self.sms_template
        new.starts_at = self._start(today, zone)

    def _start(self, today: date, zone: ZoneInfo) -> datetime | None:
        """When sending starts (None: now); a day without a time starts at 09:00."""
        if not self.start_day and not self.start_time:
            return None
        day = today
        if self.start_day:
            try:
                day = parse_day(self.start_day)
            except ValueError:
                self.errors["start_day"] = "console.campaigns.errors.start_day"
                return None
        clock = _CLOCK.match(self.start_time or "09:00")
        if clock is None:
            self.errors["start_time"] = "console.campaigns.errors.start_time"
            return None
        if day < today:
            self.errors["start_day"] = "console.campaigns.errors.start_day"
            return None
        return datetime.combine(day, time(int(clock[1]), int(clock[2])), tzinfo=zone)

    def _visits(self, new: NewCampaign, visitors: list[Staff], today: date) -> None:
        try:
            new.due_on = parse_day(self.due_on)
        except ValueError:
            self.errors["due_on"] = "console.campaigns.errors.due_on"
        if new.due_on is not None and new.due_on < today:
            self.errors["due_on"] = "console.campaigns.errors.due_on"
        allowed = {str(p.id): p.id for p in visitors}
        if not self.assignees or any(a not in allowed for a in self.assignees):
            self.errors["assignees"] = "console.campaigns.errors.assignees"
        new.assignees = tuple(allowed[a] for a in self.assignees if a in allowed)


def start_campaign(
    session: Session, staff: Staff, form: CampaignForm, new: NewCampaign, *, now: datetime
) -> Campaign | None:
    """Start the campaign (audited); None with the reason in ``form.errors``."""
    try:
        with session.begin_nested():
            campaign = campaigns.start(session, new, by=staff, now=now)
    except campaigns.CampaignError as exc:
        form.errors["audience" if exc.key.endswith("nobody") else "kind"] = f"console.{exc.key}"
        return None
    record_access(
        session,
        actor=staff,
        actor_label=staff.role.value,
        action="start_campaign",
        subject_type="campaign",
        subject_id=campaign.id,
        detail={"kind": campaign.kind.value, "audience": campaign.audience},
    )
    return campaign


# -- the pages ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ListRow:
    campaign: Campaign
    counts: Counts


def load_list(session: Session, scope: Scope) -> list[ListRow]:
    rows = session.scalars(select(Campaign).order_by(Campaign.id.desc()).limit(LIST_LIMIT * 4))
    shown = [c for c in rows if may_see(scope, c)][:LIST_LIMIT]
    figures = campaigns.counts(session, [c.id for c in shown])
    return [ListRow(c, figures.get(c.id, Counts())) for c in shown]


@dataclass(frozen=True)
class TargetRow:
    target_id: int
    retiree_id: int
    name: str
    community: str
    status: TargetStatus
    skipped_why: str
    channel: str
    assignee_id: int | None
    visited_on: date | None


@dataclass(frozen=True)
class CampaignPage:
    campaign: Campaign
    counts: Counts
    communities: list[str]
    rows: list[TargetRow]
    skipped: dict[str, int]
    visitors: list[Staff]


def load_campaign(
    session: Session, staff: Staff, scope: Scope, campaign: Campaign, lang: str
) -> CampaignPage:
    """A campaign's page; the people it lists are written to the audit log."""
    counts = campaigns.counts(session, [campaign.id]).get(campaign.id, Counts())
    audience = Audience.from_json(campaign.audience)
    units = session.scalars(select(Unit).where(Unit.id.in_(audience.communities))).all()
    query = (
        select(CampaignTarget, Retiree, Unit)
        .join(Retiree, Retiree.id == CampaignTarget.retiree_id)
        .outerjoin(Unit, Unit.id == Retiree.community_id)
        .where(CampaignTarget.campaign_id == campaign.id)
        .order_by(CampaignTarget.status, Unit.code, Retiree.id)
        .limit(ROWS_SHOWN)
    )
    rows = [
        TargetRow(
            target_id=t.id,
            retiree_id=r.id,
            name=r.name,
            community=u.name(lang) if u is not None else "",
            status=t.status,
            skipped_why=t.skipped_why,
            channel=t.channel,
            assignee_id=t.assignee_id,
            visited_on=t.visit.visited_on if t.visit is not None else None,
        )
        for t, r, u in session.execute(query)
    ]
    skipped: dict[str, int] = {}
    for reason in session.scalars(
        select(CampaignTarget.skipped_why).where(
            CampaignTarget.campaign_id == campaign.id,
            CampaignTarget.status == TargetStatus.SKIPPED,
        )
    ):
        skipped[reason] = skipped.get(reason, 0) + 1
    record_access(
        session,
        actor=staff,
        actor_label=staff.role.value,
        action="view_campaign",
        subject_type="campaign",
        subject_id=campaign.id,
        detail={"people": len(rows)},
    )
    return CampaignPage(
        campaign=campaign,
        counts=counts,
        communities=[u.name(lang) for u in units],
        rows=rows,
        skipped=skipped,
        visitors=visitors(session, scope),
    )


def reassign(
    session: Session, staff: Staff, scope: Scope, campaign: Campaign, target_id: int, to: str
) -> bool:
    """Give a visit of ``campaign`` to another visitor (audited); False when not possible."""
    target = session.get(CampaignTarget, target_id)
    allowed = {str(p.id): p for p in visitors(session, scope)}
    if target is None or target.campaign_id != campaign.id or to not in allowed:
        return False
    try:
        campaigns.reassign(target, allowed[to])
    except campaigns.CampaignError:
        return False
    record_access(
        session,
        actor=staff,
        actor_label=staff.role.value,
        action="reassign_visit",
        subject_type="retiree",
        subject_id=target.retiree_id,
        detail={"campaign": campaign.id, "to": allowed[to].id},
    )
    return True


# -- my visits ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VisitRow:
    target_id: int
    retiree_id: int
    name: str
    address: str
    phone: str
    round_title: str
    due_on: date | None


def load_my_visits(session: Session, staff: Staff) -> list[VisitRow]:
    """The visits given to ``staff``; whom the page named goes to the audit log."""
    targets = campaigns.my_visits(session, staff)
    ids = [t.retiree_id for t in targets]
    phones: dict[int, str] = {}
    for retiree_id, number in session.execute(
        select(RetireePhone.retiree_id, RetireePhone.number)
        .where(RetireePhone.retiree_id.in_(ids))
        .order_by(RetireePhone.id.desc())
    ):
        phones[retiree_id] = number  # the first phone wins (read last)
    rows = [
        VisitRow(
            target_id=t.id,
            retiree_id=t.retiree_id,
            name=t.retiree.name,
            address=t.retiree.address,
            phone=phones.get(t.retiree_id, ""),
            round_title=t.campaign.title,
            due_on=t.campaign.due_on,
        )
        for t in targets
    ]
    if rows:
        record_access(
            session,
            actor=staff,
            actor_label=staff.role.value,
            action="view_my_visits",
            subject_type="retiree",
            subject_id=None,
            detail={"retirees": ids},
        )
    return rows


def record_round_visit(
    session: Session,
    staff: Staff,
    scope: Scope,
    target_id: int,
    form: VisitForm,
    *,
    today: date,
    now: datetime,
) -> CampaignTarget | None:
    """Record the visit of a round: by whoever it was given to, or by staff of the person's
    community. None with ``form.errors`` when the form is wrong; refused when not theirs."""
    target = session.get(CampaignTarget, target_id)
    if target is None:
        raise RegistryRefused("console.campaigns.errors.unknown", 404)
    theirs = target.assignee_id == staff.id
    staff_of_it = staff.role != Role.VOLUNTEER and scope.covers(target.retiree.community_id)
    if not theirs and not staff_of_it:
        raise RegistryRefused("console.registry.errors.not_permitted")
    if target.status != TargetStatus.ASSIGNED:  # recorded already, or the round stopped
        raise RegistryRefused("console.campaigns.errors.not_to_visit", 409)
    day = form.check(today)
    if day is None:
        return None
    visit = record_visit(session, staff, target.retiree, day, form.notes)
    campaigns.visited(session, target, visit, now=now)
    return target
