"""Retirees on Telegram: `/start` asks for their phone contact and links the account to their
registered profile (only the sender's own contact, whose number Telegram has checked); a text or a
button press is one engine turn, and the replies come back with the choices as large buttons.
The buttons of a follow-up question (回访, ``fu:<id>:<1|2|3>``) answer it instead, and only in the
chat the question went to (bot/conversation/follow_up_answers.py); a bare 1 or 2 answers today's
check-in asked in this chat (storage/check_ins.py), its reply sent by the outbox."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy.orm import Session
from telegram import Bot, KeyboardButton, ReplyKeyboardMarkup, ReplyKeyboardRemove, Update
from telegram import Message as TgMessage
from telegram.ext import ContextTypes

from bot.channels.telegram.common import (
    CHANNEL,
    Hotline,
    answer_quietly,
    deliver,
    edit_quietly,
    first_delivery,
    hotline_of,
    is_private,
    language_of,
    provider_id,
    send_replies,
)
from bot.conversation.follow_up_answers import (
    Answered,
    answer_message,
    answer_round,
    parse_button,
)
from bot.conversation.messages import Inbound
from storage import check_ins
from storage.identities import link, linked_retiree, retiree_by_phone
from storage.models import (
    FollowUp,
    Retiree,
)
from storage.phones import InvalidPhoneNumber, normalize_phone

log = structlog.get_logger(__name__)


def contact_keyboard(hotline: Hotline, lang: str) -> ReplyKeyboardMarkup:
    return ReplyKeyboardMarkup(
        [[KeyboardButton(hotline.text("start.share_button", lang), request_contact=True)]],
        resize_keyboard=True,
        one_time_keyboard=True,
    )


async def on_start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/start in a private chat (staff have their own: staff.on_start): a person already linked
    is greeted by name; anyone else is asked to share their phone contact (a button), so we
    find their registered profile."""
    hotline, user = hotline_of(context), update.effective_user
    if user is None:
        return
    found = await hotline.talk.run(_record_start, hotline, update)
    if found is None:
        return
    name, lang = found
    if name is not None:
        text, markup = hotline.text("start.linked_already", lang, name=name), ReplyKeyboardRemove()
    else:
        text, markup = hotline.text("start.share_phone", lang), contact_keyboard(hotline, lang)
    await deliver(
        hotline,
        context.bot,
        user.id,
        text,
        language=lang,
        key=f"{provider_id(update)}:start",
        markup=markup,
    )


def _record_start(hotline: Hotline, update: Update) -> tuple[str | None, str] | None:
    """(the linked retiree's name or None, the language); None for a redelivery."""
    user = update.effective_user
    assert user is not None
    with hotline.sessions.begin() as session:
        retiree = _linked_retiree(session, user.id)
        retiree_id = retiree.id if retiree is not None else None
        if not first_delivery(session, update, "start", text="/start", retiree_id=retiree_id):
            return None
        lang = language_of(hotline, update, retiree)
        return (retiree.name if retiree is not None else None), lang


def _linked_retiree(session: Session, user_id: int) -> Retiree | None:
    return linked_retiree(session, CHANNEL, str(user_id))


@dataclass(frozen=True)
class LinkOutcome:
    result: str  # linked, not_found, invalid, redelivered
    lang: str
    name: str = ""


