"""What a person's WeChat message does, once `wire` has checked and read it.

- A text, a voice message with WeChat's Recognition, a menu button that means words: one engine
  turn (a follow-up question's bare 1, 2 or 3 answers it instead). The reply is queued in the
  turn's own transaction, due only after the webhook's budget (``wechat_reply_within_s``): when
  the turn is done in time the webhook takes it back from the outbox and answers with it in its
  own HTTP reply (free, and first); otherwise WeChat gets "success" and the worker sends it by
  the customer-service API. Either way once: the outbox row is the one record of it.
- A voice message without Recognition: a call-back case with the audio (bot/conversation/
  dialogue.py ``VOICE_NOTE``).
- Linking: "绑定", the menu's link button, or a bare phone number from an account not linked yet
  (and no question open) asks for a code by SMS (storage/identities.py); six digits while a
  code waits try it.
- Following: welcomed (by name when linked), asked to link when not. Unfollowing, pictures,
  locations: recorded; pictures and locations answered with a request to write or speak.

Every message and event is recorded once by its id (``MsgId``; events: OpenID and time), so
WeChat's three retries of a slow answer change nothing and get the same answer.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.channels.base import Conversations, split_body, typed_number
from bot.channels.wechat.sender import CHANNEL, FETCH_MEDIA, PASSIVE, record_outbound
from bot.channels.wechat.wire import Incoming, Kind
from bot.conversation.dialogue import VOICE_NOTE
from bot.conversation.engine import TurnResult
from bot.conversation.follow_up_answers import answer_message
from bot.conversation.messages import Hint, Inbound, Style, render
from bot.conversation.state import DialogueState
from config.i18n import Catalogs
from config.wechat import WeChatConfig
from storage import identities, messages
from storage.db import is_database_down, transaction
from storage.follow_ups import CHOICES
from storage.models import (
    ConversationState,
    Direction,
    Message,
    MessageStatus,
    OutboxItem,
    OutboxStatus,
)
from storage.outbox import enqueue, mark_sent
from storage.types import utcnow

log = structlog.get_logger(__name__)

MAX_TEXT = 600  # characters of one reply message (WeChat takes 2,048 bytes)
URGENT_PRIORITY, REPLY_PRIORITY = 1, 2
CODE = re.compile(r"\d{6}")
PHONE = re.compile(r"\+?[\d\s-]{11,16}")


@dataclass
class WeChatLine:
    """The channel's state in one app."""

    talk: Conversations
    config: WeChatConfig
    reply_within_s: float
    keep: Callable[[Incoming, str], None] | None = None  # into the spool (database down)

    @property
    def catalogs(self) -> Catalogs:
        return self.talk.deployment.catalogs


def reply_key(provider_id: str, part: int) -> str:
    return f"reply:{CHANNEL}:{provider_id}:{part}"


async def answer(
    line: WeChatLine, incoming: Incoming, arrived: float, *, waiting: bool = True
) -> str | None:
    """Handle ``incoming``; the text of the webhook's own (passive) reply, or None for
    "success" (nothing to say, or the reply goes by the worker). ``arrived``: the event
    loop's time when the request came. ``waiting``: False for a message the spool kept (nobody
    waits for the HTTP reply: a turn's reply goes by the worker at once)."""
    talk = line.talk
    if incoming.kind in (Kind.SUBSCRIBE, Kind.UNSUBSCRIBE, Kind.OTHER):
        return await talk.run(_record_event, line, incoming)
    text = incoming.text.strip()
    if incoming.kind == Kind.CLICK:
        button = line.config.click(incoming.key)
        if button is None:
            log.info("wechat_unknown_menu_key", key=incoming.key)
            return await talk.run(_record_event, line, incoming)
        if button.link:
            return await talk.run(_link_prompt, line, incoming)
        text = button.means
    elif incoming.kind == Kind.TEXT:
        linking = await talk.run(_linking, line, incoming, text)
        if linking is not None:
            return linking
    metadata: dict[str, Any] = {}
    if incoming.kind == Kind.VOICE:
        audio = {"channel": CHANNEL, "media_id": incoming.media_id, "format": incoming.media_format}
        metadata["audio"] = audio
        if not text:
            metadata["event"] = VOICE_NOTE
    typed = typed_number(text)
    inbound = Inbound(
        CHANNEL,
        incoming.openid,
        incoming.provider_id,
        incoming.received_at,
        text=typed,
        metadata=metadata,
    )
    if typed in CHOICES and incoming.kind == Kind.TEXT:
        idle = timedelta(minutes=talk.deployment.dialogue.idle_minutes)
        key = reply_key(incoming.provider_id, 0)
        if await talk.run(answer_message, talk.db, inbound, key, REPLY_PRIORITY, idle=idle):
            return await talk.run(_take_passive, talk, incoming)
    held_until = utcnow() + timedelta(seconds=line.reply_within_s + 1) if waiting else None

    def queue_reply(session: Session, result: TurnResult) -> None:
        """In the turn's transaction, due only after the webhook's budget; and the fetching of
        a voice note's audio onto the case it filed."""
        if metadata.get("event") == VOICE_NOTE and result.cases:
            enqueue(
                session,
                channel=CHANNEL,
                address=incoming.openid,
                payload={"kind": FETCH_MEDIA, "case": result.cases[0].number, **metadata["audio"]},
                idempotency_key=f"{FETCH_MEDIA}:{incoming.media_id}",
                priority=REPLY_PRIORITY,
            )
        if not result.replies:
            return
        language = result.replies[-1].language
        text = "\n".join(render(r, Style.TEXT, line.catalogs) for r in result.replies)
        priority = URGENT_PRIORITY if Hint.URGENT in result.hints else REPLY_PRIORITY
        for n, part in enumerate(split_body(text, MAX_TEXT)):
            enqueue(
                session,
                channel=CHANNEL,
                address=incoming.openid,
                payload={"kind": "reply", "text": part, "language": language},
                idempotency_key=reply_key(incoming.provider_id, n),
                priority=priority,
                not_before=held_until if n == 0 else None,
            )

    if not waiting:
        await talk.turn(inbound, then=queue_reply)
        return None
    turn = asyncio.ensure_future(talk.turn(inbound, then=queue_reply))
    left = line.reply_within_s - (asyncio.get_running_loop().time() - arrived)
    try:
        await asyncio.wait_for(asyncio.shield(turn), timeout=max(0.0, left))
    except TimeoutError:
        turn.add_done_callback(lambda done: _after_success(line, incoming, done))
        log.info("wechat_turn_slow", provider_id=incoming.provider_id)
        return None
    return await talk.run(_take_passive, talk, incoming)


