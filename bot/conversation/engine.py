"""The conversation engine: one inbound message in, the replies out, in one database transaction.

A turn: recognise a redelivered message by its provider id (and give the same replies again,
doing nothing twice); lock the person's conversation row, so two messages at once take turns;
find who is speaking; understand; let the dialogue and the handlers answer; save the state, the
case changes, the messages and the outbox items together. The state lives in the database, so
it survives restarts and any server can take the next turn.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

import structlog
from sqlalchemy import Engine as DbEngine
from sqlalchemy import and_, bindparam, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, aliased, sessionmaker

from bot.conversation import dialogue
from bot.conversation.deployment import Deployment
from bot.conversation.handling import CallbackFiler
from bot.conversation.messages import Choice, Hint, Inbound, Reply
from bot.conversation.state import DialogueState, Task
from bot.conversation.turn import (
    NO,
    PHONE_CHANNELS,
    YES,
    Heard,
    Turn,
    only_fillers,
    written_language,
)
from config.dialogue import DialogueConfig
from nlu.intents import FALLBACK
from nlu.parser import NluParser
from storage import family, identities, messages
from storage.db import dialect_insert
from storage.errors import CaseConflict
from storage.models import (
    Case,
    ConversationState,
    Direction,
    FamilyMember,
    Message,
    MessageStatus,
    Retiree,
)
from storage.phones import InvalidPhoneNumber, normalize_phone
from storage.types import utcnow

log = structlog.get_logger(__name__)

ATTEMPTS = 3  # a turn that lost a race (CaseConflict, deadlock) is run again
SILENT = "silent"  # a silent call's call-back reason (callback.reason.silent)


# Called in the transaction that filed cases (say, to post them to volunteers on Telegram).
FiledHook = Callable[[Session, Sequence[Case]], object]
# Called in the turn's own transaction with its result (a redelivery's too): a channel's writes
# that must commit with the turn or not at all (say, its reply's outbox item).
TurnHook = Callable[[Session, "TurnResult"], object]


@dataclass(frozen=True)
class FiledCase:
    number: str
    category: str
    priority: int
    unit_code: str
    unit_name: str


@dataclass
class TurnResult:
    replies: list[Reply]
    cases: list[FiledCase] = field(default_factory=list)
    redelivered: bool = False
    retiree_id: int | None = None

    @property
    def hints(self) -> frozenset[Hint]:
        return frozenset(h for reply in self.replies for h in reply.hints)

    @property
    def ended(self) -> bool:
        return Hint.END in self.hints


# A turn makes many short-lived objects (ORM rows, parse results, request scopes) that reference
# counting frees anyway; at Python's default of 700 the collector ran during most turns. 50,000
# cut the server's CPU per webhook by about 14% (benchmarks/webhook_bench.py), for a few MB more
# at most.
GC_YOUNG_THRESHOLD = 50_000


def freeze_startup_objects() -> None:
    """Call once a server has loaded everything (the NLU model, the configuration): the garbage
    collector then leaves those objects alone, instead of walking the hundreds of thousands of
    them at each full collection (a pause of tens of milliseconds in some turn); and it runs
    less often (`GC_YOUNG_THRESHOLD`)."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


