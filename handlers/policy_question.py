"""Policy questions (养老金啥时候发): the deployment's own answer from config/faq.yml when it has
one for the topic, then "do you still want staff to call you back?"; otherwise a call-back case
with the question, so staff answer it. Nothing is ever made up: no configured answer, no answer.

"我想咨询一下政策" names no topic: the person is asked once what they want to know.
"""

from __future__ import annotations

import re
from typing import Any

import structlog

from handlers.base import (
    NO,
    UNKNOWN,
    YES,
    Case,
    ConfigError,
    Handler,
    HandlerWords,
    Slot,
    SlotKind,
    Task,
    Turn,
    clean_text,
    get_faq,
    normalize_for_model,
)

log = structlog.get_logger(__name__)

QUESTION, CALL_BACK = "question", "call_back"
FAQ_FILE = "faq.yml"

_WORD = re.compile(r"[a-z']+")
_HAN = re.compile(r"[\u3400-\u9fff]")


class PolicyQuestionHandler(Handler):
    name = "policy_question"
    intents = ("policy_question",)
    category = "policy_question"
    confirm = False
    word_lists = ("generic", "generic_en", "no", "no_en", "yes", "yes_en")
    slots = (Slot(QUESTION, SlotKind.TEXT, prefill=False),)

    def start(self, turn: Turn, task: Task) -> None:
        heard = turn.heard
        if (
            not names_topic(heard.text, self.words_of(turn))
            and self._topic(turn, heard.text) is None
        ):
            self.ask_slot(turn, task, self.slot(QUESTION))
            return
        self._question(turn, task)

    def on_slot_answer(self, turn: Turn, task: Task, slot: Slot) -> None:
        """What they want to know (asked once; whatever they say is the question)."""
        self._question(turn, task)

    def on_step(self, turn: Turn, task: Task) -> None:
        """The answer to "do you still want staff to call you back?"."""
        heard, config = turn.heard, turn.deployment.dialogue
        another = heard.intent == self.intents[0] and heard.confidence >= config.switch_confidence
        words_of = self.words_of(turn)
        if heard.choice is None and another and names_topic(heard.text, words_of):
            task.data.pop("topic", None)  # a new question: the last one was answered
            self._question(turn, task)
            return
        words = set(_WORD.findall(heard.text.lower()))
        says_no = heard.says_any(words_of.list_of("no")) or bool(
            words & set(words_of.list_of("no_en"))
        )
        says_yes = heard.says_any(words_of.list_of("yes")) or bool(
            words & set(words_of.list_of("yes_en"))
        )
        if heard.deny or (heard.choice is None and not heard.affirm and says_no):
            task.done = True
            task.asking = None
            turn.say("policy_question.no_call_back")
        elif heard.affirm or (heard.choice is None and says_yes):
            self.finish(turn, task)
        else:
            task.retries += 1
            if task.retries >= config.max_retries:
                task.data["unconfirmed"] = True  # unsure: a call-back costs less than no answer
                self.finish(turn, task)
                return
            turn.say("not_understood")
            self._ask_call_back(turn, task)

    def proceed(self, turn: Turn, task: Task) -> None:
        if task.asking == CALL_BACK:
            self._ask_call_back(turn, task)
        elif task.missing(QUESTION):
            self.ask_slot(turn, task, self.slot(QUESTION))
        else:
            self.finish(turn, task)

    def file_incomplete(self, turn: Turn, task: Task) -> Case | None:
        """Gone after an answer from the FAQ: answered, nothing to file. Gone before: the
        question (or what was said) is filed for a call-back."""
        if task.data.get("topic") and not task.done:
            task.done = True
            return None
        return super().file_incomplete(turn, task)

    # -- answering ---------------------------------------------------------------------------

    def _question(self, turn: Turn, task: Task) -> None:
        task.retries = 0
        task.slots[QUESTION] = turn.heard.said.strip() or turn.heard.text.strip() or UNKNOWN
        topic = self._topic(turn, turn.heard.text)
        if topic is None:
            self.finish(turn, task)
            return
        task.data["topic"] = topic
        faq = get_faq(turn.deployment.settings.config_dir / FAQ_FILE)
        turn.say("policy_question.answer", answer=faq.answer(topic, turn.lang))
        self._ask_call_back(turn, task)

    def _ask_call_back(self, turn: Turn, task: Task) -> None:
        task.asking = CALL_BACK
        choices = [
            turn.choice(YES, "policy_question.call_back.yes"),
            turn.choice(NO, "policy_question.call_back.no"),
        ]
        turn.ask("policy_question.ask.call_back", choices)

    def _topic(self, turn: Turn, text: str) -> str | None:
        """The FAQ topic of ``text``; None when the deployment has no answer for it (or its
        FAQ file is broken: then staff answer, and the log says why)."""
        path = turn.deployment.settings.config_dir / FAQ_FILE
        try:
            faq = get_faq(path)
        except ConfigError as exc:
            log.error("faq_unreadable", error=str(exc))
            return None
        return faq.match(normalize_for_model(clean_text(text)[0]))

    # -- the call-back case ------------------------------------------------------------------

    def summary(self, turn: Turn, task: Task) -> str:
        question = task.slots.get(QUESTION, UNKNOWN)
        if question == UNKNOWN:
            question = " / ".join(task.said) or turn.text("unknown_value", turn.staff_lang)
        return turn.text("policy_question.summary", turn.staff_lang, question=question)

    def details(self, turn: Turn, task: Task) -> dict[str, Any]:
        details = super().details(turn, task)
        if task.data.get("topic"):
            details["faq_topic"] = task.data["topic"]  # the FAQ answer was given first
        return details

    def acknowledge(self, turn: Turn, task: Task, case: Case) -> None:
        if task.data.get("topic"):
            turn.say("policy_question.call_back_filed")
        else:
            turn.say("policy_question.filed")
        turn.acknowledge(case)


def names_topic(text: str, words: HandlerWords) -> bool:
    """Whether ``text`` says what the question is about, beyond "a question about policy"."""
    lowered = text.lower()
    rest = lowered
    for word in sorted(words.list_of("generic"), key=len, reverse=True):
        rest = rest.replace(word, "")
    if len(_HAN.findall(rest)) >= 2:
        return True
    generic_en = set(words.list_of("generic_en"))
    return any(len(w) >= 3 and w not in generic_en for w in _WORD.findall(lowered))


HANDLER = PolicyQuestionHandler()
