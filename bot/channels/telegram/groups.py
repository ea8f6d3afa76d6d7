"""A unit's Telegram group chat: a staff member or admin serving the unit adds the bot to the
group and sends `/linkunit CODE` there (`/unlinkunit` undoes it; in a private chat
`/unlinkunit CODE`, for a group that is gone). From then on the unit's new cases are posted
to the group too (posts.py), and so are the cases moved to the unit (escalated from
a unit below, transferred from the console). A group that Telegram turns into a supergroup (a new
chat id) keeps its unit. The checks and the audit entry are storage.unit_chats'."""

from __future__ import annotations

from collections.abc import Callable

import structlog
from sqlalchemy.orm import Session
from telegram import Update
from telegram.ext import ContextTypes

from bot.channels.telegram.common import (
    Hotline,
    first_delivery,
    hotline_of,
    is_private,
    staff_by_telegram,
)
from bot.channels.telegram.staff import answer_staff, staff_lang
from storage.directory import find_unit
from storage.errors import NotFound
from storage.models import Role, Staff, Unit
from storage.permissions import Actor
from storage.unit_chats import (
    UnitChatConflict,
    link_unit_chat,
    may_link,
    move_unit_chat,
    unit_of_chat,
    unlink_unit_chat,
)

log = structlog.get_logger(__name__)

LINK_COMMAND = "linkunit"
UNLINK_COMMAND = "unlinkunit"
VIA = "telegram"

# What a command does once its sender is known to be staff: the answer, in one transaction.
_Step = Callable[[Hotline, Session, Update, Staff, str], str]


async def on_link_unit(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/linkunit CODE (or /linkunit@OurBot CODE), sent in the group chat."""
    await _answer(update, context, LINK_COMMAND, _link)


async def on_unlink_unit(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/unlinkunit in the group chat, or /unlinkunit CODE in a private chat."""
    await _answer(update, context, UNLINK_COMMAND, _unlink)


async def _answer(
    update: Update, context: ContextTypes.DEFAULT_TYPE, command: str, step: _Step
) -> None:
    hotline, chat = hotline_of(context), update.effective_chat
    if chat is None or update.effective_user is None:
        return
    given = " ".join(context.args or []).strip()
    text = await hotline.talk.run(_run, hotline, update, command, given, step)
    await answer_staff(hotline, context.bot, chat.id, update, command, text)


def _run(hotline: Hotline, update: Update, command: str, given: str, step: _Step) -> str | None:
    """One transaction: the record of the update (a redelivery does nothing), who sent it, and
    the step. Refusals are answered inside it, so they are recorded as answered too."""
    user = update.effective_user
    assert user is not None
    lang = staff_lang(hotline)
    with hotline.sessions.begin() as session:
        if not first_delivery(session, update, command, text=f"/{command} {given}".strip()):
            return None
        staff = staff_by_telegram(session, user.id)
        if staff is None or not staff.active:
            return hotline.text("staff.link_first", lang)
        if staff.role == Role.VOLUNTEER:
            return hotline.text("group.only_staff", lang)
        try:
            return step(hotline, session, update, staff, given)
        except NotFound:
            return hotline.text("group.unit_not_found", lang, code=given)
        except UnitChatConflict as exc:
            return _say(hotline, f"group.{exc.reason}", exc.unit)


def _link(hotline: Hotline, session: Session, update: Update, staff: Staff, given: str) -> str:
    lang = staff_lang(hotline)
    chat = update.effective_chat
    assert chat is not None
    if is_private(update):
        return hotline.text("group.link_in_group", lang)
    if not given:
        return hotline.text("group.link_usage", lang)
    unit = find_unit(session, given)
    if may_link(session, staff, unit) is not None:
        return _say(hotline, "group.not_your_unit", unit)
    changed = link_unit_chat(session, unit, chat.id, Actor.person(staff), via=VIA)
    log.info("telegram_unit_chat_linked", unit=unit.code, changed=changed)
    return _say(hotline, "group.linked" if changed else "group.already_linked", unit)


def _unlink(hotline: Hotline, session: Session, update: Update, staff: Staff, given: str) -> str:
    lang = staff_lang(hotline)
    chat = update.effective_chat
    assert chat is not None
    if is_private(update):
        if not given:
            return hotline.text("group.unlink_usage", lang)
        unit = find_unit(session, given)
    else:
        found = unit_of_chat(session, chat.id)
        if found is None:
            return hotline.text("group.not_linked", lang)
        unit = found
    if may_link(session, staff, unit) is not None:
        return _say(hotline, "group.not_your_unit", unit)
    if unlink_unit_chat(session, unit, Actor.person(staff), via=VIA) is None:
        return _say(hotline, "group.unit_without_chat", unit)
    log.info("telegram_unit_chat_unlinked", unit=unit.code)
    return _say(hotline, "group.unlinked", unit)


def _say(hotline: Hotline, key: str, unit: Unit) -> str:
    lang = staff_lang(hotline)
    return hotline.text(key, lang, unit=unit.name(lang), code=unit.code)


async def on_chat_migrated(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Telegram turned a group into a supergroup: the old group gets a message with
    migrate_to_chat_id, the new one with migrate_from_chat_id; the first to arrive moves the
    unit's link to the new id, the second finds nothing left to move."""
    message = update.effective_message
    if message is None:
        return
    if message.migrate_to_chat_id:
        old, new = message.chat.id, message.migrate_to_chat_id
    elif message.migrate_from_chat_id:
        old, new = message.migrate_from_chat_id, message.chat.id
    else:
        return
    hotline = hotline_of(context)
    await hotline.talk.run(_move, hotline, old, new)


def _move(hotline: Hotline, old: int, new: int) -> None:
    with hotline.sessions.begin() as session:
        unit = move_unit_chat(session, old, new)
        if unit is not None:
            log.info("telegram_unit_chat_moved", unit=unit.code)