class ConversationEngine:
    """Runs turns against a database with an NLU parser; safe to share between threads."""

    def __init__(
        self,
        db: DbEngine,
        parser: NluParser,
        deployment: Deployment,
        on_filed: Sequence[FiledHook] = (),
    ) -> None:
        """``deployment``: bot/runtime/configure.py's ``load_deployment``."""
        self.db = db
        self.parser = parser
        self.deployment = deployment
        self.on_filed = list(on_filed)
        self._sessions = sessionmaker(db, expire_on_commit=False)

    # -- one turn ------------------------------------------------------------------------------

    def handle(self, inbound: Inbound, *, then: TurnHook | None = None) -> TurnResult:
        """Answer one message. Understanding runs before the transaction, so no lock is held
        while the NLU works. ``then`` runs in the turn's transaction, before it commits."""
        parse = None
        words = inbound.text.strip() or inbound.digits  # "300" keyed in answers "how much?"
        if words:
            parse = self.parser.parse(words, reference=inbound.received_at)
        for attempt in range(1, ATTEMPTS + 1):
            try:
                with self._sessions.begin() as session:
                    result = self._turn(session, inbound, parse)
                    if then is not None:
                        then(session, result)
                    return result
            except (CaseConflict, OperationalError, IntegrityError) as exc:
                if attempt == ATTEMPTS or not _retryable(exc):
                    raise
                log.warning(
                    "turn_retried", channel=inbound.channel, attempt=attempt, error=str(exc)[:200]
                )
        raise AssertionError("unreachable")

    def _turn(self, session: Session, inbound: Inbound, parse: dict[str, Any] | None) -> TurnResult:
        now = inbound.received_at
        row, retiree, earlier = _lock_conversation(
            session, inbound.channel, inbound.address, now, inbound.provider_id
        )
        if earlier is not None:
            log.info("redelivery", channel=inbound.channel, provider_id=inbound.provider_id)
            replies = [_reply_from_json(r) for r in earlier.payload.get("replies", [])]
            filed = [FiledCase(**c) for c in earlier.payload.get("filed", [])]
            return TurnResult(replies, filed, redelivered=True, retiree_id=earlier.retiree_id)

        state = DialogueState.load(row.state)
        idle = bool(row.state) and row.updated_at < self._idle_cutoff(now)
        if retiree is None:
            retiree, member = _identify(session, inbound)
            if member is not None:
                state.on_behalf = member.id
        turn = Turn(
            session=session,
            deployment=self.deployment,
            inbound=inbound,
            heard=Heard(),
            state=state,
            retiree=retiree,
            now=now,
        )
        if idle or state.ended:
            _start_afresh(turn)
        if turn.state.turns == 0:
            turn.state.lang = (
                retiree.preferred_language
                if retiree is not None
                else self.deployment.settings.default_language
            )
        turn.heard = _understand(inbound, parse, turn.state, self.deployment.dialogue)
        written = written_language(inbound.text)
        if written is not None:
            turn.state.lang = written
        dialogue.respond(turn)
        return self._save(session, row, inbound, turn, now)

    def _save(
        self, session: Session, row: ConversationState, inbound: Inbound, turn: Turn, now: datetime
    ) -> TurnResult:
        replies = list(turn.replies)
        if turn.hints and replies:
            last = replies[-1]
            replies[-1] = Reply(last.text, last.choices, frozenset(turn.hints), last.language)
        retiree_id = turn.retiree.id if turn.retiree is not None else None
        session.flush()  # the handlers' changes first (cases, events, a new profile)
        self._announce(session, turn.filed)
        state = {"row_id": row.id, "state": turn.state.dump(), "retiree_id": retiree_id, "now": now}
        session.execute(_SAVE_STATE, state)
        case_id = turn.case_ids[0] if turn.case_ids else None
        heard = turn.heard
        payload: dict[str, Any] = {
            "intent": heard.intent,
            "confidence": round(heard.confidence, 4),
            "replies": [_reply_to_json(r) for r in replies],
        }
        if inbound.digits:
            payload["digits"] = inbound.digits
        if inbound.choice:
            payload["choice"] = inbound.choice
        if inbound.metadata:
            payload["metadata"] = inbound.metadata
        cases = [
            FiledCase(c.number, c.category, c.priority, c.unit.code, c.unit.name(turn.lang))
            for c in turn.filed
        ]
        if cases:  # a redelivery answers with them too (the phone line dials for an emergency)
            payload["filed"] = [asdict(c) for c in cases]
        common = {"channel": inbound.channel, "address": inbound.address, "created_at": now}
        common.update(retiree_id=retiree_id, case_id=case_id, provider_id=None)
        rows: list[dict[str, Any]] = [
            {
                **common,
                "direction": Direction.INBOUND.value,
                "provider_id": inbound.provider_id,
                "text": inbound.text,
                "payload": payload,
                "status": MessageStatus.RECEIVED,
            }
        ]
        rows += [
            {
                **common,
                "direction": Direction.OUTBOUND.value,
                "text": reply.text,
                "payload": _reply_to_json(reply),
                "status": MessageStatus.REPLIED,
            }
            for reply in replies
        ]
        # One statement for all of them (Core, no RETURNING): a turn is a few round trips.
        messages.add(session, rows)
        log.info(
            "turn",
            channel=inbound.channel,
            intent=heard.intent,
            handler=turn.state.task.handler if turn.state.task else None,
            filed=[c.number for c in cases],
        )
        return TurnResult(replies, cases, retiree_id=retiree_id)

    # -- the end of a conversation ----------------------------------------------------------

    def close_conversation(
        self,
        channel: str,
        address: str,
        *,
        now: datetime | None = None,
        quiet_since: datetime | None = None,
    ) -> list[str]:
        """The person went away (hung up, or the conversation went idle): file any request
        left half-way with what is known, and start afresh next time. Returns the case numbers.

        ``quiet_since``: close only if no turn came after it, read under the lock. The idle
        sweep lists conversations and then closes them one by one; a person who writes again
        in between keeps the conversation she is in."""
        now = now or utcnow()
        with self._sessions.begin() as session:
            row, retiree, _ = _lock_conversation(session, channel, address, now)
            if quiet_since is not None and row.updated_at >= quiet_since:
                log.info("idle_conversation_spoke_again", channel=channel)
                return []
            inbound = Inbound(channel=channel, address=address, provider_id=None, received_at=now)
            turn = self._closing_turn(session, inbound, row, retiree)
            self._announce(session, turn.filed)
            row.state = turn.state.dump()
            row.updated_at = now
            return [c.number for c in turn.filed]

    def _closing_turn(
        self,
        session: Session,
        inbound: Inbound,
        row: ConversationState,
        retiree: Retiree | None,
    ) -> Turn:
        """A turn with nothing heard that ends the conversation of ``row``: its request left
        half-way is filed with what is known (`_start_afresh`), and the next starts afresh."""
        turn = Turn(
            session=session,
            deployment=self.deployment,
            inbound=inbound,
            heard=Heard(),
            state=DialogueState.load(row.state),
            retiree=retiree or _identify(session, inbound)[0],
            now=inbound.received_at,
        )
        _start_afresh(turn)
        return turn

    def close_idle(self, *, now: datetime | None = None) -> list[str]:
        """Close every conversation left half-way and idle for idle_minutes, filing what each
        was told (the person hung up or walked away): run now and then by the server or the
        worker. Returns the case numbers filed."""
        now = now or utcnow()
        cutoff = self._idle_cutoff(now)
        filed: list[str] = []
        for channel, address in self.idle_conversations(now=now):
            filed += self.close_conversation(channel, address, now=now, quiet_since=cutoff)
        return filed

    def _idle_cutoff(self, now: datetime) -> datetime:
        return now - timedelta(minutes=self.deployment.dialogue.idle_minutes)

    # -- a call in which nothing was said -------------------------------------------------------

    def file_silent_call(
        self,
        channel: str,
        address: str,
        provider_id: str,
        now: datetime | None = None,
        *,
        reason: str = SILENT,
        said: str = "",
    ) -> SilentCall:
        """A call in which the person said nothing (pressed the one key and waited, or hung up
        at once): staff ring back, never a dropped call. One transaction: a request left
        half-way in the conversation is filed as it is (as close_conversation does), then a
        `callback` case with the caller's number, and the call is recorded under
        ``provider_id`` (say ``{CallSid}:silent``): a status callback Twilio repeats, even at
        the same moment, files nothing twice (the conversation row is locked first).

        ``reason`` (a key under callback.reason) and ``said`` for a call nothing could be
        done with for another reason: "outage", a call taken while the database was down
        (bot/channels/twilio/outage.py), with the words heard before it went."""
        now = now or utcnow()
        for attempt in range(1, ATTEMPTS + 1):
            try:
                with self._sessions.begin() as session:
                    return self._file_silent_call(
                        session, channel, address, provider_id, now, reason, said
                    )
            except (CaseConflict, OperationalError, IntegrityError) as exc:
                if attempt == ATTEMPTS or not _retryable(exc):
                    raise
                log.warning("silent_call_retried", attempt=attempt, error=str(exc)[:200])
        raise AssertionError("unreachable")

    def _file_silent_call(
        self,
        session: Session,
        channel: str,
        address: str,
        provider_id: str,
        now: datetime,
        reason: str,
        said: str,
    ) -> SilentCall:
        row, retiree, earlier = _lock_conversation(session, channel, address, now, provider_id)
        if earlier is not None:
            return SilentCall(list(earlier.payload.get("filed", [])), redelivered=True)
        event = SILENT_CALL if reason == SILENT else f"{reason}_call"
        inbound = Inbound(
            channel=channel,
            address=address,
            provider_id=provider_id,
            received_at=now,
            text=said,
            metadata={"event": event},
        )
        turn = self._closing_turn(session, inbound, row, retiree)
        if turn.retiree is not None and not turn.state.lang_chosen:
            turn.state.lang = turn.retiree.preferred_language
        callback = cast(CallbackFiler, turn.handler(dialogue.CALLBACK))
        case = callback.file_callback(turn, reason, said=said, caller=address)
        self._announce(session, turn.filed)
        filed = [c.number for c in turn.filed]
        retiree_id = turn.retiree.id if turn.retiree is not None else None
        session.execute(
            _SAVE_STATE,
            {"row_id": row.id, "state": turn.state.dump(), "retiree_id": retiree_id, "now": now},
        )
        record = {"event": event, "filed": filed}
        messages.add(
            session,
            [
                {
                    "channel": channel,
                    "direction": Direction.INBOUND.value,
                    "address": address,
                    "provider_id": provider_id,
                    "text": said,
                    "payload": record,
                    "status": MessageStatus.RECEIVED,
                    "retiree_id": retiree_id,
                    "case_id": case.id,
                    "created_at": now,
                }
            ],
        )
        log.info("silent_call_filed", channel=channel, filed=filed)
        return SilentCall(filed)

    def _announce(self, session: Session, cases: Sequence[Case]) -> None:
        if cases:
            for hook in self.on_filed:
                hook(session, cases)

    def idle_conversations(self, *, now: datetime | None = None) -> list[tuple[str, str]]:
        """(channel, address) of conversations with a request left half-way and no turn for
        idle_minutes: the worker closes them so those requests reach staff."""
        cutoff = self._idle_cutoff(now or utcnow())
        with self._sessions.begin() as session:
            rows = session.execute(
                select(
                    ConversationState.channel, ConversationState.address, ConversationState.state
                ).where(ConversationState.updated_at < cutoff)
            ).all()
        found = []
        for channel, address, data in rows:
            state = DialogueState.load(data)
            if state.unfinished():
                found.append((channel, address))
        return found


