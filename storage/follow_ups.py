"""Follow-up (回访): after a case is resolved, the retiree is asked whether it was done and
whether they are satisfied, and their answer decides what happens next.

- Resolving a case starts a round (``start``, called by storage.actions.resolve in the same
  transaction); reopening or cancelling the case cancels an unanswered round.
- The worker asks when a round is due (storage/follow_up_jobs.py: ``due`` then ``ask``): not before FOLLOW_UP_DELAY after the
  resolution and never during the quiet hours (config/care.yml, 21:00–08:00 local: an old person
  woken by a survey call is not a satisfied one). The question goes where the claim and resolve notices go
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
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from storage.models import Case, CaseStatus, FollowUp, FollowUpStatus
from storage.notices import notice_language, read_facts
from storage.permissions import Actor
from storage.site import site_of

FOLLOW_UP_DELAY = timedelta(hours=2)
ANSWER_WINDOW = timedelta(hours=24)
MAX_ATTEMPTS = 2
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


def start(session: Session, case: Case, *, now: datetime) -> FollowUp:
    """A new round for a case just resolved (an earlier open round is cancelled first)."""
    cancel_open(session, case)
    rounds = session.scalar(select(func.max(FollowUp.round)).where(FollowUp.case_id == case.id))
    site = site_of(session)
    follow_up = FollowUp(
        case_id=case.id,
        round=(rounds or 0) + 1,
        status=FollowUpStatus.PENDING,
        attempts=0,
        next_attempt_at=site.care.quiet_hours.after(now + FOLLOW_UP_DELAY, site.tz),
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


def choice_value(follow_up_id: int, choice: str) -> str:
    """A Telegram button's callback_data: ``fu:<follow-up id>:<1|2|3>``."""
    return f"fu:{follow_up_id}:{choice}"


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


def recorded_answer(follow_up: FollowUp) -> Answer | None:
    """The answer a round was given, None while it has none."""
    if follow_up.status != FollowUpStatus.ANSWERED or follow_up.done is None:
        return None
    return Answer(follow_up.done, follow_up.satisfied if follow_up.done else None)


def language_of(session: Session, case: Case) -> str:
    """The language the retiree was asked in (and is thanked in)."""
    return notice_language(
        read_facts(session, case, "resolve"), case.details or {}, site_of(session).language
    )
