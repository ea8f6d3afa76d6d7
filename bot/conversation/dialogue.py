"""Who answers a turn: the rules that hold across every kind of request.

Emergencies never wait; an open request gets the answer to its question; a new request in the
middle of another is confirmed first and the first one is resumed afterwards; an unknown sender
is registered (and their request still filed); silence and what is not understood are asked
about again, then filed for staff, so nothing is dropped.
"""

from __future__ import annotations

from typing import cast

from bot.conversation.handling import (
    Addition,
    CallbackFiler,
    HandOver,
    Question,
    RequestHandler,
    SlotKind,
)
from bot.conversation.messages import Hint
from bot.conversation.state import Switch, Task
from bot.conversation.turn import NO, YES, Heard, Turn
from nlu.intents import REQUEST_INTENTS

EMERGENCY = "emergency"
REGISTRATION = "registration"
GENERAL = "general"
TALK_TO_HUMAN = "talk_to_human"
CALLBACK = "callback"
ADD_TO_CASE = "add_to_case"
# Pseudo-intents of questions the dialogue itself asks.
ABANDON = "_abandon"
LEAVING = "_leaving"
OFFER_PERSON = "_offer_person"
# What an unknown sender may do without registering first.
WITHOUT_REGISTRATION = {EMERGENCY, TALK_TO_HUMAN, "goodbye"}
# Slots that free words answer (so almost anything said can be the answer).
FREE_WORDS = {SlotKind.TEXT, SlotKind.WHEN, SlotKind.HOSPITAL, SlotKind.RELATION, SlotKind.REMARK}
# A shorter answer to an open question is taken as the answer, whatever it sounds like.
MIN_SWITCH_CHARS = 6
# Inbound metadata "event" a channel sends when a hand-over found nobody (phone: no answer).
HANDOVER_UNANSWERED = "handover_unanswered"
# Inbound metadata "event" of a voice message nobody could turn into words (WeChat without its
# Recognition): a call-back case with the audio (metadata "audio"), for staff to hear.
VOICE_NOTE = "voice_note"


def respond(turn: Turn) -> None:
    """Decide who answers ``turn`` and let them; the replies collect on the turn. A question
    stands only while it is the last one asked: a turn that asks nothing leaves none open (a
    silence then never repeats a question already answered, a digit picks no old choice)."""
    _respond(turn)
    if not turn.asked:
        turn.state.last_ask = None
        turn.state.choices = []


def _respond(turn: Turn) -> None:
    state, heard = turn.state, turn.heard
    state.turns += 1
    if turn.inbound.metadata.get("event") == HANDOVER_UNANSWERED:
        talk = cast(HandOver, turn.handler(TALK_TO_HUMAN))
        talk.unanswered(turn, turn.inbound.metadata.get("recording_url"))
        return
    if turn.inbound.metadata.get("event") == VOICE_NOTE:
        _on_voice_note(turn)
        return
    if heard.empty:
        _on_silence(turn)
        return
    state.silences = 0
    if state.emergency_check is not None:
        _on_emergency_check(turn)  # anything but a clear no, a filler too, is an emergency
        return
    if heard.filler and (state.switch is not None or (state.task and not state.task.done)):
        # Nothing said yet: no intent, no answer; the open question (a switch's too) stands.
        # With none open, a filler is not understood (_route), as any other mumble.
        turn.say("filler")
        turn.repeat(state.last_ask, remember=False)
        return
    if heard.intent == EMERGENCY and _emergency_counts(turn):
        config = turn.deployment.dialogue
        sure = heard.ruled or heard.confidence >= config.emergency_confirm_below
        if sure and not _question_open(turn):
            _start_emergency(turn, heard)
        else:
            # An uncertain guess, or the model alone while a question is open ("马上" answering
            # "when?"): ask once; anything but a clear no is then treated as an emergency.
            state.emergency_check = _switch_from(heard)
            turn.ask("emergency.check", turn.yes_no(), remember=False)
        return
    if state.switch is not None:
        _on_switch(turn)
        return
    task = state.task
    if task is not None and not task.done:
        _continue_task(turn, task)
        return
    _route(turn)


