"""Withdraw a request already filed (不用了，那个事撤了吧): which one, are you sure, and why; then
the case is cancelled and whoever is working on it is told. ("Cancel" said in the middle of a
request not filed yet is the dialogue's: it drops that request.)

Which one: a case number in the sentence picks it; so does the kind ("那个报销不办了") when only
one case is of that kind; one cancellable case needs no question; otherwise the person chooses
(keys, buttons, the number, the kind or "the first one"). Nothing is cancelled without a
clear yes. Emergencies are never cancelled here: staff check on the person all the same, and
what they said is added to the case.
"""

from __future__ import annotations

import re

import structlog

from handlers.base import (
    RETIREE,
    Case,
    CaseStatus,
    Handler,
    HandlerWords,
    IllegalTransition,
    Slot,
    SlotKind,
    Task,
    Turn,
    actions,
    own_case,
    own_cases,
    said_case_number,
    spoken_day,
    tell_assignee,
)

log = structlog.get_logger(__name__)

CANCELLABLE = (CaseStatus.OPEN, CaseStatus.CLAIMED)
EMERGENCY = "emergency"
WHICH, SURE, REASON = "which", "sure", "reason"
MAX_CHOICES = 5  # offered at most (newest first); an older one can still be named by number

_CLAUSES = re.compile(r"[,，。.;；!！?？、]+")
_SPACES = re.compile(r"\s+")
_CASE_NUMBER = re.compile(r"\d{4}\s*[-杠]?\s*\d{6}")
_LATIN_WORD = re.compile(r"[a-z]{4,}")


