"""The follow-up's work (回访, storage/follow_ups.py says what a round is): asking when a round
is due, asking again, giving up with a call-back case, and taking the retiree's answer, which
may reopen the case and tell its owner. `run_due` is the periodic job (bot/runtime/periodic.py)."""

from __future__ import annotations

from datetime import datetime

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from config.categories import CategoryConfig
from config.i18n import Catalogs
from storage import actions, outbox, timeline
from storage.alert_chain import message_channel
from storage.db import for_this_worker
from storage.follow_ups import (
    ANSWER_WINDOW,
    ASKED_ABOUT,
    CHOICES,
    KIND,
    MAX_ATTEMPTS,
    OPEN_ROUND,
    RETIREE,
    WORKER,
    Answer,
    choice_value,
)
from storage.models import Case, FollowUp, FollowUpStatus
from storage.notices import NotTold, choose_destination, notice_language, read_facts
from storage.site import site_of

log = structlog.get_logger(__name__)


def due(session: Session, now: datetime, *, limit: int = 100) -> list[FollowUp]:
    """Rounds to ask (again) or to give up on, locked for this worker (other workers skip
    them on PostgreSQL; SQLite has one writer at a time anyway)."""
    query = (
        select(FollowUp)
        .where(FollowUp.status.in_(OPEN_ROUND), FollowUp.next_attempt_at <= now)
        .order_by(FollowUp.next_attempt_at, FollowUp.id)
        .limit(limit)
    )
    return list(session.scalars(for_this_worker(session, query, FollowUp)))


def run_due(
    session: Session, now: datetime, categories: CategoryConfig, *, limit: int = 100
) -> int:
    """Ask, ask again, or give up on every round that is due; returns how many were handled."""
    handled = 0
    for follow_up in due(session, now, limit=limit):
        case = session.get(Case, follow_up.case_id)
        if case is None or case.status not in ASKED_ABOUT:
            follow_up.status = FollowUpStatus.CANCELLED  # reopened or cancelled meanwhile
        elif follow_up.attempts >= MAX_ATTEMPTS:
            give_up(session, follow_up, case, categories, now=now)
        else:
            ask(session, follow_up, case, categories, now=now)
        handled += 1
    return handled


def ask(
    session: Session,
    follow_up: FollowUp,
    case: Case,
    categories: CategoryConfig,
    *,
    now: datetime,
) -> None:
    """Put the question in the outbox, on the channel the retiree used."""
    facts = read_facts(session, case, "resolve")
    target = choose_destination(case.channel, case.details or {}, facts)
    if isinstance(target, NotTold):
        give_up(session, follow_up, case, categories, now=now, why=target.why)
        return
    site = site_of(session)
    catalogs = site.catalogs
    lang = notice_language(facts, case.details or {}, site.language)
    follow_up.attempts += 1
    follow_up.status = FollowUpStatus.ASKED
    follow_up.asked_at = now
    follow_up.next_attempt_at = site.care.quiet_hours.after(now + ANSWER_WINDOW, site.tz)
    # A phone caller is asked by a call (keypad), everyone else by message on their channel.
    channel = "voice" if case.channel == "phone" and target.channel == "sms" else target.channel
    follow_up.channel, follow_up.address = channel, target.address
    outbox.enqueue(
        session,
        channel=channel,
        address=target.address,
        payload={
            "kind": KIND,
            "case": case.number,
            "follow_up": follow_up.id,
            "text": question(
                catalogs,
                lang,
                case.number,
                by_voice=channel == "voice",
                buttons=channel == "telegram",
            ),
            "language": lang,
            # [value, label] pairs, as every outbox payload has them (Telegram's buttons).
            "choices": [
                [choice_value(follow_up.id, n), catalogs.text(f"follow_up.{n}", lang)]
                for n in CHOICES
            ],
        },
        idempotency_key=f"{case.number}:{KIND}:{follow_up.round}:{follow_up.attempts}",
        priority=3,
        case_id=case.id,
        now=now,
    )
    timeline.record(
        session,
        case,
        "follow_up_asked",
        now=now,
        data={"attempt": follow_up.attempts, "channel": channel},
        note=catalogs.text(
            "follow_up.event.asked",
            site.language,
            attempt=follow_up.attempts,
            channel=catalogs.text(f"follow_up.by.{channel}", site.language),
        ),
    )


