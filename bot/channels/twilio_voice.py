"""The one-key phone line on Twilio Voice: every call is a conversation with the engine, turn by
turn, spoken with text-to-speech and heard with Twilio's speech recognition or the keypad.

Routes (all POSTed by Twilio, every one signed: `verified_form`; give Twilio the first as the
number's "A call comes in" webhook and the last as its "Call status changes" webhook):

- ``/twilio/voice``            a call comes in: the greeting (by name for a known number), then a
                               ``<Gather input="speech dtmf">`` whose action is the next turn.
- ``/twilio/voice/turn``       what the caller said or pressed (or nothing: ``actionOnEmptyResult``)
                               as one engine turn; the replies are spoken, then the next Gather, or
                               a hand-over, an emergency chain of calls, or the end of the call.
- ``/twilio/voice/confirm``    speech heard with a low confidence is confirmed by key (1 yes, 2 no)
                               before the engine acts on it.
- ``/twilio/voice/dial``       after each ``<Dial>``: on no answer, the next on-duty staff member
                               (then, in an emergency, the emergency contacts); after the last one a
                               voicemail (hand-over) or the emergency's question.
- ``/twilio/voice/recording``  the voicemail (or none) of a hand-over nobody took: a call-back case
                               with the recording's URL, and the caller is told who rings back when.
- ``/twilio/voice/status``     call status callbacks, recorded; when the call is over the
                               conversation is closed (a half-told request is filed), and a call in
                               which nothing was said files a call-back case, so none is dropped.

The call's place travels in the action URLs Twilio calls back (``n``: the number of the next turn,
``lang``, ``e=1`` once the emergency calls were placed in this call), so any server can take the
next step, and a webhook Twilio repeats gets the same answer: a turn's provider id is
``{CallSid}:{n}``, and the engine answers a repeated id with the same replies, doing nothing twice.
Everything the caller hears comes from the engine's replies or the message catalogs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

import structlog
import yaml
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from twilio.twiml.voice_response import Gather, VoiceResponse

from bot.channels.base import Conversations, Mounted, conversations
from bot.channels.twilio_signature import verified_form
from bot.dialogue import HANDOVER_UNANSWERED
from bot.engine import TurnResult
from bot.messages import Hint, Inbound, Reply, Style, render
from bot.notify import on_duty_staff
from config.i18n import DEFAULT_LANGUAGE, Catalogs, load_catalogs
from config.settings import Settings
from nlu.features import CONCEPTS_FILE
from nlu.rules import RULES_FILE, EmergencyRules
from storage.db import dialect_insert
from storage.directory import find_retiree_by_phone
from storage.models import Direction, Message, Retiree, Unit
from storage.phones import InvalidPhoneNumber, normalize_phone

log = structlog.get_logger(__name__)

CHANNEL = "phone"
PREFIX = "/twilio/voice"
# A call that is over (Twilio's CallStatus); "canceled": hung up before it was answered.
FINAL_STATUSES = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})
# A <Dial> that reached somebody (DialCallStatus).
ANSWERED = frozenset({"completed", "answered"})
EMERGENCY, HAND_OVER = "emergency", "handover"
GATHER_TIMEOUT_S = 6  # seconds of nothing before a Gather gives up (older callers are slow)
VOICEMAIL_MAX_S = 120
VOICEMAIL_SILENCE_S = 10
HINTS_PER_CONCEPT = 6  # speech hints: the first words of each concept of the NLU's lexicon
HINT_CONCEPTS_LEFT_OUT = frozenset({"chitchat"})
_HAN = re.compile(r"[\u3400-\u9fff]")

Form = Annotated[dict[str, Any], Depends(verified_form)]
Talk = Annotated[Conversations, Depends(conversations)]


# -- where a call stands: carried in the action URLs -------------------------------------------


@dataclass(frozen=True)
class Step:
    """The call's place, read from and written to the query string of Twilio's callbacks."""

    n: int = 1  # the number of the next turn (a turn's provider id is "{CallSid}:{n}")
    lang: str = DEFAULT_LANGUAGE
    emergency_called: bool = False  # the emergency chain of calls ran in this call
    extra: dict[str, str] = field(default_factory=dict)  # route-specific (kind, i, h, said, ...)

    @classmethod
    def read(cls, request: Request) -> Step:
        query = request.query_params
        n = query.get("n", "1")
        lang = query.get("lang", DEFAULT_LANGUAGE)
        extra = {k: v for k, v in query.items() if k not in ("n", "lang", "e")}
        return cls(
            n=int(n) if n.isdigit() else 1,
            lang=lang if lang in ("zh", "en") else DEFAULT_LANGUAGE,
            emergency_called=query.get("e") == "1",
            extra=extra,
        )

    def url(self, route: str, **extra: object) -> str:
        """A relative URL: Twilio resolves it against the public URL it called, and signs that."""
        params: dict[str, object] = {"n": self.n, "lang": self.lang}
        if self.emergency_called:
            params["e"] = 1
        params.update({k: v for k, v in extra.items() if v is not None})
        return f"{PREFIX}/{route}?{urlencode(params)}"

    def but(self, **changes: Any) -> Step:
        values = {"n": self.n, "lang": self.lang, "emergency_called": self.emergency_called}
        values.update(changes)
        return Step(**values)

    def number(self, name: str, default: int = 0) -> int:
        value = self.extra.get(name, "")
        return int(value) if value.isdigit() else default


@dataclass(frozen=True)
class Target:
    """A number the call is put through to: an on-duty staff member or an emergency contact."""

    phone: str
    contact: bool = False


# -- the line: settings, texts and TwiML building ------------------------------------------------


class VoiceLine:
    def __init__(self, settings: Settings, catalogs: Catalogs, rules: EmergencyRules) -> None:
        self.settings = settings
        self.catalogs = catalogs
        self.rules = rules
        self.hints = speech_hints(CONCEPTS_FILE)

    def text(self, key: str, lang: str, **params: Any) -> str:
        return self.catalogs.text(key, lang, **params)

    def voice(self, lang: str) -> dict[str, str]:
        if lang == "en":
            return {"voice": self.settings.twilio_voice_en, "language": "en-US"}
        return {
            "voice": self.settings.twilio_voice,
            "language": self.settings.twilio_voice_language,
        }

    def say(self, parent: VoiceResponse | Gather, text: str, lang: str) -> None:
        if text.strip():
            parent.say(text, **self.voice(lang))

    def speak(self, parent: VoiceResponse | Gather, replies: list[Reply]) -> None:
        """The replies, rendered for the voice (choices as keys, numbers digit by digit), in one
        <Say> per run of replies in the same language."""
        runs: list[tuple[str, list[str]]] = []
        for reply in replies:
            spoken = render(reply, Style.VOICE, self.catalogs)
            if runs and runs[-1][0] == reply.language:
                runs[-1][1].append(spoken)
            else:
                runs.append((reply.language, [spoken]))
        for lang, texts in runs:
            self.say(parent, " ".join(texts), lang)

    def gather(
        self, response: VoiceResponse, action: str, lang: str, *, one_key: bool, keys_only: bool
    ) -> Gather:
        attrs: dict[str, Any] = {
            "action": action,
            "method": "POST",
            "timeout": GATHER_TIMEOUT_S,
            "action_on_empty_result": True,
        }
        if keys_only:
            attrs["input"] = "dtmf"
        else:
            # No speechModel: Twilio picks the provider and model for the language and fails over
            # when one is down (its speech models changed during 2025).
            attrs.update(
                input="speech dtmf",
                language="en-US" if lang == "en" else self.settings.twilio_speech_language,
                speech_timeout="auto",
                hints=self.hints.get(lang, ""),
            )
        if one_key:
            attrs["num_digits"] = 1
        return response.gather(**attrs)

    def dial(self, response: VoiceResponse, target: Target, action: str) -> None:
        dial = response.dial(
            action=action, method="POST", timeout=self.settings.twilio_ring_timeout_s
        )
        dial.number(target.phone)


def speech_hints(concepts_file: Path) -> dict[str, str]:
    """Speech hints per language: the first words of each concept of the NLU's lexicon
    (报销, 药费, 住院, 救命, 转人工 ...), comma-separated as Twilio takes them."""
    data = yaml.safe_load(concepts_file.read_text(encoding="utf-8")) or {}
    words: dict[str, list[str]] = {"zh": [], "en": []}
    for concept, entries in (data.get("concepts") or {}).items():
        if concept in HINT_CONCEPTS_LEFT_OUT:
            continue
        taken = {"zh": 0, "en": 0}
        for entry in entries:
            word = str(entry).lstrip("=").strip()
            if not word or str(entry).startswith("~") or "," in word:
                continue
            lang = "zh" if _HAN.search(word) else "en"
            if taken[lang] < HINTS_PER_CONCEPT and word not in words[lang]:
                words[lang].append(word)
                taken[lang] += 1
    return {lang: ",".join(found) for lang, found in words.items()}


def caller_address(form: dict[str, Any]) -> str:
    """The conversation's address: the caller's number; a withheld number ("anonymous",
    "+266696687") gets one of its own per call, so two such callers never share a conversation."""
    number = str(form.get("From", ""))
    try:
        normalize_phone(number)
    except InvalidPhoneNumber:
        return f"withheld:{form.get('CallSid', '')}"
    return number


def twiml(response: VoiceResponse) -> Response:
    return Response(content=response.to_xml(), media_type="application/xml")


def _float(value: object) -> float | None:
    try:
        return float(str(value))
    except ValueError:
        return None


# -- the database: records of the call, the people to put it through to -------------------------


def _retiree(session: Session, phone: str) -> Retiree | None:
    try:
        return find_retiree_by_phone(session, phone)
    except InvalidPhoneNumber:  # "anonymous", a withheld number
        return None


def _caller(db: Engine, phone: str) -> tuple[str | None, str | None]:
    """The registered caller's name and language, if the number is known."""
    with Session(db) as session:
        retiree = _retiree(session, phone)
        if retiree is None:
            return None, None
        return retiree.name, retiree.preferred_language


