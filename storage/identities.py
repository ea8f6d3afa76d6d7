"""Linking a messaging account (a Telegram user id, a WeChat OpenID) to a retiree's profile: the
one writer of `MessagingIdentity` for the channels, and of the codes that prove a phone number.

Two ways to prove the account is the retiree's:

- Telegram checks the number itself: a contact the user shares of their own links at once
  (bot/channels/telegram/retirees.py calls `link`).
- Elsewhere (WeChat) the account names a phone number, `start_link` sends a six-digit code to it
  by SMS when a retiree has that number (the reply is the same when nobody has it, so nobody
  learns whose number is registered), and the code sent back (`try_code`) links the account.
  A code lasts `CODE_MINUTES`; `MAX_TRIES` wrong codes end it; only a hash is stored.

Each link, and each move of an account to another profile, is in the audit log.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import bindparam, delete, select
from sqlalchemy import update as sql_update
from sqlalchemy.orm import Session

from storage.audit import record_access
from storage.models import (
    ConversationState,
    LinkCode,
    MessagingIdentity,
    Retiree,
    RetireePhone,
    RetireeStatus,
)
from storage.phones import InvalidPhoneNumber, normalize_phone

CODE_MINUTES = 10
MAX_TRIES = 5
CODE_DIGITS = 6


def linked_retiree(session: Session, channel: str, address: str) -> Retiree | None:
    return session.scalars(
        select(Retiree)
        .join(MessagingIdentity)
        .where(MessagingIdentity.channel == channel, MessagingIdentity.address == address)
    ).first()


def retiree_by_phone(session: Session, number: str, *, inactive: bool = False) -> Retiree | None:
    """The active (or not yet confirmed) retiree with this E.164 number: the one look-up of a
    caller by phone, for every channel. Staff filing a case for a number (`hotline cases
    file`) find an ``inactive`` profile too."""
    query = select(Retiree).join(RetireePhone).where(RetireePhone.number == number)
    if not inactive:
        query = query.where(Retiree.status != RetireeStatus.INACTIVE)
    return session.scalars(query).first()


def link(
    session: Session, channel: str, address: str, retiree: Retiree, *, by: str, now: datetime
) -> bool:
    """Link the account to ``retiree`` (an account linked before moves to this profile), and
    tell its conversation who it is with. Audited. False when it was linked so already."""
    identity = session.scalars(
        select(MessagingIdentity).where(
            MessagingIdentity.channel == channel, MessagingIdentity.address == address
        )
    ).first()
    previous = identity.retiree_id if identity is not None else None
    if identity is None:
        session.add(
            MessagingIdentity(
                retiree_id=retiree.id, channel=channel, address=address, linked_at=now
            )
        )
    elif previous != retiree.id:
        identity.retiree_id = retiree.id
        identity.linked_at = now
    # The conversation remembers who it is with (the engine reads it before anything else).
    session.execute(
        _SET_CONVERSATION_RETIREE,
        {"b_channel": channel, "b_address": address, "b_retiree_id": retiree.id},
    )
    if previous == retiree.id:
        return False
    detail: dict[str, Any] = {"channel": channel, "by": by}
    if previous is not None:
        detail["moved_from_retiree"] = previous
    record_access(
        session,
        actor=None,
        actor_label="retiree",
        action="link_messaging",
        subject_type="retiree",
        subject_id=retiree.id,
        detail=detail,
    )
    return True


_SET_CONVERSATION_RETIREE = (
    sql_update(ConversationState.__table__)
    .where(
        ConversationState.__table__.c.channel == bindparam("b_channel"),
        ConversationState.__table__.c.address == bindparam("b_address"),
    )
    .values(retiree_id=bindparam("b_retiree_id"))
)


# -- codes -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CodeSent:
    """What `start_link` did: the code to send (None when no retiree has the number, or the
    number is not one), to which number, and the number's last four digits to say."""

    code: str | None
    phone: str
    tail: str


def start_link(
    session: Session, channel: str, address: str, phone_text: str, *, now: datetime
) -> CodeSent | None:
    """A new code for the account (replacing one pending), for the retiree with the number
    ``phone_text``. None when it is not a phone number at all."""
    try:
        number = normalize_phone(phone_text)
    except InvalidPhoneNumber:
        return None
    tail = number[-4:]
    retiree = retiree_by_phone(session, number)
    session.execute(
        delete(LinkCode).where(LinkCode.channel == channel, LinkCode.address == address)
    )
    if retiree is None:
        return CodeSent(None, number, tail)
    code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
    session.add(
        LinkCode(
            channel=channel,
            address=address,
            retiree_id=retiree.id,
            phone=number,
            code_hash=_hash(channel, address, code),
            tries=0,
            expires_at=now + timedelta(minutes=CODE_MINUTES),
            created_at=now,
        )
    )
    return CodeSent(code, number, tail)


class CodeResult(StrEnum):
    LINKED = "linked"
    WRONG = "wrong"  # tries left
    ENDED = "ended"  # expired, or too many wrong codes: ask for a new one
    NONE = "none"  # no code pending for this account


@dataclass(frozen=True)
class CodeChecked:
    result: CodeResult
    retiree: Retiree | None = None


def pending_code(session: Session, channel: str, address: str) -> LinkCode | None:
    return session.scalars(
        select(LinkCode).where(LinkCode.channel == channel, LinkCode.address == address)
    ).first()


def try_code(
    session: Session, channel: str, address: str, text: str, *, by: str, now: datetime
) -> CodeChecked:
    """The account sent ``text`` while a code may be pending: link on the right code."""
    pending = pending_code(session, channel, address)
    if pending is None:
        return CodeChecked(CodeResult.NONE)
    if pending.expires_at <= now:
        session.delete(pending)
        return CodeChecked(CodeResult.ENDED)
    if not hmac.compare_digest(pending.code_hash, _hash(channel, address, text.strip())):
        pending.tries += 1
        if pending.tries >= MAX_TRIES:
            session.delete(pending)
            return CodeChecked(CodeResult.ENDED)
        return CodeChecked(CodeResult.WRONG)
    retiree = session.get(Retiree, pending.retiree_id)
    session.delete(pending)
    if retiree is None or retiree.status == RetireeStatus.INACTIVE:
        return CodeChecked(CodeResult.ENDED)
    link(session, channel, address, retiree, by=by, now=now)
    return CodeChecked(CodeResult.LINKED, retiree)


def _hash(channel: str, address: str, code: str) -> str:
    return hashlib.sha256(f"{channel}\x00{address}\x00{code}".encode()).hexdigest()