def _after_success(line: WeChatLine, incoming: Incoming, turn: asyncio.Future[Any]) -> None:
    """A slow turn that failed after WeChat was told "success" (so it will not ask again):
    kept in the spool when the database was the cause, to run when it is back."""
    error = None if turn.cancelled() else turn.exception()
    if error is None:
        return
    if is_database_down(error) and line.keep is not None:
        line.keep(incoming, type(error).__name__)
        return
    log.error("wechat_turn_failed_after_success", error=repr(error)[:300])


def queue_answer(talk: Conversations, incoming: Incoming, text: str) -> None:
    """``text`` to the person by the worker (a kept message's answer: nobody waits for it)."""
    with transaction(talk.db) as session:
        enqueue(
            session,
            channel=CHANNEL,
            address=incoming.openid,
            payload={"kind": "reply", "text": text, "language": talk.settings.default_language},
            idempotency_key=reply_key(incoming.provider_id, 0),
            priority=REPLY_PRIORITY,
        )


def _take_passive(talk: Conversations, incoming: Incoming) -> str | None:
    """The first part of the reply, taken from the outbox to go in the webhook's answer: still
    waiting (the worker has not sent it), or taken so before (WeChat asks again only when it
    did not get that answer). None when the worker has it."""
    key = reply_key(incoming.provider_id, 0)
    with transaction(talk.db) as session:
        item = session.scalars(
            select(OutboxItem).where(OutboxItem.idempotency_key == key).with_for_update()
        ).first()
        if item is None:
            return None
        text = str(item.payload.get("text") or "")
        if item.status == OutboxStatus.SENT:
            passive = session.scalar(
                select(Message.id).where(
                    Message.channel == CHANNEL, Message.provider_id == PASSIVE + key
                )
            )
            return text if passive is not None else None
        if item.status != OutboxStatus.PENDING:
            return None
        mark_sent(item)
        record_outbound(session, incoming.openid, PASSIVE + key, item.payload, case_id=item.case_id)
        return text


def _language(session: Session, openid: str, default: str) -> str:
    state = session.scalar(
        select(ConversationState.state).where(
            ConversationState.channel == CHANNEL, ConversationState.address == openid
        )
    )
    return DialogueState.load(state).lang if state else default


def _record_event(line: WeChatLine, incoming: Incoming) -> str | None:
    """A follow, an unfollow, a picture, a location: recorded once, with the answer, if any."""
    with transaction(line.talk.db) as session:
        earlier = _earlier(session, incoming)
        if earlier is not None:
            log.info("wechat_redelivery", provider_id=incoming.provider_id)
            return str(earlier.get("answer") or "") or None
        retiree = identities.linked_retiree(session, CHANNEL, incoming.openid)
        language = (
            retiree.preferred_language
            if retiree is not None
            else _language(session, incoming.openid, line.talk.settings.default_language)
        )
        catalogs = line.catalogs
        answer = ""
        if incoming.kind == Kind.SUBSCRIBE:
            if retiree is not None:
                answer = catalogs.text("wechat.welcome_linked", language, name=retiree.name)
            else:
                welcome = catalogs.text("wechat.welcome", language)
                answer = f"{welcome}\n{catalogs.text('wechat.link_prompt', language)}"
        elif incoming.kind == Kind.OTHER and incoming.raw_type in ("image", "location", "video"):
            answer = catalogs.text("wechat.unreadable", language)
        payload: dict[str, Any] = {"event": incoming.raw_type, "answer": answer, **incoming.extra}
        if incoming.key:
            payload["key"] = incoming.key
        status = MessageStatus.UNREADABLE if incoming.kind == Kind.OTHER else MessageStatus.EMPTY
        retiree_id = retiree.id if retiree is not None else None
        _record(session, incoming, incoming.text, payload, status, retiree_id)
        return answer or None