def _targets(db: Engine, caller: str, kind: str) -> list[Target]:
    """Whom to put the call through to, in order: the on-duty staff of the caller's community
    (then of the units above; the top unit's for an unknown caller), and in an emergency then
    the caller's emergency contacts."""
    with Session(db) as session:
        retiree = _retiree(session, caller)
        unit = retiree.community if retiree is not None else None
        if unit is None:
            unit = session.scalars(
                select(Unit).where(Unit.parent_id.is_(None)).order_by(Unit.id).limit(1)
            ).first()
        targets = [Target(s.phone) for s in on_duty_staff(session, unit) if s.phone] if unit else []
        if kind == EMERGENCY and retiree is not None:
            targets += [Target(c.phone, contact=True) for c in retiree.emergency_contacts]
    seen = {caller}
    unique = []
    for target in targets:
        if target.phone and target.phone not in seen:
            seen.add(target.phone)
            unique.append(target)
    return unique


def _record(
    db: Engine, caller: str, provider_id: str, status: str, payload: dict[str, Any]
) -> bool:
    """A record of the call in the messages table (its arrival, a status, a dialled number);
    False when Twilio repeated it (the provider id was seen)."""
    with Session(db) as session, session.begin():
        retiree = _retiree(session, caller)
        done = session.execute(
            dialect_insert(session)(Message.__table__)
            .values(
                channel=CHANNEL,
                direction=Direction.INBOUND.value,
                address=caller,
                provider_id=provider_id,
                text="",
                payload=payload,
                status=status[:20],
                retiree_id=retiree.id if retiree is not None else None,
                created_at=datetime.now(UTC),
            )
            .on_conflict_do_nothing(index_elements=["channel", "provider_id"])
            .returning(Message.__table__.c.id)  # not rowcount: psycopg says -1 here
        )
        return done.first() is not None


