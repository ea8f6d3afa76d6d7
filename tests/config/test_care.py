"""config/care.yml: the shipped file, the defaults by priority factors, and a deployment's
mistakes reported with the file and the key."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from config.care import FILE, Cadence, PlanRule, due_on, load_care
from config.loader import ConfigError
from config.settings import CONFIG_DIR

SHIPPED = (CONFIG_DIR / FILE).read_text(encoding="utf-8")


def test_the_shipped_file_and_its_defaults() -> None:
    care = load_care(CONFIG_DIR / FILE)
    assert care.quiet_hours.holds(time(23, 0)) and care.quiet_hours.holds(time(7, 59))
    assert not care.quiet_hours.holds(time(8, 0)) and not care.quiet_hours.holds(time(20, 59))
    assert care.ladder[0].do == "ask" and care.ladder[-1].do == "visit"
    plan = care.default_for(age=91, lives_alone=False, self_care="independent")
    assert plan is not None and plan.cadence == Cadence.DAILY
    weekly = care.default_for(age=70, lives_alone=True, self_care="independent")
    assert weekly is not None and weekly.weekdays == ("mon",)
    dependent = care.default_for(age=70, lives_alone=True, self_care="dependent")
    assert dependent is not None and dependent.cadence == Cadence.DAILY
    assert care.default_for(age=85, lives_alone=False, self_care="independent") is None
    assert care.default_for(age=None, lives_alone=False, self_care="independent") is None


def test_quiet_days_and_weekly_days() -> None:
    weekly = PlanRule.model_validate(
        {
            "cadence": "weekly",
            "weekdays": ["mon", "thu"],
            "window": {"from": "09:00", "to": "10:00"},
        }
    )
    monday, tuesday = date(2026, 6, 1), date(2026, 6, 2)
    assert due_on(weekly, monday) and not due_on(weekly, tuesday)
    assert not due_on(weekly, monday, ("mon",))
    assert not due_on(weekly, monday, ("2026-06-01",))


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (("per_minute: 200", "per_minute: 0"), "per_minute"),
        (("  - {do: visit}", "  - {do: ask}"), "the last rung must be 'visit'"),
        (("{do: ask, wait_minutes: 20}", "{do: knock, wait_minutes: 20}"), "ladder.0.do"),
        (
            ('window: {from: "09:00", to: "11:00"}}', 'window: {from: "22:00", to: "23:00"}}'),
            "defaults.0: its window is all in the quiet hours",
        ),
        (("cadence: weekly, weekdays: [mon]", "cadence: weekly"), "names its weekdays"),
    ],
)
def test_a_mistake_is_reported_with_the_file_and_key(
    tmp_path: Path, change: tuple[str, str], where: str
) -> None:
    assert change[0] in SHIPPED
    path = tmp_path / FILE
    path.write_text(SHIPPED.replace(change[0], change[1], 1), encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        load_care(path)
    assert str(path) in str(raised.value) and where in str(raised.value)


def test_a_moment_in_the_quiet_hours_moves_to_their_end() -> None:
    """The one rule of the quiet hours for check-ins, campaigns and follow-up questions: the
    evening moves to tomorrow 08:00, the small hours to today 08:00, the day stays; the moment
    keeps its own time zone."""
    quiet = load_care(CONFIG_DIR / FILE).quiet_hours
    zone = ZoneInfo("Asia/Shanghai")

    def local(day: int, hour: int, minute: int = 0) -> datetime:
        return datetime(2026, 12, day, hour, minute, tzinfo=zone)

    assert quiet.after(local(7, 22, 30), zone) == local(8, 8)
    assert quiet.after(local(7, 6, 15), zone) == local(7, 8)
    assert quiet.after(local(7, 8), zone) == local(7, 8)
    assert quiet.after(local(7, 20, 59), zone) == local(7, 20, 59)
    in_utc = local(7, 21).astimezone(UTC)
    moved = quiet.after(in_utc, zone)
    assert moved == local(8, 8) and moved.tzinfo == UTC
    assert quiet.at(in_utc, zone) and not quiet.at(local(7, 12), zone)
