"""The case actions that take one text (a note, a reason, an outcome), shared by the console's
forms and its JSON API. The case actions check the text too and say what is missing."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.orm import Session

from config.categories import CategoryConfig
from console.web import ConsoleConfig
from storage import actions, replies
from storage.models import Case, Staff, Unit
from storage.permissions import Actor

# action -> (form field, required, what to call)
TextAction = Callable[[Session, Case, Actor, str, CategoryConfig], object]
TEXT_ACTIONS: dict[str, tuple[str, bool, TextAction]] = {
    "note": ("text", True, lambda s, c, a, v, k: actions.add_note(s, c, a, v, categories=k)),
    "reply": ("text", True, lambda s, c, a, v, k: replies.reply(s, c, a, v, categories=k)),
    "release": (
        "reason",
        False,
        lambda s, c, a, v, k: actions.release(s, c, a, reason=v, categories=k),
    ),
    "resolve": (
        "outcome",
        True,
        lambda s, c, a, v, k: actions.resolve(s, c, a, outcome=v, categories=k),
    ),
    "close": ("text", False, lambda s, c, a, v, k: actions.close(s, c, a, note=v, categories=k)),
    "reopen": (
        "reason",
        True,
        lambda s, c, a, v, k: actions.reopen(s, c, a, reason=v, categories=k),
    ),
    "cancel": (
        "reason",
        True,
        lambda s, c, a, v, k: actions.cancel(s, c, a, reason=v, categories=k),
    ),
}
DONE_KEYS = {
    "note": "console.case.noted",
    "reply": "console.case.replied",
    "release": "console.case.released",
    "resolve": "console.case.resolved",
    "close": "console.case.closed",
    "reopen": "console.case.reopened",
    "cancel": "console.case.cancelled",
}


def transfer_case(
    config: ConsoleConfig,
    session: Session,
    case: Case,
    actor: Actor,
    *,
    reason: str,
    to_unit: Unit | None,
    to_staff: Staff | None,
) -> None:
    """A transfer from the console (form or API): a case that goes to another unit's queue is
    posted to those who may take it there (its Telegram group), in the same transaction."""
    moved_from = case.unit_id
    actions.transfer(
        session,
        case,
        actor,
        reason=reason,
        to_unit=to_unit,
        to_staff=to_staff,
        categories=config.categories,
    )
    if to_unit is not None and case.unit_id != moved_from:
        config.moved(session, case)
