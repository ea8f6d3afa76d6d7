"""The outbox's calls, on any voice line: Twilio's (bot/channels/twilio/voice/: TwiML and its
webhooks) and the SIP line's (bot/channels/sip/: `hotline sip` places them itself). Which kind
a call is, and what its keys do, are written here once:

- an emergency's alert call (storage/alert_chain.py): says the alert and asks for 1; 1 takes
  the emergency (storage.actions.take_alert: a staff member who pressed it owns the case); no
  key is asked about once more (``ALERT_ASKS``), then the chain moves on when the call ends;
- a follow-up call (回访, storage/follow_ups.py): asks its question; 1, 2 or 3 answers it
  (`hear`), another key hears the question once more (``FOLLOW_UP_ASKS``), no key: goodbye (the
  round stays asked, asked again later);
- a check-in call (主动关爱, storage/check_ins.py): asks how they are; 1 is well (thanks,
  goodbye), 2 needs help: the call goes on as if they had called us (`hear_check_in`); another
  key hears the question once more (``CHECK_IN_ASKS``); no key: goodbye (the ladder goes on);
- any other call (a notice): says its text twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from bot.conversation.follow_up_answers import Answered, answer_round
from config.i18n import Catalogs
from storage import actions, alert_chain, check_ins, follow_up_jobs, follow_ups
from storage.db import transaction
from storage.models import Case, CheckIn, FollowUp
from storage.site import site_of

CHANNEL = "voice"  # the outbox channel of the calls we place
ALERT_ASKS = 2  # an alert call asks for 1 this many times before it hangs up
FOLLOW_UP_ASKS = 2  # the question is heard again once after a key that is not 1, 2 or 3
CHECK_IN_ASKS = 2  # likewise after a key that is not 1 or 2


class CallKind(StrEnum):
    ALERT = "alert"
    FOLLOW_UP = "follow_up"
    CHECK_IN = "check_in"
    NOTICE = "notice"


def kind_of(channel: str, payload: dict[str, Any] | None) -> CallKind:
    if is_follow_up_call(channel, payload):
        return CallKind.FOLLOW_UP
    if alert_chain.is_alert_call(channel, payload):
        return CallKind.ALERT
    if channel == CHANNEL and check_ins.is_check_in(payload):
        return CallKind.CHECK_IN
    return CallKind.NOTICE


def is_follow_up_call(channel: str, payload: dict[str, Any] | None) -> bool:
    payload = payload or {}
    return (
        channel == CHANNEL
        and payload.get("kind") == follow_ups.KIND
        and isinstance(payload.get("follow_up"), int)
    )


# -- an emergency's alert call ------------------------------------------------------------------


def said_on(db: Engine, key: str) -> alert_chain.Said | None:
    """What the alert call ``key`` says; None when it is no alert call of ours."""
    with Session(db) as session:
        return alert_chain.said_on(session, key)


def take_alert(db: Engine, catalogs: Catalogs, key: str, call_sid: str) -> alert_chain.Pressed:
    """1 was pressed on the alert call ``key`` (placed as ``call_sid``)."""
    with transaction(db) as session:
        return actions.take_alert(session, key, call_sid, now=datetime.now(UTC), catalogs=catalogs)


def alert_call_ended(
    db: Engine, catalogs: Catalogs, key: str, call_sid: str, status: str, *, final: bool
) -> None:
    """A status of the alert call ``key``; a ``final`` one with no 1 pressed passes it on."""
    with transaction(db) as session:
        alert_chain.call_ended(
            session, key, call_sid, status, final=final, now=datetime.now(UTC), catalogs=catalogs
        )


# -- a follow-up call -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Heard:
    question: str  # the question, to say again
    language: str
    answered: Answered | None  # None: the key was no answer (or there was none)


def hear(db: Engine, follow_up_id: int, callee: str, digits: str, *, now: datetime) -> Heard | None:
    """What ``digits`` pressed on the follow-up call ``follow_up_id`` to ``callee`` does; None
    when no such question was put to that number. A round answered before is not answered
    again (a repeated webhook, a second key)."""
    with transaction(db) as session:
        follow_up = session.get(FollowUp, follow_up_id)
        if follow_up is None or follow_up.channel != CHANNEL or follow_up.address != callee:
            return None
        case = session.get(Case, follow_up.case_id)
        assert case is not None
        language = follow_ups.language_of(session, case)
        catalogs = site_of(session).catalogs
        question = follow_up_jobs.question(catalogs, language, case.number, by_voice=True)
        answered = None
        if digits in follow_ups.CHOICES:
            answered = answer_round(session, follow_up, digits, now=now)
        return Heard(question, language, answered)


# -- a check-in call ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckInHeard:
    question: str  # the question, to say again
    language: str
    answered: check_ins.Answered | None  # None: the key was no answer (or there was none)


def hear_check_in(
    db: Engine, check_in_id: int, callee: str, digits: str, *, now: datetime
) -> CheckInHeard | None:
    """What ``digits`` pressed on the check-in call ``check_in_id`` to ``callee`` does; None
    when the check-in was not last asked by a call to that number. The first answer counts
    (storage.check_ins.answer); a later one hears that the day's check-in is over."""
    with transaction(db) as session:
        check_in = session.get(CheckIn, check_in_id)
        if check_in is None or check_in.channel != CHANNEL or check_in.address != callee:
            return None
        retiree = check_in.retiree
        site = site_of(session)
        language = retiree.preferred_language or site.language
        question = site.catalogs.text("check_in.question_voice", language, name=retiree.name)
        answered = None
        if digits in check_ins.CHOICES:
            answered = check_ins.answer(session, check_in, digits, now=now)
        return CheckInHeard(question, language, answered)
