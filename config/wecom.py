"""The WeCom app's own configuration (config/wecom.yml): the commands staff type."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from config.loader import load_yaml_model

FILE = "wecom.yml"


class Commands(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    mine: tuple[str, ...] = Field(min_length=1)
    close: tuple[str, ...] = Field(min_length=1)


class WeComConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    commands: Commands

    def command(self, text: str) -> tuple[str, str] | None:
        """("mine" or "close", the rest of the text) when ``text`` starts with a command word
        (the longest first); None otherwise."""
        said = text.strip()
        words = [(w, name) for name in ("mine", "close") for w in getattr(self.commands, name)]
        for word, name in sorted(words, key=lambda pair: -len(pair[0])):
            if said.lower().startswith(word.lower()):
                return name, said[len(word) :].strip()
        return None


def load_wecom(config_dir: Path) -> WeComConfig:
    return load_yaml_model(config_dir / FILE, WeComConfig)
