"""Loading a deployment (bot/conversation/deployment.py): the settings' config folder read and
checked (a mistake names the file and the key), the handlers of handlers/ found and checked
against it (each handler's category and texts must exist)."""

from __future__ import annotations

from bot.conversation.deployment import Deployment
from config.categories import CategoryConfig, load_categories
from config.dialogue import DialogueConfig, load_dialogue
from config.i18n import load_catalogs
from config.settings import Settings
from config.words import load_words
from handlers import HandlerError, check_handlers, handlers_by_intent, load_handlers
from nlu.rules import RULES_FILE, EmergencyRules


def load_deployment(
    settings: Settings,
    *,
    categories: CategoryConfig | None = None,
    dialogue: DialogueConfig | None = None,
) -> Deployment:
    """The deployment ``settings`` describe; ``categories`` and ``dialogue`` stand in for the
    files' (tests). Raises ConfigError or HandlerError."""
    folder = settings.config_dir
    handlers = load_handlers()
    catalogs = load_catalogs(folder / "messages")
    categories = categories or load_categories(folder / "categories.yml")
    words = load_words(folder / "words")
    problems = check_handlers(handlers, catalogs, categories, words)
    if problems:
        raise HandlerError("; ".join(problems))
    deployment = Deployment(
        settings=settings,
        catalogs=catalogs,
        categories=categories,
        dialogue=dialogue or load_dialogue(folder / "dialogue.yml"),
        emergency_rules=EmergencyRules.load(folder / "nlu" / RULES_FILE),
        handlers=dict(handlers),
        by_intent=handlers_by_intent(handlers),
        words=words,
    )
    deployment.service_hours  # noqa: B018 -- read and checked now, not at the first case
    deployment.care  # noqa: B018 -- likewise, not at the first check-in
    return deployment
