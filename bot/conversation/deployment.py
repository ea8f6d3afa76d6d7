"""The deployment: what one installation configured (settings and the YAML of config/), and the
handlers of its kinds of request, loaded and checked once by the app or a CLI command
(bot/runtime/configure.py) and passed down to the engine, the channels and the jobs, so that all
of them work with the same configuration."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from config.categories import CategoryConfig
from config.dialogue import DialogueConfig
from config.i18n import Catalogs
from config.settings import Settings
from nlu.rules import EmergencyRules

if TYPE_CHECKING:
    from bot.conversation.handling import RequestHandler


@dataclass(frozen=True)
class Deployment:
    """Nothing here changes while the process runs."""

    settings: Settings
    catalogs: Catalogs
    categories: CategoryConfig
    dialogue: DialogueConfig
    emergency_rules: EmergencyRules  # the words that always mean an emergency
    handlers: dict[str, RequestHandler]  # by handler name
    by_intent: dict[str, RequestHandler]

    @cached_property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.settings.timezone)

    @property
    def language(self) -> str:
        """The deployment's own language: staff's texts, and a person's until they choose."""
        return self.settings.default_language
