"""Claim and resolve deadlines, counted in minutes, hours or working days.

Working days follow China's public holidays and make-up working days (调休), from the
`chinesecalendar` package. A date outside the years it covers is an error, never a guess.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import chinese_calendar

from config.categories import Duration


class CalendarNotCovered(LookupError):
    """The holiday calendar does not know this year yet (update `chinesecalendar`)."""

    def __init__(self, day: date) -> None:
        self.day = day
        super().__init__(
            f"the working-day calendar does not cover {day.isoformat()} "
            "(upgrade the chinesecalendar package once the year's holidays are published)"
        )


def is_working_day(day: date) -> bool:
    try:
        return bool(chinese_calendar.is_workday(day))
    except NotImplementedError as exc:
        raise CalendarNotCovered(day) from exc


def add_working_days(start: date, days: int) -> date:
    """The date ``days`` working days after ``start`` (``start`` itself does not count)."""
    if days < 0:
        raise ValueError("days must not be negative")
    day = start
    remaining = days
    while remaining:
        day += timedelta(days=1)
        if is_working_day(day):
            remaining -= 1
    return day


def deadline_after(start: datetime, within: Duration, tz: ZoneInfo) -> datetime:
    """When something started at ``start`` (aware) is due.

    Working days end at the same local clock time as ``start``: a request filed on Friday at
    15:00 with one working day is due on the next working day at 15:00.
    """
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    if within.minutes is not None:
        return start + timedelta(minutes=within.minutes)
    if within.hours is not None:
        return start + timedelta(hours=within.hours)
    assert within.working_days is not None
    local = start.astimezone(tz)
    due_day = add_working_days(local.date(), within.working_days)
    due = datetime.combine(due_day, local.timetz().replace(tzinfo=None), tzinfo=tz)
    return due.astimezone(start.tzinfo)