# The inbound metadata "event" of a call in which nothing was said (file_silent_call).
SILENT_CALL = "silent_call"


@dataclass(frozen=True)
class SilentCall:
    """What file_silent_call did: the case numbers filed (a request left half-way first, then
    the call-back), or, for a repeat, those the first delivery filed."""

    filed: list[str]
    redelivered: bool = False


def _start_afresh(turn: Turn) -> None:
    """Close what the last conversation left open (filing unfinished requests) and reset."""
    state = turn.state
    for task in [*state.suspended, state.task]:
        if task is None or task.done:
            continue
        if task.handler == dialogue.REGISTRATION:
            case = _file_unfinished_registration(turn, task)
        else:
            case = turn.handler(task.handler).file_incomplete(turn, task)
        if case is not None:
            log.info("unfinished_request_filed", case=case.number, handler=task.handler)
    turn.state = DialogueState(
        lang=state.lang,
        lang_chosen=state.lang_chosen,
        registered=state.registered,
        on_behalf=state.on_behalf,  # still the same family member asking
    )


def _file_unfinished_registration(turn: Turn, task: Task) -> Case:
    """An unknown caller went away before registering: staff call back the number, knowing
    what they said and what they asked for."""
    callback = cast(CallbackFiler, turn.handler(dialogue.CALLBACK))
    deferred = turn.state.deferred
    details: dict[str, Any] = {"caller": turn.inbound.address, "registration": dict(task.slots)}
    said = ""
    if deferred is not None:
        said = deferred.said or deferred.text
        details["request"] = deferred.intent
    task.done = True
    return callback.file_callback(turn, "registration_unfinished", said=said, **details)


