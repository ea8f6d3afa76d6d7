"""Where are my requests? (办到哪了): the person's cases still being worked on, read back with their
number, kind, where they stand, who has them and by when. Nothing is filed.

With a case number in the sentence only that case is read, and only if it is the person's own:
another person's case is "not found", exactly like a number that does not exist. The retiree
reading their own cases is not an access to somebody else's data, so nothing is audited.
"""

from __future__ import annotations

from datetime import datetime

from handlers.base import (
    Case,
    CaseStatus,
    Handler,
    Reply,
    Task,
    Turn,
    own_case,
    own_cases,
    said_case_number,
)

# What "my open cases" are: waiting, being worked on, and done but not yet closed by staff
# (the person may not have heard yet; after closing, it is history).
OPEN_STATUSES = (CaseStatus.OPEN, CaseStatus.CLAIMED, CaseStatus.RESOLVED)
# Read out at most this many; the rest are counted ("and 2 more").
MAX_READ = 3


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
