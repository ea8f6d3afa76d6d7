"""Cleaning what callers say: control characters, surrogates, full-width forms, length."""

from __future__ import annotations

import pytest

from nlu.text import MAX_CHARS, clean_text, normalize_for_model


@pytest.mark.parametrize(
    ("raw", "cleaned"),
    [
        ("我想报销药费", "我想报销药费"),
        ("  我想报销药费  ", "我想报销药费"),
        ("ＡＢＣ１２３", "ABC123"),  # full-width ASCII
        ("你好，我想报销！多少钱？", "你好,我想报销!多少钱?"),  # full-width punctuation
        ("我\x00要\x07报\x1b销", "我要报销"),  # control characters go
        ("我\t要\n\n报销\r\n", "我 要 报销"),  # whitespace controls become one space
        ("\ufeff我\u200b要\u202e报销", "我要报销"),  # BOM, zero-width space, bidi override
        ("我\u3000要", "我 要"),  # ideographic space
        ("我\ud800要\udfff报销", "我要报销"),  # lone surrogates go
        ("救命\ud83d\ude2d", "救命😭"),  # a surrogate pair becomes its character
        ("救命😭🙏", "救命😭🙏"),  # emoji stay
        ("醫藥費報銷", "醫藥費報銷"),  # traditional characters stay as said
        ("我要\ufffd报销", "我要报销"),  # replacement characters go
    ],
)
def test_clean_text(raw: str, cleaned: str) -> None:
    assert clean_text(raw) == (cleaned, False)


def test_invalid_utf8_bytes_are_decoded_and_cleaned() -> None:
    assert clean_text(b"\xff\xfe\xe6\x88\x91\xe8\xa6\x81\x80") == ("我要", False)


@pytest.mark.parametrize("raw", ["", "   ", "\n\t\r", "\x00\x01\u200b", "\ud800"])
def test_blank_texts_become_empty(raw: str) -> None:
    assert clean_text(raw) == ("", False)


def test_long_text_is_cut_with_a_flag() -> None:
    text, truncated = clean_text("好" * (MAX_CHARS + 500))
    assert truncated is True
    assert text == "好" * MAX_CHARS


def test_text_of_exactly_the_maximum_is_not_cut() -> None:
    assert clean_text("好" * MAX_CHARS) == ("好" * MAX_CHARS, False)


def test_cut_counts_characters_after_cleaning() -> None:
    raw = "\x00" * 5000 + "好" * 10
    assert clean_text(raw) == ("好" * 10, False)


def test_normalize_for_model() -> None:
    assert normalize_for_model("醫藥費 報銷 ABC’s") == "医药费报销 abc's"
    assert normalize_for_model("救 命 啊") == "救命啊"
