"""Dates and relative dates in Chinese (明天, 下周三, 上个月, 3月5号...) and English, as ISO dates.

Resolution rules (reference day = the reference time in Asia/Shanghai):
- a weekday alone (周五, Friday) and a day alone (5号) are the next one, the reference day included;
- 这周五 / 下周三 / 上周一: that weekday of this / next / last week (weeks start on Monday);
- 下周 / 上个月: grain "week" (value: Monday) / "month" (value: the 1st);
- a month and day without a year (3月5号, March 5) take the year that puts them nearest the
  reference day (on 2026-12-28, 1月5号 is 2027-01-05; on 2026-06-03, 3月5号 is 2026-03-05);
- dates that do not exist (2月30号) give nothing; vague words (年后, 过几天) give nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date, timedelta
from typing import Any

from nlu.entities.common import (
    CN_NUMERAL_CHARS,
    DIGIT,
    add_months,
    make_entity,
    month_end,
    nearest_year,
    next_day_of_month,
    safe_date,
    small_number,
    week_monday,
)
from nlu.entities.dates_en import english_dates

_MONTH = rf"(?:{DIGIT}{{1,2}}|十[一二]?|[一二三四五六七八九])"
_DAY = rf"(?:{DIGIT}{{1,2}}|[一二三]?十[一二三四五六七八九]?|[一二三四五六七八九])"
_DAY_WORD = "(?:日|号|號)"
_NOT_IN_NUMBER = rf"(?<![0-9０-９{CN_NUMERAL_CHARS}])"
_YEAR = rf"(?P<y>{DIGIT}{{4}}|[〇零一二三四五六七八九]{{4}})"
# 号 after a number is also a building, a line, a bed: 5号楼, 3号线, 12号床.
_NOT_A_PLACE = (
    "(?![楼樓院线線床门門房室窗桌病机機车車位库庫口栋棟单單元柜櫃厅廳馆館站台桥橋街路巷弄区區场場])"
)

_FULL = re.compile(
    rf"{_NOT_IN_NUMBER}{_YEAR}\s*年\s*(?P<m>{_MONTH})\s*月\s*(?P<d>{_DAY})\s*{_DAY_WORD}?"
    rf"(?![0-9０-９{CN_NUMERAL_CHARS}])"
)
_YEAR_MONTH = re.compile(
    rf"{_NOT_IN_NUMBER}{_YEAR}\s*年\s*(?P<m>{_MONTH})\s*月(?:份)?(?!\s*[0-9０-９{CN_NUMERAL_CHARS}])"
)
_ISO = re.compile(
    rf"{_NOT_IN_NUMBER}(?P<y>{DIGIT}{{4}})(?P<sep>[-/.])(?P<m>{DIGIT}{{1,2}})(?P=sep)(?P<d>{DIGIT}{{1,2}})"
    rf"(?![0-9０-９])"
)
_MONTH_DAY = re.compile(
    rf"{_NOT_IN_NUMBER}(?P<m>{_MONTH})\s*月\s*(?P<d>{_DAY})\s*{_DAY_WORD}{_NOT_A_PLACE}"
)
_MONTH_PART = re.compile(rf"{_NOT_IN_NUMBER}(?P<m>{_MONTH})\s*月(?P<part>底|末|初|中)")
_DAY_ONLY = re.compile(
    rf"(?<![0-9０-９{CN_NUMERAL_CHARS}第月])(?:(?P<d>{_DAY})\s*(?:号|號)"
    rf"|(?P<ad>{DIGIT}{{1,2}})\s*日(?![内內后後前以之]))" + _NOT_A_PLACE
)
_WHICH = r"(?P<which>下下|下|上上|上|这|這|本)"
_WEEK_WORD = "(?:周|週|星期|礼拜|禮拜)"
_WEEKDAY = re.compile(
    rf"(?:{_WHICH}\s*(?:个|個)?\s*)?{_WEEK_WORD}(?P<wd>[一二三四五六日天末1-7１-７])"
    r"(?![次回遍趟顿頓天个個])"
)
# 这周围 (around here), 周到, 周岁 are not weeks.
_WEEK = re.compile(rf"{_WHICH}\s*(?:个|個)?\s*{_WEEK_WORD}(?![围圍边邊到岁歲年转轉期身全])")
_MONTH_REL = re.compile(
    rf"(?:{_WHICH}\s*(?:个|個)?\s*月(?![饼餅亮光球])"
    rf"|(?<![0-9０-９{CN_NUMERAL_CHARS}上下这這本个個岁歲])月(?=底|末|初))"
    rf"(?:(?P<part>底|末|初|中)|\s*(?P<d>{_DAY})\s*{_DAY_WORD}{_NOT_A_PLACE})?"
)
_DAYS_AWAY = {
    "今天": 0, "今儿个": 0, "今儿": 0, "今兒": 0, "今日": 0, "今早": 0, "今晚": 0,
    "明天": 1, "明儿个": 1, "明儿": 1, "明兒": 1, "明日": 1, "明早": 1, "明晚": 1,
    "后天": 2, "後天": 2, "大后天": 3, "大後天": 3,
    "昨天": -1, "昨儿个": -1, "昨儿": -1, "昨兒": -1, "昨日": -1, "昨晚": -1,
    "前天": -2, "大前天": -3,
}  # fmt: skip
_RELATIVE_DAY = re.compile("|".join(sorted(_DAYS_AWAY, key=len, reverse=True)))
_SHIFT = re.compile(
    rf"(?<![0-9０-９{CN_NUMERAL_CHARS}几幾])(?P<n>{DIGIT}{{1,3}}|[一二两兩三四五六七八九十]{{1,3}})\s*"
    r"(?P<unit>天|日|周|週|(?:个|個)\s*(?:星期|礼拜|禮拜|月)|星期|礼拜|禮拜)\s*"
    r"(?P<dir>以后|以後|之后|之後|后|後|以前|之前|前)"
)
_YEAR_PART = re.compile(
    r"(?:(?P<y>今|明|去)年\s*年?|(?<![0-9０-９〇零一二两三四五六七八九十前后後新过過])年)"
    r"(?P<part>底|末|初)(?![一二三四五六七八九十])"
)
_YEAR_SHIFT = {None: 0, "今": 0, "明": 1, "去": -1}
_WEEKDAY_INDEX = {"一": 0, "二": 1, "三": 2, "四": 3, "五": 4, "六": 5, "日": 6, "天": 6, "末": 5}
_WHICH_WEEKS = {
    None: 0, "这": 0, "這": 0, "本": 0, "下": 1, "下下": 2, "上": -1, "上上": -2,
}  # fmt: skip


def _day(value: date | None) -> dict[str, Any] | None:
    return None if value is None else {"value": value.isoformat(), "grain": "day"}


class DateExtractor:
    """Absolute and relative dates, resolved against the reference day in Asia/Shanghai."""

    name = "DateExtractor"

    def extract(self, text: str, today: date) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        chars = set(text)

        def add(resolved: dict[str, Any] | None, start: int, end: int) -> None:
            if resolved is not None:
                found.append(
                    make_entity("date", start=start, end=end, extractor=self.name, **resolved)
                )

        for regex in (_FULL, _ISO):
            for m in _scan(regex, text, chars):
                add(self._absolute(m), m.start(), m.end())
        for m in _scan(_YEAR_MONTH, text, chars):
            year, month = small_number(m.group("y")), small_number(m.group("m"))
            first = safe_date(year or 0, month or 0, 1)
            if first is not None:
                add({"value": first.isoformat(), "grain": "month"}, m.start(), m.end())
        for m in _scan(_MONTH_DAY, text, chars):
            month, day = small_number(m.group("m")), small_number(m.group("d"))
            add(_day(nearest_year(today, month or 0, day or 0)), m.start(), m.end())
        for m in _scan(_MONTH_PART, text, chars):
            month = small_number(m.group("m")) or 0
            first = nearest_year(today, month, 1) if 1 <= month <= 12 else None
            add(_day(_part_of_month(first, m.group("part"))), m.start(), m.end())
        for m in _scan(_DAY_ONLY, text, chars):
            if text[: m.start()].rstrip().endswith("月"):  # 2月 30号: the month-day rule decides
                continue
            day = small_number(m.group("d") or m.group("ad"))
            add(_day(next_day_of_month(today, day or 0)), m.start(), m.end())
        for m in _scan(_RELATIVE_DAY, text, chars):
            add(_day(today + timedelta(days=_DAYS_AWAY[m.group()])), m.start(), m.end())
        for m in _scan(_WEEKDAY, text, chars):
            add(_day(self._weekday(m, today)), m.start(), m.end())
        for m in _scan(_WEEK, text, chars):
            monday = week_monday(today, _WHICH_WEEKS[m.group("which")])
            add({"value": monday.isoformat(), "grain": "week"}, m.start(), m.end())
        for m in _scan(_MONTH_REL, text, chars):
            add(self._month(m, today), m.start(), m.end())
        for m in _scan(_SHIFT, text, chars):
            add(_day(_shifted(m, today)), m.start(), m.end())
        for m in _scan(_YEAR_PART, text, chars):
            year = today.year + _YEAR_SHIFT[m.group("y")]
            day = date(year, 12, 31) if m.group("part") in "底末" else date(year, 1, 1)
            add(_day(day), m.start(), m.end())
        for start, end, resolved in english_dates(text, today):
            add(resolved, start, end)
        return found

    @staticmethod
    def _absolute(m: re.Match[str]) -> dict[str, Any] | None:
        year, month, day = (small_number(m.group(k)) for k in ("y", "m", "d"))
        return _day(safe_date(year or 0, month or 0, day or 0))

    @staticmethod
    def _weekday(m: re.Match[str], today: date) -> date:
        wd = m.group("wd")
        index = _WEEKDAY_INDEX.get(wd)
        if index is None:  # 1-7
            index = (small_number(wd) or 7) - 1
        which = m.group("which")
        if which is None and wd != "末":  # 周五: the next Friday, today included
            return today + timedelta(days=(index - today.weekday()) % 7)
        return week_monday(today, _WHICH_WEEKS[which]) + timedelta(days=index)

    @staticmethod
    def _month(m: re.Match[str], today: date) -> dict[str, Any] | None:
        which = m.group("which")
        first = add_months(today.replace(day=1), _WHICH_MONTHS.get(which, 0))
        part, day = m.group("part"), m.group("d")
        if part is not None:
            return _day(_part_of_month(first, part))
        if day is not None:
            return _day(safe_date(first.year, first.month, small_number(day) or 0))
        if which is None:  # a bare 月 is nothing
            return None
        return {"value": first.isoformat(), "grain": "month"}


_WHICH_MONTHS = {"这": 0, "這": 0, "本": 0, "下": 1, "下下": 2, "上": -1, "上上": -2}


# A character each expression needs, so that most utterances skip most expressions (keyed by
# id: hashing a compiled pattern costs a microsecond).
_NEEDS: dict[int, frozenset[str]] = {
    id(_FULL): frozenset("年"),
    id(_YEAR_MONTH): frozenset("年"),
    id(_YEAR_PART): frozenset("年"),
    id(_ISO): frozenset("-/."),
    id(_MONTH_DAY): frozenset("月"),
    id(_MONTH_PART): frozenset("月"),
    id(_MONTH_REL): frozenset("月"),
    id(_DAY_ONLY): frozenset("号號日"),
    id(_RELATIVE_DAY): frozenset("今明后後昨前"),
    id(_WEEKDAY): frozenset("周週期拜"),
    id(_WEEK): frozenset("周週期拜"),
    id(_SHIFT): frozenset("前后後"),
}


def _scan(regex: re.Pattern[str], text: str, chars: set[str]) -> Iterable[re.Match[str]]:
    return () if _NEEDS[id(regex)].isdisjoint(chars) else regex.finditer(text)


def _part_of_month(first: date | None, part: str) -> date | None:
    if first is None:
        return None
    if part in ("底", "末"):
        return month_end(first)
    return first.replace(day=15) if part == "中" else first


def _shifted(m: re.Match[str], today: date) -> date | None:
    count = small_number(m.group("n").replace("两", "二").replace("兩", "二"))
    if count is None:
        return None
    sign = -1 if m.group("dir").endswith("前") else 1
    unit = m.group("unit")
    if unit.endswith("月"):
        return add_months(today, sign * count)
    days = count if unit in ("天", "日") else 7 * count
    return today + timedelta(days=sign * days)
