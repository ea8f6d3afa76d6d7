"""Family linked to a retiree (家属), with the retiree's recorded consent: staff record who they
are, how to reach them, what they may be told and whether they may ask for help on the
retiree's behalf (the registry's profile, console/routes/care.py). Nothing is sent to family
without a consent on record, and only what it covers:

- ``emergencies``: an emergency of the retiree was filed (storage/alert_chain.py tells them as
  it starts the alert calls);
- ``check_ins``: a check-in went unanswered (storage/check_ins.py, the ladder's tell_family);
- ``outcomes``: a request of the retiree was done (storage/actions.resolve): that it was done,
  and its number, never what it was about.

A family member who ``may_ask`` and writes from their account, or texts or calls from the phone
number linked (by SMS or WhatsApp: the same number on any phone channel), is talked with as the
retiree's proxy: the conversation is the retiree's, and each case it files says who asked
(bot/conversation/engine.py, ``details["on_behalf"]``).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage import outbox
from storage.models import Case, FamilyMember, Retiree, RetireeStatus
from storage.site import site_of

EMERGENCIES, CHECK_INS, OUTCOMES = "emergencies", "check_ins", "outcomes"
TOPICS = (EMERGENCIES, CHECK_INS, OUTCOMES)
CHANNELS = ("sms", "wechat", "telegram", "whatsapp")
# Channels whose address is a phone number (WhatsApp's with Twilio's "whatsapp:" before it):
# a number linked on one of them is the same person on the others.
PHONE_CHANNELS = frozenset({"sms", "whatsapp", "phone", "voice", "cli"})
WHATSAPP = "whatsapp:"
PRIORITY = {EMERGENCIES: 1, CHECK_INS: 2, OUTCOMES: 4}
KIND = {EMERGENCIES: "family_emergency", CHECK_INS: "check_in_family", OUTCOMES: "family_outcome"}


def told_of(session: Session, retiree_id: int, topic: str) -> list[FamilyMember]:
    """The active family of the retiree whose consent covers ``topic``."""
    members = session.scalars(
        select(FamilyMember)
        .where(FamilyMember.retiree_id == retiree_id, FamilyMember.active.is_(True))
        .order_by(FamilyMember.id)
    )
    return [m for m in members if topic in (m.may_know or [])]


def tell(
    session: Session,
    retiree: Retiree,
    topic: str,
    *,
    key: str,
    now: datetime,
    case: Case | None = None,
    skip: Collection[str] = (),
    **params: Any,
) -> int:
    """Queue the message of ``topic`` (the catalog's ``family.<topic>``, with the retiree's
    name, their community and ``params``) to each family member it may go to (but not to the
    addresses in ``skip``: told already), once per ``key``; returns how many."""
    members = [m for m in told_of(session, retiree.id, topic) if m.address not in skip]
    if not members:
        return 0
    site = site_of(session)
    lang = site.language
    community = retiree.community.name(lang) if retiree.community is not None else ""
    fields = {"name": retiree.name, "community": community, **params}
    text = site.catalogs.text(f"family.{topic}", lang, **fields)
    for member in members:
        outbox.enqueue(
            session,
            channel=member.channel,
            address=member.address,
            payload={"kind": KIND[topic], "text": text, "language": lang, **fields},
            idempotency_key=f"family:{key}:{member.id}",
            priority=PRIORITY[topic],
            case_id=case.id if case is not None else None,
            now=now,
        )
    return len(members)


def tell_outcome(session: Session, case: Case, *, now: datetime) -> int:
    """The retiree's request ``case`` was done: family who may know outcomes are told."""
    if case.retiree is None:
        return 0
    resolved = case.resolved_at or now
    key = f"{case.number}:outcome:{int(resolved.timestamp())}"
    return tell(
        session, case.retiree, OUTCOMES, key=key, now=now, case=case, case_number=case.number
    )


def speaking_for(session: Session, channel: str, address: str) -> FamilyMember | None:
    """The family member who may ask on a retiree's behalf and writes (or calls) from
    ``address`` on ``channel`` (the first linked, if they are family of several); none for a
    retiree marked inactive (deceased or moved away)."""
    if channel in PHONE_CHANNELS:
        number = address.removeprefix(WHATSAPP)
        where = (
            FamilyMember.channel.in_(("sms", "whatsapp")),
            FamilyMember.address.in_((number, WHATSAPP + number)),
        )
    else:
        where = (FamilyMember.channel == channel, FamilyMember.address == address)
    return session.scalars(
        select(FamilyMember)
        .join(Retiree, Retiree.id == FamilyMember.retiree_id)
        .where(
            *where,
            FamilyMember.active.is_(True),
            Retiree.status != RetireeStatus.INACTIVE,
            FamilyMember.may_ask.is_(True),
        )
        .order_by(FamilyMember.id)
        .limit(1)
    ).first()


def on_behalf(member: FamilyMember) -> dict[str, Any]:
    """What a case filed by a family member says of who asked."""
    return {"family_member": member.id, "name": member.name, "relation": member.relation}


def add(
    session: Session,
    retiree: Retiree,
    *,
    name: str,
    relation: str,
    channel: str,
    address: str,
    may_know: Sequence[str],
    may_ask: bool,
    consent: str,
    consented_on: date,
    recorded_by_id: int | None,
    now: datetime,
) -> FamilyMember:
    """Link a family member (the caller checked the values and the consent)."""
    member = FamilyMember(
        retiree_id=retiree.id,
        name=name,
        relation=relation,
        channel=channel,
        address=address,
        may_know=[t for t in TOPICS if t in may_know],
        may_ask=may_ask,
        consent=consent,
        consented_on=consented_on,
        recorded_by_id=recorded_by_id,
        active=True,
        created_at=now,
    )
    session.add(member)
    session.flush()
    return member
