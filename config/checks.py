"""The start-up check of a deployment's YAML: every file is read and validated once, so a typo
is reported before anything runs, with the file and the key."""

from __future__ import annotations

from config.care import FILE as CARE
from config.care import load_care
from config.categories import load_categories
from config.dialogue import load_dialogue
from config.faq import load_faq
from config.i18n import load_catalogs
from config.settings import Settings
from config.working_days import FILE as WORKING_DAYS
from config.working_days import load_working_days


def check_configuration(settings: Settings) -> None:
    """Raise ConfigError naming the file and key of the first broken file."""
    load_categories(settings.config_dir / "categories.yml")
    load_catalogs(settings.config_dir / "messages")
    load_dialogue(settings.config_dir / "dialogue.yml")
    load_faq(settings.config_dir / "faq.yml")
    load_working_days(settings.config_dir / WORKING_DAYS)
    load_care(settings.config_dir / CARE)
