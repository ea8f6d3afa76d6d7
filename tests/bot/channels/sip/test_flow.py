"""One call on the SIP line as a state machine: what each event leads to."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.channels.sip.flow import (
    Answer,
    Ask,
    Attach,
    CallFlow,
    Connected,
    Dial,
    FileSilent,
    HangUp,
    Play,
    Record,
    Released,
    StopDialing,
    StopRecording,
    WaitForKey,
)
from bot.channels.sip.prompts import Beep, Key, Number, Speak
from config.settings import CONFIG_DIR
from config.sip import load_sip

CONFIG = load_sip(CONFIG_DIR)


@pytest.fixture
def call() -> CallFlow:
    flow = CallFlow(CONFIG, name="王秀英")
    assert flow.answered() == [
        Play((Key("sip.hello_name", (("name", "王秀英"),)), Key("sip.menu")))
    ]
    return flow


def test_a_request_by_key_is_spoken_after_the_beep_and_filed_with_its_recording(
    call: CallFlow,
) -> None:
    assert call.key("1") == [Play((Key("sip.speak_after_beep"), Beep()))]  # cuts into the menu
    assert call.played() == [Record(CONFIG.record_seconds)]
    assert call.key("5") == []  # keys while recording mean nothing but #
    assert call.key("#") == [StopRecording()]
    assert call.recorded("/rec/1.wav") == [
        Ask(category="medication_reimbursement", audio="/rec/1.wav")
    ]
    said = call.answer(Answer(cases=("2026-000007",)))
    assert said == [Play((Key("sip.filed"), Number("2026-000007"), Key("sip.call_back")))]
    assert call.played() == [HangUp()]


def test_nine_is_an_emergency_and_where_is_recorded_onto_its_case(call: CallFlow) -> None:
    assert call.key("9") == [Ask(says="紧急情况，我需要帮助")]
    # Nobody on duty to put her through to: the alert calls go now; she says where she is.
    assert call.answer(Answer(cases=("2026-000009",), urgent=True)) == [
        Released("2026-000009"),
        Play((Key("sip.emergency"), Beep())),
    ]
    assert call.played() == [Record(CONFIG.record_seconds)]
    assert call.hung_up() == [StopRecording()]  # they hang up while speaking
    assert call.recorded("/rec/9.wav") == [Attach("2026-000009", "/rec/9.wav")]  # no goodbye


def test_silence_says_the_menu_again_then_files_a_call_back(call: CallFlow) -> None:
    assert call.played() == [WaitForKey(CONFIG.silence_seconds)]
    for _ in range(CONFIG.menu_repeats):
        assert call.silence() == [Play((Key("sip.again"), Key("sip.menu")))]
        assert call.played() == [WaitForKey(CONFIG.silence_seconds)]
    assert call.silence() == [FileSilent(), HangUp()]


def test_hanging_up_before_a_key_is_a_silent_call_and_after_one_files_the_request(
    call: CallFlow,
) -> None:
    assert call.hung_up() == [FileSilent()]
    chose = CallFlow(CONFIG)
    chose.answered()
    chose.key("3")
    assert chose.hung_up() == [Ask(category="help_request")]
    assert chose.played() == []


def test_a_key_not_in_the_menu_says_the_menu_again_and_an_answer_is_read_out(
    call: CallFlow,
) -> None:
    assert call.key("7") == [Play((Key("sip.menu"),))]
    assert call.key("5") == [Ask(says="我上次报的事办得怎么样了")]
    said = call.answer(Answer(words=("您2026-000003号的生活帮扶已经办好了。", "")))
    assert said == [Play((Speak("您2026-000003号的生活帮扶已经办好了。"),))]
    assert call.played() == [HangUp()]


def test_the_shipped_menu_files_only_kinds_the_deployment_has() -> None:
    from bot.runtime.configure import load_deployment
    from config.settings import Settings

    kinds = load_deployment(Settings(_env_file=None)).categories.categories
    assert {c.request for c in CONFIG.menu.values() if c.request} <= set(kinds)
    assert Path(CONFIG_DIR / "sip.yml").exists()


def test_an_emergency_is_put_through_to_the_staff_on_duty_in_turn(call: CallFlow) -> None:
    call.key("9")
    on_duty = (("+8613700000001", False), ("+8613700000002", False), ("+8613900000009", True))
    said = call.answer(Answer(cases=("2026-000009",), urgent=True, targets=on_duty))
    # Their phone rings at once, while she hears that it is ringing.
    assert said == [Play((Key("sip.emergency_connecting"),)), Dial("+8613700000001")]
    assert call.played() == []
    assert call.dial_failed() == [Play((Key("sip.connecting_next"),)), Dial("+8613700000002")]
    assert call.dial_answered() == [Connected("2026-000009", "+8613700000002", False)]
    assert call.bridge_over() == [Released("2026-000009"), HangUp()]


def test_nobody_answering_an_emergency_releases_its_alert_calls(call: CallFlow) -> None:
    call.key("9")
    call.answer(Answer(cases=("2026-000009",), urgent=True, targets=(("+8613700000001", False),)))
    assert call.dial_failed() == [Released("2026-000009"), Play((Key("sip.emergency"), Beep()))]
    assert call.played() == [Record(CONFIG.record_seconds)]


def test_a_hand_over_nobody_takes_is_a_voicemail_for_the_call_back(call: CallFlow) -> None:
    call.key("0")
    assert call.answer(Answer(hand_over=True, targets=(("+8613700000001", False),))) == [
        Play((Key("sip.connecting"),)),
        Dial("+8613700000001"),
    ]
    assert call.dial_failed() == [Play((Key("sip.leave_message"), Beep()))]
    assert call.played() == [Record(CONFIG.record_seconds)]
    assert call.recorded("/rec/vm.wav") == [Ask(audio="/rec/vm.wav", voicemail=True)]


def test_hanging_up_while_a_phone_rings_stops_it_and_nothing_is_lost(call: CallFlow) -> None:
    call.key("0")
    call.answer(Answer(hand_over=True, targets=(("+8613700000001", False),)))
    call.played()
    assert call.hung_up() == [StopDialing(), Ask(voicemail=True)]  # a call-back all the same
    urgent = CallFlow(CONFIG)
    urgent.answered()
    urgent.key("9")
    urgent.answer(Answer(cases=("2026-000010",), urgent=True, targets=(("+8613700000001", False),)))
    urgent.played()
    assert urgent.hung_up() == [StopDialing(), Released("2026-000010")]
