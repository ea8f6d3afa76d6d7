"""Replies degrade gracefully: buttons, "press 1 / press 2" on the phone, a numbered list in SMS."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.conversation.messages import Choice, Inbound, Reply, Style, render, speak_digits
from config.i18n import load_catalogs
from config.settings import CONFIG_DIR

CATALOGS = load_catalogs(CONFIG_DIR / "messages")
YES_NO_ZH = (Choice("affirm", "对"), Choice("deny", "不对"))
YES_NO_EN = (Choice("affirm", "Yes"), Choice("deny", "No"))


def test_voice_reads_keypad_options_and_case_numbers_digit_by_digit() -> None:
    reply = Reply("您的编号是2026-000123，对吗？", YES_NO_ZH)
    assert render(reply, Style.VOICE, CATALOGS) == (
        "您的编号是2 0 2 6 杠 0 0 0 1 2 3，对吗？ 对请按1，不对请按2。"
    )
    english = Reply("Your number is 2026-000123. Is that right?", YES_NO_EN, language="en")
    assert render(english, Style.VOICE, CATALOGS) == (
        "Your number is 2 0 2 6 dash 0 0 0 1 2 3. Is that right? For Yes, press 1. For No, press 2."
    )


def test_text_gives_a_numbered_list() -> None:
    reply = Reply("您要办哪一件？", (Choice("a", "药费报销"), Choice("b", "家里维修")))
    assert (
        render(reply, Style.TEXT, CATALOGS)
        == "您要办哪一件？\n1. 药费报销\n2. 家里维修\n请回复数字选择。"
    )


def test_buttons_leave_choices_to_the_channel_and_keep_numbers_as_written() -> None:
    reply = Reply("编号2026-000123", YES_NO_ZH)
    assert render(reply, Style.BUTTONS, CATALOGS) == "编号2026-000123"
    assert render(Reply("编号2026-000123"), Style.TEXT, CATALOGS) == "编号2026-000123"


@pytest.mark.parametrize(
    ("digits", "value"),
    [
        ("1", "affirm"),
        ("2", "deny"),
        ("１", "affirm"),
        ("3", None),
        ("", None),
        ("x", None),
        ("0", None),
        ("①", None),
        ("²", None),
    ],
)
def test_keypad_digit_picks_a_choice(digits: str, value: str | None) -> None:
    chosen = Reply("对吗？", YES_NO_ZH).choice_for_digit(digits)
    assert (chosen.value if chosen else None) == value


def test_voice_reads_phone_numbers_digit_by_digit() -> None:
    assert speak_digits("电话+8613912345678。对吗？", "zh") == "电话1 3 9 1 2 3 4 5 6 7 8。对吗？"
    assert speak_digits("phone 13912345678.", "en") == "phone 1 3 9 1 2 3 4 5 6 7 8."
    assert speak_digits("家里电话 84561234", "zh") == "家里电话 8 4 5 6 1 2 3 4"


def test_speak_digits_leaves_other_numbers_alone() -> None:
    assert speak_digits("三百五十块，350元", "zh") == "三百五十块，350元"
    assert speak_digits("2026-000123和2026-000124", "zh").count("杠") == 2


def test_inbound_emptiness() -> None:
    at = datetime(2026, 6, 1, tzinfo=UTC)
    assert Inbound("phone", "+8613800000000", "CA1", at).is_empty
    assert not Inbound("phone", "+8613800000000", "CA1", at, digits="1").is_empty
    assert Inbound("sms", "+8613800000000", "SM1", at, text="  ").is_empty
