"""Working days (China's holidays and make-up days), deadlines and profile-based priority."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from config.categories import Duration, load_categories
from config.loader import ConfigError
from config.service_hours import ServiceHours, load_service_hours
from config.settings import CONFIG_DIR
from config.working_days import WorkingDays, YearDays, package_covers
from storage.deadlines import CalendarNotCovered, add_working_days, deadline_after, is_working_day
from storage.models import Hardship, Retiree, SelfCare
from storage.priority import case_priority, vulnerability_factors

SH = ZoneInfo("Asia/Shanghai")


def test_weekends_holidays_and_make_up_days() -> None:
    assert is_working_day(date(2026, 6, 1))  # Monday
    assert not is_working_day(date(2026, 6, 6))  # Saturday
    assert not is_working_day(date(2026, 10, 1))  # National Day
    assert not is_working_day(date(2026, 2, 17))  # Spring Festival
    assert is_working_day(date(2026, 2, 14))  # a Saturday worked in exchange (调休)


def test_add_working_days() -> None:
    assert add_working_days(date(2026, 6, 5), 1) == date(2026, 6, 8)  # Friday → Monday
    assert add_working_days(date(2026, 6, 1), 5) == date(2026, 6, 8)
    assert add_working_days(date(2026, 6, 1), 0) == date(2026, 6, 1)
    assert add_working_days(date(2026, 9, 30), 1) == date(2026, 10, 8)  # after National Day


def test_outside_the_calendar_is_an_error_not_a_guess() -> None:
    with pytest.raises(CalendarNotCovered, match="does not cover 2031-01-02"):
        is_working_day(date(2031, 1, 2))
    with pytest.raises(CalendarNotCovered):
        add_working_days(date(2031, 1, 2), 3)
    with pytest.raises(CalendarNotCovered):
        deadline_after(datetime(2031, 1, 2, 9, 0, tzinfo=SH), Duration(working_days=1), SH)


def test_a_year_listed_by_the_deployment() -> None:
    listed = WorkingDays(
        years={2031: YearDays(holidays=(date(2031, 1, 1),), workdays=(date(2031, 1, 4),))}
    )
    assert not is_working_day(date(2031, 1, 1), listed)
    assert is_working_day(date(2031, 1, 4), listed)  # a Saturday worked in exchange
    assert not is_working_day(date(2031, 1, 5), listed)
    assert is_working_day(date(2026, 2, 14), listed)  # the package still decides 2026


def test_an_estimate_counts_monday_to_friday_where_the_calendar_ends() -> None:
    last = 2026
    while package_covers(last + 1):  # the last year the installed package knows
        last += 1
    dec_31 = date(last, 12, 31)
    # Known days count as the calendar says, unknown ones Monday to Friday.
    due = add_working_days(dec_31 - timedelta(days=7), 10, estimate=True)
    expected = dec_31 - timedelta(days=7)
    counted = 0
    while counted < 10:
        expected += timedelta(days=1)
        known = expected.year == last
        if is_working_day(expected) if known else expected.weekday() < 5:
            counted += 1
    assert due == expected
    friday = datetime(2031, 1, 3, 15, 0, tzinfo=SH)
    assert deadline_after(friday, Duration(working_days=1), SH, estimate=True) == datetime(
        2031, 1, 6, 15, 0, tzinfo=SH
    )


def test_deadline_after_keeps_local_clock_time() -> None:
    friday_3pm = datetime(2026, 6, 5, 15, 0, tzinfo=SH)
    due = deadline_after(friday_3pm, Duration(working_days=1), SH)
    assert due == datetime(2026, 6, 8, 15, 0, tzinfo=SH)
    start = datetime(2026, 6, 5, 7, 0, tzinfo=UTC)
    assert deadline_after(start, Duration(minutes=2), SH) == start + timedelta(minutes=2)
    assert deadline_after(start, Duration(hours=4), SH) == start + timedelta(hours=4)
    with pytest.raises(ValueError, match="timezone-aware"):
        deadline_after(datetime(2026, 6, 5, 7, 0), Duration(hours=1), SH)


TODAY = date(2026, 6, 1)
CATS = load_categories(CONFIG_DIR / "categories.yml")


def retiree(**kw) -> Retiree:
    kw.setdefault("lives_alone", False)
    kw.setdefault("self_care", SelfCare.INDEPENDENT)
    kw.setdefault("hardship", Hardship.NONE)
    return Retiree(name="x", **kw)


def test_vulnerability_factors() -> None:
    assert vulnerability_factors(None, TODAY) == []
    assert vulnerability_factors(retiree(birth_date=date(1946, 6, 2)), TODAY) == []  # 79
    assert vulnerability_factors(retiree(birth_date=date(1946, 6, 1)), TODAY) == ["age_80_plus"]
    assert vulnerability_factors(retiree(birth_date=date(1936, 1, 1)), TODAY) == [
        "age_80_plus",
        "age_90_plus",
    ]
    everything = retiree(
        birth_date=date(1930, 1, 1),
        lives_alone=True,
        self_care=SelfCare.DEPENDENT,
        hardship=Hardship.DIBAO,
    )
    assert len(vulnerability_factors(everything, TODAY)) == 5


def test_priority_is_capped_below_emergency() -> None:
    frail = retiree(birth_date=date(1930, 1, 1), lives_alone=True)
    assert case_priority(CATS.get("help_request"), CATS.priority, frail, TODAY)[0] == 2
    assert case_priority(CATS.get("help_request"), CATS.priority, None, TODAY) == (3, [])
    assert case_priority(CATS.get("emergency"), CATS.priority, None, TODAY) == (1, [])


OFFICE = load_service_hours(CONFIG_DIR / "service_hours.yml").default  # 8:30-12:00, 13:30-17:30


def at(day: int, hour: int, minute: int = 0, month: int = 11) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=SH)


@pytest.mark.parametrize(
    ("start", "within", "due"),
    [
        # Tuesday 10:00 + 8 office hours: 2 h, 4 h, then Wednesday 8:30 + 2 h.
        (at(24, 10), Duration(hours=8), at(25, 10, 30)),
        # Friday night: nothing counts until Monday 8:30; 7.5 h on Monday, then Tuesday 9:00.
        (at(27, 23, 30), Duration(hours=8), at(1, 9, 0, month=12)),
        # Filed at lunch: from 13:30.
        (at(24, 12, 15), Duration(hours=2), at(24, 15, 30)),
        # Exactly to the end of a stretch.
        (at(24, 10), Duration(hours=2), at(24, 12)),
        (at(24, 17, 0), Duration(minutes=45), at(25, 8, 45)),
        # Working days start at the next opening: Friday 23:30 + 5 → Monday a week on, 8:30.
        (at(27, 23, 30), Duration(working_days=5), at(7, 8, 30, month=12)),
        # Half an hour before the National Day holiday (1 to 7 October), the rest on the 8th.
        (
            datetime(2026, 9, 30, 17, 0, tzinfo=SH),
            Duration(hours=1),
            datetime(2026, 10, 8, 9, 0, tzinfo=SH),
        ),
    ],
)
def test_deadlines_count_office_hours(start: datetime, within: Duration, due: datetime) -> None:
    assert deadline_after(start, within, SH, hours=OFFICE) == due


def test_round_the_clock_counts_the_clock() -> None:
    assert deadline_after(at(27, 23, 30), Duration(minutes=2), SH) == at(27, 23, 32)


def test_office_hours_of_a_unit_and_a_broken_file(tmp_path: Path) -> None:
    hours = ServiceHours.model_validate(
        {
            "version": 1,
            "default": [{"from": "08:30", "to": "17:30"}],
            "units": {"SA": [{"from": "09:00", "to": "16:00"}]},
        }
    )
    assert hours.for_units(["A1", "SA", "C"])[0].start.hour == 9  # the station's, above A1
    assert hours.for_units(["B1", "SB", "C"]) == hours.default
    broken = tmp_path / "service_hours.yml"
    broken.write_text('version: 1\ndefault: [{from: "17:00", to: "08:00"}]\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"default.*'to' \(08:00\) must be after 'from'"):
        load_service_hours(broken)
