"""Campaigns (storage/campaigns.py): the group read once, messages through the outbox at the
campaign's rate and never at night, consent and channels respected, visit rounds given out
and recorded, and the figures a report shows."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from config.categories import get_categories
from storage import campaigns, outbox
from storage.campaigns import Audience, CampaignError, NewCampaign
from storage.models import (
    Campaign,
    CampaignKind,
    CampaignStatus,
    CampaignTarget,
    Direction,
    Hardship,
    Message,
    MessageStatus,
    MessagingIdentity,
    OutboxItem,
    OutboxStatus,
    Retiree,
    RetireeStatus,
    Role,
    SelfCare,
    Staff,
    TargetStatus,
    Visit,
)
from tests.factories import make_retiree, make_staff, make_unit_tree

SHANGHAI = ZoneInfo("Asia/Shanghai")
DAY = date(2026, 9, 24)  # the day before the Mid-Autumn festival
CATS = get_categories()


def at(hour: int, minute: int = 0, day: date = DAY) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=SHANGHAI).astimezone(UTC)


@pytest.fixture
def town(session: Session) -> dict[str, object]:
    units = make_unit_tree(session)
    a1, b1 = units.community_a1, units.community_b1
    people = {
        "wang_91": make_retiree(session, a1, age=91, name="王阿姨", today=DAY),
        "li_82_alone": make_retiree(session, a1, age=82, lives_alone=True, name="李伯", today=DAY),
        "zhao_70": make_retiree(session, a1, age=70, today=DAY),
        "sun_72_dependent": make_retiree(
            session, a1, age=72, self_care=SelfCare.DEPENDENT, today=DAY
        ),
        "qian_75_hardship": make_retiree(session, a1, age=75, hardship=Hardship.DIBAO, today=DAY),
        "zhou_88_b1": make_retiree(session, b1, age=88, today=DAY),
        "wu_gone": make_retiree(session, a1, age=95, status=RetireeStatus.INACTIVE, today=DAY),
    }
    staff = make_staff(session, Role.STAFF, [a1], name="张社工")
    return {"units": units, "people": people, "staff": staff}


def greeting(**kw: object) -> NewCampaign:
    fields: dict[str, object] = {
        "kind": CampaignKind.GREETING,
        "title": "中秋问候",
        "audience": Audience(),
        "texts": {"zh": "{name}您好，中秋快乐！", "en": "Happy Mid-Autumn, {name}!"},
        "channels": ("wechat", "sms"),
        "per_minute": 60,
    }
    fields.update(kw)
    return NewCampaign(**fields)  # type: ignore[arg-type]


def targets(session: Session, campaign: Campaign) -> dict[int, CampaignTarget]:
    rows = session.scalars(select(CampaignTarget).where(CampaignTarget.campaign_id == campaign.id))
    return {row.retiree_id: row for row in rows}


def test_the_audience_is_the_active_people_of_the_chosen_communities_age_and_factors(
    session: Session, town
) -> None:
    p, units = town["people"], town["units"]
    a1 = (units.community_a1.id,)

    def who(audience: Audience) -> set[int]:
        return set(session.scalars(audience.who(DAY)))

    everybody = {r.id for k, r in p.items() if k != "wu_gone"}
    assert who(Audience()) == everybody
    assert who(Audience(communities=a1)) == everybody - {p["zhou_88_b1"].id}
    assert who(Audience(min_age=80)) == {p[k].id for k in ("wang_91", "li_82_alone", "zhou_88_b1")}
    factors = Audience(communities=a1, factors=("lives_alone", "not_self_caring", "hardship"))
    assert who(factors) == {
        p[k].id for k in ("li_82_alone", "sun_72_dependent", "qian_75_hardship")
    }
    assert who(Audience(min_age=80, factors=("lives_alone",))) == {p["li_82_alone"].id}


def test_a_greeting_goes_through_the_outbox_at_its_rate_and_is_done_when_all_are_sent(
    session: Session, town
) -> None:
    p, staff = town["people"], town["staff"]
    session.add(MessagingIdentity(channel="wechat", address="o-wang", retiree_id=p["wang_91"].id))
    session.flush()
    campaign = campaigns.start(session, greeting(per_minute=3), by=staff, now=at(9))
    assert len(targets(session, campaign)) == 6  # the inactive one is not in it
    # every 20 s a run may send its share (1 of 3 a minute)
    sent = [
        campaigns.run_due(session, at(9) + timedelta(seconds=20 * n), CATS, every_s=20)
        for n in range(9)
    ]
    assert sent == [1] * 6 + [0] * 3
    assert campaign.status == CampaignStatus.DONE
    rows = targets(session, campaign)
    wang = rows[p["wang_91"].id]
    assert (wang.status, wang.channel) == (TargetStatus.SENT, "wechat")  # WeChat before SMS
    item = session.get(OutboxItem, wang.outbox_id)
    assert item is not None and item.address == "o-wang"
    assert item.payload["text"] == "王阿姨您好，中秋快乐！" and item.payload["kind"] == "campaign"
    li = rows[p["li_82_alone"].id]
    assert li.channel == "sms" and session.get(OutboxItem, li.outbox_id).payload["name"] == "李伯"
    # never twice: a campaign's row per person, and the outbox key per campaign and person
    keys = [i.idempotency_key for i in session.scalars(select(OutboxItem))]
    assert len(keys) == len(set(keys)) == 6


def test_the_rate_counts_what_the_last_minute_sent(session: Session, town) -> None:
    campaign = campaigns.start(session, greeting(per_minute=4), by=town["staff"], now=at(9))
    assert campaigns.run_due(session, at(9), CATS, every_s=60) == 4
    assert campaigns.run_due(session, at(9) + timedelta(seconds=30), CATS, every_s=60) == 0
    assert campaigns.run_due(session, at(9, 1), CATS, every_s=60) == 2
    assert campaign.status == CampaignStatus.ACTIVE  # done at the next run that finds nobody
    campaigns.run_due(session, at(9, 2), CATS, every_s=60)
    assert campaign.status == CampaignStatus.DONE


def test_nothing_is_sent_at_night_or_before_the_start(session: Session, town) -> None:
    later = at(10)
    campaign = campaigns.start(session, greeting(starts_at=later), by=town["staff"], now=at(7))
    assert campaigns.run_due(session, at(9), CATS) == 0  # not started
    assert campaigns.run_due(session, at(22, 30), CATS) == 0  # quiet hours (21:00-08:00)
    assert campaigns.run_due(session, at(7, 59, DAY + timedelta(days=1)), CATS) == 0
    assert session.scalars(select(OutboxItem)).first() is None
    assert campaigns.run_due(session, at(8, 0, DAY + timedelta(days=1)), CATS) == 6
    assert all(t.status == TargetStatus.SENT for t in targets(session, campaign).values())


def test_no_consent_and_no_channel_are_skipped_with_the_reason(session: Session, town) -> None:
    p = town["people"]
    p["zhao_70"].consents = {"contact_by_message": False}
    session.flush()
    campaign = campaigns.start(session, greeting(channels=("wechat",)), by=town["staff"], now=at(9))
    session.add(MessagingIdentity(channel="wechat", address="o-wang", retiree_id=p["wang_91"].id))
    session.flush()
    campaigns.run_due(session, at(9), CATS)
    rows = targets(session, campaign)
    assert rows[p["zhao_70"].id].skipped_why == "no_consent"
    assert rows[p["li_82_alone"].id].skipped_why == "no_channel"  # WeChat only, and none
    assert rows[p["wang_91"].id].status == TargetStatus.SENT
    counts = campaigns.counts(session, [campaign.id])[campaign.id]
    assert (counts.people, counts.sent, counts.skipped) == (6, 1, 5)


def test_delivery_failures_and_answers_are_counted(session: Session, town) -> None:
    p = town["people"]
    campaign = campaigns.start(session, greeting(channels=("sms",)), by=town["staff"], now=at(9))
    campaigns.run_due(session, at(9), CATS)
    rows = targets(session, campaign)
    delivered = session.get(OutboxItem, rows[p["wang_91"].id].outbox_id)
    failed = session.get(OutboxItem, rows[p["li_82_alone"].id].outbox_id)
    outbox.mark_sent(delivered, now=at(9, 1))
    failed.status = OutboxStatus.DEAD
    # 王阿姨 writes back the next day; 赵 wrote the day before (not an answer); 周 a week later
    for who, when in (("wang_91", at(15, 0, DAY + timedelta(days=1))), ("zhao_70", at(8))):
        message_from(session, p[who], when)
    message_from(session, p["zhou_88_b1"], at(9, 0, DAY + timedelta(days=7)))
    counts = campaigns.counts(session, [campaign.id])[campaign.id]
    assert (counts.sent, counts.delivered, counts.failed, counts.answered) == (6, 1, 1, 1)
    assert counts.waiting == 0 and counts.to_visit == 0


def message_from(session: Session, retiree: Retiree, when: datetime) -> None:
    session.add(
        Message(
            channel="sms",
            direction=Direction.INBOUND,
            address=retiree.phones[0].number,
            text="谢谢",
            status=MessageStatus.RECEIVED,
            retiree_id=retiree.id,
            created_at=when,
        )
    )
    session.flush()


def test_cancelling_stops_sending_and_calls_off_what_waits(session: Session, town) -> None:
    campaign = campaigns.start(session, greeting(per_minute=2), by=town["staff"], now=at(9))
    campaigns.run_due(session, at(9), CATS, every_s=60)
    assert campaigns.cancel(session, campaign, now=at(9, 0)) == 4
    assert campaigns.run_due(session, at(9, 5), CATS) == 0
    statuses = {i.status for i in session.scalars(select(OutboxItem))}
    assert statuses == {OutboxStatus.CANCELLED}
    assert campaign.status == CampaignStatus.CANCELLED


def test_a_visit_round_gives_each_person_to_one_visitor_in_turn(session: Session, town) -> None:
    units = town["units"]
    volunteer = make_staff(session, Role.VOLUNTEER, [units.community_a1], name="小刘")
    staff: Staff = town["staff"]
    new = NewCampaign(
        kind=CampaignKind.VISITS,
        title="四季度走访",
        audience=Audience(communities=(units.community_a1.id,), min_age=75),
        assignees=(staff.id, volunteer.id),
        due_on=date(2026, 12, 31),
    )
    campaign = campaigns.start(session, new, by=staff, now=at(9))
    rows = targets(session, campaign)
    assert len(rows) == 3  # 王 91, 李 82, 钱 75 in community A1
    assert {t.status for t in rows.values()} == {TargetStatus.ASSIGNED}
    mine = campaigns.my_visits(session, volunteer)
    theirs = campaigns.my_visits(session, staff)
    assert len(mine) + len(theirs) == 3 and abs(len(mine) - len(theirs)) == 1
    assert campaigns.run_due(session, at(10), CATS) == 0  # nothing is sent for visits
    for target in mine + theirs:
        visit = Visit(retiree_id=target.retiree_id, visited_on=DAY, staff_id=target.assignee_id)
        session.add(visit)
        session.flush()
        campaigns.visited(session, target, visit, now=at(11))
    assert campaign.status == CampaignStatus.DONE
    assert campaigns.my_visits(session, volunteer) == []
    counts = campaigns.counts(session, [campaign.id])[campaign.id]
    assert (counts.people, counts.to_visit, counts.visited) == (3, 0, 3)


def test_a_campaign_without_what_it_needs_is_refused(session: Session, town) -> None:
    staff = town["staff"]
    with pytest.raises(CampaignError) as empty:
        campaigns.start(session, greeting(texts={"zh": "  "}), by=staff, now=at(9))
    assert empty.value.key == "campaigns.errors.no_text"
    visits = NewCampaign(kind=CampaignKind.VISITS, title="走访", audience=Audience())
    with pytest.raises(CampaignError) as nobody_to_go:
        campaigns.start(session, visits, by=staff, now=at(9))
    assert nobody_to_go.value.key == "campaigns.errors.no_assignees"
    with pytest.raises(CampaignError) as nobody:
        campaigns.start(session, greeting(audience=Audience(min_age=120)), by=staff, now=at(9))
    assert nobody.value.key == "campaigns.errors.nobody"