# -- the open request ---------------------------------------------------------------------------


def _continue_task(turn: Turn, task: Task) -> None:
    heard, config = turn.heard, turn.deployment.dialogue
    handler = turn.handler(task.handler)
    sure = heard.choice is not None or heard.confidence >= config.switch_confidence
    if sure and heard.intent == TALK_TO_HUMAN and task.handler != TALK_TO_HUMAN:
        _file_unfinished(turn, task)
        _start(turn, turn.handler(TALK_TO_HUMAN), heard)
        return
    open_slot = _open_slot(task, handler)
    remark = open_slot is not None and open_slot.kind == SlotKind.REMARK
    if remark and not _offers_switch(turn, task, handler):
        # Any answer is one: "没有了，谢谢" to "why?" is no reason, not a goodbye that drops
        # what the person already agreed to. (Another request said whole is still offered.)
        handler.answer(turn, task)
        _after_task(turn)
        return
    if heard.choice is None and len(heard.said) < MIN_SWITCH_CHARS:
        # "你好" or "谢谢" while a question is open: answer politely and ask again.
        if heard.intent == "greet" and heard.confidence >= config.switch_confidence:
            _resume_question(turn, task, "greeting.again")
            return
        if heard.said.strip(" 。.!！,，").lower() in config.thanks:
            _resume_question(turn, task, "you_are_welcome")
            return
    if heard.intent == "cancel" and task.handler != "cancel" and _asked_yes_no(turn):
        heard.intent = "deny"  # "不用了" to "do you need a call back?" is a no
    cancels = sure and heard.intent == "cancel" and task.handler != "cancel"
    if cancels and task.case is None and _drops_request(turn, task, handler):
        turn.state.switch = Switch(intent=ABANDON, text=heard.text)
        turn.ask("abandon.confirm", turn.yes_no(), remember=False)
        return
    if sure and heard.intent == "goodbye" and task.case is None:
        if not handler.ask_before_leaving:
            # Nothing to file, but what the person already agreed to stands (a cancel said
            # yes to is done): the handler decides (file_incomplete).
            _file_unfinished(turn, task)
            _goodbye(turn)
            return
        turn.state.switch = Switch(intent=LEAVING, text=heard.text)
        turn.ask("leaving.file_first", turn.yes_no(), remember=False)
        return
    if _offers_switch(turn, task, handler):
        turn.state.switch = _switch_from(heard)
        kind = turn.handler_for(heard.intent)
        assert kind is not None
        turn.ask("switch.confirm", turn.yes_no(), remember=False, kind=kind.kind_name(turn))
        return
    handler.answer(turn, task)
    _after_task(turn)


def _open_slot(task: Task, handler: RequestHandler) -> Question | None:
    if task.asking and handler.has_slot(task.asking):
        return handler.slot(task.asking)
    return None


def _asked_yes_no(turn: Turn) -> bool:
    return [value for value, _ in turn.state.choices] == [YES, NO]


def _drops_request(turn: Turn, task: Task, handler: RequestHandler) -> bool:
    """Whether "cancel" means dropping the request, not answering its question ("不用了" for
    whether a car is needed, "志愿者不来了" for what a complaint is about)."""
    slot = _open_slot(task, handler)
    if slot is None:
        return True
    if slot.extract(turn, answering=False) is not None:
        return False
    if slot.kind in FREE_WORDS:
        return turn.heard.says_any(turn.deployment.dialogue.abandon_words)
    return True


