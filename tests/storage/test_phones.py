"""Phone numbers are stored in one form (E.164), however they were written."""

from __future__ import annotations

import pytest

from storage.phones import InvalidPhoneNumber, mask_phone, normalize_phone


@pytest.mark.parametrize(
    "raw",
    [
        "13812345678",
        "138 1234 5678",
        "138-1234-5678",
        "+86 138 1234 5678",
        "008613812345678",
        "tel:+8613812345678",
        "whatsapp:+8613812345678",
        " 13812345678 ",
    ],
)
def test_chinese_mobile_in_any_form(raw: str) -> None:
    assert normalize_phone(raw) == "+8613812345678"


def test_landline_and_foreign_numbers() -> None:
    assert normalize_phone("010-62345678") == "+861062345678"
    assert normalize_phone("+1 415 555 0100") == "+14155550100"


@pytest.mark.parametrize("raw", ["12345", "", "abc", "+86 138"])
def test_invalid_numbers_are_refused(raw: str) -> None:
    with pytest.raises(InvalidPhoneNumber):
        normalize_phone(raw)


def test_mask() -> None:
    assert mask_phone("+8613812345678") == "+86138****5678"
