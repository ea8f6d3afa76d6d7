"""One turn of a conversation as handlers see it: what was heard, who is speaking, what to say.

The engine builds a Turn inside the turn's transaction; handlers read `heard`, change their
task, file cases through `file_case` and speak through `say` and `ask`. Nothing here commits.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.conversation.deployment import Deployment
from bot.conversation.messages import Choice, Hint, Inbound, Reply
from bot.conversation.state import DialogueState, Task
from bot.conversation.timefmt import spoken_deadline, spoken_time
from config.words import any_of
from nlu.intents import FALLBACK
from storage import actions, family
from storage.deadlines import opening_at_or_after
from storage.models import Case, FamilyMember, Retiree, Unit
from storage.permissions import Actor

if TYPE_CHECKING:
    from bot.conversation.handling import RequestHandler

YES, NO = "yes", "no"
# Channels whose address is the sender's phone number.
PHONE_CHANNELS = ("phone", "sms", "whatsapp", "cli")
# What the bot itself does, and what it does on the person's behalf, in case events.
RETIREE = Actor.system("retiree")


@dataclass
class Heard:
    """What the person said this turn, understood: the NLU's parse, or a chosen button or key."""

    text: str = ""  # cleaned (entity offsets refer to it)
    said: str = ""  # exactly as the person put it, for the record and for read-backs
    intent: str = FALLBACK
    confidence: float = 0.0
    entities: list[dict[str, Any]] = field(default_factory=list)
    choice: str | None = None  # the value of the choice picked by button, key or number
    ruled: bool = False  # an emergency safety rule matched (never a guess)
    filler: bool = False  # only sounds that carry nothing ("那个", "啊 嗯"): nothing was said yet

    @property
    def empty(self) -> bool:
        return not self.text.strip() and self.choice is None

    def entity(self, name: str) -> dict[str, Any] | None:
        return next((e for e in self.entities if e["entity"] == name), None)

    def entities_of(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.entities if e["entity"] == name]

    @property
    def affirm(self) -> bool:
        return self.choice == YES or (self.choice is None and self.intent == "affirm")

    @property
    def deny(self) -> bool:
        return self.choice == NO or (self.choice is None and self.intent == "deny")

    def says_any(self, words: Iterable[str]) -> bool:
        lowered = self.text.lower()
        return any(word.lower() in lowered for word in words)


_LATIN = re.compile(r"[A-Za-z]")
_HAN = re.compile(r"[\u3400-\u9fff]")


def written_language(text: str) -> str | None:
    """ "en" or "zh" for a text written mostly in that script; None when it cannot tell."""
    if _HAN.search(text):
        return "zh"
    letters = len(_LATIN.findall(text))
    if letters >= 6 or (letters >= 2 and len(text.split()) >= 2):
        return "en"
    return None


