"""Volunteers and staff on Telegram (Staff.telegram_user_id): a case posted to them with a Claim
button (posts.py) is claimed by the first tap anywhere, every copy then says who took
it, and the claimer gets the person's contact details in a private chat; `/mine` lists their
cases and staff `/close NUMBER`. A case taken elsewhere, withdrawn or put back in the queue is
caught up with by the outbox worker's upkeep, every few seconds (keep_posts_up). Every change
goes through storage.actions, as everywhere else. Personal posts stay as they are even for members of the
unit's group: one post per person and one per group; whichever copy is tapped first wins.
"""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session
from telegram import Bot, Update
from telegram.error import BadRequest, Forbidden, TelegramError
from telegram.ext import ContextTypes

from bot.channels import staff_desk
from bot.channels.staff_desk import Desk, taken_line
from bot.channels.telegram.common import (
    CHANNEL,
    Hotline,
    answer_quietly,
    deliver,
    edit_quietly,
    enqueue_reply,
    first_delivery,
    hotline_of,
    is_private,
    provider_id,
    staff_by_telegram,
    staff_of,
)
from bot.channels.telegram.posts import CLAIM, NEW_CASE, post_new_case
from config.categories import CategoryConfig
from config.i18n import Catalogs
from storage import actions, messages, outbox
from storage.errors import CaseConflict, IllegalTransition, NotFound, NotPermitted
from storage.models import (
    Case,
    CaseStatus,
    Direction,
    Message,
    MessageStatus,
    OutboxItem,
    Role,
    Staff,
)
from storage.permissions import Actor
from storage.types import utcnow

log = structlog.get_logger(__name__)

POSTED, TAKEN, SETTLED = MessageStatus.POSTED, MessageStatus.TAKEN, MessageStatus.SETTLED

# /start payload of the link that opens a private chat with the bot to get a claimed case's
# contact details: "case_2026-000123" (Telegram allows A-Z, a-z, 0-9, _ and -).
DETAILS_START = "case_"


# -- help --------------------------------------------------------------------------------------


def staff_lang(hotline: Hotline) -> str:
    """Texts for staff are in the deployment's language (Staff has no language of its own)."""
    return hotline.settings.default_language


async def answer_staff(
    hotline: Hotline, bot: Bot, chat_id: int, update: Update, what: str, text: str | None
) -> None:
    """Send the answer to a staff command ``what`` (None: the update was a redelivery, or there
    is nothing to say), in the staff language, keyed by the update it answers."""
    if text is not None:
        await deliver(
            hotline,
            bot,
            chat_id,
            text,
            language=staff_lang(hotline),
            key=f"{provider_id(update)}:{what}",
        )


async def send_staff_help(hotline: Hotline, bot: Bot, update: Update, staff: Staff) -> None:
    """What a volunteer or staff member can do here. In a group only when the message was a
    command addressed to this bot ("/start@OurBot"): its members talk to each other there,
    and a command for another bot is not ours to answer."""
    chat = update.effective_chat
    if chat is None or not (is_private(update) or _addressed_to(bot, update)):
        return
    key = "help_staff" if staff.role != Role.VOLUNTEER else "help_volunteer"
    text = hotline.text(f"staff.{key}", staff_lang(hotline), name=staff.name)
    await answer_staff(hotline, bot, chat.id, update, "help", text)


def _addressed_to(bot: Bot, update: Update) -> bool:
    message = update.effective_message
    words = (message.text or "").split() if message is not None else []
    command, _, to = (words[0] if words else "").partition("@")
    return command.startswith("/") and to.lower() == (bot.username or "").lower()


# -- the Claim button --------------------------------------------------------------------------


@dataclass(frozen=True)
class Post:
    """Where one new-case post went (recorded by ``record_sent``) and what it said."""

    chat_id: int
    message_id: int
    text: str


@dataclass(frozen=True)
class ClaimOutcome:
    won: bool
    notice: str  # the answer to the button press
    line: str  # added to the pressed post, whose button goes
    others: tuple[tuple[Post, str], ...] = ()  # after a win: every other copy and its line
    details: str | None = None  # after a win: the contact details, for a private chat only


