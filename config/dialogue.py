"""How the conversation behaves (config/dialogue.yml): thresholds, limits and a few word lists."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from config.loader import load_yaml_model
from config.settings import get_settings


class DialogueConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1]
    switch_confidence: float = Field(ge=0, le=1)
    switch_confidence_free_text: float = Field(ge=0, le=1)
    emergency_confirm_below: float = Field(ge=0, le=1)
    emergency_in_answer: float = Field(ge=0, le=1)
    max_retries: int = Field(ge=1, le=5)
    max_fallbacks: int = Field(ge=1, le=5)
    max_silences: int = Field(ge=1, le=5)
    idle_minutes: int = Field(ge=1)
    yes_no_confidence: float = Field(ge=0, le=1)
    dont_know: tuple[str, ...] = Field(min_length=1)
    myself: tuple[str, ...] = Field(min_length=1)
    corrections: tuple[str, ...] = Field(min_length=1)
    correction_openers: tuple[str, ...] = Field(min_length=1)
    value_openers: tuple[str, ...] = Field(min_length=1)
    nothing_more: tuple[str, ...] = Field(min_length=1)
    thanks: tuple[str, ...] = Field(min_length=1)
    abandon_words: tuple[str, ...] = Field(min_length=1)
    fillers: tuple[str, ...] = Field(min_length=1)
    questions: tuple[str, ...] = Field(min_length=1)


def load_dialogue(path: Path) -> DialogueConfig:
    return load_yaml_model(path, DialogueConfig)


@lru_cache(maxsize=1)
def get_dialogue() -> DialogueConfig:
    return load_dialogue(get_settings().config_dir / "dialogue.yml")
