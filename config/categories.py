"""The kinds of request a deployment handles (config/categories.yml), validated at start-up."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from config.loader import load_yaml_model
from config.settings import get_settings

UnitLevelName = Literal["center", "station", "community"]

# The categories the rest of the code refers to by name; a deployment may add more.
REQUIRED_CATEGORIES = (
    "medication_reimbursement",
    "hospital_transfer",
    "complaint",
    "help_request",
    "emergency",
    "bereavement",
    "policy_question",
    "registration",
    "callback",
    "general",
)
STAFF_ONLY_CATEGORIES = ("complaint", "bereavement")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LocalizedName(_Strict):
    zh: str = Field(min_length=1)
    en: str = Field(min_length=1)

    def get(self, language: str) -> str:
        return self.en if language == "en" else self.zh


class Duration(_Strict):
    """Exactly one of minutes, hours or working days."""

    minutes: int | None = Field(default=None, gt=0)
    hours: int | None = Field(default=None, gt=0)
    working_days: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _exactly_one(self) -> Duration:
        given = [v for v in (self.minutes, self.hours, self.working_days) if v is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of minutes, hours or working_days")
        return self

    def describe(self) -> str:
        if self.minutes is not None:
            return f"{self.minutes} minutes"
        if self.hours is not None:
            return f"{self.hours} hours"
        return f"{self.working_days} working days"


class Category(_Strict):
    name: LocalizedName
    queue_level: UnitLevelName
    volunteer_eligible: bool
    default_priority: int = Field(ge=1, le=3)
    claim_within: Duration
    resolve_within: Duration
    # Deadlines count the clock and the case goes to the night duty (emergencies); otherwise
    # they count the offices' service hours (config/service_hours.yml).
    around_the_clock: bool = False


class PriorityFactor(_Strict):
    raise_: int = Field(alias="raise", ge=0, le=2)


class PriorityRules(_Strict):
    ceiling: int = Field(default=2, ge=1, le=3)
    factors: dict[
        Literal["age_80_plus", "age_90_plus", "lives_alone", "not_self_caring", "dibao_household"],
        PriorityFactor,
    ] = Field(default_factory=dict)


class CategoryConfig(_Strict):
    categories: dict[str, Category]
    priority: PriorityRules = Field(default_factory=PriorityRules)

    @model_validator(mode="after")
    def _check(self) -> CategoryConfig:
        missing = [name for name in REQUIRED_CATEGORIES if name not in self.categories]
        if missing:
            raise ValueError(f"missing categories: {', '.join(missing)}")
        for name in STAFF_ONLY_CATEGORIES:
            if self.categories[name].volunteer_eligible:
                raise ValueError(f"categories.{name}.volunteer_eligible must be false (staff only)")
        if self.categories["emergency"].default_priority != 1:
            raise ValueError("categories.emergency.default_priority must be 1")
        return self

    def get(self, name: str) -> Category:
        try:
            return self.categories[name]
        except KeyError:
            known = ", ".join(sorted(self.categories))
            raise KeyError(f"unknown category {name!r} (known: {known})") from None


def load_categories(path: Path) -> CategoryConfig:
    return load_yaml_model(path, CategoryConfig)


@lru_cache(maxsize=1)
def get_categories() -> CategoryConfig:
    return load_categories(get_settings().config_dir / "categories.yml")
