"""Family linked with the retiree's consent (storage/family.py): told only what the consent
covers (an emergency, a check-in not answered, a request done) and never twice; a family
member who may ask is the retiree's proxy in a conversation. On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from bot.conversation.messages import Inbound
from storage import actions, family
from storage.alert_chain import alert_emergency
from storage.db import transaction
from storage.models import (
    Case,
    ConversationState,
    EmergencyContact,
    FamilyMember,
    OutboxItem,
    Retiree,
    RetireeStatus,
    Role,
)
from storage.permissions import Actor
from storage.site import site_of
from tests.factories import make_retiree, make_staff, make_unit_tree

NOW = datetime(2026, 6, 2, 2, 0, tzinfo=UTC)  # 10:00 in Beijing
SON, DAUGHTER = "+8613600000001", "+8613600000002"


def link(session: Session, retiree: Retiree, address: str, **kw: Any) -> FamilyMember:
    return family.add(
        session,
        retiree,
        name=kw.pop("name", "王小明"),
        relation=kw.pop("relation", "儿子"),
        channel=kw.pop("channel", "sms"),
        address=address,
        may_know=kw.pop("may_know", list(family.TOPICS)),
        may_ask=kw.pop("may_ask", False),
        consent="本人同意，上门时当面确认",
        consented_on=date(2026, 6, 1),
        recorded_by_id=None,
        now=NOW,
    )


def sent_to(session: Session, address: str) -> list[str]:
    return [
        o.payload["kind"]
        for o in session.scalars(
            select(OutboxItem).where(OutboxItem.address == address).order_by(OutboxItem.id)
        )
    ]


def test_told_only_what_the_consent_covers(session: Session) -> None:
    units = make_unit_tree(session)
    retiree = make_retiree(session, units.community_a1, name="王秀英", age=86)
    link(session, retiree, SON, may_know=["outcomes"])
    link(session, retiree, DAUGHTER, name="王小红", may_know=["emergencies"])
    gone = link(session, retiree, "+8613600000003", may_know=list(family.TOPICS))
    gone.active = False  # the consent was withdrawn
    case = actions.file_case(
        session,
        category="help_request",
        channel="sms",
        actor=Actor.system("retiree"),
        retiree=retiree,
        summary="帮忙买菜",
        now=NOW,
    )
    staff = make_staff(session, Role.STAFF, [units.station_a])
    actions.claim(session, case, Actor.person(staff), now=NOW)
    actions.resolve(session, case, Actor.person(staff), outcome="菜已送到", now=NOW)
    assert sent_to(session, SON) == ["family_outcome"]
    [told] = session.scalars(select(OutboxItem).where(OutboxItem.address == SON)).all()
    assert case.number in told.payload["text"] and "王秀英" in told.payload["text"]
    assert "买菜" not in told.payload["text"]  # that it was done, never what it was
    assert sent_to(session, DAUGHTER) == [] and sent_to(session, "+8613600000003") == []
    # An emergency: the daughter is told; the son is not (his consent does not cover it).
    emergency = actions.file_case(
        session, category="emergency", channel="sms", actor=Actor.system(), retiree=retiree
    )
    alert_emergency(
        session, emergency, retiree, "我摔倒了", "+8613911112222", site_of(session).catalogs, "zh"
    )
    assert sent_to(session, DAUGHTER) == ["family_emergency"]
    assert sent_to(session, SON) == ["family_outcome"]


def test_an_emergency_contact_who_is_also_family_is_told_once(session: Session) -> None:
    units = make_unit_tree(session)
    retiree = make_retiree(session, units.community_a1, age=86)
    retiree.emergency_contacts.append(EmergencyContact(name="王小明", phone=SON))
    link(session, retiree, SON, may_know=["emergencies"])
    case = actions.file_case(
        session, category="emergency", channel="sms", actor=Actor.system(), retiree=retiree
    )
    alert_emergency(
        session, case, retiree, "我摔倒了", "+8613911112222", site_of(session).catalogs, "zh"
    )
    messages = [
        o
        for o in session.scalars(select(OutboxItem).where(OutboxItem.address == SON))
        if o.channel == "sms"
    ]
    assert len(messages) == 1  # as an emergency contact, not a second time as family


def test_a_family_member_who_may_ask_speaks_for_the_retiree(engine: Engine, bot) -> None:
    """Her son texts from his own phone: the conversation is hers, and the case says he asked."""
    with transaction(engine) as session:
        units = make_unit_tree(session)
        retiree = make_retiree(session, units.community_a1, name="王秀英", age=86)
        link(session, retiree, SON, may_ask=True)
        link(session, retiree, DAUGHTER, name="王小红", may_ask=False)
        retiree_id = retiree.id
    said = "我妈妈家的灯泡坏了，想请人来换一下，明天上午"
    result = bot.handle(Inbound("sms", SON, "SM-son-1", NOW, text=said))
    for n, text in enumerate(["对", "是的"], start=2):
        if result.cases:
            break
        result = bot.handle(
            Inbound("sms", SON, f"SM-son-{n}", NOW + timedelta(seconds=n), text=text)
        )
    assert result.retiree_id == retiree_id
    with transaction(engine) as session:
        state = session.scalars(
            select(ConversationState).where(ConversationState.address == SON)
        ).one()
        assert state.retiree_id == retiree_id
        cases = session.scalars(select(Case).where(Case.retiree_id == retiree_id)).all()
        assert cases, "no case was filed for her"
        assert cases[0].details["on_behalf"]["name"] == "王小明"
        assert cases[0].details["on_behalf"]["relation"] == "儿子"
    # A hello from him is answered as his, not hers; the daughter may not ask: her text is an
    # unknown sender's.
    later = NOW + timedelta(hours=3)
    hello = bot.handle(Inbound("sms", SON, "SM-son-hello", later, text="你好"))
    assert "您是替王秀英办事吧" in hello.replies[0].text, hello.replies
    assert "王秀英您好" not in hello.replies[0].text
    other = bot.handle(Inbound("sms", DAUGHTER, "SM-daughter-1", NOW, text=said))
    assert other.retiree_id is None


def test_a_number_linked_by_sms_or_whatsapp_is_the_same_person_on_every_phone_channel(
    session: Session,
) -> None:
    """Her son was linked with his number for SMS, her daughter on WhatsApp: either may call
    the hotline, text, or write on WhatsApp from that number and be known; a WeChat account is
    known only on WeChat."""
    units = make_unit_tree(session)
    retiree = make_retiree(session, units.community_a1, name="王秀英")
    son = link(session, retiree, SON, may_ask=True)
    daughter = link(
        session, retiree, "whatsapp:" + DAUGHTER, name="王小红", channel="whatsapp", may_ask=True
    )
    wechat = link(session, retiree, "o-grandson", name="小孙", channel="wechat", may_ask=True)
    for channel, address, member in (
        ("phone", SON, son),
        ("sms", SON, son),
        ("whatsapp", "whatsapp:" + SON, son),
        ("phone", DAUGHTER, daughter),
        ("sms", DAUGHTER, daughter),
        ("wechat", "o-grandson", wechat),
    ):
        assert family.speaking_for(session, channel, address) == member, (channel, address)
    assert family.speaking_for(session, "telegram", "o-grandson") is None
    assert family.speaking_for(session, "phone", "+8613600000009") is None
    retiree.status = RetireeStatus.INACTIVE  # she died: nobody speaks for her any more
    session.flush()
    assert family.speaking_for(session, "sms", SON) is None
