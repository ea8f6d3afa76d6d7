"""The phone line's webhooks (see the package docstring for what each one does)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

import structlog
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from twilio.twiml.voice_response import VoiceResponse

from bot.channels import calls
from bot.channels.base import Conversations, Mounted, conversations
from bot.channels.twilio import why_off
from bot.channels.twilio.outage import CALL, WEBHOOK, TwilioRoute, WhenDown, when_down
from bot.channels.twilio.signature import FORM_STATE, verified_form
from bot.channels.twilio.voice import follow_up as follow_up_call
from bot.channels.twilio.voice import records
from bot.channels.twilio.voice.handover import answer, call_over, put_through
from bot.channels.twilio.voice.wire import (
    ALERT_PATH,
    ANSWERED,
    CHANNEL,
    EMERGENCY,
    FINAL_STATUSES,
    HAND_OVER,
    PREFIX,
    Step,
    VoiceLine,
    caller_address,
    hand_over_unanswered,
    to_float,
    turn_inbound,
    twiml,
)
from bot.conversation.deployment import Deployment
from storage import alert_chain

SCREEN_ASKS = 2  # whoever picks up a put-through call is asked for a key this many times

log = structlog.get_logger(__name__)

Form = Annotated[dict[str, Any], Depends(verified_form)]
Talk = Annotated[Conversations, Depends(conversations)]


def mount(app: FastAPI, deployment: Deployment) -> Mounted:
    settings = deployment.settings
    why = why_off(settings)
    if why:
        return Mounted("twilio_voice", enabled=False, why=why)
    line = VoiceLine(settings, deployment.catalogs, deployment.emergency_rules)
    router = APIRouter(prefix=PREFIX, tags=["twilio voice"], route_class=TwilioRoute)
    _conversation_routes(router, line)
    _hand_over_routes(router, line)
    _status_route(router, line)
    _alert_route(router, line)
    _follow_up_route(router, line)
    _check_in_route(router, line)
    app.include_router(router)
    return Mounted("twilio_voice", enabled=True)


def _outage(line: VoiceLine, keep: str = CALL) -> WhenDown:
    """A person is on the line: whatever fails, the outage answer (put through to the
    community's own phones, "we will call you back")."""

    def answer(request: Request) -> Response:
        lang = request.query_params.get("lang", line.settings.default_language)
        return twiml(line.outage(lang if lang in ("zh", "en") else line.settings.default_language))

    return WhenDown(keep, answer, caller=True)


def _key_noted(line: VoiceLine) -> WhenDown:
    """Staff pressed a key on a call we placed: kept, and told so."""

    def answer(request: Request) -> Response:
        form = getattr(request.state, FORM_STATE, None) or {}
        if not str(form.get("Digits", "")).strip():
            response = VoiceResponse()
            response.hangup()
            return twiml(response)
        return twiml(line.key_noted(line.settings.default_language))

    return WhenDown(WEBHOOK, answer)


# A callback about a call: kept, behind whatever else waits (a call's own item comes first).
_STATUS_KEPT = WhenDown(WEBHOOK, lambda _: twiml(VoiceResponse()), in_order=True)


def _conversation_routes(router: APIRouter, line: VoiceLine) -> None:
    settings = line.settings

    @router.post("")
    @when_down(_outage(line))
    async def incoming_call(form: Form, talk: Talk) -> Response:
        """A call comes in: greet the caller (by name when the number is known) and listen."""
        caller, call_sid = caller_address(form), str(form.get("CallSid", ""))
        payload = {"event": "incoming_call", "to": form.get("To", "")}
        status = str(form.get("CallStatus", "ringing"))
        arrived = f"{call_sid}:{records.ARRIVAL}"
        came = await talk.run(records.arrival, talk.db, caller, arrived, status, payload)
        if came.first and came.left_open:
            # A new call is a new conversation: whatever an earlier call left half-way is filed.
            await talk.close(CHANNEL, caller)
        lang = came.language if came.language in ("zh", "en") else settings.default_language
        if came.name is not None:
            known = "greeting.for_family" if came.for_family else "greeting.known"
            greeting = line.text(known, lang, name=came.name)
        else:
            greeting = line.text("greeting.unknown", lang)
        log.info("call_in", call_sid=call_sid, known=came.name is not None, repeated=not came.first)
        response = VoiceResponse()
        step = Step(n=1, lang=lang)
        gather = line.gather(response, step.url("turn"), lang, one_key=False, keys_only=False)
        line.say(gather, greeting, lang)
        return twiml(response)

    @router.post("/turn")
    @when_down(_outage(line))
    async def turn(request: Request, form: Form, talk: Talk) -> Response:
        """One turn: what the caller said or pressed, or nothing (silence)."""
        step = Step.read(request)
        call_sid = str(form.get("CallSid", ""))
        speech = str(form.get("SpeechResult", "")).strip()
        digits = str(form.get("Digits", "")).strip()
        confidence = to_float(form.get("Confidence", ""))
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
        inbound = turn_inbound(form, step, text=speech, digits=digits, metadata=metadata)
        result = await talk.turn(inbound)
        log.info("call_turn", call_sid=call_sid, n=step.n, redelivered=result.redelivered)
        return twiml(await answer(line, talk, form, step, result))

    @router.post("/confirm")
    @when_down(_outage(line))
    async def confirm(request: Request, form: Form, talk: Talk) -> Response:
        """The key pressed to confirm words heard with a low confidence: 1 yes, 2 no, 0 a person."""
        step = Step.read(request)
        digits = str(form.get("Digits", "")).strip()
        said = step.extra.get("said", "")
        if digits == "1" and said:
            metadata = {
                "speech_confidence": to_float(step.extra.get("c", "")),
                "confirmed": "keypad",
            }
            inbound = turn_inbound(form, step, text=said, metadata=metadata)
        elif digits == "0":
            inbound = turn_inbound(form, step, digits="0")
        else:
            response = VoiceResponse()
            gather = line.gather(
                response, step.url("turn"), step.lang, one_key=False, keys_only=False
            )
            line.say(gather, line.text("twilio_voice.say_again", step.lang), step.lang)
            return twiml(response)
        result = await talk.turn(inbound)
        return twiml(await answer(line, talk, form, step, result))


def _hand_over_routes(router: APIRouter, line: VoiceLine) -> None:
    @router.post("/dial")
    @when_down(_outage(line))
    async def dial_result(request: Request, form: Form, talk: Talk) -> Response:
        """A <Dial> ended: if nobody answered, the next number; after the last, a voicemail
        (hand-over) or the emergency's question."""
        step = Step.read(request)
        kind = EMERGENCY if step.extra.get("kind") == EMERGENCY else HAND_OVER
        index = step.number("i")
        caller, call_sid = caller_address(form), str(form.get("CallSid", ""))
        dial_status = str(form.get("DialCallStatus", ""))
        dial_sid = str(form.get("DialCallSid", ""))
        found = await talk.run(records.targets, talk.db, caller, kind)
        # Picked up, but by a person only if a key was pressed at the screening: a voicemail
        # picks up too (and Twilio may say "completed" for it), and the next number is rung.
        reached = dial_status in ANSWERED and await talk.run(records.accepted, talk.db, dial_sid)
        if dial_status in ANSWERED and not reached:
            dial_status = records.NOT_ACCEPTED
        payload = {
            "event": "dial",
            "kind": kind,
            "number": found[index].phone if index < len(found) else "",
            "dial_call_sid": dial_sid,
            "duration": form.get("DialCallDuration", ""),
        }
        pid = f"{call_sid}:dial:{kind}:{step.extra.get('h', step.n)}:{index}"
        await talk.run(records.record, talk.db, caller, pid, dial_status or "unknown", payload)
        log.info("call_dial", call_sid=call_sid, kind=kind, i=index, status=dial_status)
        response = VoiceResponse()
        hung_up = str(form.get("CallStatus", "")) in FINAL_STATUSES
        case = step.extra.get("case")
        over = reached or hung_up or index + 1 >= len(found)
        if kind == EMERGENCY and case and over:
            # The caller's own call is through with the numbers (they talked, or nobody
            # answered): the alert calls held for it go now, and whoever presses 1 takes it.
            await talk.run(alert_chain.release_now, talk.db, case)
        if hung_up:
            return twiml(response)  # the caller hung up: the status callback takes it from here
        if reached:
            line.say(response, line.text("goodbye", step.lang), step.lang)
            response.hangup()
            return twiml(response)
        put_through(line, response, step, kind, found, index + 1)
        return twiml(response)

    @router.post("/screen")
    # Whoever picked up is connected unscreened: the caller is not left ringing.
    @when_down(WhenDown(None, lambda _: twiml(VoiceResponse()), caller=True))
    async def screen(request: Request, form: Form, talk: Talk) -> Response:
        """Whoever picked up a number the caller is put through to (the <Number>'s url; the
        caller still hears ringing) hears who is calling and why, twice at most: any key
        connects them (kept for dial_result), none (a voicemail never presses one) hangs up,
        and the caller is put through to the next number."""
        step = Step.read(request)
        kind = EMERGENCY if step.extra.get("kind") == EMERGENCY else HAND_OVER
        family = step.extra.get("family") == "1"
        digits = str(form.get("Digits", "")).strip()
        asked = step.number("r")
        callee_sid = str(form.get("CallSid", ""))
        log.info("call_screen", call_sid=callee_sid, kind=kind, pressed=bool(digits), asked=asked)
        if digits:
            callee = str(form.get("To", "")) or "unknown"
            payload = {"event": "screen", "kind": kind, "parent": form.get("ParentCallSid", "")}
            await talk.run(records.accept, talk.db, callee, callee_sid, payload)
            return twiml(VoiceResponse())  # nothing more to say: they are connected
        if asked < SCREEN_ASKS:
            again = step.url("screen", kind=kind, family=1 if family else None, r=asked + 1)
            parent = str(form.get("ParentCallSid", ""))
            who = await talk.run(records.caller_of, talk.db, parent, step.lang)
            return twiml(line.screen(again, kind, family, step.lang, who))
        response = VoiceResponse()
        response.hangup()
        return twiml(response)

    @router.post("/answered")
    @when_down(WhenDown(WEBHOOK, lambda _: Response(status_code=204)))
    async def number_answered(request: Request, form: Form, talk: Talk) -> Response:
        """In an emergency, a number the caller was put through to answered (its status
        callback, event "answered"): noted on the case; a family member's answer releases the
        alert calls to staff at once (see storage.alert_chain.answered_on_the_line)."""
        step = Step.read(request)
        case, phone = step.extra.get("case", ""), step.extra.get("to", "")
        status = str(form.get("CallStatus", ""))
        if case and phone and status in ("in-progress", "answered"):
            family = step.extra.get("family") == "1"
            await talk.run(alert_chain.answered_now, talk.db, line.catalogs, case, phone, family)
        log.info("call_answered", case=case or None, status=status)
        return Response(status_code=204)

    @router.post("/recording")
    @when_down(_outage(line, keep=WEBHOOK))  # the voicemail is filed when the database is back
    async def recording(request: Request, form: Form, talk: Talk) -> Response:
        """The voicemail of a hand-over nobody took (or none): a call-back case with it."""
        step = Step.read(request)
        url = None if step.extra.get("empty") else str(form.get("RecordingUrl", "")) or None
        result = await talk.turn(hand_over_unanswered(form, step.number("h", step.n), url))
        response = VoiceResponse()
        line.speak(response, result.replies)
        response.hangup()
        return twiml(response)


def _status_route(router: APIRouter, line: VoiceLine) -> None:
    @router.post("/status")
    @when_down(_STATUS_KEPT)
    async def call_status(request: Request, form: Form, talk: Talk) -> Response:
        """A call status callback: recorded once; when a call that came in is over, nothing is
        left hanging (a half-told request, a hand-over nobody took, a call with nothing said);
        an emergency alert call we placed (``k``) moves its chain on."""
        call_sid = str(form.get("CallSid", ""))
        status = str(form.get("CallStatus", ""))
        direction = str(form.get("Direction", "inbound"))
        inbound = direction.startswith("inbound")
        # The other end of the call: the caller, or the person we called.
        caller = caller_address(form) if inbound else str(form.get("To", "")) or "unknown"
        payload = {
            "event": "call_status",
            "direction": direction,
            "duration": form.get("CallDuration", ""),
            "sequence": form.get("SequenceNumber", ""),
        }
        pid = f"{call_sid}:status:{status}"
        if status in FINAL_STATUSES and inbound:
            ending = await talk.run(
                records.record_ending, talk.db, caller, pid, status, payload, call_sid
            )
            log.info("call_status", call_sid=call_sid, status=status, repeated=not ending.first)
            await call_over(talk, caller, ending)
        else:
            first = await talk.run(records.record, talk.db, caller, pid, status, payload)
            log.info("call_status", call_sid=call_sid, status=status, repeated=not first)
        key = request.query_params.get("k")
        if key and not inbound:
            # Every delivery, not only the first: a repeat finds the outcome set and does nothing.
            await talk.run(
                calls.alert_call_ended,
                talk.db,
                line.catalogs,
                key,
                call_sid,
                status,
                final=status in FINAL_STATUSES,
            )
        return twiml(VoiceResponse())


def _alert_route(router: APIRouter, line: VoiceLine) -> None:
    @router.post("/alert")
    @when_down(_key_noted(line))
    async def alert(request: Request, form: Form, talk: Talk) -> Response:
        """The key pressed on an emergency alert call we placed (``k``): 1 takes the emergency;
        nothing (or another key) is asked about once more, then the call ends and the chain
        moves on when its status comes."""
        key = request.query_params.get("k", "")
        asked = Step.read(request).number("r", 1)
        digits = str(form.get("Digits", "")).strip()
        call_sid = str(form.get("CallSid", ""))
        said = await talk.run(calls.said_on, talk.db, key)
        response = VoiceResponse()
        if said is None:
            log.warning("alert_call_unknown", call_sid=call_sid)
            response.hangup()
            return twiml(response)
        lang = said.language
        if digits == "1":
            pressed = await talk.run(calls.take_alert, talk.db, line.catalogs, key, call_sid)
            line.say(response, alert_chain.heard_after_pressing(line.catalogs, pressed, lang), lang)
            response.hangup()
        elif asked < calls.ALERT_ASKS:
            action = f"{ALERT_PATH}?{urlencode({'k': key, 'r': asked + 1})}"
            gather = line.gather(response, action, lang, one_key=True, keys_only=True)
            line.say(gather, said.text, lang)
            line.say(gather, said.prompt, lang)
        else:
            line.say(response, alert_chain.heard_without_key(line.catalogs, lang), lang)
            response.hangup()
        log.info("alert_call_key", call_sid=call_sid, pressed=digits or None, asked=asked)
        return twiml(response)


@dataclass(frozen=True)
class KeyPressed:
    """A key pressed on a call of ours that asked a question (``param``: the question's id in
    the action's query; ``r``: how many times it was asked), and the number we rang."""

    question: int
    asked: int
    digits: str
    callee: str

    @classmethod
    def read(cls, request: Request, form: dict[str, Any], param: str) -> KeyPressed:
        raw = request.query_params.get(param, "")
        return cls(
            question=int(raw) if raw.isdigit() and len(raw) <= 12 else 0,
            asked=Step.read(request).number("r", 1),
            digits=str(form.get("Digits", "")).strip(),
            callee=str(form.get("To", "")).strip(),
        )


def _unknown_question(event: str, form: dict[str, Any]) -> Response:
    """A key for a question we did not put to that number: logged, and the call hung up."""
    log.warning(event, call_sid=form.get("CallSid", ""))
    response = VoiceResponse()
    response.hangup()
    return twiml(response)


def _follow_up_route(router: APIRouter, line: VoiceLine) -> None:
    @router.post("/follow-up")
    @when_down(_key_noted(line))
    async def follow_up_key(request: Request, form: Form, talk: Talk) -> Response:
        """The key pressed on a follow-up call we placed (``fu``): 1, 2 or 3 answers and the
        person is thanked; another key hears the question once more; no key, goodbye (the round
        stays asked: the worker asks again later, then files a call-back)."""
        key = KeyPressed.read(request, form, "fu")
        follow_up_id, asked, digits = key.question, key.asked, key.digits
        heard = await talk.run(
            calls.hear, talk.db, follow_up_id, key.callee, digits, now=datetime.now(UTC)
        )
        response = VoiceResponse()
        if heard is None:
            return _unknown_question("follow_up_call_unknown", form)
        if heard.answered is not None:
            line.say(response, heard.answered.text, heard.language)
            response.hangup()
        elif digits and asked < calls.FOLLOW_UP_ASKS:
            action = follow_up_call.again_url(follow_up_id, asked + 1)
            gather = line.gather(response, action, heard.language, one_key=True, keys_only=True)
            line.say(gather, heard.question, heard.language)
        else:
            line.say(response, line.text("follow_up.voice_goodbye", heard.language), heard.language)
            response.hangup()
        answer = heard.answered.label if heard.answered is not None else None
        log.info("follow_up_call_key", pressed=digits or None, asked=asked, answer=answer)
        return twiml(response)


def _check_in_route(router: APIRouter, line: VoiceLine) -> None:
    @router.post("/check-in")
    @when_down(_key_noted(line))
    async def check_in_key(request: Request, form: Form, talk: Talk) -> Response:
        """The key pressed on a check-in call we placed (``ci``): 1, they are well: thanks and
        goodbye; 2, they need help: the call goes on as if they had rung us (the greeting, then
        the conversation); another key hears the question once more; no key, goodbye (the
        ladder of storage/check_ins.py goes on)."""
        key = KeyPressed.read(request, form, "ci")
        check_in_id, asked, digits = key.question, key.asked, key.digits
        heard = await talk.run(
            calls.hear_check_in, talk.db, check_in_id, key.callee, digits, now=datetime.now(UTC)
        )
        response = VoiceResponse()
        if heard is None:
            return _unknown_question("check_in_call_unknown", form)
        answered = heard.answered
        if answered is not None and answered.label == "needs_help":
            response.redirect(PREFIX, method="POST")
        elif answered is not None:
            line.say(response, answered.text, heard.language)
            response.hangup()
        elif digits and asked < calls.CHECK_IN_ASKS:
            action = follow_up_call.check_in_again_url(check_in_id, asked + 1)
            gather = line.gather(response, action, heard.language, one_key=True, keys_only=True)
            line.say(gather, heard.question, heard.language)
        else:
            line.say(response, line.text("check_in.goodbye", heard.language), heard.language)
            response.hangup()
        label = answered.label if answered is not None else None
        log.info("check_in_call_key", pressed=digits or None, asked=asked, answer=label)
        return twiml(response)
