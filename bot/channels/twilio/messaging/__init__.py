"""SMS and WhatsApp through Twilio Messaging.

``POST /twilio/messaging`` takes an inbound SMS or WhatsApp message (``From`` is ``+86...`` or
``whatsapp:+86...``; the channel is "sms" or "whatsapp" accordingly and the address is ``From`` as
given). Each message is one engine turn, with ``MessageSid`` as its provider id, so a redelivered
message gets the same replies and changes nothing. Twilio is answered with an empty ``<Response/>``:
the replies go out through the outbox and the REST API (bot/runtime/worker.py), which retries them.

The replies of one turn become one text (rendered with `Style.TEXT`: numbered choices and "请回复
数字选择"), enqueued as one outbox item (more only past Twilio's 1,600 characters): separate
SMS can arrive out of order, and each costs at least a segment. Its idempotency key is
``reply:<channel>:<MessageSid>:<part>``, so a redelivery enqueues nothing twice.

The reply's outbox item is written in the turn's own transaction (the engine's ``then`` hook):
the turn and its reply commit together or not at all, and it costs no second transaction. If
the database cannot be reached, the message is kept in the spool and Twilio answered as usual;
the turn runs when the database is back (bot/channels/twilio/outage.py). If the process dies
before the commit, nothing is recorded and Twilio gets no answer; its redelivery of that
``MessageSid`` runs the turn afresh. A redelivery
after the commit finds the turn done and gets the same replies, whose outbox item is already
there (the idempotency key), so no order of failures and retries queues a reply twice. How
Twilio retries is set by connection overrides in the webhook URL; give Twilio e.g.
``https://hotline.example.org/twilio/messaging#rc=3&rp=ct,rt,5xx`` so that it retries on
connection failures, timeouts and 5xx (the fragment is not sent to us).

A message of just "1", "2" or "3" (typed any way ``typed_number`` reads) from someone a
follow-up question (回访) waits on answers it instead of running a turn
(bot/conversation/follow_up_answers.py, ``answer_message``): recorded once per ``MessageSid`` with
the status "follow_up", the thank-you (or "it is open again") queued in the same transaction
under the same reply key, so a redelivery answers nothing twice.

Messages the bot cannot read (a picture, a voice note or a location with no text) run no turn:
a silent turn would ask "are you still there?" and after a few file a call-back. The message is
recorded (its media kept in the payload, for staff) and answered with a request to write or
call; with text, the text is answered and the reply says the media was not seen. An SMS that
opts out (Twilio's ``OptOutType=STOP``: STOP, UNSUBSCRIBE, ...) is recorded and not answered,
as Twilio would refuse the reply.

WhatsApp is on only when HOTLINE_TWILIO_WHATSAPP_FROM is set. Without it an inbound WhatsApp
message is answered 200 and ignored (nothing stored, a warning logged): a turn would file requests
for someone who could not be answered, and leave their conversation waiting on questions they
never saw.

``POST /twilio/messaging/status`` takes delivery status callbacks. The outbound record is the
`Message` (direction outbound) whose provider id is the Twilio message sid: the worker writes it
with `record_sent` when Twilio accepts a message, and `record_status` moves its status forward
only (queued → sent → delivered → read; failed and undelivered end it), so a repeated or late
callback changes nothing. A callback that arrives before the worker's row is committed creates
the row, which `record_sent` then fills in.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from bot.channels.base import (
    Conversations,
    Mounted,
    OutboxSenders,
    conversations,
    split_body,
    typed_number,
)
from bot.channels.twilio import ACCOUNT_SETTINGS, why_off
from bot.channels.twilio.messaging.delivery import (
    FAILED_STATUSES,
    SMS,
    WHATSAPP,
    channel_of,
    record_status,
)
from bot.channels.twilio.outage import (
    WEBHOOK,
    TwilioRoute,
    WhenDown,
    first_received,
    when_down,
)
from bot.channels.twilio.signature import verified_form
from bot.conversation.deployment import Deployment
from bot.conversation.engine import TurnResult
from bot.conversation.follow_up_answers import answer_message
from bot.conversation.messages import Hint, Inbound, Reply, Style, record_inbound, render
from bot.conversation.state import DialogueState
from config.i18n import Catalogs
from config.settings import Settings
from storage.db import transaction
from storage.follow_ups import CHOICES
from storage.models import ConversationState, MessageStatus
from storage.outbox import enqueue
from storage.types import utcnow

log = structlog.get_logger(__name__)

NAME = "twilio_messaging"
INBOUND_PATH = "/twilio/messaging"
STATUS_PATH = "/twilio/messaging/status"

MAX_BODY = 1600  # Twilio refuses a longer message body (SMS and WhatsApp)
URGENT_PRIORITY = 1
REPLY_PRIORITY = 2

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'


def senders(settings: Settings) -> OutboxSenders:
    """SMS always with the Twilio account; WhatsApp once it has a sender number too."""
    from bot.channels.twilio.messaging.sender import MessagingSender

    if not settings.twilio_enabled:
        return OutboxSenders(
            off={
                SMS: ACCOUNT_SETTINGS,
                WHATSAPP: "HOTLINE_TWILIO_WHATSAPP_FROM (and the Twilio account)",
            }
        )
    sender = MessagingSender(settings)
    if not settings.twilio_whatsapp_from:
        return OutboxSenders(on={SMS: sender}, off={WHATSAPP: "HOTLINE_TWILIO_WHATSAPP_FROM"})
    return OutboxSenders(on={SMS: sender, WHATSAPP: sender})


def mount(app: FastAPI, deployment: Deployment) -> Mounted:
    settings = deployment.settings
    why = why_off(settings)
    if why:
        return Mounted(NAME, enabled=False, why=why)
    whatsapp = bool(settings.twilio_whatsapp_from)
    if not whatsapp:
        log.info("whatsapp_off", why="no HOTLINE_TWILIO_WHATSAPP_FROM")

    router = APIRouter(tags=["twilio"], route_class=TwilioRoute)

    @router.post(INBOUND_PATH)
    @when_down(WhenDown(WEBHOOK, lambda _: _twiml(), in_order=True))
    async def inbound_message(
        request: Request,
        form: Annotated[dict[str, Any], Depends(verified_form)],
        talk: Annotated[Conversations, Depends(conversations)],
    ) -> Response:
        """An SMS or WhatsApp message from a person: one turn; replies go out via the outbox.
        One kept while the database was down is replayed with the time it came."""
        sender = str(form.get("From", "")).strip()
        sid = str(form.get("MessageSid") or form.get("SmsMessageSid") or "").strip()
        if not sender or not sid:
            raise HTTPException(400, detail="From and MessageSid are required")
        channel = channel_of(sender)
        if channel == WHATSAPP and not whatsapp:
            log.warning("whatsapp_message_ignored", why="no HOTLINE_TWILIO_WHATSAPP_FROM", sid=sid)
            return _twiml()
        received = first_received(request) or utcnow()
        await _handle(talk, channel, sender, sid, form, received)
        return _twiml()

    @router.post(STATUS_PATH, status_code=204)
    @when_down(WhenDown(WEBHOOK, lambda _: Response(status_code=204), in_order=True))
    async def message_status(
        form: Annotated[dict[str, Any], Depends(verified_form)],
        talk: Annotated[Conversations, Depends(conversations)],
    ) -> Response:
        """Twilio's delivery status of a message we sent: updates its outbound record."""
        sid = str(form.get("MessageSid") or form.get("SmsSid") or "").strip()
        status = str(form.get("MessageStatus") or form.get("SmsStatus") or "").strip().lower()
        if not sid or not status:
            raise HTTPException(400, detail="MessageSid and MessageStatus are required")
        error_code = str(form.get("ErrorCode") or "").strip()
        to = str(form.get("To") or "").strip()

        def record() -> bool:
            with transaction(talk.db) as session:
                return record_status(
                    session, provider_id=sid, status=status, error_code=error_code, to=to
                )

        changed = await talk.run(record)
        if changed and status in FAILED_STATUSES:
            log.warning("message_not_delivered", sid=sid, status=status, error_code=error_code)
        return Response(status_code=204)

    app.include_router(router)
    return Mounted(NAME, enabled=True)


