"""Follow-up (回访): after a case is resolved, the retiree is asked whether it was done and
whether they are satisfied, and their answer decides what happens next.

- Resolving a case starts a round (``start``, called by storage.actions.resolve in the same
  transaction); reopening or cancelling the case cancels an unanswered round.
- The worker asks when a round is due (``due`` then ``ask``): not before FOLLOW_UP_DELAY after the
  resolution and never during quiet hours (21:00–08:00 local: an old person woken by a survey
  call is not a satisfied one). The question goes where the claim and resolve notices go
  (storage.notices.choose_destination): a Telegram chat gets buttons, SMS and WhatsApp "reply 1, 2
  or 3", and a one-key phone caller an outbound call answered on the keypad.
- Answers: 1 done and satisfied; 2 done but not satisfied; 3 not done. "Not done" or "not
  satisfied" reopens the case (it goes back to its owner) and tells the owner. Only the retiree
  answers: nothing here takes an answer from a staff member (``answer`` has no actor parameter
  and the console offers no form for it).
- No answer within ANSWER_WINDOW: asked once more; after MAX_ATTEMPTS unanswered questions a
  call-back case (priority 2) is filed so staff ring the person, and the round is closed as
  unanswered. A retiree who cannot be reached on any channel gets the call-back at once.
- Closing a resolved case does not end its round: closing is staff's bookkeeping, the question is
  still asked, and "not done" reopens a closed case as it does a resolved one.

Which cases get a round (``wanted``): every resolved case ("every contact followed up", 有接必访;
an emergency above all: the call-back after two silences is a safety net), except
- a call-back filed by a follow-up (details ``reason: follow_up``): staff ringing the person is
  the follow-up; asking about it again would start an endless chain of rounds and call-backs;
- bereavement: the person the case is about has died; their family is not sent a keypad survey
  (staff visit and console them in person, 慰问).

The channels route the answers here (bot/conversation/follow_up_answers.py): a bare "1", "2" or "3"
by SMS or WhatsApp, a button on Telegram, a key on the follow-up call.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from config.categories import CategoryConfig
from config.i18n import Catalogs, get_catalogs
from config.settings import get_settings
from storage import outbox
from storage.models import Case, CaseEvent, CaseStatus, FollowUp, FollowUpStatus
from storage.notices import NotTold, choose_destination, notice_language, read_facts
from storage.permissions import Actor

log = structlog.get_logger(__name__)

FOLLOW_UP_DELAY = timedelta(hours=2)
ANSWER_WINDOW = timedelta(hours=24)
MAX_ATTEMPTS = 2
QUIET_FROM, QUIET_UNTIL = time(21, 0), time(8, 0)
KIND = "follow_up"
RETIREE = Actor.system("retiree")
WORKER = Actor.system("worker")
OPEN_ROUND = (FollowUpStatus.PENDING, FollowUpStatus.ASKED)
CHOICES = ("1", "2", "3")
# Whose resolution is not followed up (see the module docstring).
NOT_FOLLOWED_UP = ("bereavement",)
# A case still asked about: resolved, or resolved and closed by staff.
ASKED_ABOUT = (CaseStatus.RESOLVED, CaseStatus.CLOSED)


@dataclass(frozen=True)
class Answer:
    done: bool
    satisfied: bool | None  # None when it was not done (nothing to be satisfied with)

    @classmethod
    def from_choice(cls, choice: str) -> Answer:
        """The keypad digit or button value: 1, 2 or 3 (anything else is a ValueError)."""
        choices = {"1": cls(True, True), "2": cls(True, False), "3": cls(False, None)}
        try:
            return choices[choice.strip()]
        except KeyError:
            raise ValueError(f"a follow-up answer is 1, 2 or 3, not {choice!r}") from None

    @property
    def reopens(self) -> bool:
        return not self.done or self.satisfied is False

    @property
    def label(self) -> str:
        if not self.done:
            return "not_done"
        return "satisfied" if self.satisfied else "not_satisfied"


def wanted(case: Case) -> bool:
    """Whether resolving ``case`` starts a round (the rule of the module docstring)."""
    if case.category in NOT_FOLLOWED_UP:
        return False
    return not (case.category == "callback" and (case.details or {}).get("reason") == "follow_up")


def _zone() -> ZoneInfo:
    return ZoneInfo(get_settings().timezone)


def out_of_quiet_hours(moment: datetime, zone: ZoneInfo | None = None) -> datetime:
    """``moment``, or the end of the quiet hours it falls in (08:00 local)."""
    zone = zone or _zone()
    local = moment.astimezone(zone)
    if local.time() >= QUIET_FROM:
        local = datetime.combine(local.date() + timedelta(days=1), QUIET_UNTIL, tzinfo=zone)
    elif local.time() < QUIET_UNTIL:
        local = datetime.combine(local.date(), QUIET_UNTIL, tzinfo=zone)
    return local.astimezone(moment.tzinfo)


def start(session: Session, case: Case, *, now: datetime) -> FollowUp:
    """A new round for a case just resolved (an earlier open round is cancelled first)."""
    cancel_open(session, case)
    rounds = session.scalar(select(func.max(FollowUp.round)).where(FollowUp.case_id == case.id))
    follow_up = FollowUp(
        case_id=case.id,
        round=(rounds or 0) + 1,
        status=FollowUpStatus.PENDING,
        attempts=0,
        next_attempt_at=out_of_quiet_hours(now + FOLLOW_UP_DELAY),
        created_at=now,
    )
    session.add(follow_up)
    session.flush()
    return follow_up


def cancel_open(session: Session, case: Case) -> int:
    """Reopened or cancelled before an answer: the open round is moot."""
    result = session.execute(
        update(FollowUp)
        .where(FollowUp.case_id == case.id, FollowUp.status.in_(OPEN_ROUND))
        .values(status=FollowUpStatus.CANCELLED)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def due(session: Session, now: datetime, *, limit: int = 100) -> list[FollowUp]:
    """Rounds to ask (again) or to give up on, locked for this worker (other workers skip
    them on PostgreSQL; SQLite has one writer at a time anyway)."""
    query = (
        select(FollowUp)
        .where(FollowUp.status.in_(OPEN_ROUND), FollowUp.next_attempt_at <= now)
        .order_by(FollowUp.next_attempt_at, FollowUp.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True, of=FollowUp)
    return list(session.scalars(query))


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
    catalogs = get_catalogs()
    lang = notice_language(facts, case.details or {})
    follow_up.attempts += 1
    follow_up.status = FollowUpStatus.ASKED
    follow_up.asked_at = now
    follow_up.next_attempt_at = out_of_quiet_hours(now + ANSWER_WINDOW)
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
    _event(
        session,
        case,
        "follow_up_asked",
        now,
        data={"attempt": follow_up.attempts, "channel": channel},
        note=catalogs.text(
            "follow_up.event.asked",
            get_settings().default_language,
            attempt=follow_up.attempts,
            channel=catalogs.text(f"follow_up.by.{channel}", get_settings().default_language),
        ),
    )


def choice_value(follow_up_id: int, choice: str) -> str:
    """A Telegram button's callback_data: ``fu:<follow-up id>:<1|2|3>``."""
    return f"fu:{follow_up_id}:{choice}"


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
    from storage import actions  # actions imports this module

    catalogs = get_catalogs()
    staff_lang = get_settings().default_language
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
    _event(
        session,
        case,
        "follow_up_unanswered",
        now,
        data={"callback": callback.number, "why": why},
        note=catalogs.text("follow_up.event.unanswered", staff_lang, callback=callback.number),
    )
    log.info("follow_up_unanswered", case=case.number, callback=callback.number, why=why)
    return callback