@dataclass(frozen=True)
class CallRow:
    id: int
    provider_id: str
    text: str
    payload: dict[str, Any]
    case_id: int | None
    status: str


@dataclass(frozen=True)
class CallRecord:
    """What the messages table holds of one call: its turns, hand-overs and dialled numbers."""

    call_sid: str
    rows: list[CallRow]

    def turn_number(self, row: CallRow) -> int | None:
        """n of an engine turn's row ("{CallSid}:{n}"); None for the call's other rows."""
        rest = row.provider_id.removeprefix(f"{self.call_sid}:")
        return int(rest) if rest.isdigit() else None

    def heard_anything(self) -> bool:
        return any(
            (row.text.strip() or row.payload.get("digits"))
            for row in self.rows
            if self.turn_number(row) is not None
        )

    def filed_anything(self) -> bool:
        return any(row.case_id is not None for row in self.rows)

    def pending_hand_over(self) -> int | None:
        """n of the last turn that asked for a person, when after it nobody was reached and
        no voicemail was taken (the caller hung up while the phones rang)."""
        asked: CallRow | None = None
        for row in self.rows:
            replies = row.payload.get("replies", [])
            if self.turn_number(row) is not None and any(
                Hint.HAND_OVER.value in reply.get("hints", []) for reply in replies
            ):
                asked = row
        if asked is None:
            return None
        for row in self.rows:
            if row.id <= asked.id:
                continue
            if row.provider_id.startswith(f"{self.call_sid}:handover:"):
                return None
            if row.provider_id.startswith(f"{self.call_sid}:dial:") and row.status in ANSWERED:
                return None
        return self.turn_number(asked)