def _twiml() -> Response:
    return Response(EMPTY_TWIML, media_type="text/xml")


# -- inbound -----------------------------------------------------------------------------------


async def _handle(
    talk: Conversations,
    channel: str,
    sender: str,
    sid: str,
    form: dict[str, Any],
    received: datetime,
) -> None:
    body = str(form.get("Body") or "")
    media = _media(form)
    metadata: dict[str, Any] = {"media": media} if media else {}
    if form.get("Latitude") and form.get("Longitude"):
        metadata["location"] = {
            key.lower(): str(form[key])
            for key in ("Latitude", "Longitude", "Address", "Label")
            if form.get(key)
        }
    opted_out = str(form.get("OptOutType") or "").upper() == "STOP"
    typed = typed_number(body)
    if typed in CHOICES and not metadata and not opted_out:
        answer = Inbound(channel, sender, sid, received, text=typed)
        key = reply_key(channel, sid, 0)
        idle = timedelta(minutes=talk.deployment.dialogue.idle_minutes)
        if await talk.run(answer_message, talk.db, answer, key, REPLY_PRIORITY, idle=idle):
            return
    engine = await talk.engine()
    catalogs = engine.deployment.catalogs
    default_language = talk.settings.default_language

    if opted_out:
        log.info("sms_opted_out", channel=channel, sid=sid)
        await talk.run(
            _record_without_turn,
            talk.db,
            Inbound(channel, sender, sid, received, text=body, metadata=metadata),
            status=MessageStatus.OPTED_OUT,
            text_key=None,
            catalogs=catalogs,
            default_language=default_language,
        )
        return
    if not body.strip():
        # A picture, a voice note, a location (or an empty SMS): nothing to understand.
        await talk.run(
            _record_without_turn,
            talk.db,
            Inbound(channel, sender, sid, received, metadata=metadata),
            status=MessageStatus.UNREADABLE if metadata else MessageStatus.EMPTY,
            text_key="twilio_messaging.unreadable" if metadata else None,
            catalogs=catalogs,
            default_language=default_language,
        )
        return

    inbound = Inbound(channel, sender, sid, received, text=typed, metadata=metadata)

    def queue_reply(session: Session, result: TurnResult) -> None:
        """In the turn's transaction: the reply commits with the turn, or neither does."""
        text, language = reply_text(result, catalogs, media_ignored=bool(metadata))
        if text:
            priority = URGENT_PRIORITY if Hint.URGENT in result.hints else REPLY_PRIORITY
            _enqueue_reply(session, inbound, text, language, priority)

    await talk.turn(inbound, then=queue_reply)