class Turn:
    """One inbound message being answered."""

    def __init__(
        self,
        *,
        session: Session,
        deployment: Deployment,
        inbound: Inbound,
        heard: Heard,
        state: DialogueState,
        retiree: Retiree | None,
        now: datetime,
    ) -> None:
        self.session = session
        self.deployment = deployment
        self.inbound = inbound
        self.heard = heard
        self.state = state
        self.retiree = retiree
        self.now = now
        self.replies: list[Reply] = []
        self.hints: set[Hint] = set()
        self.filed: list[Case] = []
        self.case_ids: list[int] = []  # the cases this turn touched, for the message timeline
        self.asked = False  # a question was asked this turn (at most one)

    # -- language and texts ------------------------------------------------------------------

    @property
    def lang(self) -> str:
        return self.state.lang

    @property
    def staff_lang(self) -> str:
        """The language summaries for staff are written in."""
        return self.deployment.settings.default_language

    def text(self, key: str, lang: str | None = None, **params: Any) -> str:
        return self.deployment.catalogs.text(key, lang or self.lang, **params)

    def has_text(self, key: str) -> bool:
        return key in self.deployment.catalogs.texts[self.lang]

    def say(self, key: str, **params: Any) -> None:
        self.replies.append(Reply(self.text(key, **params), language=self.lang))

    def ask(
        self, key: str, choices: Sequence[Choice] = (), *, remember: bool = True, **params: Any
    ) -> None:
        """Ask one question (at most one per turn); its choices answer the next turn's keys.
        remember=False: the dialogue's own question, not to be repeated when the open request
        is taken up again."""
        self.ask_text(self.text(key, **params), choices, key=key, remember=remember)

    def ask_text(
        self, text: str, choices: Sequence[Choice] = (), *, key: str = "", remember: bool = True
    ) -> None:
        self.replies.append(Reply(text, tuple(choices), language=self.lang))
        self.asked = True
        asked = {"key": key, "text": text, "choices": [[c.value, c.label] for c in choices]}
        self.state.choices = asked["choices"]
        self.state.last_ask = asked
        if remember and self.state.task is not None:
            self.state.task.data["last_ask"] = asked

    def repeat(self, asked: dict[str, Any] | None, *, remember: bool = True) -> bool:
        """Ask a stored question again; False when there is none."""
        if not asked:
            return False
        choices = [Choice(v, label) for v, label in asked["choices"]]
        self.ask_text(asked["text"], choices, key=asked.get("key", ""), remember=remember)
        return True

    def says_nothing_more(self) -> bool:
        """What was said, thanks taken off, is nothing or one of the dialogue's "nothing more"
        words ("没有了，谢谢", "不用了"): no more to say."""
        rules = self.deployment.dialogue
        said = any_of(rules.thanks).sub("", self.heard.said).lower()
        said = said.strip(" 。.!！,，、?？")
        return not said or said in {w.lower() for w in rules.nothing_more}

    def last_asked(self, key: str) -> bool:
        """Whether the previous turn's question was ``key``."""
        return bool(self.state.last_ask) and self.state.last_ask.get("key") == key

    def choice(self, value: str, key: str, **params: Any) -> Choice:
        return Choice(value, self.text(key, **params))

    def yes_no(self) -> tuple[Choice, Choice]:
        return self.choice(YES, "confirm.yes"), self.choice(NO, "confirm.no")

    def hint(self, hint: Hint) -> None:
        self.hints.add(hint)

    def end(self) -> None:
        self.hints.add(Hint.END)
        self.state.ended = True

    # -- handlers ----------------------------------------------------------------------------

    def handler(self, name: str) -> RequestHandler:
        return self.deployment.handlers[name]

    def handler_for(self, intent: str) -> RequestHandler | None:
        return self.deployment.by_intent.get(intent)

    def category_name(self, category: str, lang: str | None = None) -> str:
        return self.deployment.categories.get(category).name.get(lang or self.lang)

    def when(self, moment: datetime) -> str:
        """A moment as a person says it: 今天下午3点, 明天上午9点半, 11月30日星期一."""
        return spoken_time(
            moment, self.now, self.deployment.tz, self.deployment.catalogs, self.lang
        )

    def by(self, deadline: datetime) -> str:
        """A deadline as a promise: 今天晚上6点半前, 55分钟内, 尽快 (when already past)."""
        s = self.deployment
        return spoken_deadline(deadline, self.now, s.tz, s.catalogs, self.lang)

    # -- cases -------------------------------------------------------------------------------

    def default_unit(self) -> Unit:
        """Where a case goes when the person has no community: the top of the hierarchy."""
        unit = self.session.scalars(
            select(Unit).where(Unit.parent_id.is_(None)).order_by(Unit.id).limit(1)
        ).first()
        if unit is None:
            raise LookupError("no units are set up: add a center with `hotline retirees import`")
        return unit

    def file_case(
        self,
        category: str,
        *,
        summary: str,
        details: dict[str, Any],
        original_text: str,
        raise_for: Sequence[str] = (),
    ) -> Case:
        unit = None
        if self.retiree is None or self.retiree.community is None:
            unit = self.default_unit()
        if self.state.on_behalf is not None:  # a family member asked for the retiree
            member = self.session.get(FamilyMember, self.state.on_behalf)
            if member is not None:
                details = {**details, "on_behalf": family.on_behalf(member)}
        case = actions.file_case(
            self.session,
            category=category,
            channel=self.inbound.channel,
            actor=RETIREE,
            retiree=self.retiree,
            unit=unit,
            summary=summary,
            details=details,
            original_text=original_text,
            categories=self.deployment.categories,
            raise_for=raise_for,
            now=self.now,
        )
        self.filed.append(case)
        self.case_ids.append(case.id)
        return case

    def acknowledge(self, case: Case) -> None:
        """The case number, who is handling it and by when (from the category's deadlines)."""
        self.say("case.filed", number=case.number, kind=self.category_name(case.category))
        if case.assignee is not None:
            who = self.text("case.who_person", name=case.assignee.name)
        else:
            who = self.text("case.who_unit", unit=case.unit.name(self.lang))
        self._after_hours(case)
        if case.claim_deadline is not None:
            self.say("case.contact_by", who=who, by=self.by(case.claim_deadline))
        else:
            self.say("case.contact_soon", who=who)
        if case.resolve_deadline is not None:
            self.say("case.done_by", by=self.by(case.resolve_deadline))

    def _after_hours(self, case: Case) -> None:
        """Filed while the offices are closed (and not an emergency): when they open."""
        d = self.deployment
        if d.categories.get(case.category).around_the_clock:
            return
        hours = d.hours_for(case.unit)
        opens, _ = opening_at_or_after(self.now, d.tz, hours, estimate=True, listed=d.working_days)
        if opens > self.now:
            when = spoken_time(opens, self.now, d.tz, d.catalogs, self.lang)
            self.say("case.after_hours", opens=when)

    def task_for(self, handler: RequestHandler, *, said: str = "") -> Task:
        """A new task for ``handler``; ``said`` starts the record of what the person said."""
        return Task(handler=handler.name, said=[said] if said else [])


_SEPARATORS = re.compile(r"[\s,，。.!！?？、~～…]+")


def only_fillers(said: str, fillers: tuple[str, ...]) -> bool:
    """Whether ``said`` is nothing but ``fillers`` (and punctuation): "啊啊 嗯 那个"."""
    rest = _SEPARATORS.sub(" ", said.lower())
    return bool(rest.strip()) and not any_of(fillers).sub(" ", rest).strip()