def _call_record(db: Engine, caller: str, call_sid: str) -> CallRecord:
    with Session(db) as session:
        found = session.execute(
            select(
                Message.id,
                Message.provider_id,
                Message.text,
                Message.payload,
                Message.case_id,
                Message.status,
            )
            .where(
                Message.channel == CHANNEL,
                Message.address == caller,
                Message.direction == Direction.INBOUND,
                Message.provider_id.startswith(f"{call_sid}:", autoescape=True),
            )
            .order_by(Message.id)
        ).all()
    rows = [CallRow(r[0], r[1] or "", r[2] or "", r[3] or {}, r[4], r[5] or "") for r in found]
    return CallRecord(call_sid, rows)


# -- the routes --------------------------------------------------------------------------------


def mount(app: FastAPI, settings: Settings) -> Mounted:
    if not settings.twilio_enabled:
        why = (
            "no HOTLINE_TWILIO_ACCOUNT_SID, HOTLINE_TWILIO_AUTH_TOKEN or HOTLINE_TWILIO_FROM_NUMBER"
        )
        return Mounted("twilio_voice", enabled=False, why=why)
    if not settings.public_url:
        return Mounted(
            "twilio_voice", enabled=False, why="no HOTLINE_PUBLIC_URL (Twilio signs against it)"
        )
    line = VoiceLine(
        settings,
        load_catalogs(settings.config_dir / "messages"),
        EmergencyRules.load(settings.config_dir / "nlu" / RULES_FILE),
    )
    router = APIRouter(prefix=PREFIX, tags=["twilio voice"])

    @router.post("")
    async def incoming_call(form: Form, talk: Talk) -> Response:
        """A call comes in: greet the caller (by name when the number is known) and listen."""
        caller, call_sid = caller_address(form), str(form.get("CallSid", ""))
        payload = {"event": "incoming_call", "to": form.get("To", "")}
        status = str(form.get("CallStatus", "ringing"))
        first = await run_in_threadpool(
            _record, talk.db, caller, f"{call_sid}:call", status, payload
        )
        if first:
            # A new call is a new conversation: whatever an earlier call left half-way is filed.
            await talk.close(CHANNEL, caller)
        name, preferred = await run_in_threadpool(_caller, talk.db, caller)
        lang = preferred if preferred in ("zh", "en") else settings.default_language
        if name is not None:
            greeting = line.text("greeting.known", lang, name=name)
        else:
            greeting = line.text("greeting.unknown", lang)
        log.info("call_in", call_sid=call_sid, known=name is not None, repeated=not first)
        response = VoiceResponse()
        step = Step(n=1, lang=lang)
        gather = line.gather(response, step.url("turn"), lang, one_key=False, keys_only=False)
        line.say(gather, greeting, lang)
        return twiml(response)

    @router.post("/turn")
    async def turn(request: Request, form: Form, talk: Talk) -> Response:
        """One turn: what the caller said or pressed, or nothing (silence)."""
        step = Step.read(request)
        call_sid = str(form.get("CallSid", ""))
        speech = str(form.get("SpeechResult", "")).strip()
        digits = str(form.get("Digits", "")).strip()
        confidence = _float(form.get("Confidence", ""))
        unsure = (
            speech
            and not digits
            and confidence is not None
            and confidence < settings.twilio_low_confidence
        )
        if unsure and line.rules.match(speech) is None:
            # Not sure what was heard: do nothing with it until a key says it is right (an
            # emergency's words are acted on at once; the engine asks about an unsure one).
            response = VoiceResponse()
            action = step.url("confirm", said=speech, c=f"{confidence:.2f}")
            gather = line.gather(response, action, step.lang, one_key=True, keys_only=True)
            line.say(
                gather, line.text("twilio_voice.did_you_say", step.lang, said=speech), step.lang
            )
            return twiml(response)
        metadata: dict[str, Any] = {}
        if speech and confidence is not None:
            metadata["speech_confidence"] = confidence
        inbound = _inbound(form, step, text=speech, digits=digits, metadata=metadata)
        result = await talk.turn(inbound)
        log.info("call_turn", call_sid=call_sid, n=step.n, redelivered=result.redelivered)
        return twiml(await _answer(line, talk, form, step, result))

    @router.post("/confirm")
    async def confirm(request: Request, form: Form, talk: Talk) -> Response:
        """The key pressed to confirm words heard with a low confidence: 1 yes, 2 no, 0 a person."""
        step = Step.read(request)
        digits = str(form.get("Digits", "")).strip()
        said = step.extra.get("said", "")
        if digits == "1" and said:
            metadata = {"speech_confidence": _float(step.extra.get("c", "")), "confirmed": "keypad"}
            inbound = _inbound(form, step, text=said, metadata=metadata)
        elif digits == "0":
            inbound = _inbound(form, step, digits="0")
        else:
            response = VoiceResponse()
            gather = line.gather(
                response, step.url("turn"), step.lang, one_key=False, keys_only=False
            )
            line.say(gather, line.text("twilio_voice.say_again", step.lang), step.lang)
            return twiml(response)
        result = await talk.turn(inbound)
        return twiml(await _answer(line, talk, form, step, result))

    @router.post("/dial")
    async def dial_result(request: Request, form: Form, talk: Talk) -> Response:
        """A <Dial> ended: if nobody answered, the next number; after the last, a voicemail
        (hand-over) or the emergency's question."""
        step = Step.read(request)
        kind = EMERGENCY if step.extra.get("kind") == EMERGENCY else HAND_OVER
        index = step.number("i")
        caller, call_sid = caller_address(form), str(form.get("CallSid", ""))
        dial_status = str(form.get("DialCallStatus", ""))
        targets = await run_in_threadpool(_targets, talk.db, caller, kind)
        payload = {
            "event": "dial",
            "kind": kind,
            "number": targets[index].phone if index < len(targets) else "",
            "dial_call_sid": form.get("DialCallSid", ""),
            "duration": form.get("DialCallDuration", ""),
        }
        pid = f"{call_sid}:dial:{kind}:{step.extra.get('h', step.n)}:{index}"
        await run_in_threadpool(_record, talk.db, caller, pid, dial_status or "unknown", payload)
        log.info("call_dial", call_sid=call_sid, kind=kind, i=index, status=dial_status)
        response = VoiceResponse()
        if str(form.get("CallStatus", "")) in FINAL_STATUSES:
            return twiml(response)  # the caller hung up: the status callback takes it from here
        if dial_status in ANSWERED:
            line.say(response, line.text("goodbye", step.lang), step.lang)
            response.hangup()
            return twiml(response)
        _chain(line, response, step, kind, targets, index + 1)
        return twiml(response)

    @router.post("/recording")
    async def recording(request: Request, form: Form, talk: Talk) -> Response:
        """The voicemail of a hand-over nobody took (or none): a call-back case with it."""
        step = Step.read(request)
        url = None if step.extra.get("empty") else str(form.get("RecordingUrl", "")) or None
        result = await talk.turn(_hand_over_unanswered(form, step.number("h", step.n), url))
        response = VoiceResponse()
        line.speak(response, result.replies)
        response.hangup()
        return twiml(response)

    @router.post("/status")
    async def call_status(form: Form, talk: Talk) -> Response:
        """A call status callback: recorded once; when the call is over, nothing is left
        hanging (a half-told request, a hand-over nobody took, a call with nothing said)."""
        caller, call_sid = caller_address(form), str(form.get("CallSid", ""))
        status = str(form.get("CallStatus", ""))
        direction = str(form.get("Direction", "inbound"))
        payload = {
            "event": "call_status",
            "direction": direction,
            "duration": form.get("CallDuration", ""),
            "sequence": form.get("SequenceNumber", ""),
        }
        pid = f"{call_sid}:status:{status}"
        first = await run_in_threadpool(_record, talk.db, caller, pid, status, payload)
        log.info("call_status", call_sid=call_sid, status=status, repeated=not first)
        if first and status in FINAL_STATUSES and direction.startswith("inbound"):
            await _call_over(talk, caller, call_sid)
        return twiml(VoiceResponse())

    app.include_router(router)
    return Mounted("twilio_voice", enabled=True)