def open_round_for(session: Session, channel: str, address: str) -> FollowUp | None:
    """The question awaiting an answer from this address, if any (the newest)."""
    return session.scalars(
        select(FollowUp)
        .where(
            FollowUp.status == FollowUpStatus.ASKED,
            FollowUp.channel == channel,
            FollowUp.address == address,
        )
        .order_by(FollowUp.asked_at.desc(), FollowUp.id.desc())
        .limit(1)
    ).first()


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
    from storage import actions

    result = Answer.from_choice(choice)
    if follow_up.status not in OPEN_ROUND:
        return result
    case = session.get(Case, follow_up.case_id)
    assert case is not None
    follow_up.status = FollowUpStatus.ANSWERED
    follow_up.answered_at = now
    follow_up.done, follow_up.satisfied = result.done, result.satisfied
    catalogs = get_catalogs()
    staff_lang = get_settings().default_language
    _event(
        session,
        case,
        "follow_up_answered",
        now,
        data={"answer": result.label, "channel": follow_up.channel},
        note=catalogs.text(f"follow_up.event.answered.{result.label}", staff_lang),
        actor_label=RETIREE.label,
    )
    if result.reopens and case.status in ASKED_ABOUT:
        reason = catalogs.text(f"follow_up.reopen_reason.{result.label}", staff_lang)
        actions.reopen(session, case, RETIREE, reason=reason, categories=categories, now=now)
        _tell_owner(session, case, result, catalogs, now)
    return result


def recorded_answer(follow_up: FollowUp) -> Answer | None:
    """The answer a round was given, None while it has none."""
    if follow_up.status != FollowUpStatus.ANSWERED or follow_up.done is None:
        return None
    return Answer(follow_up.done, follow_up.satisfied if follow_up.done else None)


def language_of(session: Session, case: Case) -> str:
    """The language the retiree was asked in (and is thanked in)."""
    return notice_language(read_facts(session, case, "resolve"), case.details or {})


def _tell_owner(
    session: Session, case: Case, result: Answer, catalogs: Catalogs, now: datetime
) -> None:
    owner = case.assignee or case.first_contact_owner
    if owner is None:
        return  # back in the unit's queue: the queue shows it
    if owner.telegram_user_id is not None:
        channel, address = "telegram", str(owner.telegram_user_id)
    elif owner.phone:
        channel, address = "sms", owner.phone
    else:
        return
    lang = get_settings().default_language
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


def _event(
    session: Session,
    case: Case,
    action: str,
    now: datetime,
    *,
    data: dict[str, object],
    note: str = "",
    actor_label: str = "system",
) -> None:
    session.add(
        CaseEvent(
            case_id=case.id,
            at=now,
            actor_id=None,
            actor_label=actor_label,
            action=action,
            from_status=case.status.value,
            to_status=case.status.value,
            note=note,
            data=data,
        )
    )
