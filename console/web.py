"""What every console page shares: the configuration it reads, the database session of a request,
the message catalogs in the templates, and the page language.

Pages are rendered on the server (Jinja2); htmx swaps parts of them (the queue's rows, a case's
actions) without a front-end build step. Every text comes from config/messages/<lang>/console.yml.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import Depends, Request
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session, sessionmaker
from starlette.datastructures import FormData
from starlette.responses import Response

from bot.conversation.deployment import Deployment
from config.categories import CategoryConfig
from config.i18n import LANGUAGES, Catalogs
from config.settings import Settings
from storage.escalation import MovedHook
from storage.models import Case

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"


@dataclass(frozen=True)
class ConsoleConfig:
    """Read once at start-up: the deployment's settings, texts and categories."""

    settings: Settings
    catalogs: Catalogs
    categories: CategoryConfig
    templates: Jinja2Templates
    zone: ZoneInfo
    # Told of a case a transfer moved to another unit's queue, in the transfer's transaction
    # (the Telegram bot posts it to the unit's group); None without a bot.
    on_moved: MovedHook | None = None

    @classmethod
    def load(cls, deployment: Deployment, on_moved: MovedHook | None = None) -> ConsoleConfig:
        settings = deployment.settings
        templates = Jinja2Templates(directory=str(TEMPLATES))
        templates.env.globals["languages"] = LANGUAGES
        return cls(
            settings=settings,
            catalogs=deployment.catalogs,
            categories=deployment.categories,
            templates=templates,
            zone=deployment.tz,
            on_moved=on_moved,
        )

    def moved(self, session: Session, case: Case) -> None:
        """``case`` was moved to another unit's queue."""
        if self.on_moved is not None:
            self.on_moved(session, [case])


def db(request: Request) -> Iterator[Session]:
    """One transaction per request, committed when the endpoint returns (before the answer is
    sent: a person is never told "done" about something that was then rolled back)."""
    factory: sessionmaker[Session] = request.app.state.console_sessions
    with factory.begin() as session:
        yield session


DB = Annotated[Session, Depends(db, scope="function")]


def console(request: Request) -> ConsoleConfig:
    config: ConsoleConfig = request.app.state.console
    return config


def language(request: Request) -> str:
    """The page language: the person's choice (kept in the session), else the deployment's."""
    chosen = request.session.get("lang")
    if chosen in LANGUAGES:
        return str(chosen)
    return console(request).settings.default_language


class Texts:
    """``t("console.queue.title", n=3)`` in a template: the catalog text in the page language."""

    def __init__(self, catalogs: Catalogs, lang: str) -> None:
        self.catalogs, self.lang = catalogs, lang

    def __call__(self, key: str, **params: Any) -> str:
        return self.catalogs.text(key, self.lang, **params)

    def has(self, key: str) -> bool:
        return key in self.catalogs.texts.get(self.lang, {})

    def maybe(self, key: str, fallback: str) -> str:
        """The text for ``key`` if the catalogs have it (say, a category added by a deployment
        without a console label), else ``fallback``."""
        return self(key) if self.has(key) else fallback


def render(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    """Render ``template`` with what every page needs: texts, language, the signed-in person, the
    CSRF token for forms, and local time formatting."""
    config = console(request)
    lang = language(request)
    texts = Texts(config.catalogs, lang)
    base: dict[str, Any] = {
        "t": texts,
        "lang": lang,
        "me": getattr(request.state, "me", None),
        "csrf_token": request.session.get("csrf", ""),
        "local": lambda moment: local_time(moment, config.zone),
        "categories": config.categories,
        "duration": lambda minutes: duration(texts, minutes),
        "flashes": request.session.pop("flash", []),
        "path": request.url.path,
    }
    base.update(context or {})
    return config.templates.TemplateResponse(
        request, template, base, status_code=status_code, headers=headers
    )


def local_time(moment: datetime | None, zone: ZoneInfo) -> str:
    """A stored UTC moment as the centre's local time, the way staff write it: 12-04 15:30."""
    if moment is None:
        return ""
    return moment.astimezone(zone).strftime("%m-%d %H:%M")


def duration(t: Texts, minutes: int) -> str:
    """A countdown as people say it: 45分钟, 2小时5分钟, 3天2小时."""
    minutes = max(minutes, 0)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return t("console.duration.days_hours", days=days, hours=hours)
    if hours:
        return t("console.duration.hours_minutes", hours=hours, minutes=mins)
    return t("console.duration.minutes", minutes=mins)


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


_YEAR_FIRST = re.compile(r"^\s*(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?\s*$")


def form_text(form: FormData, name: str) -> str:
    """A posted field, stripped ("" when missing, or a file)."""
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def parse_day(text: str) -> date:
    """A day as people type it here, year first: 2026-12-01, 2026/12/1, 2026.12.1,
    2026年12月1日. The console's date fields are text fields showing 2026-12-01 (a date input
    follows the browser's locale: an English one shows 12/01/2026). ValueError otherwise."""
    found = _YEAR_FIRST.match(text)
    if found is None:
        raise ValueError(f"not a year-first date: {text!r}")
    return date(int(found.group(1)), int(found.group(2)), int(found.group(3)))
