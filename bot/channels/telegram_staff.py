"""Volunteers and staff on Telegram (Staff.telegram_user_id): a new case is posted to everyone
whose role and units allow it, with a Claim button (through the outbox, so it is retried); the
first tap claims it and a later tap is told who took it; `/mine` lists their cases and staff
`/close NUMBER`. Every change goes through storage.actions, as everywhere else."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import structlog
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import select
from sqlalchemy.orm import Session
from telegram import Bot, Update
from telegram.error import TelegramError
from telegram.ext import ContextTypes

from bot.channels.telegram import (
    CHANNEL,
    Hotline,
    answer_quietly,
    deliver,
    edit_quietly,
    first_delivery,
    hotline_of,
    provider_id,
    staff_by_telegram,
)
from config.categories import CategoryConfig
from config.i18n import Catalogs
from config.settings import Settings
from storage import actions, outbox
from storage.db import dialect_insert
from storage.errors import CaseConflict, IllegalTransition, NotFound, NotPermitted
from storage.models import Case, CaseStatus, Direction, Message, OutboxItem, Role, Staff
from storage.permissions import Actor, may_see_case
from storage.types import utcnow

log = structlog.get_logger(__name__)

CLAIM = "claim:"  # callback_data "claim:2026-000123" (18 bytes; Telegram allows 64)
NEW_CASE = "new_case"  # the outbox payload's kind
MINE_LIMIT = 30


# -- posting a new case ------------------------------------------------------------------------


def post_new_case(
    session: Session,
    case: Case,
    *,
    catalogs: Catalogs,
    categories: CategoryConfig,
    language: str,
    timezone: str,
) -> int:
    """Queue a post of ``case`` with a Claim button to every active volunteer and staff member
    with a Telegram account who may see it (their role, units and the case's category), in the
    caller's transaction. The outbox payload is {"kind": "new_case", "case", "text",
    "language", "choices": [["claim:<number>", "<label>"]]}; its key makes a second call for the
    same case queue nothing. Returns how many posts were queued."""
    text = new_case_text(case, catalogs, categories, language, ZoneInfo(timezone))
    choices = [[f"{CLAIM}{case.number}", catalogs.text("telegram.staff.claim_button", language)]]
    people = session.scalars(
        select(Staff)
        .where(Staff.telegram_user_id.is_not(None), Staff.active.is_(True))
        .order_by(Staff.id)
    ).all()
    queued = 0
    for staff in people:
        if may_see_case(session, staff, case, categories) is not None:
            continue
        address = str(staff.telegram_user_id)
        outbox.enqueue(
            session,
            channel=CHANNEL,
            address=address,
            payload={
                "kind": NEW_CASE,
                "case": case.number,
                "text": text,
                "language": language,
                "choices": choices,
            },
            idempotency_key=f"{case.number}:{NEW_CASE}:{CHANNEL}:{address}",
            priority=case.priority,
            case_id=case.id,
        )
        queued += 1
    log.info("telegram_case_posted", case=case.number, to=queued)
    return queued


def announce_new_cases(
    session: Session,
    cases: Iterable[Case],
    *,
    settings: Settings,
    catalogs: Catalogs,
    categories: CategoryConfig,
) -> int:
    """The hook for code that files cases (the engine's turn, closing a conversation half-way):
    post each new case to those who may take it, in the transaction that filed it. Nothing when
    Telegram is off (no sender would ever send the posts)."""
    if not settings.telegram_enabled:
        return 0
    return sum(
        post_new_case(
            session,
            case,
            catalogs=catalogs,
            categories=categories,
            language=settings.default_language,
            timezone=settings.timezone,
        )
        for case in cases
    )


def new_case_text(
    case: Case, catalogs: Catalogs, categories: CategoryConfig, lang: str, tz: ZoneInfo
) -> str:
    def t(key: str, **params: object) -> str:
        return catalogs.text(f"telegram.staff.{key}", lang, **params)

    lines = [
        t(
            "new_case",
            number=case.number,
            category=categories.get(case.category).name.get(lang),
            unit=case.unit.name(lang),
            priority=t(f"priority.{case.priority}"),
        )
    ]
    if case.summary:
        lines.append(t("summary", summary=case.summary))
    if case.claim_deadline is not None:
        lines.append(t("claim_by", when=_local(case.claim_deadline, tz)))
    return "\n".join(lines)


def _local(moment: datetime, tz: ZoneInfo) -> str:
    return moment.astimezone(tz).strftime("%m-%d %H:%M")


# -- help --------------------------------------------------------------------------------------


def staff_lang(hotline: Hotline) -> str:
    """Texts for staff are in the deployment's language (Staff has no language of its own)."""
    return hotline.settings.default_language


async def send_staff_help(hotline: Hotline, bot: Bot, update: Update, staff: Staff) -> None:
    chat = update.effective_chat
    if chat is None:
        return
    lang = staff_lang(hotline)
    key = "help_staff" if staff.role != Role.VOLUNTEER else "help_volunteer"
    await deliver(
        hotline,
        bot,
        chat.id,
        hotline.text(f"staff.{key}", lang, name=staff.name),
        language=lang,
        key=f"{provider_id(update)}:help",
    )


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
    others: tuple[Post, ...] = ()  # after a win: everyone else's post of the case
    others_line: str = ""  # "taken by": added to those


POST_PREFIX = "tgmsg:"  # provider_id of a recorded post: "tgmsg:<chat_id>:<message_id>"


def record_sent(session: Session, item: OutboxItem, sent_as: str) -> None:
    """Remember where a new-case post went, so that once somebody claims the case everyone
    else's copy says who took it (and loses its button). For the Telegram sender's
    ``after_sent`` hook; ``sent_as`` is its outcome's provider_id, "<chat_id>:<message_id>"."""
    if item.payload.get("kind") != NEW_CASE or item.case_id is None:
        return
    chat, _, message = sent_as.partition(":")
    if not (chat.lstrip("-").isdigit() and message.isdigit()):
        return
    session.execute(
        dialect_insert(session)(Message.__table__)
        .values(
            channel=CHANNEL,
            direction=Direction.OUTBOUND.value,
            address=item.address,
            provider_id=f"{POST_PREFIX}{chat}:{message}",
            text=str(item.payload.get("text", "")),
            payload={"kind": NEW_CASE, "case": item.payload.get("case")},
            status="sent",
            case_id=item.case_id,
            created_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["channel", "provider_id"])
    )


def _posts_of(session: Session, case: Case) -> list[Post]:
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


async def on_claim(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    hotline, query = hotline_of(context), update.callback_query
    if query is None or query.from_user is None:
        return
    number = (query.data or "").removeprefix(CLAIM)
    outcome = await run_in_threadpool(claim_from_telegram, hotline, update, number)
    await answer_quietly(update, outcome.notice, alert=not outcome.won)
    text = getattr(query.message, "text", None)
    if outcome.line and text and not text.endswith(outcome.line):
        await edit_quietly(update, f"{text}\n\n{outcome.line}")
    if outcome.others:
        # In the background: the person who pressed is answered without waiting for these.
        context.application.create_task(
            _tell_others(context.bot, outcome.others, outcome.others_line), update=update
        )


async def _tell_others(bot: Bot, posts: tuple[Post, ...], line: str) -> None:
    for post in posts:
        try:
            await bot.edit_message_text(
                f"{post.text}\n\n{line}", chat_id=post.chat_id, message_id=post.message_id
            )
        except TelegramError as exc:  # deleted, too old, already edited by their own tap
            log.info("telegram_post_not_updated", chat=post.chat_id, error=str(exc)[:200])


def claim_from_telegram(hotline: Hotline, update: Update, number: str) -> ClaimOutcome:
    """Claim ``number`` for the staff member who pressed; one transaction with the record of
    the update, so a redelivered press claims nothing twice. Whoever comes second (by the
    version check, or finding it claimed) is told who took it; after a win everyone else's post
    of the case is updated to say so."""
    user = update.effective_user
    assert user is not None
    lang = staff_lang(hotline)
    refused: Exception | None = None
    try:
        with hotline.sessions.begin() as session:
            staff = staff_by_telegram(session, user.id)
            if staff is None:
                return ClaimOutcome(False, hotline.text("staff.not_staff", lang), "")
            first = first_delivery(session, update, "claim", text=f"{CLAIM}{number}")
            case = actions.get_case(session, number)
            if first:
                actions.claim(session, case, Actor.person(staff), categories=hotline.categories)
                log.info("telegram_claimed", case=number, staff=staff.id)
                mine = hotline.text("staff.claimed_by_you", lang, number=number)
                others = tuple(p for p in _posts_of(session, case) if p.chat_id != user.id)
                taken = hotline.text("staff.taken_by", lang, number=number, name=staff.name)
                return ClaimOutcome(True, mine, mine, others, taken)
    except NotFound:
        return ClaimOutcome(False, hotline.text("staff.not_found", lang, number=number), "")
    except NotPermitted as exc:
        log.info("telegram_claim_refused", case=number, why=exc.why)
        return ClaimOutcome(False, hotline.text("staff.may_not_claim", lang, number=number), "")
    except (IllegalTransition, CaseConflict) as exc:
        refused = exc  # somebody was faster: see who, below
    with hotline.sessions.begin() as session:
        return _claim_state(hotline, session, user.id, number, lang, refused)


def _claim_state(
    hotline: Hotline,
    session: Session,
    user_id: int,
    number: str,
    lang: str,
    refused: Exception | None,
) -> ClaimOutcome:
    """What a press that claimed nothing (this time) should say: the case as it is now."""
    case = actions.get_case(session, number)
    assignee = case.assignee
    if case.status == CaseStatus.CLAIMED and assignee is not None:
        if assignee.telegram_user_id == user_id:
            mine = hotline.text("staff.claimed_by_you", lang, number=number)
            return ClaimOutcome(True, mine, mine)
        taken = hotline.text("staff.taken_by", lang, number=number, name=assignee.name)
        log.info("telegram_claim_lost", case=number, error=type(refused).__name__)
        return ClaimOutcome(False, taken, taken)
    status = hotline.text(f"status.{case.status.value}", lang)
    gone = hotline.text("staff.no_longer_open", lang, number=number, status=status)
    return ClaimOutcome(False, gone, gone)


# -- commands ----------------------------------------------------------------------------------


async def on_mine(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/mine: the cases the person has claimed and not yet resolved, most urgent first."""
    hotline, chat = hotline_of(context), update.effective_chat
    if chat is None:
        return
    text = await run_in_threadpool(_mine_text, hotline, update)
    if text is not None:
        await deliver(
            hotline,
            context.bot,
            chat.id,
            text,
            language=staff_lang(hotline),
            key=f"{provider_id(update)}:mine",
        )


def _mine_text(hotline: Hotline, update: Update) -> str | None:
    user = update.effective_user
    assert user is not None
    lang = staff_lang(hotline)
    with hotline.sessions.begin() as session:
        staff = staff_by_telegram(session, user.id)
        if not first_delivery(session, update, "mine", text="/mine"):
            return None
        if staff is None:
            return hotline.text("staff.not_staff", lang)
        cases = session.scalars(
            select(Case)
            .where(Case.assignee_id == staff.id, Case.status == CaseStatus.CLAIMED)
            .order_by(Case.priority, Case.resolve_deadline.asc().nulls_last(), Case.id)
            .limit(MINE_LIMIT)
        ).all()
        if not cases:
            return hotline.text("staff.mine_none", lang)
        lines = [hotline.text("staff.mine_header", lang, count=len(cases))]
        for case in cases:
            lines.append(
                hotline.text(
                    "staff.mine_line",
                    lang,
                    number=case.number,
                    category=hotline.categories.get(case.category).name.get(lang),
                    priority=hotline.text(f"staff.priority.{case.priority}", lang),
                    summary=case.summary or "-",
                )
            )
        return "\n".join(lines)


async def on_close(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/close NUMBER [note]: staff close a resolved case (storage.actions.close decides)."""
    hotline, chat = hotline_of(context), update.effective_chat
    if chat is None:
        return
    text = await run_in_threadpool(_close_text, hotline, update, list(context.args or []))
    if text is not None:
        await deliver(
            hotline,
            context.bot,
            chat.id,
            text,
            language=staff_lang(hotline),
            key=f"{provider_id(update)}:close",
        )


def _close_text(hotline: Hotline, update: Update, args: list[str]) -> str | None:
    user = update.effective_user
    assert user is not None
    lang = staff_lang(hotline)
    number = args[0] if args else ""
    note = " ".join(args[1:])
    try:
        with hotline.sessions.begin() as session:
            staff = staff_by_telegram(session, user.id)
            if not first_delivery(session, update, "close", text=" ".join(["/close", *args])):
                return None
            if staff is None:
                return hotline.text("staff.not_staff", lang)
            if not number:
                return hotline.text("staff.close_usage", lang)
            if staff.role == Role.VOLUNTEER:
                return hotline.text("staff.close_only_staff", lang)
            case = actions.get_case(session, number)
            actions.close(
                session, case, Actor.person(staff), note=note, categories=hotline.categories
            )
            log.info("telegram_closed", case=number, staff=staff.id)
            return hotline.text("staff.closed", lang, number=number)
    except NotFound:
        return hotline.text("staff.not_found", lang, number=number)
    except IllegalTransition as exc:
        status = hotline.text(f"status.{exc.status}", lang)
        return hotline.text("staff.close_not_resolved", lang, number=number, status=status)
    except NotPermitted as exc:
        log.info("telegram_close_refused", case=number, why=exc.why)
        return hotline.text("staff.close_not_permitted", lang, number=number)
    except CaseConflict:
        return hotline.text("staff.conflict", lang, number=number)
