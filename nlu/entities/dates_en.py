"""English dates: today, tomorrow, next Monday, March 5 (on March 5th, 5 March 2026), next week."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

from nlu.entities.common import add_months, month_end, nearest_year, safe_date, week_monday

_LETTER = re.compile("[A-Za-z]")
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_MONTHS = {
    name: number
    for number, names in enumerate(
        (
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sept", "sep"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ),
        start=1,
    )
    for name in names
}
_MONTH_NAMES = "|".join(sorted(_MONTHS, key=len, reverse=True))
_COUNTS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6}
_COUNTS.update({"seven": 7, "eight": 8, "nine": 9, "ten": 10})
_COUNT = r"(?P<n>\d{1,3}|" + "|".join(_COUNTS) + ")"
_DAYS_AWAY = {"today": 0, "tonight": 0, "tomorrow": 1, "yesterday": -1}
_WHICH_WEEKS = {None: 0, "this": 0, "next": 1, "last": -1}

_RELATIVE_DAY = re.compile(
    r"\b(?:the\s+day\s+(?P<ab>after\s+tomorrow|before\s+yesterday)|(?P<word>today|tonight|tomorrow|yesterday))\b",
    re.IGNORECASE,
)
_WEEKDAY = re.compile(
    r"\b(?:(?P<which>next|this|last|coming)\s+)?(?P<wd>" + "|".join(_WEEKDAYS) + r")\b",
    re.IGNORECASE,
)
_WEEK_OR_MONTH = re.compile(r"\b(?P<which>next|this|last)\s+(?P<unit>week|month)\b", re.IGNORECASE)
_END_OF_MONTH = re.compile(r"\bend\s+of\s+(?:the\s+|this\s+)?month\b", re.IGNORECASE)
_MONTH_DAY = re.compile(
    rf"\b(?P<mon>{_MONTH_NAMES})\.?\s+(?P<d>\d{{1,2}})(?:st|nd|rd|th)?\b(?:,?\s+(?P<y>\d{{4}})\b)?",
    re.IGNORECASE,
)
_DAY_MONTH = re.compile(
    rf"\b(?P<d>\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?(?P<mon>{_MONTH_NAMES})\b(?:,?\s+(?P<y>\d{{4}})\b)?",
    re.IGNORECASE,
)
_AGO = re.compile(rf"\b{_COUNT}\s+(?P<unit>days?|weeks?)\s+ago\b", re.IGNORECASE)
_IN = re.compile(rf"\bin\s+{_COUNT}\s+(?P<unit>days?|weeks?)\b", re.IGNORECASE)


def _day(value: date | None) -> dict[str, Any] | None:
    return None if value is None else {"value": value.isoformat(), "grain": "day"}


def _count_days(m: re.Match[str]) -> int:
    raw = m.group("n").lower()
    count = int(raw) if raw.isdigit() else _COUNTS[raw]
    return count * (7 if m.group("unit").lower().startswith("week") else 1)


def english_dates(text: str, today: date) -> Iterator[tuple[int, int, dict[str, Any] | None]]:
    """(start, end, resolved) for each English date phrase; resolved is None for impossible dates."""
    if _LETTER.search(text) is None:
        return
    for m in _RELATIVE_DAY.finditer(text):
        if m.group("ab") is not None:
            away = 2 if m.group("ab").lower().startswith("after") else -2
        else:
            away = _DAYS_AWAY[m.group("word").lower()]
        yield m.start(), m.end(), _day(today + timedelta(days=away))
    for m in _WEEKDAY.finditer(text):
        index = _WEEKDAYS.index(m.group("wd").lower())
        which = (m.group("which") or "").lower() or None
        if which in (None, "coming"):  # Friday: the next Friday, today included
            value = today + timedelta(days=(index - today.weekday()) % 7)
        else:
            value = week_monday(today, _WHICH_WEEKS[which]) + timedelta(days=index)
        yield m.start(), m.end(), _day(value)
    for m in _WEEK_OR_MONTH.finditer(text):
        which = _WHICH_WEEKS[m.group("which").lower()]
        if m.group("unit").lower() == "week":
            yield (
                m.start(),
                m.end(),
                {"value": week_monday(today, which).isoformat(), "grain": "week"},
            )
        else:
            first = add_months(today.replace(day=1), which)
            yield m.start(), m.end(), {"value": first.isoformat(), "grain": "month"}
    for m in _END_OF_MONTH.finditer(text):
        yield m.start(), m.end(), _day(month_end(today))
    for regex in (_MONTH_DAY, _DAY_MONTH):
        for m in regex.finditer(text):
            month, day = _MONTHS[m.group("mon").lower()], int(m.group("d"))
            if m.group("y") is not None:
                yield m.start(), m.end(), _day(safe_date(int(m.group("y")), month, day))
            else:
                yield m.start(), m.end(), _day(nearest_year(today, month, day))
    for m in _AGO.finditer(text):
        yield m.start(), m.end(), _day(today - timedelta(days=_count_days(m)))
    for m in _IN.finditer(text):
        yield m.start(), m.end(), _day(today + timedelta(days=_count_days(m)))
