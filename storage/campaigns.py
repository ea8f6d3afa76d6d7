"""Campaigns (活动): one message or one round of home visits for a chosen group of retirees.

- **The group** (``Audience``): the active retirees of some communities (none named: all),
  at least an age, and any of the priority factors (living alone, not self-caring, hardship).
  It is read once, when the campaign starts: one ``CampaignTarget`` row a person (a unique key:
  nobody twice), so the campaign's figures speak of the people it had.
- **Greetings and notices** (节日问候, 政策通知): the text (one per language, ``{name}`` for the
  person's name) goes through the outbox to each person's first reachable messaging channel of
  the campaign's channels (WeChat, then SMS, ...), at most ``per_minute`` a minute, never in
  config/care.yml's quiet hours, by the periodic job ``run_due``. Nobody whose consents say
  ``contact_by_message: false`` is sent anything; nobody with no channel either (both are
  counted as skipped, with the reason). Aliyun SMS sends approved templates only: the campaign
  names its template (``sms_template``), else config/sms_templates.yml's ``campaign`` is used.
- **Visit rounds** (季度走访): each person is given to one of the chosen staff or volunteers in
  turn (a community's people together), who finds the round in "my visits" and records the
  visit (the registry's own visit record, console/registry_visits.py). Nothing is sent.
- **Figures** (``counts``): sent, delivered (the outbox sent it), failed (the outbox gave up),
  skipped, answered (the person wrote to us within ``answer_days`` of it), visited.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import Select, and_, case, func, or_, select, update
from sqlalchemy.orm import Session

from config.categories import CategoryConfig
from storage import outbox
from storage.check_ins import reachable, room_in_rate
from storage.db import for_this_worker
from storage.models import (
    Campaign,
    CampaignKind,
    CampaignStatus,
    CampaignTarget,
    Direction,
    Hardship,
    Message,
    OutboxItem,
    OutboxStatus,
    Retiree,
    RetireeStatus,
    SelfCare,
    Staff,
    TargetStatus,
    Visit,
)
from storage.site import site_of

log = structlog.get_logger(__name__)

KIND = "campaign"  # the outbox payload's kind (and the SMS template's)
PRIORITY = 6  # after every case message and check-in: a greeting can wait a minute
MESSAGE_CHANNELS = ("wechat", "whatsapp", "telegram", "sms")
FACTORS = ("lives_alone", "not_self_caring", "hardship")
ANSWER_DAYS = 3
TITLE_LIMIT = 100
TEXT_LIMIT = 500


class CampaignError(ValueError):
    """A campaign that cannot be started as asked; ``key`` is the catalog key saying why."""

    def __init__(self, key: str, **fields: Any) -> None:
        super().__init__(key)
        self.key = key
        self.fields = fields


@dataclass(frozen=True)
class Audience:
    """Who a campaign is for: all of the conditions given (an empty one does not filter)."""

    communities: tuple[int, ...] = ()
    min_age: int | None = None
    factors: tuple[str, ...] = ()  # any of FACTORS: one of them is enough

    def as_json(self) -> dict[str, Any]:
        return {
            "communities": list(self.communities),
            "min_age": self.min_age,
            "factors": list(self.factors),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Audience:
        return cls(
            communities=tuple(int(c) for c in data.get("communities") or ()),
            min_age=data.get("min_age"),
            factors=tuple(data.get("factors") or ()),
        )

    def who(self, today: date) -> Select[tuple[int]]:
        """The ids of the active retirees this audience holds on ``today``."""
        query = select(Retiree.id).where(Retiree.status == RetireeStatus.ACTIVE)
        if self.communities:
            query = query.where(Retiree.community_id.in_(self.communities))
        if self.min_age is not None:
            born_by = _years_before(today, self.min_age)
            query = query.where(Retiree.birth_date.is_not(None), Retiree.birth_date <= born_by)
        factors = []
        if "lives_alone" in self.factors:
            factors.append(Retiree.lives_alone.is_(True))
        if "not_self_caring" in self.factors:
            factors.append(Retiree.self_care != SelfCare.INDEPENDENT)
        if "hardship" in self.factors:
            factors.append(Retiree.hardship != Hardship.NONE)
        if factors:
            query = query.where(or_(*factors))
        return query.order_by(Retiree.community_id, Retiree.address, Retiree.id)


def _years_before(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February
        return day.replace(year=day.year - years, day=28)


@dataclass
class NewCampaign:
    """What staff ask for (console/campaigns.py checks the form into this)."""

    kind: CampaignKind
    title: str
    audience: Audience
    texts: dict[str, str] = field(default_factory=dict)  # language -> text
    channels: tuple[str, ...] = ("wechat", "sms")
    per_minute: int = 60
    starts_at: datetime | None = None
    due_on: date | None = None  # a visit round's last day
    assignees: tuple[int, ...] = ()  # staff ids, for a visit round
    sms_template: str = ""


def start(session: Session, new: NewCampaign, *, by: Staff, now: datetime) -> Campaign:
    """Create the campaign and its targets (the audience as it is now)."""
    site = site_of(session)
    if new.kind == CampaignKind.VISITS:
        if not new.assignees:
            raise CampaignError("campaigns.errors.no_assignees")
        if new.due_on is None:
            raise CampaignError("campaigns.errors.no_due_on")
    elif not any(text.strip() for text in new.texts.values()):
        raise CampaignError("campaigns.errors.no_text")
    today = now.astimezone(site.tz).date()
    people = list(session.scalars(new.audience.who(today)))
    if not people:
        raise CampaignError("campaigns.errors.nobody")
    campaign = Campaign(
        kind=new.kind,
        title=new.title,
        audience=new.audience.as_json(),
        texts={lang: text for lang, text in new.texts.items() if text.strip()},
        channels=list(new.channels),
        per_minute=new.per_minute,
        sms_template=new.sms_template,
        starts_at=new.starts_at or now,
        due_on=new.due_on,
        status=CampaignStatus.ACTIVE,
        created_by_id=by.id,
        created_at=now,
    )
    session.add(campaign)
    session.flush()
    visits = new.kind == CampaignKind.VISITS
    rows = [
        {
            "campaign_id": campaign.id,
            "retiree_id": retiree_id,
            "status": TargetStatus.ASSIGNED if visits else TargetStatus.WAITING,
            "assignee_id": new.assignees[n % len(new.assignees)] if visits else None,
        }
        for n, retiree_id in enumerate(people)
    ]
    session.execute(CampaignTarget.__table__.insert(), rows)
    log.info("campaign_started", campaign=campaign.id, kind=new.kind.value, people=len(rows))
    return campaign


def cancel(session: Session, campaign: Campaign, *, now: datetime) -> int:
    """Stop ``campaign``: nothing more is sent or asked; messages still waiting in the outbox
    are called off. Returns how many people it had not reached."""
    campaign.status = CampaignStatus.CANCELLED
    campaign.ended_at = now
    not_reached = session.execute(
        update(CampaignTarget)
        .where(
            CampaignTarget.campaign_id == campaign.id,
            CampaignTarget.status.in_((TargetStatus.WAITING, TargetStatus.ASSIGNED)),
        )
        .values(status=TargetStatus.CANCELLED)
    ).rowcount
    queued = select(CampaignTarget.outbox_id).where(
        CampaignTarget.campaign_id == campaign.id, CampaignTarget.outbox_id.is_not(None)
    )
    session.execute(
        update(OutboxItem)
        .where(OutboxItem.id.in_(queued), OutboxItem.status == OutboxStatus.PENDING)
        .values(status=OutboxStatus.CANCELLED)
    )
    return int(not_reached or 0)


# -- sending --------------------------------------------------------------------------------------


def run_due(
    session: Session, now: datetime, categories: CategoryConfig, *, every_s: float = 60.0
) -> int:
    """The periodic job: send the next people of each running message campaign, within its
    rate and never in the quiet hours; a campaign with nobody left waiting is done."""
    site = site_of(session)
    if site.care.quiet_hours.at(now, site.tz):
        return 0
    running = session.scalars(
        select(Campaign)
        .where(
            Campaign.status == CampaignStatus.ACTIVE,
            Campaign.kind != CampaignKind.VISITS,
            Campaign.starts_at <= now,
        )
        .order_by(Campaign.id)
    ).all()
    sent = 0
    for campaign in running:
        room = _room(session, campaign, every_s, now)
        targets = _waiting(session, campaign, limit=room)
        for target in targets:
            _send(session, campaign, target, now=now)
            sent += 1
        if not targets and room > 0 and not _any_waiting(session, campaign):
            campaign.status = CampaignStatus.DONE
            campaign.ended_at = now
            log.info("campaign_done", campaign=campaign.id)
    return sent


def _room(session: Session, campaign: Campaign, every_s: float, now: datetime) -> int:
    """This run's share of the campaign's rate, less what went out in the last minute."""
    recent = session.scalar(
        select(func.count())
        .select_from(CampaignTarget)
        .where(
            CampaignTarget.campaign_id == campaign.id,
            CampaignTarget.sent_at > now - timedelta(minutes=1),
            CampaignTarget.sent_at <= now,
        )
    )
    return room_in_rate(campaign.per_minute, every_s, int(recent or 0))


def _waiting(session: Session, campaign: Campaign, *, limit: int) -> Sequence[CampaignTarget]:
    if limit <= 0:
        return []
    query = (
        select(CampaignTarget)
        .where(
            CampaignTarget.campaign_id == campaign.id,
            CampaignTarget.status == TargetStatus.WAITING,
        )
        .order_by(CampaignTarget.id)
        .limit(limit)
    )
    return session.scalars(for_this_worker(session, query, CampaignTarget)).all()


def _any_waiting(session: Session, campaign: Campaign) -> bool:
    return (
        session.scalar(
            select(CampaignTarget.id)
            .where(
                CampaignTarget.campaign_id == campaign.id,
                CampaignTarget.status == TargetStatus.WAITING,
            )
            .limit(1)
        )
        is not None
    )


def _send(session: Session, campaign: Campaign, target: CampaignTarget, *, now: datetime) -> None:
    retiree = target.retiree
    target.sent_at = now
    if retiree.status != RetireeStatus.ACTIVE:
        _skip(target, "inactive")
        return
    if (retiree.consents or {}).get("contact_by_message") is False:
        _skip(target, "no_consent")
        return
    channels = [c for c in campaign.channels if c in MESSAGE_CHANNELS]
    found = reachable(session, retiree, channels)
    if not found:
        _skip(target, "no_channel")
        return
    channel, address = found[0]
    site = site_of(session)
    lang = retiree.preferred_language or site.language
    text = _text_for(campaign, lang, site.language).replace("{name}", retiree.name)
    payload: dict[str, Any] = {
        "kind": KIND,
        "campaign": campaign.id,
        "text": text,
        "language": lang,
        "name": retiree.name,
    }
    if campaign.sms_template:
        payload["sms_template"] = campaign.sms_template
    target.outbox_id = outbox.enqueue(
        session,
        channel=channel,
        address=address,
        payload=payload,
        idempotency_key=f"{KIND}:{campaign.id}:{retiree.id}",
        priority=PRIORITY,
        now=now,
    )
    target.status = TargetStatus.SENT
    target.channel = channel
    target.answer_by = now + timedelta(days=ANSWER_DAYS)


def _text_for(campaign: Campaign, lang: str, fallback: str) -> str:
    texts = campaign.texts or {}
    return texts.get(lang) or texts.get(fallback) or next(iter(texts.values()), "")


def _skip(target: CampaignTarget, why: str) -> None:
    target.status = TargetStatus.SKIPPED
    target.skipped_why = why


# -- visit rounds ---------------------------------------------------------------------------------


def my_visits(session: Session, staff: Staff) -> list[CampaignTarget]:
    """The visits given to ``staff`` in running rounds, the soonest due first."""
    return list(
        session.scalars(
            select(CampaignTarget)
            .join(Campaign, Campaign.id == CampaignTarget.campaign_id)
            .where(
                CampaignTarget.assignee_id == staff.id,
                CampaignTarget.status == TargetStatus.ASSIGNED,
                Campaign.status == CampaignStatus.ACTIVE,
            )
            .order_by(Campaign.due_on, CampaignTarget.id)
        )
    )


def visited(session: Session, target: CampaignTarget, visit: Visit, *, now: datetime) -> None:
    """``target``'s visit is recorded; the round is done when nobody is left to see."""
    target.status = TargetStatus.VISITED
    target.visit_id = visit.id
    target.sent_at = now
    session.flush()
    campaign = target.campaign
    left = session.scalar(
        select(CampaignTarget.id)
        .where(
            CampaignTarget.campaign_id == campaign.id,
            CampaignTarget.status == TargetStatus.ASSIGNED,
        )
        .limit(1)
    )
    if left is None and campaign.status == CampaignStatus.ACTIVE:
        campaign.status = CampaignStatus.DONE
        campaign.ended_at = now


