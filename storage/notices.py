"""Telling the retiree who asked that their case was taken on (claimed) and that it is done
(resolved): an outbox row written by storage.actions in the action's own transaction, so every
interface that claims or resolves (Telegram buttons, CLI, console) sends it, and a rolled-back
action sends nothing. The worker (bot/runtime/worker.py) delivers it like any other notification.

Where the message goes, first that applies:
1. The conversation that filed the case: the inbound message the engine recorded with the case
   (channel and address exactly as the person used them). A Telegram case goes to their Telegram
   chat; SMS and WhatsApp back to the same number; a phone (voice) case by SMS to the number they
   called from (the one-key phone receives SMS).
2. A case the bot filed without that record (the person hung up or went idle half-way, or a
   second case in one turn), on the same channel: the retiree's latest message on that channel
   before the filing, else the retiree's account on it (MessagingIdentity), else the number in
   the case's details ("caller", an unknown caller's call-back).
3. Anything else, such as a case staff filed for a retiree (walk-in, CLI, console): the
   retiree's first phone by SMS; for an unknown caller the phone staff wrote down
   ("caller_phone").
A case from the web API or the command-line chat (nobody to push a message to), a case without
any address, or a retiree whose consents say ``contact_by_message: false`` gets no message: a
``notice_skipped`` case event says why (and a log line), and the action goes on. Only the
filing conversation counts for a retiree marked inactive (deceased or moved away).

What it says: the case number, who took it (first name and role, never a phone number) and by
when (the resolve deadline); then that it is done, with the outcome. Nothing about the request
itself, so nothing health-related. Emergencies are told too (staff may already be on the phone,
but a written "someone has it" costs nothing) with a reminder to call 120 instead of a deadline;
the outcome of an emergency and of the staff-only categories (complaints, bereavement) is not
repeated in the message, it is for staff to explain. The deadline is a date and a clock time in
the retiree's language, rendered here from the catalogs, not bot.conversation.timefmt's spoken "今天下午5点前":
storage does not import bot/, and a written message may be delivered or read hours later, when
"today" would be wrong.

One message per (case, kind, claim or resolve number): a case claimed again after a release or a
transfer is told again, a retried transaction is not (the idempotency key is the same).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy import Integer, String, bindparam, func, select
from sqlalchemy.orm import Session

from config.categories import STAFF_ONLY_CATEGORIES
from config.i18n import LANGUAGES, Catalogs
from storage import timeline
from storage.db import dialect_insert
from storage.models import (
    Case,
    CaseEvent,
    Direction,
    Message,
    MessagingIdentity,
    OutboxItem,
    OutboxStatus,
    Retiree,
    RetireePhone,
    RetireeStatus,
    Role,
    Staff,
)
from storage.phones import InvalidPhoneNumber, normalize_phone
from storage.site import Site, site_of
from storage.types import UTCDateTime

log = structlog.get_logger(__name__)

CLAIMED, RESOLVED = "case_claimed", "case_resolved"
SKIPPED = "notice_skipped"  # the case event of a notice that could not be sent
PRIORITY = 2  # after emergency alerts (1), before bulk (3)
# Case channel → the outbox channel that answers on it (a voice caller gets an SMS).
REPLY_CHANNELS = {
    "sms": "sms",
    "whatsapp": "whatsapp",
    "telegram": "telegram",
    "wechat": "wechat",
    "phone": "sms",
}
# Outbox channels whose addresses are accounts (a Telegram chat id, a WeChat OpenID), not numbers.
ACCOUNT_CHANNELS = ("telegram", "wechat")
# Channels with nobody to push a message to.
NO_REPLY_CHANNELS = ("web", "cli")
# Categories whose outcome is not repeated to the retiree (it may be health-related or private).
OUTCOME_WITHHELD = (*STAFF_ONLY_CATEGORIES, "emergency")
OUTCOME_MAX = 300  # characters of the outcome in the message


@dataclass(frozen=True)
class Destination:
    channel: str  # outbox channel
    address: str
    via: str  # which rule found it: conversation, identity, caller, phone


@dataclass(frozen=True)
class NotTold:
    why: str  # a key under notices.not_told


@dataclass(frozen=True)
class Facts:
    """What the database knows about where and how to tell the retiree, read in one query."""

    count: int  # this kind of action on the case so far, this one included
    filing_channel: str | None
    filing_address: str | None
    conversation_address: str | None
    identity_address: str | None
    phone: str | None
    language: str | None
    consents: dict[str, Any] | None
    retiree_status: str | None


# -- the hooks (called by storage.actions) -----------------------------------------------------


def tell_claimed(
    session: Session, case: Case, staff: Staff, *, now: datetime, facts: Facts | None = None
) -> str | None:
    """After ``staff`` claimed ``case``: who took it and by when. Returns the outbox item's
    idempotency key, None when nobody could be told. ``facts``: read already (by the claim's
    own statement), else read here."""
    tz = site_of(session).tz

    deadline = case.resolve_deadline
    promised = case.category != "emergency" and deadline is not None and deadline > now

    def text(catalogs: Catalogs, lang: str) -> str:
        who = _who(staff, catalogs, lang)
        if case.category == "emergency":
            return catalogs.text("notices.claimed_emergency", lang, number=case.number, who=who)
        if not promised:
            return catalogs.text("notices.claimed_soon", lang, number=case.number, who=who)
        by = format_deadline(deadline, tz, catalogs, lang)  # type: ignore[arg-type]
        return catalogs.text("notices.claimed", lang, number=case.number, who=who, by=by)

    def fields(catalogs: Catalogs, lang: str) -> dict[str, str]:
        """For an SMS template (config/sms_templates.yml): who, and by when ("" if no time)."""
        by = format_deadline(deadline, tz, catalogs, lang) if promised else ""  # type: ignore[arg-type]
        return {"who": _who(staff, catalogs, lang), "by": by}

    facts = facts or read_facts(session, case, "claim")
    return _tell(session, case, CLAIMED, facts, text, now, fields=fields)


def tell_resolved(session: Session, case: Case, *, now: datetime) -> str | None:
    """After ``case`` was resolved: that it is done, and the outcome where it may be repeated.
    Returns the outbox item's idempotency key, None when nobody could be told."""

    def text(catalogs: Catalogs, lang: str) -> str:
        if case.category in OUTCOME_WITHHELD:
            return catalogs.text("notices.resolved_private", lang, number=case.number)
        outcome = " ".join(case.outcome.split())
        if len(outcome) > OUTCOME_MAX:
            outcome = outcome[: OUTCOME_MAX - 1] + "…"
        return catalogs.text("notices.resolved", lang, number=case.number, outcome=outcome)

    return _tell(session, case, RESOLVED, read_facts(session, case, "resolve"), text, now)


