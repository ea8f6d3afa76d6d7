"""The deployment: what one installation configured (settings and the YAML of config/), and the
handlers of its kinds of request, loaded and checked once by the app or a CLI command
(bot/runtime/configure.py) and passed down to the engine, the channels, the console and the jobs,
so that all of them work with the same configuration. It is the `storage.site.Site` that its
database engine is bound to, so the case actions use it too."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from config.dialogue import DialogueConfig
from config.words import Words
from nlu.rules import EmergencyRules
from storage.site import Site

if TYPE_CHECKING:
    from bot.conversation.handling import RequestHandler


@dataclass(frozen=True)
class Deployment(Site):
    """Nothing here changes while the process runs."""

    dialogue: DialogueConfig
    emergency_rules: EmergencyRules  # the words that always mean an emergency
    handlers: dict[str, RequestHandler]  # by handler name
    by_intent: dict[str, RequestHandler]
    words: Words  # what the handlers listen for (config/words/)
