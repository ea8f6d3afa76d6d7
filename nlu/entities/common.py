"""Helpers shared by the entity extractors: digit classes, small Chinese numerals, entity dicts."""

from __future__ import annotations

import calendar
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")

# Arabic digits, half- and full-width (the cleaner may leave full-width ones in place).
DIGIT = "[0-9０-９]"
NOT_AFTER_DIGIT = "(?<![0-9０-９])"
NOT_BEFORE_DIGIT = "(?![0-9０-９])"
CN_DIGITS = "零〇一二两兩三四五六七八九"
# Every character that can be part of a Chinese numeral (used in look-arounds).
CN_NUMERAL_CHARS = CN_DIGITS + "十拾百佰千仟万萬亿億"

_FULLWIDTH = str.maketrans("０１２３４５６７８９．，", "0123456789.,")
_CN_VALUE = {
    "零": 0,
    "〇": 0,
    "一": 1,
    "二": 2,
    "两": 2,
    "兩": 2,
    "三": 3,
    "四": 4,
    "五": 5,
    "六": 6,
    "七": 7,
    "八": 8,
    "九": 9,
}


def ascii_digits(text: str) -> str:
    """``text`` with full-width digits, dot and comma made ASCII (same length)."""
    return text.translate(_FULLWIDTH)


def small_number(text: str) -> int | None:
    """0..99 written in Arabic or Chinese digits (五, 十二, 二十, 三十一, 二〇二六 digit by digit)."""
    text = ascii_digits(text.strip())
    if text.isascii() and text.isdigit():
        return int(text)
    if not text:
        return None
    if "十" not in text:  # digit by digit: 二〇二六, 五
        digits = [_CN_VALUE.get(ch) for ch in text]
        if any(d is None for d in digits):
            return None
        return int("".join(str(d) for d in digits))
    tens, _, units = text.partition("十")
    tens_value = 1 if tens == "" else _CN_VALUE.get(tens) if len(tens) == 1 else None
    units_value = 0 if units == "" else _CN_VALUE.get(units) if len(units) == 1 else None
    if tens_value is None or units_value is None:
        return None
    return tens_value * 10 + units_value


def make_entity(
    entity: str, value: Any, start: int, end: int, extractor: str, **extra: Any
) -> dict[str, Any]:
    """One entity in Rasa's format."""
    result: dict[str, Any] = {
        "entity": entity,
        "value": value,
        "start": start,
        "end": end,
        "confidence_entity": 1.0,
        "extractor": extractor,
    }
    result.update(extra)
    return result


def safe_date(year: int, month: int, day: int) -> date | None:
    """The date, or None when it does not exist (2月30号)."""
    if not (1 <= month <= 12 and 1 <= day <= 31 and 1 <= year <= 9999):
        return None
    if day > calendar.monthrange(year, month)[1]:
        return None
    return date(year, month, day)


def add_months(day: date, months: int) -> date:
    """The same day ``months`` later (or earlier), clamped to the end of a shorter month."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    last = calendar.monthrange(year, month + 1)[1]
    return date(year, month + 1, min(day.day, last))


def month_end(day: date) -> date:
    return date(day.year, day.month, calendar.monthrange(day.year, day.month)[1])


def nearest_year(today: date, month: int, day: int) -> date | None:
    """The (month, day) in the year that puts it nearest ``today``; None when it never exists."""
    options = [safe_date(today.year + k, month, day) for k in (-1, 0, 1)]
    valid = [d for d in options if d is not None]
    return min(valid, key=lambda d: (abs((d - today).days), d < today)) if valid else None


def next_day_of_month(today: date, day: int) -> date | None:
    """The next date whose day of the month is ``day`` (today included)."""
    for months in range(13):
        first = add_months(today.replace(day=1), months)
        candidate = safe_date(first.year, first.month, day)
        if candidate is not None and candidate >= today:
            return candidate
    return None


def week_monday(today: date, weeks: int) -> date:
    return today - timedelta(days=today.weekday()) + timedelta(weeks=weeks)
