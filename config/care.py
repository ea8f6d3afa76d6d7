"""Proactive care (config/care.yml, edited by the deployment): who gets a check-in plan by
default, the hours nobody is rung or written to (check-ins, campaigns and follow-up questions
alike), how fast check-ins go out, and the escalation ladder of a
check-in nobody answers. storage/check_ins.py does the work; its docstring tells the story.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, model_validator

from config.loader import load_yaml_model
from config.service_hours import Window  # from 09:00 to 11:00, as the offices' hours are written

FILE = "care.yml"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # date.weekday() order
CHANNELS = ("voice", "wechat", "sms", "telegram", "whatsapp")


class Cadence(StrEnum):
    DAILY = "daily"
    WEEKLY = "weekly"


class Rung(StrEnum):
    ASK = "ask"
    TELL_FAMILY = "tell_family"
    VISIT = "visit"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Hours(_Strict):
    """A stretch of local time that may run past midnight (the quiet hours do)."""

    start: time = Field(alias="from")
    end: time = Field(alias="until")

    def holds(self, moment: time) -> bool:
        if self.start <= self.end:
            return self.start <= moment < self.end
        return moment >= self.start or moment < self.end

    def at(self, moment: datetime, zone: ZoneInfo) -> bool:
        """Whether ``moment`` falls in these hours, read on the clock of ``zone``."""
        return self.holds(moment.astimezone(zone).time())

    def after(self, moment: datetime, zone: ZoneInfo) -> datetime:
        """``moment``, or the end of the stretch of these hours it falls in (in its own zone)."""
        local = moment.astimezone(zone)
        if not self.holds(local.time()):
            return moment
        day = local.date()
        if self.start > self.end and local.time() >= self.start:
            day += timedelta(days=1)  # the evening: the stretch ends tomorrow morning
        return datetime.combine(day, self.end, tzinfo=zone).astimezone(moment.tzinfo)

    def covers(self, window: Window) -> bool:
        """Whether every minute of ``window`` is in these hours (nobody would be rung in it)."""
        start = window.start.hour * 60 + window.start.minute
        end = window.end.hour * 60 + window.end.minute
        return all(self.holds(time(m // 60, m % 60)) for m in range(start, end))


class PlanRule(_Strict):
    """What a plan says: how often, which weekdays (weekly), in which window, on which
    channels in order (the first one the person can be reached on is used first)."""

    cadence: Cadence
    window: Window
    weekdays: tuple[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"], ...] = ()
    channels: tuple[Literal["voice", "wechat", "sms", "telegram", "whatsapp"], ...] = (
        "voice",
        "wechat",
        "sms",
    )
    tell_family: bool = True

    @model_validator(mode="after")
    def _weekly_has_days(self) -> PlanRule:
        if self.cadence == Cadence.WEEKLY and not self.weekdays:
            raise ValueError("a weekly plan names its weekdays, e.g. weekdays: [mon]")
        if not self.channels:
            raise ValueError("a plan needs at least one channel")
        return self


class When(_Strict):
    """The priority factors a default rule matches (all that are given must hold)."""

    age_at_least: int | None = Field(default=None, ge=0, le=130)
    lives_alone: bool | None = None
    self_care: tuple[Literal["independent", "partly_dependent", "dependent"], ...] = ()


class DefaultRule(_Strict):
    when: When
    plan: PlanRule


class Step(_Strict):
    do: Rung
    wait_minutes: int = Field(default=0, ge=0, le=24 * 60)


class CareConfig(_Strict):
    version: Literal[1]
    quiet_hours: Hours
    per_minute: int = Field(ge=1, le=100_000)
    defaults: tuple[DefaultRule, ...] = ()
    ladder: tuple[Step, ...]
    help_wait_minutes: int = Field(default=30, ge=1, le=24 * 60)

    @model_validator(mode="after")
    def _ladder_ends_in_a_visit(self) -> CareConfig:
        if not self.ladder or self.ladder[-1].do != Rung.VISIT:
            raise ValueError("ladder: the last rung must be 'visit' (nobody is left unseen)")
        if self.ladder[0].do != Rung.ASK:
            raise ValueError("ladder: the first rung must be 'ask' (the check-in itself)")
        if any(step.do == Rung.VISIT for step in self.ladder[:-1]):
            raise ValueError("ladder: 'visit' is the last rung only")
        for n, rule in enumerate(self.defaults):
            if self.quiet_hours.covers(rule.plan.window):
                raise ValueError(f"defaults.{n}: its window is all in the quiet hours")
        return self

    def default_for(self, *, age: int | None, lives_alone: bool, self_care: str) -> PlanRule | None:
        """The plan of the first default rule a person's factors match; None: no plan."""
        for rule in self.defaults:
            when = rule.when
            if when.age_at_least is not None and (age is None or age < when.age_at_least):
                continue
            if when.lives_alone is not None and when.lives_alone != lives_alone:
                continue
            if when.self_care and self_care not in when.self_care:
                continue
            return rule.plan
        return None


def due_on(plan: PlanRule, day: date, quiet_days: tuple[str, ...] = ()) -> bool:
    """Whether ``plan`` has a check-in on ``day``: its cadence, less the person's quiet days
    (weekday names, or dates as 2026-12-25)."""
    weekday = WEEKDAYS[day.weekday()]
    if weekday in quiet_days or day.isoformat() in quiet_days:
        return False
    return plan.cadence == Cadence.DAILY or weekday in plan.weekdays


def load_care(path: Path) -> CareConfig:
    return load_yaml_model(path, CareConfig)