def question(
    catalogs: Catalogs, lang: str, number: str, *, by_voice: bool, buttons: bool = False
) -> str:
    """The question: keys to press on a call, buttons to tap on Telegram, else a digit to reply."""
    if by_voice:
        key = "follow_up.question_voice"
    else:
        key = "follow_up.question_buttons" if buttons else "follow_up.question"
    return catalogs.text(key, lang, number=number)


def give_up(
    session: Session,
    follow_up: FollowUp,
    case: Case,
    categories: CategoryConfig,
    *,
    now: datetime,
    why: str = "unanswered",
) -> Case:
    """Nobody answered (or nobody can be reached): a call-back case so staff ring them."""
    site = site_of(session)
    catalogs, staff_lang = site.catalogs, site.language
    callback = actions.file_case(
        session,
        category="callback",
        channel=case.channel,
        actor=WORKER,
        retiree=case.retiree,
        unit=case.unit,
        summary=catalogs.text("follow_up.callback_summary", staff_lang, number=case.number),
        details={"reason": "follow_up", "follow_up_of": case.number, "why": why},
        categories=categories,
        now=now,
    )
    follow_up.status = FollowUpStatus.UNANSWERED
    follow_up.callback_case_id = callback.id
    timeline.record(
        session,
        case,
        "follow_up_unanswered",
        now=now,
        data={"callback": callback.number, "why": why},
        note=catalogs.text("follow_up.event.unanswered", staff_lang, callback=callback.number),
    )
    log.info("follow_up_unanswered", case=case.number, callback=callback.number, why=why)
    return callback


def answer(
    session: Session,
    follow_up: FollowUp,
    choice: str,
    categories: CategoryConfig,
    *,
    now: datetime,
) -> Answer:
    """The retiree's answer (1, 2 or 3). Not done or not satisfied reopens the case (resolved
    or closed) and tells its owner. An answer to a round that is no longer open changes
    nothing."""
    result = Answer.from_choice(choice)
    if follow_up.status not in OPEN_ROUND:
        return result
    case = session.get(Case, follow_up.case_id)
    assert case is not None
    follow_up.status = FollowUpStatus.ANSWERED
    follow_up.answered_at = now
    follow_up.done, follow_up.satisfied = result.done, result.satisfied
    site = site_of(session)
    catalogs, staff_lang = site.catalogs, site.language
    timeline.record(
        session,
        case,
        "follow_up_answered",
        now=now,
        data={"answer": result.label, "channel": follow_up.channel},
        note=catalogs.text(f"follow_up.event.answered.{result.label}", staff_lang),
        actor=RETIREE,
    )
    if result.reopens and case.status in ASKED_ABOUT:
        reason = catalogs.text(f"follow_up.reopen_reason.{result.label}", staff_lang)
        actions.reopen(session, case, RETIREE, reason=reason, categories=categories, now=now)
        _tell_owner(session, case, result, catalogs, now)
    return result


def _tell_owner(
    session: Session, case: Case, result: Answer, catalogs: Catalogs, now: datetime
) -> None:
    owner = case.assignee or case.first_contact_owner
    if owner is None:
        return  # back in the unit's queue: the queue shows it
    target = message_channel(owner)
    if target is None:
        return
    channel, address = target
    lang = site_of(session).language
    text = catalogs.text(f"follow_up.owner.{result.label}", lang, number=case.number)
    outbox.enqueue(
        session,
        channel=channel,
        address=address,
        payload={"kind": "follow_up_reopened", "case": case.number, "text": text, "language": lang},
        idempotency_key=f"{case.number}:follow_up_reopened:{now.isoformat()}",
        priority=2,
        case_id=case.id,
        now=now,
    )
