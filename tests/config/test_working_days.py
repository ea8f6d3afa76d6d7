"""config/working_days.yml: the holidays of years the chinesecalendar package does not know."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from config.loader import ConfigError
from config.settings import CONFIG_DIR
from config.working_days import (
    FILE,
    WorkingDays,
    YearDays,
    load_working_days,
    package_covers,
    uncovered_years,
)

FAR = 2031  # a year the package will not know for a long time


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / FILE
    path.write_text(text, encoding="utf-8")
    return path


def test_the_shipped_file_is_valid_and_lists_no_year() -> None:
    assert load_working_days(CONFIG_DIR / FILE).years == {}


def test_a_missing_file_lists_no_year(tmp_path: Path) -> None:
    assert load_working_days(tmp_path / FILE) == WorkingDays()


def test_a_listed_year() -> None:
    listed = WorkingDays(
        years={FAR: YearDays(holidays=(date(FAR, 1, 1),), workdays=(date(FAR, 1, 4),))}
    )
    assert listed.is_working_day(date(FAR, 1, 1)) is False  # a Wednesday off
    assert listed.is_working_day(date(FAR, 1, 2)) is True  # an ordinary Thursday
    assert listed.is_working_day(date(FAR, 1, 4)) is True  # a Saturday worked
    assert listed.is_working_day(date(FAR, 1, 5)) is False  # an ordinary Sunday
    assert listed.is_working_day(date(FAR + 1, 1, 2)) is None  # not listed


def test_loading_a_file(tmp_path: Path) -> None:
    path = write(tmp_path, f"years:\n  {FAR}:\n    holidays: [{FAR}-01-01]\n    workdays: []\n")
    assert load_working_days(path).years[FAR].holidays == (date(FAR, 1, 1),)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (f"years:\n  {FAR}:\n    holidays: [{FAR + 1}-01-01]\n", f"is not in {FAR}"),
        (f"years:\n  {FAR}:\n    holidays: [{FAR}-01-04]\n", "is a weekend day"),
        (f"years:\n  {FAR}:\n    workdays: [{FAR}-01-02]\n", "is a weekday"),
        (
            f"years:\n  {FAR}:\n    holidays: [{FAR}-13-01]\n",
            "not a valid date or number (month must be in 1..12)",
        ),
        (f"years:\n  {FAR}:\n    holiday: [{FAR}-01-01]\n", f"years.{FAR}.holiday"),
        ("years:\n  2026:\n    holidays: [2026-01-01]\n", "already covers 2026"),
    ],
)
def test_mistakes_name_the_file_and_the_key(tmp_path: Path, text: str, problem: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_working_days(path)
    assert caught.value.path == path
    assert problem in str(caught.value)


def test_an_edited_file_is_read_again(tmp_path: Path) -> None:
    path = write(tmp_path, "years: {}\n")
    assert load_working_days(path).years == {}
    write(tmp_path, f"years:\n  {FAR}:\n    holidays: [{FAR}-01-01]\n")
    assert list(load_working_days(path).years) == [FAR]


def test_uncovered_years() -> None:
    assert package_covers(2026) and not package_covers(FAR)
    assert uncovered_years(date(2026, 6, 1), WorkingDays()) == []
    assert uncovered_years(date(FAR, 6, 1), WorkingDays()) == [FAR]
    assert uncovered_years(date(FAR - 1, 12, 1), WorkingDays()) == [FAR - 1, FAR]
    listed = WorkingDays(years={FAR: YearDays()})
    assert uncovered_years(date(FAR, 6, 1), listed) == []
