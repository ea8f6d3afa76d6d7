"""Cases posted to volunteers and staff on Telegram (Staff.telegram_user_id), with a Claim
button (staff.py takes the tap), through the outbox so that the posts are retried: a
new case to everyone whose role and units allow it, and to the group chat of its queue unit
(groups.py links it); a case moved to another unit's queue (escalated, transferred)
to those who could not see it before, its new unit's group among them.

A group has mixed members (and anyone can be added to it), so its post never carries personal
data, not even the summary (it may quote the person): number, kind, unit, priority, deadline.
Staff-only kinds (volunteer_eligible: false, e.g. complaints, bereavement) never go to a group.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.channels.staff_desk import local_time
from bot.channels.telegram.common import CHANNEL
from bot.conversation.deployment import Deployment
from config.categories import CategoryConfig
from config.i18n import Catalogs
from config.settings import Settings
from storage import outbox
from storage.models import Case, OutboxItem, Staff
from storage.permissions import may_see_case

log = structlog.get_logger(__name__)

CLAIM = "claim:"  # callback_data "claim:2026-000123" (18 bytes; Telegram allows 64)
NEW_CASE = "new_case"  # the outbox payload's kind


def post_new_case(
    session: Session,
    case: Case,
    *,
    catalogs: Catalogs,
    categories: CategoryConfig,
    language: str,
    timezone: str,
    moved: bool = False,
    again: int = 0,
) -> int:
    """Queue a post of ``case`` with a Claim button to every active volunteer and staff member
    with a Telegram account who may see it (their role, units and the case's category), and to
    the group chat of its unit if it has one and volunteers may take the case, in the caller's
    transaction. The outbox payload is {"kind": "new_case", "case", "text", "language",
    "choices": [["claim:<number>", "<label>"]]}. A chat gets one post of a case, ever (its key
    is the case's and the chat's): ``moved`` (the case came to its unit from another, escalated
    or transferred; the headline says so) reaches only those who could not see it before, its
    new unit's group say. ``again`` (its version, > 0): the case came back to the queue
    (released by whoever had it): it is posted anew, under a key of its own for each return, to
    everyone who may take it. Returns how many posts were queued (a case just filed was
    posted to nobody: no statement asks)."""
    tz = ZoneInfo(timezone)
    posted = _posted_to(session, case) if moved else set()
    choices = [[f"{CLAIM}{case.number}", catalogs.text("telegram.staff.claim_button", language)]]
    people = session.scalars(
        select(Staff)
        .where(Staff.telegram_user_id.is_not(None), Staff.active.is_(True))
        .order_by(Staff.id)
    ).all()
    chats = [
        str(staff.telegram_user_id)
        for staff in people
        if may_see_case(session, staff, case, categories) is None
    ]
    personal = post_text(
        case, catalogs, categories, language, tz, group=False, moved=moved, again=again
    )
    for chat in chats:
        if chat not in posted:
            _queue_post(session, case, chat, personal, language, choices, again)
    to = len(set(chats) - posted)
    group = group_chat_for(case, categories)
    to_group = group is not None and str(group) not in posted
    if to_group:
        text = post_text(
            case, catalogs, categories, language, tz, group=True, moved=moved, again=again
        )
        _queue_post(session, case, str(group), text, language, choices, again)
    log.info(
        "telegram_case_posted", case=case.number, to=to, group=to_group, moved=moved, again=again
    )
    return to + int(to_group)


def _posted_to(session: Session, case: Case) -> set[str]:
    """The chats ``case`` was posted to already."""
    posted = select(OutboxItem.address).where(
        OutboxItem.case_id == case.id,
        OutboxItem.channel == CHANNEL,
        OutboxItem.idempotency_key.startswith(f"{case.number}:{NEW_CASE}:", autoescape=True),
    )
    return set(session.scalars(posted))


def group_chat_for(case: Case, categories: CategoryConfig) -> int | None:
    """The group chat a new case goes to: its queue unit's only (a station's group does not
    get its communities' cases: their own groups do), and only a case volunteers may take,
    since anyone in the group sees it."""
    if not categories.get(case.category).volunteer_eligible:
        return None
    return case.unit.telegram_chat_id


def _queue_post(
    session: Session,
    case: Case,
    address: str,
    text: str,
    language: str,
    choices: list[list[str]],
    again: int = 0,
) -> None:
    key = f"{case.number}:{NEW_CASE}:{CHANNEL}:{address}"
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
        idempotency_key=f"{key}:again:{again}" if again else key,
        priority=case.priority,
        case_id=case.id,
    )


def announce_new_cases(
    session: Session,
    cases: Iterable[Case],
    *,
    settings: Settings,
    catalogs: Catalogs,
    categories: CategoryConfig,
    moved: bool = False,
) -> int:
    """The hook for code that files cases (the engine's turn, closing a conversation half-way):
    post each new case to those who may take it, in the transaction that filed it. With
    ``moved``, the hook for code that moves cases to another unit's queue (escalation, a
    transfer): each is posted to those who may take it now and could not before (its new
    unit's group chat, the volunteers of a community it was transferred to). Nothing when
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
            moved=moved,
        )
        for case in cases
    )


def post_text(
    case: Case,
    catalogs: Catalogs,
    categories: CategoryConfig,
    lang: str,
    tz: ZoneInfo,
    *,
    group: bool,
    moved: bool = False,
    again: int = 0,
) -> str:
    """A personal post: the headline, what was asked, the claim deadline. A group's post has
    no personal data at all (no name, phone, address or summary)."""
    headline = "released_case" if again else "moved_case" if moved else "new_case"
    lines = [_headline(case, catalogs, categories, lang, headline)]
    if case.summary and not group:
        lines.append(catalogs.text("staff_desk.summary", lang, summary=case.summary))
    lines.extend(_claim_by(case, catalogs, lang, tz))
    if group:
        lines.append(catalogs.text("telegram.group.claim_hint", lang))
    return "\n".join(lines)


def _headline(
    case: Case, catalogs: Catalogs, categories: CategoryConfig, lang: str, kind: str
) -> str:
    return catalogs.text(
        f"telegram.staff.{kind}",
        lang,
        number=case.number,
        category=categories.get(case.category).name.get(lang),
        unit=case.unit.name(lang),
        priority=catalogs.text(f"staff_desk.priority.{case.priority}", lang),
    )


def _claim_by(case: Case, catalogs: Catalogs, lang: str, tz: ZoneInfo) -> list[str]:
    if case.claim_deadline is None:
        return []
    return [catalogs.text("staff_desk.claim_by", lang, when=local_time(case.claim_deadline, tz))]


def new_case_announcer(
    deployment: Deployment, *, moved: bool = False
) -> Callable[[Session, Sequence[Case]], int]:
    """The engine's hook: each new case posted (through the outbox) to those who may take it.
    With ``moved``, the hook of escalation and transfers: each case that came to another
    unit's queue posted to those who may take it now."""

    def announce(session: Session, cases: Sequence[Case]) -> int:
        return announce_new_cases(
            session,
            cases,
            settings=deployment.settings,
            catalogs=deployment.catalogs,
            categories=deployment.categories,
            moved=moved,
        )

    return announce