class CancelHandler(Handler):
    name = "cancel"
    intents = ("cancel",)
    category = ""  # files nothing; the dialogue calls it by its `cancel.kind` text
    confirm = False
    ask_before_leaving = False
    word_lists = (
        *("not_a_reason", "fillers", "because", "keep", "do_cancel", "which", "no_reason"),
        *("vague_pairs", "vague_words", "ordinals"),
    )
    # Free-text answers: as slots, the dialogue offers to switch to another request only when
    # the answer is long and the NLU very sure ("我儿子已经帮我办好了" sounds like status_inquiry).
    slots = (
        Slot("which", SlotKind.TEXT, prefill=False, word_list="cancel.which"),
        Slot("reason", SlotKind.REMARK, prefill=False),
    )

    # -- the flow ----------------------------------------------------------------------------

    def start(self, turn: Turn, task: Task) -> None:
        reason = reason_in(turn.heard.said, self.words_of(turn))
        if reason:
            task.slots[REASON] = reason
        cases = cancellable(turn)
        number = said_case_number(turn)
        if number is not None:
            case = own_case(turn, number)
            if case is None:
                turn.say("cancel.not_found", number=number)
            elif self._refused(turn, task, case):
                return
            else:
                self._confirm(turn, task, case)
                return
        if not cases:
            self._nothing(turn, task)
            return
        picked = self._named(turn, cases) or (cases[0] if len(cases) == 1 else None)
        if picked is not None:
            self._confirm(turn, task, picked)
            return
        self._ask_which(turn, task, cases)

    def answer(self, turn: Turn, task: Task) -> None:
        if turn.heard.said:
            task.said.append(turn.heard.said)
        if task.asking == WHICH:
            self._on_which(turn, task)
        elif task.asking == SURE:
            self._on_sure(turn, task)
        elif task.asking == REASON:
            if turn.heard.says_any(self.words_of(turn).list_of("keep")):  # "算了，不取消了"
                turn.say("cancel.kept")
                self._end(turn, task)
                return
            leaving = turn.heard.intent == "goodbye"
            if not (leaving or self._no_reason(turn)):
                task.slots[REASON] = turn.heard.said.strip()
            self._cancel(turn, task)
            if leaving:  # "没有了，再见": cancelled, and nothing more to ask
                turn.say("goodbye")
                turn.end()
        else:
            self._end(turn, task)

    def proceed(self, turn: Turn, task: Task) -> None:
        """Ask the open question again (after the dialogue's "let us go on")."""
        case = self._target(turn, task)
        if task.asking == WHICH or case is None:
            cases = cancellable(turn)
            if cases:
                self._ask_which(turn, task, cases)
            else:
                self._nothing(turn, task)
        elif task.asking == REASON:
            self._ask_reason(turn, task)
        else:
            self._confirm(turn, task, case)

    def file_incomplete(self, turn: Turn, task: Task) -> Case | None:
        """The person went away before the end: a case they said yes to is cancelled (with the
        reason if they gave one); anything short of a yes is left as it is. Files nothing."""
        if not task.done and task.data.get("sure"):
            self._cancel(turn, task, quiet=True)
        task.done = True
        return None

    # -- which case --------------------------------------------------------------------------

    def _ask_which(self, turn: Turn, task: Task, cases: list[Case]) -> None:
        offered = cases[:MAX_CHOICES]
        task.asking = WHICH
        task.data["offered"] = [c.number for c in offered]
        choices = [
            turn.choice(
                c.number,
                "cancel.choice",
                kind=turn.category_name(c.category),
                number=c.number,
                day=self._filed_on(turn, c),
            )
            for c in offered
        ]
        turn.ask("cancel.ask.which", choices, count=len(cases))

    def _filed_on(self, turn: Turn, case: Case) -> str:
        """The day the case was filed, as said: 今天, 11月20日星期五."""
        tz, catalogs = turn.deployment.tz, turn.deployment.catalogs
        day, today = case.created_at.astimezone(tz).date(), turn.now.astimezone(tz).date()
        if day > today:  # never "the day after tomorrow" for a clock slightly behind
            day = today
        return spoken_day(day, today, catalogs, turn.lang)

    def _on_which(self, turn: Turn, task: Task) -> None:
        heard = turn.heard
        if heard.says_any(self.words_of(turn).list_of("keep")):
            turn.say("cancel.kept")
            self._end(turn, task)
            return
        cases = cancellable(turn)
        number = heard.choice or said_case_number(turn)
        picked: Case | None = None
        if number is not None:
            case = own_case(turn, number)
            if case is not None and self._refused(turn, task, case):
                return
            if case is None:
                turn.say("cancel.not_found", number=number)
            picked = case
        else:
            offered = [c for n in task.data.get("offered", []) for c in cases if c.number == n]
            picked = _ordinal(heard.text, offered, self.words_of(turn)) or self._named(
                turn, offered
            )
        if picked is not None:
            task.retries = 0
            self._confirm(turn, task, picked)
            return
        task.retries += 1
        if task.retries >= turn.deployment.dialogue.max_retries or not cases:
            turn.say("cancel.unclear")
            self._end(turn, task)
            return
        if number is None:
            turn.say("not_understood")
        self._ask_which(turn, task, cases)

    def _named(self, turn: Turn, cases: list[Case]) -> Case | None:
        """The only one of ``cases`` of the kind the words name ("那个报销不办了")."""
        kinds = [c for c in cases if _names_kind(turn, turn.heard.text, c.category)]
        return kinds[0] if len(kinds) == 1 else None

    # -- are you sure, and why ---------------------------------------------------------------

    def _confirm(self, turn: Turn, task: Task, case: Case) -> None:
        task.slots[WHICH] = case.number
        task.asking = SURE
        turn.ask(
            "cancel.ask.sure",
            turn.yes_no(),
            kind=turn.category_name(case.category),
            number=case.number,
        )

    def _on_sure(self, turn: Turn, task: Task) -> None:
        heard = turn.heard
        words = self.words_of(turn)
        keep = heard.deny or (heard.choice is None and heard.says_any(words.list_of("keep")))
        said_cancel = heard.says_any(words.list_of("do_cancel"))
        sure = heard.affirm or (heard.choice is None and not keep and said_cancel)
        if keep:
            turn.say("cancel.kept")
            self._end(turn, task)
        elif sure:
            task.retries = 0
            task.data["sure"] = True
            if task.missing(REASON):
                self._ask_reason(turn, task)
            else:
                self._cancel(turn, task)
        else:
            task.retries += 1
            if task.retries >= turn.deployment.dialogue.max_retries:
                turn.say("cancel.kept")
                self._end(turn, task)
                return
            turn.say("not_understood")
            case = self._target(turn, task)
            if case is None:
                self._end(turn, task)
                return
            self._confirm(turn, task, case)

    def _no_reason(self, turn: Turn) -> bool:
        """The answer to "why?" gives none: "没有了", "谢谢", "不知道", "没什么原因"."""
        return (
            turn.says_nothing_more()
            or turn.heard.says_any(turn.deployment.dialogue.dont_know)
            or turn.heard.says_any(self.words_of(turn).list_of("no_reason"))
        )

    def _ask_reason(self, turn: Turn, task: Task) -> None:
        task.asking = REASON
        turn.ask("cancel.ask.reason")

    # -- the end -----------------------------------------------------------------------------

    def _cancel(self, turn: Turn, task: Task, *, quiet: bool = False) -> None:
        case = self._target(turn, task)
        self._end(turn, task)
        if case is None:
            return
        reason = str(task.slots.get(REASON) or turn.text("cancel.no_reason", turn.staff_lang))
        kind = turn.category_name(case.category)
        try:
            actions.cancel(
                turn.session,
                case,
                RETIREE,
                reason=reason,
                categories=turn.deployment.categories,
                now=turn.now,
            )
        except IllegalTransition:
            # Staff finished (or cancelled) it between the question and the yes.
            if not quiet:
                turn.say("cancel.too_late", kind=kind, number=case.number)
            return
        turn.case_ids.append(case.id)
        log.info("case_cancelled_by_retiree", case=case.number)
        told = tell_assignee(
            turn.session,
            case,
            "case_cancelled",
            "cancel.notify_assignee",
            turn.deployment.catalogs,
            turn.staff_lang,
            what=turn.category_name(case.category, turn.staff_lang),
            name=turn.retiree.name if turn.retiree is not None else "-",
            reason=reason,
        )
        if quiet:
            return
        turn.say("cancel.done", kind=kind, number=case.number)
        if told and case.assignee is not None:
            turn.say("cancel.told", name=case.assignee.name)

    def _refused(self, turn: Turn, task: Task, case: Case) -> bool:
        """Say why ``case`` cannot be cancelled here, if it cannot; True when said."""
        kind = turn.category_name(case.category)
        if case.category == EMERGENCY and case.status in CANCELLABLE:
            # Staff still check on the person; what they said goes on the case for them.
            said = turn.heard.said or "-"
            actions.add_note(turn.session, case, RETIREE, said, now=turn.now)
            turn.case_ids.append(case.id)
            turn.say("cancel.emergency", number=case.number)
        elif case.status not in CANCELLABLE:
            turn.say(f"cancel.already.{case.status.value}", kind=kind, number=case.number)
        else:
            return False
        self._end(turn, task)
        return True

    def _nothing(self, turn: Turn, task: Task) -> None:
        emergencies = [c for c in own_cases(turn, CANCELLABLE) if c.category == EMERGENCY]
        if emergencies:
            self._refused(turn, task, emergencies[0])
            return
        turn.say("cancel.nothing")
        self._end(turn, task)

    def _target(self, turn: Turn, task: Task) -> Case | None:
        number = task.slots.get(WHICH)
        return own_case(turn, str(number)) if number else None

    def _end(self, turn: Turn, task: Task) -> None:
        task.done = True
        task.asking = None


