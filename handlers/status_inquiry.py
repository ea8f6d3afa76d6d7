"""Where are my requests? (办到哪了): the person's cases still being worked on, read back with their
number, kind, where they stand, who has them and by when. Nothing is filed.

With a case number in the sentence only that case is read, and only if it is the person's own:
another person's case is "not found", exactly like a number that does not exist. The retiree
reading their own cases is not an access to somebody else's data, so nothing is audited.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select

from bot.conversation.messages import Reply
from bot.conversation.state import Task
from bot.conversation.turn import Turn
from handlers.base import Handler
from storage.models import Case, CaseStatus

# What "my open cases" are: waiting, being worked on, and done but not yet closed by staff
# (the person may not have heard yet; after closing, it is history).
OPEN_STATUSES = (CaseStatus.OPEN, CaseStatus.CLAIMED, CaseStatus.RESOLVED)
# Read out at most this many; the rest are counted ("and 2 more").
MAX_READ = 3


def own_cases(turn: Turn, statuses: Sequence[CaseStatus]) -> list[Case]:
    """The person's cases in ``statuses``, newest first (none for an unknown sender)."""
    if turn.retiree is None:
        return []
    return list(
        turn.session.scalars(
            select(Case)
            .where(Case.retiree_id == turn.retiree.id, Case.status.in_(list(statuses)))
            .order_by(Case.created_at.desc(), Case.id.desc())
        ).all()
    )


def own_case(turn: Turn, number: str) -> Case | None:
    """The case numbered ``number`` if it is the person's own; None otherwise (also when it is
    somebody else's: that it exists is not told)."""
    if turn.retiree is None:
        return None
    case = turn.session.scalars(select(Case).where(Case.number == number)).first()
    if case is None or case.retiree_id != turn.retiree.id:
        return None
    return case


def said_case_number(turn: Turn) -> str | None:
    entity = turn.heard.entity("case_number")
    return str(entity["value"]) if entity is not None else None


def who_has(turn: Turn, case: Case) -> str:
    if case.assignee is not None:
        return turn.text("case.who_person", name=case.assignee.name)
    return turn.text("case.who_unit", unit=case.unit.name(turn.lang))


def say_text(turn: Turn, text: str) -> None:
    """Say a text already put together from the catalogs (several sentences, one message)."""
    turn.replies.append(Reply(text, language=turn.lang))


def _late(deadline: datetime | None, now: datetime) -> bool:
    return deadline is not None and deadline < now


class StatusInquiryHandler(Handler):
    name = "status_inquiry"
    intents = ("status_inquiry",)
    category = ""  # files nothing; the dialogue calls it by its `status_inquiry.kind` text
    confirm = False
    ask_before_leaving = False

    def start(self, turn: Turn, task: Task) -> None:
        task.done = True
        task.asking = None
        number = said_case_number(turn)
        if number is not None:
            self._one(turn, number)
        else:
            self._all(turn)

    def file_incomplete(self, turn: Turn, task: Task) -> Case | None:
        task.done = True
        return None

    def _one(self, turn: Turn, number: str) -> None:
        case = own_case(turn, number)
        if case is None:
            turn.say("status_inquiry.not_found", number=number)
            return
        turn.case_ids.append(case.id)  # the message is about this case (its timeline shows it)
        say_text(turn, self.describe(turn, case))

    def _all(self, turn: Turn) -> None:
        cases = own_cases(turn, OPEN_STATUSES)
        if not cases:
            turn.say("status_inquiry.none")
            return
        # Those still being worked on first, then those already done.
        cases.sort(key=lambda c: c.status == CaseStatus.RESOLVED)
        parts = [turn.text("status_inquiry.count", count=len(cases))]
        parts += [self.describe(turn, case) for case in cases[:MAX_READ]]
        if len(cases) > MAX_READ:
            parts.append(turn.text("status_inquiry.more", count=len(cases) - MAX_READ))
        say_text(turn, self.joiner(turn).join(parts))

    def joiner(self, turn: Turn) -> str:
        return " " if turn.lang == "en" else ""

    def describe(self, turn: Turn, case: Case) -> str:
        """One case as sentences: what and which, where it stands, who has it and by when."""
        head = {"kind": turn.category_name(case.category), "number": case.number}
        key = f"status_inquiry.status.{case.status.value}"
        if case.status == CaseStatus.OPEN:
            parts = [turn.text(key, **head)]
            who = who_has(turn, case)
            if _late(case.claim_deadline, turn.now):
                parts.append(turn.text("status_inquiry.late"))
            elif case.claim_deadline is not None:
                parts.append(turn.text("case.contact_by", who=who, by=turn.by(case.claim_deadline)))
            else:
                parts.append(turn.text("case.contact_soon", who=who))
        elif case.status == CaseStatus.CLAIMED:
            parts = [turn.text(key, who=who_has(turn, case), **head)]
            if _late(case.resolve_deadline, turn.now):
                parts.append(turn.text("status_inquiry.late"))
            elif case.resolve_deadline is not None:
                parts.append(turn.text("case.done_by", by=turn.by(case.resolve_deadline)))
        else:
            parts = [turn.text(key, **head)]
        return self.joiner(turn).join(parts)


HANDLER = StatusInquiryHandler()