def _tell(
    session: Session,
    case: Case,
    kind: str,
    facts: Facts,
    text: Callable[[Catalogs, str], str],
    now: datetime,
    *,
    fields: Callable[[Catalogs, str], dict[str, str]] | None = None,
) -> str | None:
    target = choose_destination(case.channel, case.details or {}, facts)
    site = site_of(session)
    catalogs = site.catalogs
    if isinstance(target, NotTold):
        _record_not_told(session, case, kind, target, site, now)
        return None
    lang = notice_language(facts, case.details or {}, site.language)
    key = f"{case.number}:{kind}:{facts.count}"
    payload = {"kind": kind, "case": case.number, "text": text(catalogs, lang), "language": lang}
    if fields is not None:
        payload["fields"] = fields(catalogs, lang)
    _enqueue(
        session,
        channel=target.channel,
        address=target.address,
        payload=payload,
        idempotency_key=key,
        case_id=case.id,
        now=now,
    )
    log.info(
        "retiree_notice_queued", case=case.number, kind=kind, channel=target.channel, via=target.via
    )
    return key


def _enqueue(
    session: Session,
    *,
    channel: str,
    address: str,
    payload: dict[str, Any],
    idempotency_key: str,
    case_id: int,
    now: datetime,
) -> None:
    """outbox.enqueue's row, in one statement built once: it does not read the row back, which
    would cost every claim a round trip more (see benchmarks/queue_bench.py). Nothing happens
    when the key exists."""
    params = {
        "channel": channel,
        "address": address,
        "payload": payload,
        "idempotency_key": idempotency_key,
        "case_id": case_id,
        "now": now,
    }
    session.execute(_insert_statement(dialect_insert(session)), params)