def _offers_switch(turn: Turn, task: Task, handler: RequestHandler) -> bool:
    """A confident request of another kind that does not answer the open question."""
    heard, config = turn.heard, turn.deployment.dialogue
    new = turn.handler_for(heard.intent) if heard.choice is None else None
    if new is None or new.name == handler.name or heard.intent not in REQUEST_INTENTS:
        return False
    if heard.intent == EMERGENCY:
        return False  # emergencies are never "another matter" (see _emergency_counts)
    if task.handler == REGISTRATION:
        return False  # the request is taken after registration (see _route)
    asking = _open_slot(task, handler)
    if asking is not None and asking.kind in FREE_WORDS:
        if heard.says_any(config.questions) and heard.entity("date") is None:
            # "我上回报的药费怎么样了" to "when suits you?": a question about something else.
            return True
        # Free words answer this question ("住院的" for what the bills are for), so only a very
        # sure request that says more than a short answer and none of the slot's words counts.
        words = asking.words_in(turn)
        if words and heard.says_any(words):
            return False
        if len(heard.text.strip()) < MIN_SWITCH_CHARS:
            return False
        return heard.confidence >= config.switch_confidence_free_text
    if asking is not None and asking.extract(turn, answering=False) is not None:
        # A word of one of the choices is in it ("派人" of "派人来拿"); only a long and very sure
        # request of another kind ("我家水管漏水了，能派人来修一下吗") is a new one.
        long = len(heard.text.strip()) >= 2 * MIN_SWITCH_CHARS
        return long and heard.confidence >= config.switch_confidence_free_text
    return heard.confidence >= config.switch_confidence


def _on_switch(turn: Turn) -> None:
    state, heard = turn.state, turn.heard
    switch = state.switch
    assert switch is not None
    state.switch = None
    task = state.task
    if switch.intent == OFFER_PERSON:
        if heard.affirm:
            _start(turn, turn.handler(TALK_TO_HUMAN), heard)
        elif _declines(turn):
            _goodbye(turn)
        else:
            _route(turn)
        return
    if task is None or task.done:
        _route(turn)
        return
    if switch.intent == ABANDON:
        if heard.affirm:
            task.done = True
            turn.say("abandon.done")
            _after_task(turn)
        elif heard.deny:
            _resume_question(turn, task, "switch.stay")
        else:
            _continue_task(turn, task)
        return
    if switch.intent == LEAVING:
        if heard.affirm:
            _file_unfinished(turn, task, acknowledge=True)
            _goodbye(turn)
        elif heard.deny:
            task.done = True
            turn.say("leaving.dropped")
            _goodbye(turn)
        else:
            _continue_task(turn, task)
        return
    if heard.affirm:
        state.suspended.append(task)
        state.task = None
        turn.say("switch.first")
        _start(turn, turn.handler_for(switch.intent), _heard_from(switch))
    elif heard.deny:
        _resume_question(turn, task, "switch.stay")
    else:
        _continue_task(turn, task)


def _resume_question(turn: Turn, task: Task, key: str) -> None:
    turn.say(key)
    if not turn.repeat(task.data.get("last_ask")):
        turn.handler(task.handler).proceed(turn, task)


def _after_task(turn: Turn) -> None:
    """When the open request is finished: the request waiting for registration, or the one
    put aside, or "anything else?"."""
    state = turn.state
    task = state.task
    if task is None or not task.done:
        return
    if task.case is not None and task.case not in state.cases:
        state.cases.append(task.case)
    state.task = None
    if state.ended:
        return
    if state.deferred is not None and turn.retiree is not None:
        deferred, state.deferred = state.deferred, None
        handler = turn.handler_for(deferred.intent)
        if handler is not None:
            _start(turn, handler, _heard_from(deferred))
            return
    if task.handler == EMERGENCY:
        return  # after an emergency: no "anything else?", staff are on their way
    if task.handler == TALK_TO_HUMAN and Hint.HAND_OVER in turn.hints:
        return  # the phone is putting a person on: nothing more to ask
    if state.suspended:
        resumed = state.suspended.pop()
        state.task = resumed
        _resume_suspended(turn, resumed)
        return
    if not turn.asked:
        turn.ask("anything_else")


def _resume_suspended(turn: Turn, task: Task) -> None:
    handler = turn.handler(task.handler)
    turn.say("switch.resume", kind=handler.kind_name(turn))
    if not turn.repeat(task.data.get("last_ask")):
        handler.proceed(turn, task)