def _media(form: dict[str, Any]) -> list[dict[str, str]]:
    try:
        count = int(str(form.get("NumMedia") or "0"))
    except ValueError:
        count = 0
    media = []
    for n in range(max(0, min(count, 10))):  # Twilio sends at most 10
        url = str(form.get(f"MediaUrl{n}") or "")
        kind = str(form.get(f"MediaContentType{n}") or "")
        if url or kind:
            media.append({"url": url, "type": kind})
    return media


def reply_text(
    result: TurnResult, catalogs: Catalogs, *, media_ignored: bool = False
) -> tuple[str, str]:
    """What the person reads for one turn: the replies as one text, one line each (choices
    numbered), and its language."""
    if not result.replies:
        return "", ""
    language = result.replies[-1].language
    lines = [render(reply, Style.TEXT, catalogs) for reply in result.replies]
    if media_ignored:
        lines.append(catalogs.text("twilio_messaging.media_ignored", language))
    return "\n".join(lines), language


def reply_key(channel: str, sid: str, part: int) -> str:
    """The outbox idempotency key of part ``part`` of the reply to message ``sid``."""
    return f"reply:{channel}:{sid}:{part}"


def _enqueue_reply(
    session: Session,
    inbound: Inbound,
    text: str,
    language: str,
    priority: int,
) -> None:
    assert inbound.provider_id is not None
    for n, part in enumerate(split_body(text, MAX_BODY)):
        enqueue(
            session,
            channel=inbound.channel,
            address=inbound.address,
            payload={"kind": "reply", "text": part, "language": language},
            idempotency_key=reply_key(inbound.channel, inbound.provider_id, n),
            priority=priority,
        )


def _record_without_turn(
    db: Engine,
    inbound: Inbound,
    *,
    status: MessageStatus,
    text_key: str | None,
    catalogs: Catalogs,
    default_language: str,
) -> None:
    """Store a message no turn runs for (and enqueue the channel's own reply to it), once per
    MessageSid. Its payload has the engine's shape, so the engine too sees it as handled."""
    assert inbound.provider_id is not None
    with transaction(db) as session:
        row = session.execute(
            select(ConversationState.state, ConversationState.retiree_id).where(
                ConversationState.channel == inbound.channel,
                ConversationState.address == inbound.address,
            )
        ).first()
        language = default_language
        if row is not None and row.state:
            language = DialogueState.load(row.state).lang
        replies = []
        if text_key is not None:
            replies.append(Reply(catalogs.text(text_key, language), language=language))
        payload: dict[str, Any] = {
            "intent": None,
            "replies": [{"text": r.text, "language": r.language} for r in replies],
        }
        if inbound.metadata:
            payload["metadata"] = inbound.metadata
        added = record_inbound(
            session,
            inbound,
            payload=payload,
            status=status,
            retiree_id=row.retiree_id if row is not None else None,
        )
        if added is None:  # a redelivery: its reply (if any) was queued the first time
            return
        for n, reply in enumerate(replies):
            enqueue(
                session,
                channel=inbound.channel,
                address=inbound.address,
                payload={"kind": "reply", "text": reply.text, "language": reply.language},
                idempotency_key=reply_key(inbound.channel, inbound.provider_id, n),
                priority=REPLY_PRIORITY,
            )