@lru_cache(maxsize=2)
def _insert_statement(insert_of: Any) -> Any:
    table = OutboxItem.__table__
    now = bindparam("now", type_=UTCDateTime())
    return (
        insert_of(table)
        .values(
            channel=bindparam("channel", type_=String()),
            address=bindparam("address", type_=String()),
            payload=bindparam("payload", type_=table.c.payload.type),
            idempotency_key=bindparam("idempotency_key", type_=String()),
            priority=PRIORITY,
            status=OutboxStatus.PENDING.value,
            attempts=0,
            next_attempt_at=now,
            last_error="",
            case_id=bindparam("case_id", type_=Integer()),
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
    )


def _record_not_told(
    session: Session, case: Case, kind: str, why: NotTold, site: Site, now: datetime
) -> None:
    """A line on the case's timeline (in the staff's language): staff then know to call.
    A Core insert: no unit of work to run for it in the claim's hot path."""
    note = site.catalogs.text(f"notices.not_told.{why.why}", site.language)
    timeline.record_now(
        session, case, SKIPPED, now=now, note=note, data={"kind": kind, "why": why.why}
    )
    log.info("retiree_notice_skipped", case=case.number, kind=kind, why=why.why)


# -- where -------------------------------------------------------------------------------------


def choose_destination(
    case_channel: str, details: dict[str, Any], facts: Facts
) -> Destination | NotTold:
    """Where the message goes (the rules of the module docstring, in order)."""
    if (facts.consents or {}).get("contact_by_message") is False:
        return NotTold("declined")
    if case_channel in NO_REPLY_CHANNELS:
        return NotTold(case_channel)
    found = _reply_to(facts.filing_channel, facts.filing_address, "conversation")
    if found is not None:
        return found
    active = facts.retiree_status != RetireeStatus.INACTIVE.value
    candidates: list[tuple[str | None, str | None, str]] = []
    if active:
        candidates += [
            (case_channel, facts.conversation_address, "conversation"),
            (case_channel, facts.identity_address, "identity"),
        ]
    candidates.append((case_channel, _text(details.get("caller")), "caller"))
    if active:
        candidates.append(("sms", facts.phone, "phone"))
    candidates.append(("sms", _text(details.get("caller_phone")), "caller"))
    for channel, address, via in candidates:
        found = _reply_to(channel, address, via)
        if found is not None:
            return found
    return NotTold("no_address")


def _reply_to(channel: str | None, address: str | None, via: str) -> Destination | None:
    """The outbox destination answering ``address`` on ``channel``; None if it cannot be
    answered there (an unknown channel, a withheld number, a Telegram address that is no chat)."""
    out = REPLY_CHANNELS.get(channel or "")
    if out is None or not address:
        return None
    if out == "telegram":
        return Destination(out, address, via) if address.lstrip("-").isdigit() else None
    if out in ACCOUNT_CHANNELS:
        return Destination(out, address, via)
    try:
        number = normalize_phone(address)
    except InvalidPhoneNumber:
        return None
    return Destination(out, f"whatsapp:{number}" if out == "whatsapp" else number, via)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def read_facts(session: Session, case: Case, action: str) -> Facts:
    """Everything the choice and the text need, in one round trip."""
    params = {
        "case_id": case.id,
        "action": action,
        "retiree_id": case.retiree_id,
        "channel": case.channel,
        "filed_at": case.created_at,
    }
    return facts_from(session.execute(_facts_query(), params).one())


def facts_from(row: Sequence[Any], *, uncounted: int = 0) -> Facts:
    """Facts from the values of fact_columns, in their order. ``uncounted``: actions of the
    kind that the query could not see yet (made by the same statement)."""
    count, channel, address, conversation, identity, phone, language, consents, status = row
    return Facts(
        count=int(count or 0) + uncounted,
        filing_channel=channel,
        filing_address=address,
        conversation_address=conversation,
        identity_address=identity,
        phone=phone,
        language=language,
        consents=consents if isinstance(consents, dict) else None,
        retiree_status=status,
    )


@lru_cache(maxsize=1)
def _facts_query() -> Any:
    """One SELECT of scalar subqueries, built once."""
    return select(
        *fact_columns(
            case_id=bindparam("case_id", type_=Integer()),
            retiree_id=bindparam("retiree_id", type_=Integer()),
            channel=bindparam("channel", type_=String()),
            filed_at=bindparam("filed_at", type_=UTCDateTime()),
            action=bindparam("action", type_=String()),
        )
    )


def fact_columns(
    *, case_id: Any, retiree_id: Any, channel: Any, filed_at: Any, action: Any
) -> list[Any]:
    """The facts of a case as scalar subqueries (each on an index), for read_facts or for a
    statement that has the case's columns already (the one-statement claim of
    storage.actions); facts_from reads them back."""

    def filing(column: Any) -> Any:
        return (
            select(column)
            .where(Message.case_id == case_id, Message.direction == Direction.INBOUND)
            .order_by(Message.id)
            .limit(1)
            .scalar_subquery()
        )

    def of_retiree(column: Any) -> Any:
        return select(column).where(Retiree.id == retiree_id).scalar_subquery()

    return [
        select(func.count(CaseEvent.id))
        .where(CaseEvent.case_id == case_id, CaseEvent.action == action)
        .scalar_subquery()
        .label("notice_count"),
        filing(Message.channel).label("notice_filing_channel"),
        filing(Message.address).label("notice_filing_address"),
        select(Message.address)
        .where(
            Message.retiree_id == retiree_id,
            Message.channel == channel,
            Message.direction == Direction.INBOUND,
            Message.created_at <= filed_at,
        )
        .order_by(Message.created_at.desc(), Message.id.desc())
        .limit(1)
        .scalar_subquery()
        .label("notice_conversation_address"),
        select(MessagingIdentity.address)
        .where(MessagingIdentity.retiree_id == retiree_id, MessagingIdentity.channel == channel)
        .order_by(MessagingIdentity.id)
        .limit(1)
        .scalar_subquery()
        .label("notice_identity_address"),
        select(RetireePhone.number)
        .where(RetireePhone.retiree_id == retiree_id)
        .order_by(RetireePhone.id)
        .limit(1)
        .scalar_subquery()
        .label("notice_phone"),
        of_retiree(Retiree.preferred_language).label("notice_language"),
        of_retiree(Retiree.consents).label("notice_consents"),
        of_retiree(Retiree.status).label("notice_retiree_status"),
    ]


# -- how -----------------------------------------------------------------------------------------


def notice_language(facts: Facts, details: dict[str, Any], default: str) -> str:
    """The retiree's preferred language; for an unknown caller the conversation's; else the
    deployment's (``default``)."""
    for lang in (facts.language, details.get("language")):
        if lang in LANGUAGES:
            return str(lang)
    return default


def _who(staff: Staff, catalogs: Catalogs, lang: str) -> str:
    """ "志愿者王芳" / "volunteer Anna": the first word of the name (a Chinese name is one word)
    and the role. Never the phone number."""
    role = "volunteer" if staff.role == Role.VOLUNTEER else "staff"
    words = staff.name.split()
    if not words:
        return catalogs.text(f"notices.who.{role}_unnamed", lang)
    return catalogs.text(f"notices.who.{role}", lang, name=words[0])


def format_deadline(moment: datetime, tz: ZoneInfo, catalogs: Catalogs, lang: str) -> str:
    """ "12月7日星期一 17:00" / "Monday 7 December, 17:00": a date and a clock time that stay
    right whenever the message is read."""
    local = moment.astimezone(tz)
    date = catalogs.text(
        "time.date",
        lang,
        month=catalogs.text(f"time.month.{local.month}", lang),
        day=local.day,
        weekday=catalogs.text(f"time.weekday.{local.weekday()}", lang),
    )
    clock = f"{local.hour}:{local.minute:02d}"
    return catalogs.text("notices.deadline", lang, date=date, clock=clock)
