"""A call the SIP line places for the outbox, as a state machine: what each event leads to."""

from __future__ import annotations

from bot.channels.calls import CallKind
from bot.channels.sip.callout import (
    CHECK_IN_GOODBYE,
    NO_ANSWER,
    NOT_TAKEN,
    PRESS_ONE,
    CalloutFlow,
    Converse,
    Ended,
    Hear,
    Heard,
    Placed,
    status_of,
)
from bot.channels.sip.flow import HangUp, Play, WaitForKey
from bot.channels.sip.prompts import Key, Speak
from config.settings import CONFIG_DIR
from config.sip import load_sip

CONFIG = load_sip(CONFIG_DIR)
ALERT = {
    "kind": "emergency_call",
    "case": "2026-000001",
    "text": "紧急情况：王秀英摔倒了",
    "language": "zh",
    "chain": [],
}
FOLLOW_UP = {"kind": "follow_up", "follow_up": 7, "text": "您的事办好了吗？", "language": "zh"}
CHECK_IN = {
    "kind": "check_in",
    "check_in": 5,
    "text": "王阿姨您好，今天身体好吗？",
    "language": "zh",
}
NOTICE = {"kind": "case_resolved", "text": "您的事已经办好了。", "language": "zh"}


def flow(payload: dict[str, object]) -> CalloutFlow:
    return CalloutFlow(CONFIG, Placed.of("k1", "+8613700000001", payload, "zh"))


def test_the_kind_of_call_is_read_from_its_payload() -> None:
    assert Placed.of("k", "+86", ALERT, "zh").kind == CallKind.ALERT
    follow_up = Placed.of("k", "+86", FOLLOW_UP, "en")
    assert (follow_up.kind, follow_up.follow_up, follow_up.language) == (
        CallKind.FOLLOW_UP,
        7,
        "zh",
    )
    assert Placed.of("k", "+86", NOTICE, "zh").kind == CallKind.NOTICE
    assert Placed.of("k", "+86", {"text": "x"}, "en").language == "en"


def test_an_alert_call_asks_for_1_and_1_takes_it() -> None:
    call = flow(ALERT)
    assert call.answered() == [Play((Speak(ALERT["text"]), Key(PRESS_ONE)))]
    assert call.played() == [WaitForKey(CONFIG.silence_seconds)]
    assert call.key("1") == [Hear("1")]
    assert call.key("1") == []  # heard once
    assert call.heard(Heard("这个紧急情况由您处理。")) == [Play((Speak("这个紧急情况由您处理。"),))]
    assert call.played() == [HangUp()]
    assert call.hung_up(200) == [Ended("completed")]
    assert call.hung_up(200) == []  # reported once


def test_1_may_cut_in_while_the_alert_is_still_being_said() -> None:
    call = flow(ALERT)
    call.answered()
    assert call.key("1") == [Hear("1")]


def test_an_alert_call_with_no_key_asks_again_then_says_nobody_took_it() -> None:
    call = flow(ALERT)
    call.answered()
    call.played()
    assert call.silence() == [Play((Speak(ALERT["text"]), Key(PRESS_ONE)))]
    call.played()
    assert call.key("5") == [Play((Key(NOT_TAKEN),))]  # a wrong key counts as no answer
    assert call.played() == [HangUp()]
    assert call.hung_up(200) == [Ended("completed")]  # the chain decides: not taken


def test_a_callee_who_presses_1_and_hangs_up_at_once_is_reported_after_the_key() -> None:
    """The end is reported only once the key is recorded: never passed on before it is taken."""
    call = flow(ALERT)
    call.answered()
    assert call.key("1") == [Hear("1")]
    assert call.hung_up(200) == []
    assert call.heard(Heard("这个紧急情况由您处理。")) == [Ended("completed")]


def test_a_follow_up_call_asks_twice_hears_1_2_or_3_and_asks_again_after_another_key() -> None:
    call = flow(FOLLOW_UP)
    question = Speak(FOLLOW_UP["text"])
    assert call.answered() == [Play((question, question))]
    call.played()
    assert call.key("7") == [Play((question,))]  # once more
    call.played()
    assert call.key("3") == [Hear("3")]
    assert call.heard(Heard()) == [HangUp()]  # the key answered nothing: no words


def test_a_follow_up_call_with_no_key_says_goodbye() -> None:
    call = flow(FOLLOW_UP)
    call.answered()
    call.played()
    call.silence()
    call.played()
    assert call.silence() == [Play((Key(NO_ANSWER),))]


def test_a_notice_is_said_twice_and_keys_do_nothing() -> None:
    call = flow(NOTICE)
    text = Speak(NOTICE["text"])
    assert call.answered() == [Play((text, text))]
    assert call.key("1") == []
    assert call.played() == [HangUp()]


def test_a_call_that_was_never_answered_ends_busy_rang_out_or_failed() -> None:
    call = flow(ALERT)
    assert call.hung_up(486) == [Ended("busy")]
    assert call.played() == [] and call.key("1") == []
    assert status_of(487, answered=False) == "no-answer"
    assert status_of(408, answered=False) == "no-answer"
    assert status_of(503, answered=False) == "failed"
    assert status_of(487, answered=True) == "completed"


def test_a_check_in_call_hears_1_or_2_and_2_hands_the_call_to_the_callers_flow() -> None:
    placed = Placed.of("k", "+86", CHECK_IN, "zh")
    assert (placed.kind, placed.check_in) == (CallKind.CHECK_IN, 5)
    call = flow(CHECK_IN)
    text = Speak(CHECK_IN["text"])
    assert call.answered() == [Play((text, text))]  # said twice
    assert call.played() == [WaitForKey(CONFIG.silence_seconds)]
    assert call.key("3") == [Play((text,))]  # not an answer: asked once more
    assert call.played() == [WaitForKey(CONFIG.silence_seconds)]
    assert call.key("2") == [Hear("2")]
    assert call.heard(Heard(converse=True)) == [Converse()]
    assert call.key("1") == []  # the callout is done with: the caller's flow hears keys now
    well = flow(CHECK_IN)
    well.answered()
    well.played()
    assert well.key("1") == [Hear("1")]
    assert well.heard(Heard("好的，祝您身体健康！")) == [Play((Speak("好的，祝您身体健康！"),))]
    assert well.played() == [HangUp()]


def test_a_check_in_nobody_answers_says_goodbye_after_the_second_ask() -> None:
    call = flow(CHECK_IN)
    call.answered()
    call.played()
    assert call.silence() == [Play((Speak(CHECK_IN["text"]),))]
    call.played()
    assert call.silence() == [Play((Key(CHECK_IN_GOODBYE),))]
    assert call.played() == [HangUp()]
    assert call.hung_up(200) == [Ended("completed")]