def reassign(target: CampaignTarget, staff: Staff) -> None:
    if target.status != TargetStatus.ASSIGNED:
        raise CampaignError("campaigns.errors.not_to_visit")
    target.assignee_id = staff.id


# -- figures --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Counts:
    people: int = 0
    waiting: int = 0
    sent: int = 0
    delivered: int = 0
    failed: int = 0
    skipped: int = 0
    answered: int = 0
    to_visit: int = 0
    visited: int = 0


def counts(session: Session, campaign_ids: Iterable[int]) -> dict[int, Counts]:
    """Each campaign's figures, in one query."""
    ids = list(campaign_ids)
    if not ids:
        return {}
    return tally(session, CampaignTarget.campaign_id, CampaignTarget.campaign_id.in_(ids))


def tally(session: Session, key: Any, *where: Any) -> dict[Any, Counts]:
    """The figures of the targets ``where`` holds (it may name Campaign and Retiree), by
    ``key`` (a column of either, or of CampaignTarget), in one query."""
    answered = (
        select(Message.id)
        .where(
            Message.retiree_id == CampaignTarget.retiree_id,
            Message.direction == Direction.INBOUND,
            Message.created_at >= CampaignTarget.sent_at,
            Message.created_at < CampaignTarget.answer_by,
        )
        .exists()
    )

    def count_if(*conditions: Any) -> Any:
        return func.coalesce(func.sum(case((and_(*conditions), 1), else_=0)), 0)

    status = CampaignTarget.status
    sent = status == TargetStatus.SENT
    rows = session.execute(
        select(
            key,
            func.count(),
            count_if(status == TargetStatus.WAITING),
            count_if(sent),
            count_if(sent, OutboxItem.status == OutboxStatus.SENT),
            count_if(sent, OutboxItem.status.in_((OutboxStatus.DEAD, OutboxStatus.CANCELLED))),
            count_if(status == TargetStatus.SKIPPED),
            count_if(sent, answered),
            count_if(status == TargetStatus.ASSIGNED),
            count_if(status == TargetStatus.VISITED),
        )
        .select_from(CampaignTarget)
        .join(Campaign, Campaign.id == CampaignTarget.campaign_id)
        .join(Retiree, Retiree.id == CampaignTarget.retiree_id)
        .outerjoin(OutboxItem, OutboxItem.id == CampaignTarget.outbox_id)
        .where(*where)
        .group_by(key)
    ).all()
    return {row[0]: Counts(*(int(v) for v in row[1:])) for row in rows}