async def on_contact(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A shared contact: only the sender's own (Telegram sets its user_id, having checked the
    number is theirs) links the account to the retiree with that phone number."""
    hotline, user, message = hotline_of(context), update.effective_user, update.effective_message
    if user is None or message is None or message.contact is None:
        return
    key = f"{provider_id(update)}:contact"
    contact = message.contact
    if contact.user_id != user.id:
        lang = language_of(hotline, update)
        log.info("telegram_contact_refused", why="not the sender's own contact")
        await deliver(
            hotline,
            context.bot,
            user.id,
            hotline.text("contact.not_yours", lang),
            language=lang,
            key=key,
            markup=contact_keyboard(hotline, lang),
        )
        return
    outcome = await hotline.talk.run(link_account, hotline, update, contact.phone_number)
    if outcome.result == "redelivered":
        return
    if outcome.result == "linked":
        text, markup = hotline.text("contact.linked", outcome.lang, name=outcome.name), None
    elif outcome.result == "invalid":
        text = hotline.text("contact.invalid", outcome.lang)
        markup = contact_keyboard(hotline, outcome.lang)
    else:
        text = hotline.text("contact.not_found", outcome.lang)
        markup = None
    await deliver(
        hotline,
        context.bot,
        user.id,
        text,
        language=outcome.lang,
        key=key,
        markup=markup or ReplyKeyboardRemove(),
    )


def telegram_phone(raw: str) -> str:
    """A contact's number in E.164. Telegram gives it without the "+" ("8613912345678"),
    which read as a Chinese national number would be invalid: try it as international first."""
    digits = raw.strip()
    if not digits.startswith("+"):
        try:
            return normalize_phone("+" + digits)
        except InvalidPhoneNumber:
            pass
    return normalize_phone(digits)


def link_account(hotline: Hotline, update: Update, phone: str) -> LinkOutcome:
    """Link the sender's Telegram account to the retiree whose phone number they shared (an
    account linked before moves to the profile the number proves). Audited. A number nobody
    has links nothing: the person's next message starts the engine's registration."""
    user = update.effective_user
    assert user is not None
    address = str(user.id)
    with hotline.sessions.begin() as session:
        try:
            number = telegram_phone(phone)
        except InvalidPhoneNumber:
            number = None
        retiree = retiree_by_phone(session, number) if number is not None else None
        retiree_id = retiree.id if retiree is not None else None
        if not first_delivery(session, update, "contact", text="[contact]", retiree_id=retiree_id):
            return LinkOutcome("redelivered", language_of(hotline, update, retiree))
        if number is None:
            return LinkOutcome("invalid", language_of(hotline, update))
        if retiree is None:
            log.info("telegram_contact_unknown")
            return LinkOutcome("not_found", language_of(hotline, update))
        if link(session, CHANNEL, address, retiree, by="shared_contact", now=datetime.now(UTC)):
            log.info("telegram_linked", retiree=retiree.id)
        return LinkOutcome("linked", retiree.preferred_language, retiree.name)


async def on_text(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A retiree's text in a private chat is one engine turn (staff's: staff.on_message)."""
    hotline, user, message = hotline_of(context), update.effective_user, update.effective_message
    if user is None or message is None:
        return
    text = (message.text or "").strip()
    if text in check_ins.CHOICES and await _answered(hotline, update, text):
        return
    await run_turn(hotline, context.bot, update, text=message.text or "")


REPLY_PRIORITY = 2


async def _answered(hotline: Hotline, update: Update, text: str) -> bool:
    """Whether ``text`` (a bare 1 or 2) answered a check-in or a follow-up waiting on this chat
    (recorded once; the reply queued in the outbox); False: it is a conversation turn."""
    inbound = _inbound(update, text)
    idle = timedelta(minutes=hotline.talk.deployment.dialogue.idle_minutes)
    key = f"{provider_id(update)}:answer"
    db = hotline.talk.db
    return bool(await hotline.talk.run(answer_message, db, inbound, key, REPLY_PRIORITY, idle=idle))