POST_PREFIX = "tgmsg:"  # provider_id of a recorded post: "tgmsg:<chat_id>:<message_id>"
EDIT_POST = "edit_post"  # the outbox payload's kind: TelegramSender edits the message
UPDATE_BATCH = 200  # posts updated per upkeep; the rest at the next
OWNER = messages.POST_OWNER


def record_sent(session: Session, item: OutboxItem, sent_as: str) -> None:
    """Remember where a new-case post went, so that once somebody claims the case everyone
    else's copy says who took it (and loses its button). For the Telegram sender's
    ``after_sent`` hook; ``sent_as`` is its outcome's provider_id, "<chat_id>:<message_id>"."""
    if item.payload.get("kind") != NEW_CASE or item.case_id is None:
        return
    chat, _, message = sent_as.partition(":")
    if not (chat.lstrip("-").isdigit() and message.isdigit()):
        return
    messages.record_once(
        session,
        channel=CHANNEL,
        direction=Direction.OUTBOUND,
        address=item.address,
        provider_id=f"{POST_PREFIX}{chat}:{message}",
        text=str(item.payload.get("text", "")),
        payload=_post_payload(item.payload.get("case")),
        status=POSTED,  # kept up with its case (keep_posts_up)
        case_id=item.case_id,
        now=utcnow(),
    )


def _post_payload(number: object, owner: int | None = None) -> dict[str, object]:
    """A recorded post's payload: its case, and once taken whom it names (``OWNER``)."""
    payload: dict[str, object] = {"kind": NEW_CASE, "case": number}
    if owner is not None:
        payload[OWNER] = owner
    return payload


def _take_posts(session: Session, case: Case) -> list[Post]:
    """Every post of ``case``, for the caller to update (the Telegram claim does at once):
    keep_posts_up does not edit them again."""
    payload = _post_payload(case.number, case.assignee_id)
    messages.mark_posts(session, CHANNEL, case.id, TAKEN, payload)
    rows = session.execute(
        select(Message.provider_id, Message.text).where(
            Message.channel == CHANNEL,
            Message.direction == Direction.OUTBOUND,
            Message.case_id == case.id,
            Message.provider_id.startswith(POST_PREFIX),
        )
    ).all()
    posts = []
    for recorded_as, text in rows:
        chat, _, message = recorded_as.removeprefix(POST_PREFIX).partition(":")
        posts.append(Post(int(chat), int(message), text))
    return posts


def keep_posts_up(
    session: Session,
    *,
    catalogs: Catalogs,
    categories: CategoryConfig,
    language: str,
    timezone: str,
    limit: int = UPDATE_BATCH,
) -> int:
    """Posts whose case changed other than by a tap on Telegram, for the Telegram sender's
    upkeep (the worker's, every ``upkeep_every_s``). A case taken anywhere else (the console,
    the phone, the API) or no longer open (withdrawn, resolved): each copy is edited, through
    the outbox, to say who has it, or how it stands, and loses its Claim button; handed to
    someone else while taken (a transfer to a person), each copy names its new owner. A case taken and then
    released (back in the queue) is posted anew to everyone who may take it. Returns how many
    edits and new posts were queued."""
    rows = messages.changed_posts(session, CHANNEL, limit)
    back: dict[int, Case] = {}
    edits = 0
    for post, case, assignee in rows:
        owner = assignee.name if assignee is not None else None
        owner_chat = assignee.telegram_user_id if assignee is not None else None
        was, now_at = post.status, _post_status(case.status)
        taken = _post_payload(case.number, case.assignee_id) if now_at == TAKEN else None
        messages.mark_post(post, now_at, taken)
        if case.status == CaseStatus.OPEN:
            back[case.id] = case  # the old copy keeps saying who had it
        elif was == POSTED or now_at == TAKEN:
            # Taken or done since it was posted, or taken and handed to someone else; a taken
            # post of a case now done keeps the line it has.
            chat, _, message = (post.provider_id or "").removeprefix(POST_PREFIX).partition(":")
            own = str(owner_chat) == chat
            desk = Desk(catalogs, categories, language, ZoneInfo(timezone), CHANNEL)
            line = taken_line(desk, case.number, case.status, owner, own)
            _queue_edit(session, case, int(chat), int(message), f"{post.text}\n\n{line}")
            edits += 1
    reposts = sum(
        post_new_case(
            session,
            case,
            catalogs=catalogs,
            categories=categories,
            language=language,
            timezone=timezone,
            again=case.version,
        )
        for case in back.values()
    )
    if rows:
        log.info(
            "telegram_posts_kept_up", edits=edits, reposted=sorted(c.number for c in back.values())
        )
    return edits + reposts