def _file_unfinished(turn: Turn, task: Task, *, acknowledge: bool = False) -> None:
    """Nothing is lost: a request left half-way is filed with what is known."""
    if task.done or task.handler == REGISTRATION:
        task.done = True
        return
    handler = turn.handler(task.handler)
    case = handler.file_incomplete(turn, task)
    if case is not None:
        turn.state.cases.append(case.number)
        if acknowledge:
            handler.acknowledge(turn, task, case)
    if turn.state.task is task:
        turn.state.task = None


# -- no request open ----------------------------------------------------------------------------


def _declines(turn: Turn) -> bool:
    """No (more), thanks: a no, a goodbye, or "没了" as the answer to a yes/no question."""
    heard = turn.heard
    if heard.deny or heard.intent == "goodbye":
        return True
    # "不用了，谢谢" is no more; "不用了，我儿子已经办好了" or "我要取消" is a request to cancel.
    return turn.says_nothing_more()


def _route(turn: Turn) -> None:
    state, heard = turn.state, turn.heard
    if turn.last_asked("anything_else") and _declines(turn):
        _goodbye(turn)
        return
    adding = turn.deployment.handlers.get(ADD_TO_CASE)
    if adding is not None and cast(Addition, adding).applies(turn):
        # "我还要补充一下，…" about a request already filed: a note on it, not a new case.
        _start(turn, adding, heard)
        return
    handler = turn.handler_for(heard.intent)
    if turn.retiree is None and not state.registered and heard.intent not in WITHOUT_REGISTRATION:
        if handler is not None and heard.intent in REQUEST_INTENTS:
            state.deferred = _switch_from(heard)
        _start(turn, turn.handler(REGISTRATION), heard)
        return
    if handler is not None:
        state.fallbacks = 0
        _start(turn, handler, heard)
        return
    if heard.intent == "greet":
        if turn.retiree is not None and state.on_behalf is not None:
            turn.ask("greeting.for_family", name=turn.retiree.name)  # her son, not her
        elif turn.retiree is not None:
            turn.ask("greeting.known", name=turn.retiree.name)
        else:
            turn.ask("greeting.unknown")
    elif heard.intent == "goodbye":
        _goodbye(turn)
    elif heard.intent in ("affirm", "deny"):
        turn.ask("greeting.unknown")
    else:
        _not_understood(turn)


def _start(turn: Turn, handler: RequestHandler, heard: Heard) -> None:
    turn.heard = heard
    task = turn.task_for(handler, said=heard.said)
    turn.state.task = task
    handler.start(turn, task)
    _after_task(turn)


def _not_understood(turn: Turn) -> None:
    state, config = turn.state, turn.deployment.dialogue
    state.fallbacks += 1
    if turn.heard.said:
        state.unclear.append(turn.heard.said)
    if state.fallbacks < config.max_fallbacks:
        turn.ask("fallback.again")
        return
    general = turn.handler(GENERAL)
    task = turn.task_for(general)
    task.said = list(state.unclear)
    state.task = task
    general.start(turn, task)
    state.fallbacks, state.unclear = 0, []
    if task.case is not None:
        state.cases.append(task.case)
    state.task = None
    state.switch = Switch(intent=OFFER_PERSON, text="")
    turn.ask("fallback.offer_person", turn.yes_no(), remember=False)


def _goodbye(turn: Turn) -> None:
    # After an emergency nobody says a cheerful goodbye: help is on its way.
    turn.say("emergency.goodbye" if turn.state.emergency_case is not None else "goodbye")
    turn.end()


def _emergency_silence(turn: Turn) -> None:
    """Silence after an emergency was told: the person may be unable to speak. Reassure and
    stay on the line (never a goodbye, never "what do you need?"); the question still open is
    asked once more, an answered one never."""
    state = turn.state
    turn.hint(Hint.URGENT)
    turn.say("emergency.silence")
    task = state.task
    if (
        task is not None
        and not task.done
        and state.silences < turn.deployment.dialogue.max_silences
    ):
        turn.repeat(state.last_ask)


