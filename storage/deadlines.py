"""Claim and resolve deadlines, counted in minutes, hours or working days.

Working days follow China's public holidays and make-up working days (调休), from the
`chinesecalendar` package, then for the years it does not cover yet from the deployment's
config/working_days.yml (config/working_days.py). A date in neither is an error
(`CalendarNotCovered`), never a silent guess: a caller that must have a deadline all the same
(a case being filed) asks for an estimate (``estimate=True``: Monday to Friday for the days not
covered) and records that it is one.

With a unit's service hours (config/service_hours.py) a deadline counts only the time the
offices answer: eight hours from Friday 23:30 are eight office hours from Monday 08:30, and
working days start from the next opening. Without them (the categories that go round the
clock, emergencies) the clock counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import chinese_calendar

from config.categories import Duration
from config.service_hours import Window
from config.working_days import WorkingDays

LOOK_AHEAD_DAYS = 400  # an opening is always found within a year (holidays are a few weeks)


class CalendarNotCovered(LookupError):
    """The holiday calendar does not know this year yet (update `chinesecalendar`)."""

    def __init__(self, day: date) -> None:
        self.day = day
        super().__init__(
            f"the working-day calendar does not cover {day.isoformat()} "
            "(upgrade the chinesecalendar package once the year's holidays are published)"
        )


def is_working_day(day: date, listed: WorkingDays | None = None) -> bool:
    """Whether ``day`` is worked: the package's calendar, else ``listed`` (the deployment's
    working_days.yml, storage.site.Site.working_days); raises CalendarNotCovered when neither
    knows its year."""
    try:
        return bool(chinese_calendar.is_workday(day))
    except NotImplementedError as exc:
        worked = listed.is_working_day(day) if listed is not None else None
        if worked is None:
            raise CalendarNotCovered(day) from exc
        return worked


def _worked(day: date, estimate: bool, listed: WorkingDays | None) -> bool:
    try:
        return is_working_day(day, listed)
    except CalendarNotCovered:
        if not estimate:
            raise
        return day.weekday() < 5


def add_working_days(
    start: date, days: int, *, estimate: bool = False, listed: WorkingDays | None = None
) -> date:
    """The date ``days`` working days after ``start`` (``start`` itself does not count), on
    the package's calendar and the days ``listed``. ``estimate``: count Monday to Friday where
    neither reaches."""
    if days < 0:
        raise ValueError("days must not be negative")
    day = start
    remaining = days
    while remaining:
        day += timedelta(days=1)
        if _worked(day, estimate, listed):
            remaining -= 1
    return day


def deadline_after(
    start: datetime,
    within: Duration,
    tz: ZoneInfo,
    *,
    estimate: bool = False,
    listed: WorkingDays | None = None,
    hours: Sequence[Window] | None = None,
) -> datetime:
    """When something started at ``start`` (aware) is due.

    Working days end at the same local clock time as ``start``: a request filed on Friday at
    15:00 with one working day is due on the next working day at 15:00. With service
    ``hours``, minutes and hours count office time only, and working days start at the next
    opening when ``start`` is outside the hours. Outside the calendar: CalendarNotCovered, or
    with ``estimate`` Monday to Friday.
    """
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    if within.minutes is not None or within.hours is not None:
        length = timedelta(minutes=within.minutes or 0, hours=within.hours or 0)
        if hours is None:
            return start + length
        return add_service_time(start, length, tz, hours, estimate=estimate, listed=listed)
    assert within.working_days is not None
    local = start.astimezone(tz)
    if hours is not None:
        local, _ = opening_at_or_after(local, tz, hours, estimate=estimate, listed=listed)
    due_day = add_working_days(local.date(), within.working_days, estimate=estimate, listed=listed)
    due = datetime.combine(due_day, local.timetz().replace(tzinfo=None), tzinfo=tz)
    return due.astimezone(start.tzinfo)


def opening_at_or_after(
    moment: datetime,
    tz: ZoneInfo,
    hours: Sequence[Window],
    *,
    estimate: bool = False,
    listed: WorkingDays | None = None,
) -> tuple[datetime, datetime]:
    """The first moment at or after ``moment`` when the offices answer, and when that stretch
    of hours ends (both local)."""
    local = moment.astimezone(tz)
    day = local.date()
    for _ in range(LOOK_AHEAD_DAYS):
        if _worked(day, estimate, listed):
            for window in hours:
                opens = datetime.combine(day, window.start, tzinfo=tz)
                closes = datetime.combine(day, window.end, tzinfo=tz)
                if local < closes:
                    return max(opens, local), closes
        day += timedelta(days=1)
        local = datetime.combine(day, time(0), tzinfo=tz)
    raise ValueError("no service hours within a year: check config/service_hours.yml")


def add_service_time(
    start: datetime,
    length: timedelta,
    tz: ZoneInfo,
    hours: Sequence[Window],
    *,
    estimate: bool = False,
    listed: WorkingDays | None = None,
) -> datetime:
    """``length`` of office time after ``start``: the hours the offices answer on working days."""
    left = length
    cursor = start.astimezone(tz)
    while True:
        cursor, closes = opening_at_or_after(cursor, tz, hours, estimate=estimate, listed=listed)
        if left <= closes - cursor:
            return (cursor + left).astimezone(start.tzinfo)
        left -= closes - cursor
        cursor = closes
