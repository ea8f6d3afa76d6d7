"""Working days for the years the `chinesecalendar` package does not cover yet
(config/working_days.yml, edited by the deployment).

China's holidays and make-up working days (调休) are set each year by a State Council notice,
usually published in November for the next year; the package learns them with its next
release. Until then a deployment copies the notice into working_days.yml: for each year, the
holiday dates that fall on weekdays and the weekend dates that are worked. Every other date of
a listed year is a working day from Monday to Friday. A year the package knows is taken from
the package, and the file must not list it (one source per year).
"""

from __future__ import annotations

from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path

import chinese_calendar
from pydantic import BaseModel, ConfigDict, model_validator

from config.loader import ConfigError, load_yaml_model

FILE = "working_days.yml"
LOOK_AHEAD = timedelta(days=45)  # warn this long before a year nobody covers begins


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class YearDays(_Strict):
    holidays: tuple[date, ...] = ()  # weekdays off (法定节假日 and the days joined to them)
    workdays: tuple[date, ...] = ()  # weekend days worked in exchange (调休上班)


class WorkingDays(_Strict):
    years: dict[int, YearDays] = {}

    @model_validator(mode="after")
    def _dates_fit_their_year(self) -> WorkingDays:
        problems: list[str] = []
        for year, days in self.years.items():
            for kind in ("holidays", "workdays"):
                for day in getattr(days, kind):
                    if day.year != year:
                        problems.append(f"years.{year}.{kind}: {day} is not in {year}")
                    elif kind == "holidays" and day.weekday() >= 5:
                        problems.append(
                            f"years.{year}.holidays: {day} is a weekend day (list weekdays only)"
                        )
                    elif kind == "workdays" and day.weekday() < 5:
                        problems.append(
                            f"years.{year}.workdays: {day} is a weekday (list weekend days only)"
                        )
            for day in sorted(set(days.holidays) & set(days.workdays)):
                problems.append(f"years.{year}: {day} is both a holiday and a workday")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def is_working_day(self, day: date) -> bool | None:
        """Whether ``day`` is worked; None when its year is not listed."""
        days = self.years.get(day.year)
        if days is None:
            return None
        if day in days.holidays:
            return False
        if day in days.workdays:
            return True
        return day.weekday() < 5


def package_covers(year: int) -> bool:
    """Whether the chinesecalendar package knows ``year``'s holidays."""
    try:
        chinese_calendar.is_workday(date(year, 1, 1))
    except NotImplementedError:
        return False
    return True


def load_working_days(path: Path) -> WorkingDays:
    """Read and check ``path``; a missing file lists no year. Raises ConfigError."""
    if not path.exists():
        return WorkingDays()
    return _load(path, path.stat().st_mtime_ns)


@lru_cache(maxsize=8)
def _load(path: Path, _mtime_ns: int) -> WorkingDays:
    listed = load_yaml_model(path, WorkingDays)
    known = [year for year in sorted(listed.years) if package_covers(year)]
    if known:
        problems = [
            f"years.{year}: the chinesecalendar package already covers {year} (list only the "
            "years it does not know)"
            for year in known
        ]
        raise ConfigError(path, problems)
    return listed


def uncovered_years(today: date, listed: WorkingDays) -> list[int]:
    """This year, and next year once it is near, when neither the package nor the file knows
    their holidays (deadlines in them are estimated)."""
    years = sorted({today.year, (today + LOOK_AHEAD).year})
    return [y for y in years if not package_covers(y) and y not in listed.years]