def cancellable(turn: Turn) -> list[Case]:
    """The person's cases that may be cancelled here, newest first (never an emergency)."""
    return [c for c in own_cases(turn, CANCELLABLE) if c.category != EMERGENCY]


def reason_in(said: str, words: HandlerWords) -> str:
    """The reason the first sentence gives, in the person's words; "" when it only says
    "cancel" ("不用了，我儿子已经帮我办好了" → "我儿子已经帮我办好了")."""
    text = said.strip()
    lowered = text.lower()
    for word in words.list_of("because"):
        at = lowered.find(word)
        if at >= 0 and text[at + len(word) :].strip(" ,，。.:："):
            return text[at:].strip()
    clauses = _CLAUSES.split(text)
    if not text.isascii():  # Chinese clauses are often only spaced apart
        clauses = [part for clause in clauses for part in _SPACES.split(clause)]
    reasons = [clause.strip() for clause in clauses if _is_reason(clause, words)]
    return (" " if text.isascii() else "，").join(reasons)


def _is_reason(clause: str, words: HandlerWords) -> bool:
    lowered = _CASE_NUMBER.sub("", clause.lower()).strip()
    if any(word in lowered for word in words.list_of("not_a_reason")):
        return False
    if lowered.endswith("的"):  # "那个上门打扫的": which request, not why
        return False
    for word in sorted(words.list_of("fillers"), key=len, reverse=True):
        lowered = lowered.replace(word, " ")
    return len(lowered.replace(" ", "")) >= 2


def _names_kind(turn: Turn, text: str, category: str) -> bool:
    """Whether ``text`` names the kind of request (any two characters of its Chinese name that
    say something, or a word of its English name)."""
    names = turn.deployment.categories.get(category).name
    lowered = text.lower()
    vague = turn.deployment.words.of("cancel")
    pairs = {names.zh[i : i + 2] for i in range(len(names.zh) - 1)}
    if any(pair in lowered for pair in pairs - set(vague.list_of("vague_pairs"))):
        return True
    words = set(_LATIN_WORD.findall(names.en.lower())) - set(vague.list_of("vague_words"))
    return any(word in lowered for word in words)


def _ordinal(text: str, cases: list[Case], words: HandlerWords) -> Case | None:
    lowered = text.lower()
    for word, place in words.group_of("ordinals").items():
        index = int(place) - 1
        if index < len(cases) and word.lower() in lowered:
            return cases[index]
    return None


HANDLER = CancelHandler()
