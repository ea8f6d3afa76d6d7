"""After a turn: the replies spoken and what their hints ask for (the next question, a hand-over
to the on-duty staff in turn, an emergency's chain of <Dial>s, the end), the voicemail of a
hand-over nobody took, and what is left to file when the call is over."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import structlog
from twilio.twiml.voice_response import VoiceResponse

from bot.channels.base import Conversations
from bot.channels.twilio.outage import OUTAGE
from bot.channels.twilio.voice import records
from bot.channels.twilio.voice.wire import (
    CHANNEL,
    EMERGENCY,
    HAND_OVER,
    VOICEMAIL_MAX_S,
    VOICEMAIL_SILENCE_S,
    Step,
    VoiceLine,
    caller_address,
    hand_over_unanswered,
    turn_inbound,
)
from bot.conversation.engine import TurnResult
from bot.conversation.messages import Hint, Reply
from nlu.rules import EmergencyRules
from storage import alert_chain
from storage.alert_chain import Target

EMERGENCY_CATEGORY = "emergency"  # the category of the case an emergency turn files

log = structlog.get_logger(__name__)


async def answer(
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
        spoken = without_last(replies, line.text("emergency.ask_where", lang))
        held = len(spoken) < len(replies)
        line.speak(response, spoken)
        found = await talk.run(records.targets, talk.db, caller, EMERGENCY)
        chained = after.but(emergency_called=True)
        case = next((c.number for c in result.cases if c.category == EMERGENCY_CATEGORY), None)
        if case is not None and not found:
            await talk.run(
                alert_chain.release_now, talk.db, case
            )  # nobody to put the call through to
        put_through(line, response, chained, EMERGENCY, found, 0, ask=held, case=case)
        return response
    if Hint.HAND_OVER in hints:
        line.speak(response, replies)
        found = await talk.run(records.targets, talk.db, caller, HAND_OVER)
        put_through(line, response, after, HAND_OVER, found, 0, asked_in=step.n)
        return response
    if Hint.END in hints:
        line.speak(response, replies)
        response.hangup()
        return response
    one_key = bool(replies) and bool(replies[-1].choices)
    gather = line.gather(response, after.url("turn"), lang, one_key=one_key, keys_only=False)
    line.speak(gather, replies)
    return response


def without_last(replies: list[Reply], text: str) -> list[Reply]:
    """The replies without the last one when it says ``text``."""
    if replies and replies[-1].text == text:
        return replies[:-1]
    return replies


def put_through(
    line: VoiceLine,
    response: VoiceResponse,
    step: Step,
    kind: str,
    targets: list[Target],
    index: int,
    *,
    ask: bool | None = None,
    asked_in: int | None = None,
    case: str | None = None,
) -> None:
    """Put the call through to ``targets[index]``; when none is left, a voicemail (hand-over)
    or the emergency's question. The dial URL carries what the next step needs; whoever picks
    up is screened first (the screen route: a key connects); in an emergency (its ``case``)
    the number's answer is told at once, to the answered route."""
    ask = ask if ask is not None else step.extra.get("ask") == "1"
    asked_in = asked_in if asked_in is not None else step.number("h", step.n)
    case = case if case is not None else step.extra.get("case")
    if index < len(targets):
        target = targets[index]
        if index > 0:
            key = "connecting_family" if target.contact else "connecting_next"
            line.say(response, line.text(f"twilio_voice.{key}", step.lang), step.lang)
        extra: dict[str, object] = {"kind": kind, "i": index}
        family = 1 if target.contact else None
        answered = None
        if kind == EMERGENCY:
            extra["ask"] = 1 if ask else None
            extra["case"] = case
            if case:
                answered = step.url("answered", case=case, to=target.phone, family=family)
        else:
            extra["h"] = asked_in
        screen = step.url("screen", kind=kind, family=family)
        line.dial(response, target, step.url("dial", **extra), screen, answered)
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


async def call_over(talk: Conversations, caller: str, ending: records.Ending) -> None:
    """The call ended. A hand-over nobody took becomes a call-back case; a request left
    half-way is filed; and a call in which the caller said nothing at all (pressed the one key
    and waited, or hung up at once) files a call-back case, so staff ring back.

    Every step is idempotent (provider ids), so a status callback Twilio repeats runs them again
    safely: a first delivery that failed half-way is finished by the repeat. Only closing the
    conversation waits for the first delivery: a repeat may come while the person is already on
    a new call, whose request must not be cut short; and only when there is something to
    close. ``ending``: what was read with the final status."""
    record = ending.record
    call_sid = record.call_sid
    pending = record.pending_hand_over()
    if pending is not None:
        form = {"From": caller, "CallSid": call_sid}
        await talk.turn(hand_over_unanswered(form, pending, None))
    close = ending.first and (ending.left_open or pending is not None)
    filed = await talk.close(CHANNEL, caller) if close else []
    if pending is not None or filed or record.heard_anything() or record.filed_anything():
        log.info("call_over", call_sid=call_sid, filed=filed, hand_over=pending)
        return
    engine = await talk.engine()
    silent = await talk.run(
        engine.file_silent_call, CHANNEL, caller, f"{call_sid}:silent", datetime.now(UTC)
    )
    log.info("call_over_silent", call_sid=call_sid, filed=silent.filed, repeated=silent.redelivered)


async def file_outage_call(
    talk: Conversations, rules: EmergencyRules, kept: dict[str, Any], received: datetime
) -> None:
    """A call taken while the database was down (bot/channels/twilio/outage.py), now that it
    is back. Words of an emergency (``rules``) run as the turn they were, so the emergency is
    filed and its alert calls go at once (the call is long over: none is held for it);
    otherwise a call-back case with the words heard (a turn's, or those a confirmation asked
    about). Once per call either way (``{CallSid}:{n}``, ``{CallSid}:outage``). ``kept``: the
    spool's item (its query string is the call's step)."""
    form = kept["form"]
    caller, call_sid = caller_address(form), str(form.get("CallSid", ""))
    step = Step.of(dict(parse_qsl(kept.get("query", ""))))
    said = (str(form.get("SpeechResult", "")) or step.extra.get("said", "")).strip()
    if said and rules.match(said) is not None:
        result = await talk.turn(turn_inbound(form, step, text=said))
        emergency = [c.number for c in result.cases if c.category == EMERGENCY_CATEGORY]
        for case in emergency:
            await talk.run(alert_chain.release_now, talk.db, case)
        if emergency:
            log.info("outage_call_emergency_filed", call_sid=call_sid, filed=emergency)
            return
    engine = await talk.engine()
    filed = await talk.run(
        engine.file_silent_call,
        CHANNEL,
        caller,
        f"{call_sid}:{OUTAGE}",
        received,
        reason=OUTAGE,
        said=said,
    )
    log.info("outage_call_filed", call_sid=call_sid, filed=filed.filed, repeated=filed.redelivered)
