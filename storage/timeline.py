"""A case's timeline: the one writer of case events. Every change of a case (filed, claimed,
escalated, ...) and every line about it (a note, a reply, a reminder, a notice that could not be
sent) is one `CaseEvent`, who did it and when, and nothing else writes that table.

`record` adds an event through the session (the usual way); `record_now` inserts one with a
single Core statement, for hot paths that need no ORM object (telling the retiree inside a
claim); `insert_from` is the INSERT of the one-statement claim, whose event is selected from the
claimed row in the same statement."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Insert, Select, insert
from sqlalchemy.orm import Session

from storage.models import Case, CaseEvent, CaseStatus
from storage.permissions import Actor

SYSTEM = Actor.system()

# Every kind of event a timeline has; the console names each in both languages
# (config/messages/*/console.yml, console.events.*; a test holds them together).
ACTIONS = frozenset(
    {
        *("file", "claim", "release", "transfer", "escalate", "resolve", "close", "reopen"),
        *("cancel", "note", "reply", "escalation_notified", "emergency_reescalated"),
        *("follow_up_asked", "follow_up_answered", "follow_up_unanswered", "notice_skipped"),
    }
)


class _Unchanged:
    """`record`'s default ``from_status``: a line that leaves the case as it is."""


UNCHANGED = _Unchanged()

# The columns `insert_from`'s SELECT gives, in this order.
COLUMNS = (
    "case_id",
    "at",
    "actor_id",
    "actor_label",
    "action",
    "from_status",
    "to_status",
    "reason",
    "note",
    "data",
)


def record(
    session: Session,
    case: Case,
    action: str,
    *,
    now: datetime,
    actor: Actor = SYSTEM,
    from_status: CaseStatus | _Unchanged | None = UNCHANGED,
    reason: str = "",
    note: str = "",
    data: dict[str, Any] | None = None,
) -> CaseEvent:
    """An event of ``case``, which is now in the status it moved to; ``from_status`` is where it
    came from (None: a first event; by default the status it still has, a line that changed
    nothing)."""
    start = case.status if isinstance(from_status, _Unchanged) else from_status
    event = CaseEvent(**_values(case, action, now, actor, start, reason, note, data))
    session.add(event)
    return event


def record_now(
    session: Session,
    case: Case,
    action: str,
    *,
    now: datetime,
    actor: Actor = SYSTEM,
    note: str = "",
    data: dict[str, Any] | None = None,
) -> None:
    """A line on the timeline that changes nothing, as one INSERT: no unit of work to run."""
    values = _values(case, action, now, actor, case.status, "", note, data)
    session.execute(insert(CaseEvent.__table__), values)


def insert_from(rows: Select[Any]) -> Insert:
    """An INSERT of the events ``rows`` selects (its columns in the order of `COLUMNS`)."""
    return insert(CaseEvent.__table__).from_select(list(COLUMNS), rows)


def _values(
    case: Case,
    action: str,
    now: datetime,
    actor: Actor,
    from_status: CaseStatus | None,
    reason: str,
    note: str,
    data: dict[str, Any] | None,
) -> dict[str, Any]:
    if action not in ACTIONS:
        raise ValueError(f"{action!r} is no timeline event (storage.timeline.ACTIONS)")
    return {
        "case_id": case.id,
        "at": now,
        "actor_id": actor.staff.id if actor.staff is not None else None,
        "actor_label": actor.label,
        "action": action,
        "from_status": from_status.value if from_status is not None else None,
        "to_status": case.status.value,
        "reason": reason,
        "note": note,
        "data": data or {},
    }