def _link_prompt(line: WeChatLine, incoming: Incoming) -> str:
    with transaction(line.talk.db) as session:
        earlier = _earlier(session, incoming)
        if earlier is not None:
            return str(earlier.get("answer") or "")
        language = _language(session, incoming.openid, line.talk.settings.default_language)
        answer = line.catalogs.text("wechat.link_prompt", language)
        return _record_linking(session, incoming, "link_prompt", answer)


def _linking(line: WeChatLine, incoming: Incoming, text: str) -> str | None:
    """The answer when ``text`` is part of linking the account; None when it is not (a turn
    takes it)."""
    openid = incoming.openid
    words = text.replace(" ", "")
    asked = next((w for w in line.config.link_words if words.lower().startswith(w)), None)
    with transaction(line.talk.db) as session:
        earlier = _earlier(session, incoming)
        if earlier is not None:  # a redelivery: linking's answer again, or the turn's
            event = str(earlier.get("event") or "")
            return str(earlier.get("answer") or "") if event.startswith("link:") else None
        language = _language(session, openid, line.talk.settings.default_language)
        text_of = line.catalogs.text
        if CODE.fullmatch(words) and identities.pending_code(session, CHANNEL, openid):
            checked = identities.try_code(
                session, CHANNEL, openid, words, by="sms_code", now=incoming.received_at
            )
            if checked.result == identities.CodeResult.LINKED:
                assert checked.retiree is not None
                log.info("wechat_linked", retiree=checked.retiree.id)
                retiree = checked.retiree
                answer = text_of("wechat.linked", retiree.preferred_language, name=retiree.name)
            else:
                answer = text_of(f"wechat.code_{checked.result.value}", language)
            return _record_linking(session, incoming, "code", answer)
        if asked is None and not (PHONE.fullmatch(text) and _may_link_by_phone(session, openid)):
            return None
        phone = (words[len(asked) :] if asked is not None else words).lstrip(":：")
        sent = identities.start_link(session, CHANNEL, openid, phone, now=incoming.received_at)
        if sent is None:  # "绑定" alone, or with no phone number
            return _record_linking(
                session, incoming, "link_prompt", text_of("wechat.link_prompt", language)
            )
        if sent.code is not None:
            enqueue(
                session,
                channel="sms",
                address=sent.phone,
                payload={
                    "kind": "link_code",
                    "text": text_of("wechat.code_sms", language, code=sent.code),
                    "language": language,
                    "code": sent.code,
                },
                idempotency_key=f"link_code:{CHANNEL}:{incoming.provider_id}",
                priority=URGENT_PRIORITY,
            )
        answer = text_of("wechat.code_sent", language, tail=sent.tail)
        return _record_linking(session, incoming, "phone", answer)


def _may_link_by_phone(session: Session, openid: str) -> bool:
    """A bare phone number links only an account not linked yet, with no question open (the
    registration asks for a phone number too)."""
    if identities.linked_retiree(session, CHANNEL, openid) is not None:
        return False
    state = session.scalar(
        select(ConversationState.state).where(
            ConversationState.channel == CHANNEL, ConversationState.address == openid
        )
    )
    return not state or DialogueState.load(state).last_ask is None


def _earlier(session: Session, incoming: Incoming) -> dict[str, Any] | None:
    """The payload of this message when it was recorded before (a redelivery: WeChat asks
    again only when it did not get the answer); None when it is new."""
    payload = session.scalar(
        select(Message.payload).where(
            Message.channel == CHANNEL,
            Message.provider_id == incoming.provider_id,
            Message.direction == Direction.INBOUND,
        )
    )
    return dict(payload) if payload is not None else None


def _record_linking(session: Session, incoming: Incoming, step: str, answer: str) -> str:
    """The message, recorded with its answer (its text withheld: a phone number, a code)."""
    payload = {"event": f"link:{step}", "answer": answer}
    _record(session, incoming, f"[{step}]", payload, MessageStatus.EMPTY)
    return answer


def _record(
    session: Session,
    incoming: Incoming,
    text: str,
    payload: dict[str, Any],
    status: MessageStatus,
    retiree_id: int | None = None,
) -> None:
    """A message no turn runs for, recorded once (with what it was answered: a redelivery
    gets the same)."""
    messages.record_once(
        session,
        channel=CHANNEL,
        direction=Direction.INBOUND,
        address=incoming.openid,
        provider_id=incoming.provider_id,
        text=text,
        payload=payload,
        status=status,
        retiree_id=retiree_id,
        now=incoming.received_at,
    )