async def on_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A retiree pressed one of the choices: the pressed message keeps its text and shows what
    was chosen (its buttons go, so an old question cannot be answered twice); then a turn."""
    hotline, query = hotline_of(context), update.callback_query
    if query is None:
        return
    await answer_quietly(update)
    if not is_private(update) or not isinstance(query.message, TgMessage):
        return
    data = query.data or ""
    label = _label_of(query.message, data)
    if label:
        await edit_quietly(
            update,
            f"{query.message.text or ''}\n\n"
            + hotline.text("chosen", hotline.settings.default_language, label=label),
        )
    if data.startswith("#") and data[1:].isdigit():
        await run_turn(hotline, context.bot, update, text=data[1:])
    else:
        # The label goes along as text: a button of an older question (no longer offered)
        # is then understood as if the person had written it.
        await run_turn(hotline, context.bot, update, text=label, choice=data)


REFUSED = "refused"  # a follow-up button pressed by someone the question was not sent to


async def on_follow_up(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A follow-up question's button: the answer (once, however often Telegram delivers the
    press); the question then shows it, without its buttons, and the reply follows. Someone the
    question was not sent to is told so, and nothing changes."""
    hotline, query, user = hotline_of(context), update.callback_query, update.effective_user
    if query is None or user is None:
        return
    parsed = parse_button(query.data or "")
    if parsed is None:
        await answer_quietly(update)
        return
    outcome = await hotline.talk.run(_answer_follow_up, hotline, update, *parsed)
    if outcome == REFUSED:
        lang = language_of(hotline, update)
        await answer_quietly(update, hotline.catalogs.text("follow_up.not_yours", lang), alert=True)
        return
    await answer_quietly(update)
    if not isinstance(outcome, Answered):
        return  # a redelivery: answered the first time
    label = (
        _label_of(query.message, query.data or "") if isinstance(query.message, TgMessage) else ""
    )
    if label and isinstance(query.message, TgMessage):
        chosen = hotline.text("chosen", outcome.language, label=label)
        await edit_quietly(update, f"{query.message.text or ''}\n\n{chosen}")
    await deliver(
        hotline,
        context.bot,
        user.id,
        outcome.text,
        language=outcome.language,
        key=f"{provider_id(update)}:follow_up",
    )


def _answer_follow_up(
    hotline: Hotline, update: Update, follow_up_id: int, choice: str
) -> Answered | str | None:
    """The answer, an Answered; REFUSED when the question was not sent to this chat; None for a
    redelivered press."""
    user, chat = update.effective_user, update.effective_chat
    assert user is not None
    with hotline.sessions.begin() as session:
        follow_up = session.get(FollowUp, follow_up_id)
        asked = follow_up is not None and follow_up.channel == CHANNEL
        if (
            follow_up is None
            or not asked
            or follow_up.address != str(user.id)
            or (chat is not None and str(chat.id) != follow_up.address)
        ):
            log.warning("telegram_follow_up_refused", follow_up=follow_up_id, known=asked)
            return REFUSED
        if not first_delivery(session, update, "follow_up", text=choice):
            return None
        answered = answer_round(session, follow_up, choice, now=datetime.now(UTC))
    log.info("follow_up_answered", channel=CHANNEL, case=answered.case, answer=answered.label)
    return answered


def _label_of(message: TgMessage, data: str) -> str:
    markup = message.reply_markup
    if markup is None:
        return ""
    for row in markup.inline_keyboard:
        for button in row:
            if button.callback_data == data:
                return button.text
    return ""


def _inbound(update: Update, text: str, choice: str | None = None) -> Inbound:
    """What the retiree wrote or pressed, as the engine takes it."""
    user = update.effective_user
    assert user is not None
    return Inbound(
        channel=CHANNEL,
        address=str(user.id),
        provider_id=provider_id(update),
        received_at=datetime.now(UTC),
        text=text,
        choice=choice,
    )


async def run_turn(
    hotline: Hotline, bot: Bot, update: Update, *, text: str = "", choice: str | None = None
) -> None:
    user = update.effective_user
    assert user is not None
    inbound = _inbound(update, text, choice)
    if inbound.is_empty:
        return
    result = await hotline.talk.turn(inbound)
    if result.redelivered:
        # Answered the first time (sent, or queued in the outbox): not again.
        log.info("telegram_redelivery", update_id=update.update_id)
        return
    await send_replies(hotline, bot, user.id, result.replies, provider_id(update))


async def on_other(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A command we do not have, a voice message, a photo: say what works."""
    hotline, user = hotline_of(context), update.effective_user
    if user is None or update.effective_message is None:
        return
    lang = language_of(hotline, update)
    message = update.effective_message
    key = "help" if message.text and message.text.startswith("/") else "only_text"
    await deliver(
        hotline,
        context.bot,
        user.id,
        hotline.text(key, lang),
        language=lang,
        key=f"{provider_id(update)}:{key}",
    )