def _post_status(status: CaseStatus) -> MessageStatus:
    if status == CaseStatus.OPEN:
        return POSTED
    return TAKEN if status == CaseStatus.CLAIMED else SETTLED


def _queue_edit(session: Session, case: Case, chat: int, message: int, text: str) -> None:
    """The post's new text, without its buttons; once per state of the case (its version)."""
    outbox.enqueue(
        session,
        channel=CHANNEL,
        address=str(chat),
        payload={"kind": EDIT_POST, "case": case.number, "message_id": message, "text": text},
        idempotency_key=f"{EDIT_POST}:{chat}:{message}:{case.version}",
        priority=case.priority,
    )


async def on_claim(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    hotline, query = hotline_of(context), update.callback_query
    if query is None or query.from_user is None:
        return
    number = (query.data or "").removeprefix(CLAIM)
    outcome = await hotline.talk.run(claim_from_telegram, hotline, update, number)
    notice, url = outcome.notice, None
    if outcome.details is not None:
        key = f"{provider_id(update)}:details"
        if not await send_privately(hotline, context.bot, query.from_user.id, outcome.details, key):
            # The bot may not write first to someone who never opened a chat with it: the
            # link opens that chat, and its Start sends the details (staff.on_start).
            notice = hotline.text("staff.claimed_open_chat", staff_lang(hotline), number=number)
            url = f"https://t.me/{context.bot.username}?start={DETAILS_START}{number}"
    await answer_quietly(update, notice, alert=not outcome.won or url is not None, url=url)
    text = getattr(query.message, "text", None)
    if outcome.line and text and not text.endswith(outcome.line):
        await edit_quietly(update, f"{text}\n\n{outcome.line}")
    if outcome.others:
        # In the background: the person who pressed is answered without waiting for these.
        context.application.create_task(_tell_others(context.bot, outcome.others), update=update)


async def _tell_others(bot: Bot, posts: tuple[tuple[Post, str], ...]) -> None:
    for post, line in posts:
        try:
            await bot.edit_message_text(
                f"{post.text}\n\n{line}", chat_id=post.chat_id, message_id=post.message_id
            )
        except TelegramError as exc:  # deleted, too old, already edited by their own tap
            log.info("telegram_post_not_updated", chat=post.chat_id, error=str(exc)[:200])


async def send_privately(hotline: Hotline, bot: Bot, user_id: int, text: str, key: str) -> bool:
    """Send ``text`` to the person's private chat with the bot (its id is their user id);
    False when Telegram refuses for good (they never started the bot, or blocked it). One not
    taken for a passing reason waits in the outbox under ``key``."""
    try:
        await bot.send_message(user_id, text)
        return True
    except (Forbidden, BadRequest) as exc:
        log.info("telegram_private_refused", error=str(exc)[:200])
        return False
    except TelegramError as exc:
        log.warning("telegram_send_queued", error=str(exc)[:200])
    payload = {"kind": "reply", "text": text, "language": staff_lang(hotline)}
    await hotline.talk.run(enqueue_reply, hotline, user_id, payload, key)
    return True


def _pressed(update: Update) -> tuple[int, int] | None:
    """(chat id, message id) of the post whose button was pressed."""
    message = update.callback_query.message if update.callback_query else None
    if message is None:
        return None
    return message.chat.id, message.message_id


def claim_from_telegram(hotline: Hotline, update: Update, number: str) -> ClaimOutcome:
    """Claim ``number`` for the staff member who pressed; one transaction with the record of
    the update, so a redelivered press claims nothing twice. Whoever comes second (by the
    version check, or finding it claimed) is told who took it; after a win every other copy of
    the post is updated to say so, and the winner gets the contact details (privately).

    A press in a group: the group's post says who took it (never "you"), and a press by
    someone whose Telegram account is not linked to a staff record is refused."""
    user = update.effective_user
    assert user is not None
    lang = staff_lang(hotline)
    in_group = not is_private(update)
    refused: Exception | None = None
    try:
        with hotline.sessions.begin() as session:
            staff = staff_by_telegram(session, user.id)
            if staff is None:
                return ClaimOutcome(False, hotline.text("staff.link_first", lang), "")
            first = first_delivery(session, update, "claim", text=f"{CLAIM}{number}")
            case = actions.get_case(session, number)
            if first:
                actions.claim(session, case, Actor.person(staff), categories=hotline.categories)
                log.info("telegram_claimed", case=number, staff=staff.id, in_group=in_group)
                return _won(hotline, session, case, staff, _pressed(update), in_group)
    except NotFound:
        return ClaimOutcome(False, hotline.desk("not_found", lang, number=number), "")
    except NotPermitted as exc:
        log.info("telegram_claim_refused", case=number, why=exc.why)
        return ClaimOutcome(False, hotline.desk("may_not_claim", lang, number=number), "")
    except (IllegalTransition, CaseConflict) as exc:
        refused = exc  # somebody was faster: see who, below
    with hotline.sessions.begin() as session:
        return _claim_state(hotline, session, user.id, number, lang, refused, in_group)


def _won(
    hotline: Hotline,
    session: Session,
    case: Case,
    staff: Staff,
    pressed: tuple[int, int] | None,
    in_group: bool,
) -> ClaimOutcome:
    lang, number = staff_lang(hotline), case.number
    mine = hotline.desk("claimed_by_you", lang, number=number)
    taken = hotline.desk("taken_by", lang, number=number, name=staff.name)
    others = tuple(
        (post, mine if post.chat_id == staff.telegram_user_id else taken)
        for post in _take_posts(session, case)
        if (post.chat_id, post.message_id) != pressed
    )
    details = case_details(hotline, session, case, staff)
    if in_group:  # the group reads who took it; the presser, that the details went privately
        notice = hotline.text("staff.claimed_see_private", lang, number=number)
        return ClaimOutcome(True, notice, taken, others, details)
    return ClaimOutcome(True, mine, mine, others, details)


def _claim_state(
    hotline: Hotline,
    session: Session,
    user_id: int,
    number: str,
    lang: str,
    refused: Exception | None,
    in_group: bool,
) -> ClaimOutcome:
    """What a press that claimed nothing (this time) should say: the case as it is now."""
    case = actions.get_case(session, number)
    assignee = case.assignee
    if case.status == CaseStatus.CLAIMED and assignee is not None:
        taken = hotline.desk("taken_by", lang, number=number, name=assignee.name)
        if assignee.telegram_user_id == user_id:
            mine = hotline.desk("claimed_by_you", lang, number=number)
            return ClaimOutcome(True, mine, taken if in_group else mine)
        log.info("telegram_claim_lost", case=number, error=type(refused).__name__)
        return ClaimOutcome(False, taken, taken)
    status = hotline.desk(f"status.{case.status.value}", lang)
    gone = hotline.desk("no_longer_open", lang, number=number, status=status)
    return ClaimOutcome(False, gone, gone)


# -- the contact details, for the claimer only -------------------------------------------------


def case_details(hotline: Hotline, session: Session, case: Case, staff: Staff) -> str:
    """Whom to contact for ``case``, for the person who claimed it (staff_desk.case_details)."""
    return staff_desk.case_details(desk_of(hotline), session, case, staff)


def desk_of(hotline: Hotline) -> Desk:
    return Desk.of(hotline.settings, hotline.catalogs, hotline.categories, CHANNEL)


async def on_message(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Anything else a volunteer or staff member writes (behind the staff filter): their help."""
    staff = staff_of(context, update)
    if staff is not None:
        await send_staff_help(hotline_of(context), context.bot, update, staff)


async def on_start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/start from a volunteer or staff member (behind the staff filter): their help, or, when
    they came by the link of a claim whose details could not reach them ("/start
    case_<number>"), those details."""
    hotline, bot, staff = hotline_of(context), context.bot, staff_of(context, update)
    if staff is None:
        return
    args = list(context.args or [])
    payload = args[0] if args else ""
    if not (payload.startswith(DETAILS_START) and is_private(update)):
        await send_staff_help(hotline, bot, update, staff)
        return
    number = payload.removeprefix(DETAILS_START)
    text = await hotline.talk.run(_details_again, hotline, update, number)
    user = update.effective_user
    if user is not None:
        await answer_staff(hotline, bot, user.id, update, "details", text)


def _details_again(hotline: Hotline, update: Update, number: str) -> str | None:
    """The details of ``number`` if the person who sent /start has it claimed."""
    user = update.effective_user
    assert user is not None
    lang = staff_lang(hotline)
    with hotline.sessions.begin() as session:
        staff = staff_by_telegram(session, user.id)
        if not first_delivery(session, update, "details", text=f"/start {DETAILS_START}{number}"):
            return None
        if staff is None:
            return hotline.desk("not_staff", lang)
        try:
            case = actions.get_case(session, number)
        except NotFound:
            return hotline.desk("not_found", lang, number=number)
        if case.assignee_id != staff.id or case.status != CaseStatus.CLAIMED:
            return hotline.text("staff.details_not_yours", lang, number=number)
        return case_details(hotline, session, case, staff)


# -- commands ----------------------------------------------------------------------------------


async def on_mine(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/mine: the cases the person has claimed and not yet resolved, most urgent first. Always
    in their private chat (the list quotes what was asked), even when asked in a group."""
    hotline, user = hotline_of(context), update.effective_user
    if user is None:
        return
    text = await hotline.talk.run(_mine_text, hotline, update)
    await answer_staff(hotline, context.bot, user.id, update, "mine", text)


def _mine_text(hotline: Hotline, update: Update) -> str | None:
    user = update.effective_user
    assert user is not None
    lang = staff_lang(hotline)
    with hotline.sessions.begin() as session:
        staff = staff_by_telegram(session, user.id)
        if not first_delivery(session, update, "mine", text="/mine"):
            return None
        if staff is None:
            return hotline.desk("not_staff", lang)
        return staff_desk.mine(desk_of(hotline), session, staff)


async def on_close(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/close NUMBER [note]: staff close a resolved case (storage.actions.close decides)."""
    hotline, chat = hotline_of(context), update.effective_chat
    if chat is None:
        return
    text = await hotline.talk.run(_close_text, hotline, update, list(context.args or []))
    await answer_staff(hotline, context.bot, chat.id, update, "close", text)


def _close_text(hotline: Hotline, update: Update, args: list[str]) -> str | None:
    user = update.effective_user
    assert user is not None
    lang = staff_lang(hotline)
    number = args[0] if args else ""
    note = " ".join(args[1:])
    desk = desk_of(hotline)
    try:
        with hotline.sessions.begin() as session:
            staff = staff_by_telegram(session, user.id)
            if not first_delivery(session, update, "close", text=" ".join(["/close", *args])):
                return None
            if staff is None:
                return hotline.desk("not_staff", lang)
            if not number:
                return hotline.text("staff.close_usage", lang)
            closed = staff_desk.close(desk, session, staff, number, note)
            log.info("telegram_closed", case=number, staff=staff.id)
            return closed
    except staff_desk.REFUSED as exc:
        log.info("telegram_close_refused", case=number, error=type(exc).__name__)
        return staff_desk.refusal(desk, exc, number, "close")
