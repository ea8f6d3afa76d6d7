"""Staff service hours (config/service_hours.yml, edited by the deployment): when the community
offices answer. Claim and resolve deadlines count only these hours on working days
(storage/deadlines.py), so a request filed at night is promised for office hours, not "by 3:30
tonight"; only the categories marked ``around_the_clock`` (emergencies) count the clock and go
to the night duty. A unit may keep hours of its own (by its code); a unit without them keeps
those of the unit above it, and the top the default.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import time
from itertools import pairwise
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from config.loader import load_yaml_model

FILE = "service_hours.yml"


class Window(BaseModel):
    """One stretch of a working day, local time: from 08:30 to 12:00."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    start: time = Field(alias="from")
    end: time = Field(alias="to")

    @model_validator(mode="after")
    def _forwards(self) -> Window:
        if self.end <= self.start:
            raise ValueError(f"'to' ({self.end:%H:%M}) must be after 'from' ({self.start:%H:%M})")
        return self


Day = tuple[Window, ...]


def _in_order(day: Day, where: str) -> Day:
    if not day:
        raise ValueError(f"{where}: at least one stretch of hours")
    for before, after in pairwise(day):
        if after.start < before.end:
            raise ValueError(f"{where}: the stretches must be in order and not overlap")
    return day


class ServiceHours(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1]
    default: Day
    units: dict[str, Day] = {}

    @model_validator(mode="after")
    def _each_day_in_order(self) -> ServiceHours:
        _in_order(self.default, "default")
        for code, day in self.units.items():
            _in_order(day, f"units.{code}")
        return self

    def for_units(self, codes: Sequence[str]) -> Day:
        """The hours of the first of ``codes`` (a unit, then the units above it) that has its
        own, else the default."""
        return next((self.units[code] for code in codes if code in self.units), self.default)


def load_service_hours(path: Path) -> ServiceHours:
    return load_yaml_model(path, ServiceHours)