def _inbound(
    form: dict[str, Any],
    step: Step,
    *,
    text: str = "",
    digits: str = "",
    metadata: dict[str, Any] | None = None,
) -> Inbound:
    return Inbound(
        channel=CHANNEL,
        address=caller_address(form),
        provider_id=f"{form.get('CallSid', '')}:{step.n}",
        received_at=datetime.now(UTC),
        text=text,
        digits=digits,
        metadata=metadata or {},
    )


def _hand_over_unanswered(
    form: dict[str, Any], asked_in: int, recording_url: str | None
) -> Inbound:
    """The engine's event for a hand-over nobody took; one per hand-over (the voicemail's
    callback and the call's end both send it: the second is answered as a repeat)."""
    metadata: dict[str, Any] = {"event": HANDOVER_UNANSWERED}
    if recording_url:
        metadata["recording_url"] = recording_url
    return Inbound(
        channel=CHANNEL,
        address=caller_address(form),
        provider_id=f"{form.get('CallSid', '')}:handover:{asked_in}",
        received_at=datetime.now(UTC),
        metadata=metadata,
    )


async def _answer(
    line: VoiceLine, talk: Conversations, form: dict[str, Any], step: Step, result: TurnResult
) -> VoiceResponse:
    """The TwiML for a turn's result: the replies spoken, then what the hints ask for."""
    replies = result.replies
    lang = replies[-1].language if replies else step.lang
    after = step.but(n=step.n + 1, lang=lang)
    hints = result.hints
    response = VoiceResponse()
    caller = caller_address(form)
    if Hint.URGENT in hints and not step.emergency_called:
        # An emergency: no menu. Say that staff are alerted and 120, then put the call through
        # to the on-duty staff, the next, then the emergency contacts. The engine's question
        # (where are you, what happened) waits until the calls are over.
        spoken = _without_last(replies, line.text("emergency.ask_where", lang))
        held = len(spoken) < len(replies)
        line.speak(response, spoken)
        targets = await run_in_threadpool(_targets, talk.db, caller, EMERGENCY)
        chained = after.but(emergency_called=True)
        _chain(line, response, chained, EMERGENCY, targets, 0, ask=held)
        return response
    if Hint.HAND_OVER in hints:
        line.speak(response, replies)
        targets = await run_in_threadpool(_targets, talk.db, caller, HAND_OVER)
        _chain(line, response, after, HAND_OVER, targets, 0, asked_in=step.n)
        return response
    if Hint.END in hints:
        line.speak(response, replies)
        response.hangup()
        return response
    one_key = bool(replies) and bool(replies[-1].choices)
    gather = line.gather(response, after.url("turn"), lang, one_key=one_key, keys_only=False)
    line.speak(gather, replies)
    return response