# -- silence ------------------------------------------------------------------------------------


def _on_voice_note(turn: Turn) -> None:
    """A voice message we cannot understand: filed for staff to hear and call back. With a
    ``category`` (the phone line's keypad: the caller chose the kind, then spoke), filed as
    that kind, its words in the recording (and in its text, when a recogniser wrote them)."""
    metadata = turn.inbound.metadata
    audio = metadata.get("audio")
    category = str(metadata.get("category") or "")
    if category in turn.deployment.categories.categories and category != EMERGENCY:
        name = turn.category_name(category, turn.staff_lang)
        case = turn.file_case(
            category,
            summary=turn.text("callback.keypad", turn.staff_lang, kind=name),
            details={"reason": "keypad", "audio": audio, "caller": turn.inbound.address},
            original_text=turn.inbound.text or "",  # a speech recogniser's words, if any
        )
    else:
        callback = cast(CallbackFiler, turn.handler("callback"))
        case = callback.file_callback(turn, "voice_note", said="", audio=audio)
    turn.state.cases.append(case.number)
    turn.say("callback.voice_kept")
    turn.acknowledge(case)


def _on_silence(turn: Turn) -> None:
    state, config = turn.state, turn.deployment.dialogue
    state.silences += 1
    if state.emergency_case is not None:
        _emergency_silence(turn)
        return
    if state.silences < config.max_silences:
        turn.say("silence.prompt")
        if not turn.repeat(state.last_ask):
            turn.ask("greeting.unknown")
        return
    task = state.task
    if task is not None and not task.done and task.handler != REGISTRATION:
        _file_unfinished(turn, task, acknowledge=True)
    elif not state.cases:
        callback = cast(CallbackFiler, turn.handler(CALLBACK))
        case = callback.file_silent(turn)
        state.cases.append(case.number)
        turn.say("silence.filed")
    _goodbye(turn)


# -- emergencies --------------------------------------------------------------------------------


def _emergency_counts(turn: Turn) -> bool:
    """Whether an emergency reading of this turn interrupts what is going on."""
    heard, task = turn.heard, turn.state.task
    if task is None or task.done:
        return True
    if task.handler == EMERGENCY:
        return False  # the answer to "where are you, what happened?"
    if heard.ruled or task.asking is None:
        return True
    return heard.confidence >= turn.deployment.dialogue.emergency_in_answer


def _question_open(turn: Turn) -> bool:
    """A request's question waits for its answer, and no safety rule matched."""
    task = turn.state.task
    return not turn.heard.ruled and task is not None and not task.done and task.asking is not None


def _start_emergency(turn: Turn, heard: Heard) -> None:
    state = turn.state
    task = state.task
    if task is not None and not task.done:
        _file_unfinished(turn, task)  # filed as it is: it must not hold up the emergency
    state.switch = None
    state.task = None
    _start(turn, turn.handler(EMERGENCY), heard)


def _on_emergency_check(turn: Turn) -> None:
    state, heard = turn.state, turn.heard
    check = state.emergency_check
    assert check is not None
    state.emergency_check = None
    if heard.deny:
        task = state.task
        if task is not None and not task.done:
            _resume_question(turn, task, "switch.stay")
        else:
            turn.ask("greeting.unknown")
        return
    # Yes, or anything but a clear no: an emergency must not wait on a misunderstanding.
    original = _heard_from(check)
    if heard.said and not heard.affirm:
        original.said = f"{original.said}\n{heard.said}"
    _start_emergency(turn, original)


# -- helpers ------------------------------------------------------------------------------------


def _switch_from(heard: Heard) -> Switch:
    return Switch(
        intent=heard.intent, text=heard.text, said=heard.said, entities=list(heard.entities)
    )


def _heard_from(switch: Switch) -> Heard:
    return Heard(
        text=switch.text,
        said=switch.said or switch.text,
        intent=switch.intent,
        confidence=1.0,
        entities=switch.entities,
    )
