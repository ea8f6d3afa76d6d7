"""Times and days as a person says them, in the person's language: 今天下午3点半, 明天上午9点,
11月30日星期一; "today at 3:30 pm". The words come from the catalogs (time.*)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from config.i18n import Catalogs

DAYTIME = (8, 20)  # hours in which a deadline's clock time is worth saying
_PERIODS = ((5, "early_morning"), (11, "morning"), (12, "noon"), (17, "afternoon"), (23, "evening"))


def _period(hour: int) -> str:
    return next(name for last, name in _PERIODS if hour <= last)


def spoken_clock(moment: datetime, catalogs: Catalogs, lang: str) -> str:
    hour12: int | str = moment.hour % 12 or 12
    if moment.hour == 0:
        hour12 = catalogs.text("time.midnight_hour", lang)  # 凌晨0点半 / 12:30 am
    params = {
        "period": catalogs.text(f"time.period.{_period(moment.hour)}", lang),
        "hour": hour12,
        "minute": f"{moment.minute:02d}",
    }
    if moment.minute == 0:
        return catalogs.text("time.clock_hour", lang, **params)
    if moment.minute == 30:
        return catalogs.text("time.clock_half", lang, **params)
    return catalogs.text("time.clock_minutes", lang, **params)


def spoken_day(day: date, today: date, catalogs: Catalogs, lang: str) -> str:
    """今天, 明天, 后天, or the date with its weekday."""
    offset = (day - today).days
    if offset in (0, 1, 2):
        return catalogs.text(("time.today", "time.tomorrow", "time.day_after")[offset], lang)
    return catalogs.text(
        "time.date",
        lang,
        month=catalogs.text(f"time.month.{day.month}", lang),
        day=day.day,
        weekday=catalogs.text(f"time.weekday.{day.weekday()}", lang),
    )


def spoken_time(
    moment: datetime, now: datetime, tz: ZoneInfo, catalogs: Catalogs, lang: str
) -> str:
    """A moment (a deadline) relative to ``now``, in local time."""
    local, local_now = moment.astimezone(tz), now.astimezone(tz)
    if local - local_now >= timedelta(minutes=60):
        local = _half_hour_up(local)  # "by 6:30", not "by 6:02": a promise, said plainly
    if local - local_now < timedelta(minutes=60):
        return catalogs.text(
            "time.in_minutes", lang, minutes=max(1, round((local - local_now).total_seconds() / 60))
        )
    return catalogs.text(
        "time.day_and_clock",
        lang,
        day=spoken_day(local.date(), local_now.date(), catalogs, lang),
        clock=spoken_clock(local, catalogs, lang),
    )


def spoken_deadline(
    moment: datetime, now: datetime, tz: ZoneInfo, catalogs: Catalogs, lang: str
) -> str:
    """A promise: "今天晚上6点半前" / "by today at 6:30 pm", "55分钟内", or "尽快" once past."""
    if moment <= now:
        return catalogs.text("time.asap", lang)
    if moment - now < timedelta(minutes=60):
        return spoken_time(moment, now, tz, catalogs, lang)  # "55分钟内": already a limit
    local, today = moment.astimezone(tz), now.astimezone(tz).date()
    if local.date() > today and not DAYTIME[0] <= local.hour < DAYTIME[1]:
        # A working-day deadline keeps the clock time of a request made at night: "by Tuesday",
        # not "by Tuesday at 3 am".
        return catalogs.text("time.by", lang, when=spoken_day(local.date(), today, catalogs, lang))
    return catalogs.text("time.by", lang, when=spoken_time(moment, now, tz, catalogs, lang))


def _half_hour_up(moment: datetime) -> datetime:
    floor = moment.replace(minute=30 if moment.minute >= 30 else 0, second=0, microsecond=0)
    return floor if floor == moment else floor + timedelta(minutes=30)


def spoken_date(iso_day: str, now: datetime, tz: ZoneInfo, catalogs: Catalogs, lang: str) -> str:
    """A date slot (ISO) read back: 明天, 11月30日星期一."""
    return spoken_day(date.fromisoformat(iso_day), now.astimezone(tz).date(), catalogs, lang)