# Built once: a turn's statements differ only in their parameters, and building them anew
# costs more Python time per turn than the database takes to run them.
# The conversation row, locked, with its retiree and the record of an earlier delivery of the
# same message (none when provider_id is NULL): one round trip for all three.
_EARLIER = aliased(Message, name="earlier")
_LOCK = (
    select(ConversationState, Retiree, _EARLIER.payload, _EARLIER.retiree_id)
    .outerjoin(Retiree, Retiree.id == ConversationState.retiree_id)
    .outerjoin(
        _EARLIER,
        and_(
            _EARLIER.channel == bindparam("channel"),
            _EARLIER.provider_id == bindparam("provider_id"),
        ),
    )
    .where(
        ConversationState.channel == bindparam("channel"),
        ConversationState.address == bindparam("address"),
    )
    .with_for_update(of=ConversationState)
)
_SAVE_STATE = (
    update(ConversationState.__table__)
    .where(ConversationState.__table__.c.id == bindparam("row_id"))
    .values(
        state=bindparam("state"), retiree_id=bindparam("retiree_id"), updated_at=bindparam("now")
    )
)


@dataclass(frozen=True)
class Earlier:
    """What an earlier delivery of the same message recorded."""

    payload: dict[str, Any]
    retiree_id: int | None


def _lock_conversation(
    session: Session, channel: str, address: str, now: datetime, provider_id: str | None = None
) -> tuple[ConversationState, Retiree | None, Earlier | None]:
    """The person's conversation row (created if new) with its retiree, locked until the turn
    commits (SQLite: the transaction began IMMEDIATE, which already serialises writers), and
    what an earlier delivery of message ``provider_id`` recorded, if there was one.

    PostgreSQL: a delivery that waited here for another delivery of the same message reads the
    messages as they were before it waited (its statement's snapshot), so it does not see the
    other's record and runs the turn; inserting its own record then breaks the unique
    (channel, provider_id), the transaction rolls back and `ConversationEngine.handle` runs it
    again, when it finds the other's record. Rare, and it spares every turn a round trip."""
    params = {"channel": channel, "address": address, "provider_id": provider_id}
    found = session.execute(_LOCK, params).first()
    if found is None:  # a new conversation: one statement more, once
        session.execute(
            dialect_insert(session)(ConversationState.__table__)
            .values(channel=channel, address=address, state={}, updated_at=now)
            .on_conflict_do_nothing(index_elements=["channel", "address"])
        )
        found = session.execute(_LOCK, params).one()
    row, retiree, payload, retiree_id = found
    earlier = Earlier(payload, retiree_id) if payload is not None else None
    return row, retiree, earlier


