"""More about a request already filed ("我还要补充一下，票据在我女儿那"): what the person adds goes
on that case's timeline as a note, and whoever works on it is told; no new case is filed.

The dialogue asks this handler first (`applies`) when no request is open and the person says
one of its words (config/words/add_to_case.yml) while they have an open case: the one filed in
this conversation, else their newest open one. Said alone ("我想补充一下"), the addition is asked
for; any answer is one.
"""

from __future__ import annotations

from handlers.base import (
    RETIREE,
    Case,
    CaseStatus,
    Handler,
    Slot,
    SlotKind,
    Task,
    Turn,
    actions,
    opening,
    own_case,
    own_cases,
    own_words,
    tell_assignee,
)

ADDITION = "addition"
OPEN = (CaseStatus.OPEN, CaseStatus.CLAIMED)


class AddToCaseHandler(Handler):
    name = "add_to_case"
    intents = ()
    category = ""  # files nothing: a note on a case already filed
    ask_before_leaving = False
    confirm = False
    word_lists = ("adding",)
    slots = (Slot(ADDITION, SlotKind.REMARK, prefill=False),)

    def applies(self, turn: Turn) -> bool:
        """The person says they want to add something, and has an open case to add it to."""
        return turn.heard.says_any(self.words_of(turn).list_of("adding")) and (
            self._target(turn) is not None
        )

    def start(self, turn: Turn, task: Task) -> None:
        case = self._target(turn)
        if case is None:  # closed meanwhile: nothing to add to
            turn.say("add_to_case.nothing_open")
            self._end(task)
            return
        task.data["case"] = case.number
        words = opening(self.words_of(turn).list_of("adding"), repeated=True)
        addition = words.sub("", own_words(turn)).strip(" ，,。.：:")
        if len(addition) >= 2:
            self._add(turn, task, case, addition)
            return
        task.asking = ADDITION
        turn.ask(
            "add_to_case.ask.addition", kind=turn.category_name(case.category), number=case.number
        )

    def answer(self, turn: Turn, task: Task) -> None:
        case = own_case(turn, str(task.data.get("case") or ""))
        addition = own_words(turn)
        if case is None or not addition:
            turn.say("add_to_case.nothing_added")
            self._end(task)
            return
        self._add(turn, task, case, addition)

    def proceed(self, turn: Turn, task: Task) -> None:
        case = own_case(turn, str(task.data.get("case") or ""))
        if case is None:
            self._end(task)
            return
        task.asking = ADDITION
        turn.ask(
            "add_to_case.ask.addition", kind=turn.category_name(case.category), number=case.number
        )

    def file_incomplete(self, turn: Turn, task: Task) -> Case | None:
        task.done = True
        return None

    def _add(self, turn: Turn, task: Task, case: Case, addition: str) -> None:
        actions.add_note(turn.session, case, RETIREE, addition, now=turn.now)
        turn.case_ids.append(case.id)
        kind = turn.category_name(case.category)
        told = tell_assignee(
            turn.session,
            case,
            "case_addition",
            "add_to_case.notify_assignee",
            turn.deployment.catalogs,
            turn.staff_lang,
            once_per=turn.inbound.provider_id or f"{turn.now.timestamp():.3f}",
            what=turn.category_name(case.category, turn.staff_lang),
            name=turn.retiree.name if turn.retiree is not None else "-",
            addition=addition,
        )
        turn.say("add_to_case.done", kind=kind, number=case.number)
        if told and case.assignee is not None:
            turn.say("add_to_case.told", name=case.assignee.name)
        self._end(task)

    def _target(self, turn: Turn) -> Case | None:
        """The case filed in this conversation (the newest), else the newest open one."""
        for number in reversed(turn.state.cases):
            case = own_case(turn, number)
            if case is not None and case.status in OPEN:
                return case
        cases = own_cases(turn, OPEN)
        return cases[0] if cases else None

    @staticmethod
    def _end(task: Task) -> None:
        task.done = True
        task.asking = None


HANDLER = AddToCaseHandler()
