"""The SIP phone line's own configuration (config/sip.yml): what each key of the menu does,
the voice of what has no recording, and the line's timings."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from config.loader import load_yaml_model

FILE = "sip.yml"
KEYS = frozenset("0123456789*#")


class Choice(BaseModel):
    """A key: a request of this category, spoken after the beep and filed with the recording;
    or words the conversation is told (an emergency, a person, a question about a request)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    request: str = ""
    says: str = ""

    @model_validator(mode="after")
    def _one(self) -> Choice:
        if bool(self.request) == bool(self.says):
            raise ValueError("each key has either `request` or `says`")
        return self


class SipConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    menu: dict[str, Choice] = Field(min_length=1)
    voice: str = "cmn"
    speed: int = Field(default=130, ge=80, le=260)
    record_seconds: int = Field(default=60, ge=5, le=600)
    silence_seconds: int = Field(default=8, ge=2, le=60)
    menu_repeats: int = Field(default=2, ge=0, le=5)
    ring_seconds: int = Field(default=20, ge=5, le=60)

    @model_validator(mode="after")
    def _keys(self) -> SipConfig:
        bad = sorted(set(self.menu) - KEYS)
        if bad:
            raise ValueError(f"menu keys must be one of 0-9, * and #: {', '.join(bad)}")
        return self


def load_sip(config_dir: Path) -> SipConfig:
    return load_yaml_model(config_dir / FILE, SipConfig)