def _without_last(replies: list[Reply], text: str) -> list[Reply]:
    """The replies without the last one when it says ``text``."""
    if replies and replies[-1].text == text:
        return replies[:-1]
    return replies


def _chain(
    line: VoiceLine,
    response: VoiceResponse,
    step: Step,
    kind: str,
    targets: list[Target],
    index: int,
    *,
    ask: bool | None = None,
    asked_in: int | None = None,
) -> None:
    """Put the call through to ``targets[index]``; when none is left, a voicemail (hand-over)
    or the emergency's question. The dial URL carries what the next step needs."""
    ask = ask if ask is not None else step.extra.get("ask") == "1"
    asked_in = asked_in if asked_in is not None else step.number("h", step.n)
    if index < len(targets):
        target = targets[index]
        if index > 0:
            key = "connecting_family" if target.contact else "connecting_next"
            line.say(response, line.text(f"twilio_voice.{key}", step.lang), step.lang)
        extra: dict[str, object] = {"kind": kind, "i": index}
        if kind == EMERGENCY:
            extra["ask"] = 1 if ask else None
        else:
            extra["h"] = asked_in
        line.dial(response, target, step.url("dial", **extra))
        return
    if kind == HAND_OVER:
        line.say(response, line.text("twilio_voice.leave_message", step.lang), step.lang)
        action = step.url("recording", h=asked_in)
        response.record(
            action=action,
            method="POST",
            max_length=VOICEMAIL_MAX_S,
            timeout=VOICEMAIL_SILENCE_S,
            finish_on_key="#",
            play_beep=True,
        )
        # No audio at all: Twilio goes on to the next verb instead of the action.
        response.redirect(step.url("recording", h=asked_in, empty=1), method="POST")
        return
    line.say(response, line.text("twilio_voice.emergency_unanswered", step.lang), step.lang)
    if ask:
        gather = line.gather(response, step.url("turn"), step.lang, one_key=False, keys_only=False)
        line.say(gather, line.text("emergency.ask_where", step.lang), step.lang)
    else:
        response.hangup()


