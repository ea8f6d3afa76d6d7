"""A unit's Telegram group chat (Unit.telegram_chat_id): the one writer of the link, for the
bot's /linkunit and /unlinkunit and for `hotline units telegram-chat`. Every change is checked
(staff or admin serving the unit; one group per unit and one unit per group) and audited."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from storage.audit import record_access
from storage.errors import NotPermitted
from storage.models import Role, Staff, Unit
from storage.permissions import Actor, units_in_scope

LINK = "link_unit_chat"  # audit actions
UNLINK = "unlink_unit_chat"
MOVE = "move_unit_chat"


class UnitChatConflict(Exception):
    """The link would break "one group per unit, one unit per group". ``reason`` is
    ``unit_has_other_chat`` (``unit`` is linked to ``chat_id``) or ``chat_has_other_unit``
    (``chat_id`` is the group of ``unit``)."""

    def __init__(self, reason: str, unit: Unit, chat_id: int) -> None:
        self.reason, self.unit, self.chat_id = reason, unit, chat_id
        if reason == "unit_has_other_chat":
            text = f"unit {unit.code} is already linked to Telegram chat {chat_id}; unlink it first"
        else:
            text = (
                f"Telegram chat {chat_id} is already the group of unit {unit.code}; unlink it first"
            )
        super().__init__(text)


def unit_of_chat(session: Session, chat_id: int) -> Unit | None:
    return session.scalars(select(Unit).where(Unit.telegram_chat_id == chat_id)).first()


def may_link(session: Session, staff: Staff, unit: Unit) -> str | None:
    """None when ``staff`` may link or unlink the group chat of ``unit``: active staff and
    admins serving it (volunteers may not); otherwise the reason why not."""
    if not staff.active:
        return "the account is not active"
    if staff.role == Role.VOLUNTEER:
        return "only staff can do that"
    if unit.id not in units_in_scope(session, staff):
        return "they do not serve this unit"
    return None


def require_may_link(session: Session, actor: Actor, unit: Unit) -> None:
    """Raises NotPermitted unless ``actor`` may (the system, e.g. the operator's command line,
    always may)."""
    if actor.staff is None:
        return
    why = may_link(session, actor.staff, unit)
    if why is not None:
        raise NotPermitted(actor.describe(), f"link the group chat of unit {unit.code}", why)


def _locked(session: Session, unit: Unit) -> Unit:
    """``unit`` re-read and locked (PostgreSQL), so two links of one unit at the same moment
    cannot both pass the checks (SQLite transactions already run one at a time)."""
    return session.scalars(
        select(Unit)
        .where(Unit.id == unit.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()


def link_unit_chat(session: Session, unit: Unit, chat_id: int, actor: Actor, *, via: str) -> bool:
    """Make ``chat_id`` the group chat of ``unit``; False when it already was (nothing
    changed). Raises NotPermitted or UnitChatConflict; ``via`` ("telegram", "cli") goes to
    the audit entry."""
    require_may_link(session, actor, unit)
    unit = _locked(session, unit)
    if unit.telegram_chat_id == chat_id:
        return False
    if unit.telegram_chat_id is not None:
        raise UnitChatConflict("unit_has_other_chat", unit, unit.telegram_chat_id)
    other = unit_of_chat(session, chat_id)
    if other is not None:
        raise UnitChatConflict("chat_has_other_unit", other, chat_id)
    try:
        with session.begin_nested():
            unit.telegram_chat_id = chat_id
            session.flush()
    except IntegrityError:
        # Another unit took this chat between the check and the write (PostgreSQL).
        session.expire(unit, ["telegram_chat_id"])
        holder = unit_of_chat(session, chat_id)
        raise UnitChatConflict("chat_has_other_unit", holder or unit, chat_id) from None
    _audit(session, actor, LINK, unit, {"chat_id": chat_id, "via": via})
    return True


def unlink_unit_chat(session: Session, unit: Unit, actor: Actor, *, via: str) -> int | None:
    """Forget the group chat of ``unit``; returns the chat it had (None: it had none, nothing
    changed). Raises NotPermitted."""
    require_may_link(session, actor, unit)
    unit = _locked(session, unit)
    chat_id = unit.telegram_chat_id
    if chat_id is None:
        return None
    unit.telegram_chat_id = None
    session.flush()
    _audit(session, actor, UNLINK, unit, {"chat_id": chat_id, "via": via})
    return chat_id


def move_unit_chat(session: Session, old_chat_id: int, new_chat_id: int) -> Unit | None:
    """Telegram turned a group into a supergroup, which has a new id: the unit linked to the
    old id follows it. None when no unit had the old id, or the new id is taken already."""
    unit = unit_of_chat(session, old_chat_id)
    if unit is None or unit_of_chat(session, new_chat_id) is not None:
        return None
    unit.telegram_chat_id = new_chat_id
    session.flush()
    detail = {"chat_id": new_chat_id, "from_chat_id": old_chat_id, "via": "telegram"}
    _audit(session, Actor.system("telegram"), MOVE, unit, detail)
    return unit


def _audit(
    session: Session, actor: Actor, action: str, unit: Unit, detail: dict[str, object]
) -> None:
    record_access(
        session,
        actor=actor.staff,
        actor_label=actor.label,
        action=action,
        subject_type="unit",
        subject_id=unit.id,
        detail=dict(detail),
    )