def _identify(session: Session, inbound: Inbound) -> tuple[Retiree | None, FamilyMember | None]:
    """Who is speaking in a conversation not yet tied to anyone: a linked messaging account,
    or the phone number (calls, SMS, WhatsApp) of an active retiree; else a family member who
    may ask on a retiree's behalf (storage/family.py): then the conversation is that retiree's."""
    linked = identities.linked_retiree(session, inbound.channel, inbound.address)
    if linked is not None:
        return linked, None
    address = inbound.address
    if inbound.channel in PHONE_CHANNELS:
        try:
            address = normalize_phone(inbound.address.removeprefix("whatsapp:"))
        except InvalidPhoneNumber:
            return None, None
        found = identities.retiree_by_phone(session, address)
        if found is not None:
            return found, None
    member = family.speaking_for(session, inbound.channel, address)
    if member is None:
        return None, None
    return member.retiree, member


def _understand(
    inbound: Inbound, parse: dict[str, Any] | None, state: DialogueState, config: DialogueConfig
) -> Heard:
    """What the person meant: a chosen button or key (against the last question's choices),
    or the NLU's reading of the text."""
    offered = {value: label for value, label in state.choices}
    value: str | None = None
    if inbound.choice is not None and inbound.choice in offered:
        value = inbound.choice
    elif inbound.digits == "0" or (inbound.text.strip() == "0" and not offered):
        return Heard(text="0", said="0", intent="talk_to_human", confidence=1.0)
    else:
        typed = inbound.digits or inbound.text.strip()
        if typed.isdecimal() and 1 <= int(typed) <= len(state.choices):
            value = state.choices[int(typed) - 1][0]
    if value is not None:
        intent = {YES: "affirm", NO: "deny"}.get(value, value.removeprefix("intent:"))
        label = offered[value]
        return Heard(text=label, said=label, intent=intent, confidence=1.0, choice=value)
    said = inbound.text.strip() or inbound.digits
    if parse is None:
        return Heard(text=said, said=said)
    intent = parse["intent"]
    name = intent["name"] or FALLBACK
    if name not in ("affirm", "deny") and only_fillers(said, config.fillers):
        # "那个", "啊啊 嗯 那个": the model's guess at nothing (it was "cancel") is no intent.
        return Heard(text=parse["text"], said=said, filler=True)
    return Heard(
        text=parse["text"],
        said=said,
        intent=name,
        confidence=float(intent.get("confidence") or 0.0),
        entities=list(parse.get("entities", [])),
        ruled=name == dialogue.EMERGENCY and float(intent.get("confidence") or 0) >= 0.999,
    )


def _retryable(exc: Exception) -> bool:
    if isinstance(exc, CaseConflict):
        return True
    if isinstance(exc, IntegrityError):  # another delivery of the message got there first
        return "provider_id" in str(exc.orig)
    text = str(exc).lower()
    return "deadlock" in text or "could not serialize" in text or "database is locked" in text


def _reply_to_json(reply: Reply) -> dict[str, Any]:
    data: dict[str, Any] = {"text": reply.text, "language": reply.language}
    if reply.choices:
        data["choices"] = [[c.value, c.label] for c in reply.choices]
    if reply.hints:
        data["hints"] = sorted(h.value for h in reply.hints)
    return data


def _reply_from_json(data: dict[str, Any]) -> Reply:
    return Reply(
        text=data["text"],
        choices=tuple(Choice(v, label) for v, label in data.get("choices", [])),
        hints=frozenset(Hint(h) for h in data.get("hints", [])),
        language=data.get("language", "zh"),
    )