async def _call_over(talk: Conversations, caller: str, call_sid: str) -> None:
    """The call ended. A hand-over nobody took becomes a call-back case; a request left
    half-way is filed; and a call in which the caller said nothing at all (pressed the one key
    and waited, or hung up at once) files a call-back case, so staff ring back."""
    record = await run_in_threadpool(_call_record, talk.db, caller, call_sid)
    pending = record.pending_hand_over()
    if pending is not None:
        form = {"From": caller, "CallSid": call_sid}
        await talk.turn(_hand_over_unanswered(form, pending, None))
    filed = await talk.close(CHANNEL, caller)
    if pending is not None or filed or record.heard_anything() or record.filed_anything():
        log.info("call_over", call_sid=call_sid, filed=filed, hand_over=pending)
        return
    # Silence, as the engine hears it, until it files the call-back (max_silences turns).
    # The provider ids make a repeated status callback file nothing twice.
    engine = await talk.engine()
    for k in range(1, engine.services.dialogue.max_silences + 1):
        inbound = Inbound(
            channel=CHANNEL,
            address=caller,
            provider_id=f"{call_sid}:hangup:{k}",
            received_at=datetime.now(UTC),
            metadata={"event": "hung_up"},
        )
        result = await talk.turn(inbound)
        if result.ended:
            log.info("call_over_silent", call_sid=call_sid, filed=[c.number for c in result.cases])
            return
    log.warning("call_over_silent_not_filed", call_sid=call_sid)
