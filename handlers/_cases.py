"""The person's own cases, as the handlers that look at them (status inquiry, cancel) find
them: only a case of the person speaking is ever found or told."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select

from bot.conversation.turn import Turn
from storage.models import Case, CaseStatus


def own_cases(turn: Turn, statuses: Sequence[CaseStatus]) -> list[Case]:
    """The person's cases in ``statuses``, newest first (none for an unknown sender)."""
    if turn.retiree is None:
        return []
    return list(
        turn.session.scalars(
            select(Case)
            .where(Case.retiree_id == turn.retiree.id, Case.status.in_(list(statuses)))
            .order_by(Case.created_at.desc(), Case.id.desc())
        ).all()
    )


def own_case(turn: Turn, number: str) -> Case | None:
    """The case numbered ``number`` if it is the person's own; None otherwise (also when it is
    somebody else's: that it exists is not told)."""
    if turn.retiree is None:
        return None
    case = turn.session.scalars(select(Case).where(Case.number == number)).first()
    if case is None or case.retiree_id != turn.retiree.id:
        return None
    return case


def said_case_number(turn: Turn) -> str | None:
    entity = turn.heard.entity("case_number")
    return str(entity["value"]) if entity is not None else None
