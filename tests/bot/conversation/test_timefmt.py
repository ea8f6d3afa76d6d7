"""Deadlines said as a person says them, in both languages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.conversation.timefmt import spoken_deadline, spoken_time
from bot.conversation.turn import written_language
from config.i18n import load_catalogs
from config.settings import CONFIG_DIR

SHANGHAI = ZoneInfo("Asia/Shanghai")
CATALOGS = load_catalogs(CONFIG_DIR / "messages")
NOW = datetime(2026, 11, 24, 10, 0, tzinfo=SHANGHAI)  # a Tuesday


@pytest.mark.parametrize(
    ("later", "zh", "en"),
    [
        (timedelta(minutes=2), "2分钟内", "within 2 minutes"),
        (timedelta(hours=8), "今天晚上6点", "today at 6 pm"),
        (timedelta(hours=8, minutes=2), "今天晚上6点半", "today at 6:30 pm"),
        (timedelta(hours=23), "明天上午9点", "tomorrow at 9 am"),
        (timedelta(days=1, hours=2, minutes=40), "明天下午1点", "tomorrow at 1 pm"),
        (timedelta(days=2), "后天上午10点", "the day after tomorrow at 10 am"),
        (timedelta(days=6, hours=2), "11月30日星期一中午12点", "Monday 30 November at 12 pm"),
        (timedelta(hours=14, minutes=10), "明天凌晨0点半", "tomorrow at 12:30 am"),
    ],
)
def test_spoken_deadlines(later: timedelta, zh: str, en: str) -> None:
    moment = (NOW + later).astimezone(UTC)
    assert spoken_time(moment, NOW, SHANGHAI, CATALOGS, "zh") == zh
    assert spoken_time(moment, NOW, SHANGHAI, CATALOGS, "en") == en


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("我想报销药费", "zh"),
        ("I need help with my bills", "en"),
        ("help me", "en"),
        ("OK", None),
        ("hi", None),
        ("12345", None),
        ("好的 OK", "zh"),
    ],
)
def test_written_language(text: str, language: str | None) -> None:
    assert written_language(text) == language


def test_a_deadline_that_falls_at_night_is_said_as_a_day() -> None:
    night = datetime(2026, 11, 24, 2, 35, tzinfo=SHANGHAI)
    due = datetime(2026, 12, 1, 2, 35, tzinfo=SHANGHAI)
    assert spoken_deadline(due, night, SHANGHAI, CATALOGS, "zh") == "12月1日星期二前"
    assert spoken_deadline(due, night, SHANGHAI, CATALOGS, "en") == "by Tuesday 1 December"
    assert spoken_deadline(night, due, SHANGHAI, CATALOGS, "zh") == "尽快"
