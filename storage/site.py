"""What storage needs of the deployment it serves: the time zone, the staff's language, the texts,
the categories and the working-day calendar. Whoever builds the database engine and the
deployment together (the app, a CLI command) binds them (`bind`); every session of that engine
then works with the configuration the conversation engine was built with (`site_of`), instead
of reading the environment again deep inside a case action.

The conversation's deployment (bot/conversation/deployment.py) is a `Site`. An engine nobody
bound (a test's, a script's) serves the deployment of the process's environment and config/
folder, loaded once.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from functools import cache, cached_property
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from config.care import FILE as CARE_FILE
from config.care import CareConfig, load_care
from config.categories import CategoryConfig, load_categories
from config.i18n import Catalogs, load_catalogs
from config.service_hours import FILE as SERVICE_HOURS_FILE
from config.service_hours import Day, ServiceHours, load_service_hours
from config.settings import Settings
from config.working_days import FILE as WORKING_DAYS_FILE
from config.working_days import WorkingDays, load_working_days

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine
    from sqlalchemy.orm import Session

    from storage.models import Unit


@dataclass(frozen=True)
class Site:
    settings: Settings
    catalogs: Catalogs
    categories: CategoryConfig

    @cached_property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.settings.timezone)

    @property
    def language(self) -> str:
        """The deployment's own language: staff's texts, and a person's until they choose."""
        return self.settings.default_language

    @cached_property
    def working_days(self) -> WorkingDays:
        """China's holidays and make-up days for the years the calendar package lacks."""
        return load_working_days(self.settings.config_dir / WORKING_DAYS_FILE)

    @cached_property
    def service_hours(self) -> ServiceHours:
        """When the offices answer: deadlines count these hours (storage/deadlines.py)."""
        return load_service_hours(self.settings.config_dir / SERVICE_HOURS_FILE)

    @cached_property
    def care(self) -> CareConfig:
        """Check-in plans' defaults, the quiet hours and the ladder (storage/check_ins.py)."""
        return load_care(self.settings.config_dir / CARE_FILE)

    def hours_for(self, unit: Unit | None) -> Day:
        """The service hours of ``unit``'s queue: its own, else the nearest unit's above it,
        else the default."""
        if not self.service_hours.units:
            return self.service_hours.default  # no unit has its own: no need to load the tree
        codes = []
        while unit is not None:
            codes.append(unit.code)
            unit = unit.parent
        return self.service_hours.for_units(codes)

    @classmethod
    def load(cls, settings: Settings) -> Site:
        folder = settings.config_dir
        return cls(
            settings=settings,
            catalogs=load_catalogs(folder / "messages"),
            categories=load_categories(folder / "categories.yml"),
        )


_BOUND: weakref.WeakKeyDictionary[Engine, Site] = weakref.WeakKeyDictionary()


def bind(engine: Engine, site: Site) -> None:
    """The sessions of ``engine`` serve ``site`` from now on."""
    _BOUND[engine] = site


def site_of(session: Session | Connection | Engine) -> Site:
    """The site the database behind ``session`` serves (see the module docstring)."""
    bound = session.get_bind() if hasattr(session, "get_bind") else session
    engine = getattr(bound, "engine", bound)
    found = _BOUND.get(engine)
    return found if found is not None else environment_site()


@cache
def environment_site() -> Site:
    """The deployment of the process's environment (HOTLINE_* and the config folder)."""
    return Site.load(Settings())
