"""A fake phone caller that calls our app the way Twilio Voice would, over real HTTP.

The app runs under uvicorn on 127.0.0.1 (``serve(app)``); the caller POSTs the webhooks Twilio
sends, signed exactly as Twilio signs them (``RequestValidator(token).compute_signature`` over the
PUBLIC URL, ``https://hotline.example.org/...``, while the request goes to the local server: the
case of a TLS-terminating proxy in front of the app), parses each TwiML answer with ElementTree and
follows it verb by verb:

- ``<Say>``       is heard: kept in ``Call.said`` (with its voice and language in ``Call.says``).
- ``<Gather>``    its nested ``<Say>`` is heard, then the caller does the next thing in the script:
                  ``Speak(text, confidence)`` posts SpeechResult and Confidence (only if the Gather
                  listens to speech), ``Press(digits)`` posts Digits (cut to numDigits), ``Silence()``
                  posts nothing (to the action when ``actionOnEmptyResult``; otherwise on to the next
                  verb), ``HangUp()`` ends the call.
- ``<Dial>``      rings each ``<Number>``: ``answers`` says what each number does (default
                  "no-answer"; "completed": a person picks up, "voicemail": a machine does); the
                  action gets DialCallStatus ("completed" for whoever picked up). A number that
                  answers gets its status callback posted when it asks for the "answered" event,
                  then its ``url`` (call screening) is run: a person presses 1 at its Gather, a
                  voicemail nothing. A ``HangUp()`` next in the script hangs up while it rings.
- ``<Record>``    ``Voicemail(url)`` leaves a message (RecordingUrl posted to the action), ``Silence()``
                  records nothing (on to the next verb), ``HangUp()`` hangs up.
- ``<Redirect>``  is followed; ``<Hangup>`` or the end of the document ends the call.

When the call is over the caller sends the status callback ("completed"), as Twilio does when the
number's "Call status changes" webhook is set. Every exchange is kept (``Call.exchanges``) and can
be sent again (``FakeCaller.replay``), as Twilio retries a webhook.

Calls the app places (through the fake Twilio REST API, ``tests.fakes.twilio_rest``) are answered
the same way: ``pick_up(placed, script)`` follows the call's inline TwiML as the person called
(a ``Press("1")`` at its Gather), then sends its status callback "completed" to the URL the app
gave; ``placed_status(placed, "no-answer")`` sends only a status callback (busy, failed, ...).

Usage::

    with serve(create_app(settings, engine)) as local:
        caller = FakeCaller(local, "https://hotline.example.org", "test-token")
        call = caller.call([Speak("我要报销药费"), Press("1")], caller="+8613800000001")
        assert "王秀英您好" in call.said[0]
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import uvicorn
from twilio.request_validator import RequestValidator

ACCOUNT_SID = "AC" + "0" * 32
VOICEMAIL = "voicemail"  # in ``answers``: the number's voicemail picks up
PICKED_UP = frozenset({"completed", "answered", VOICEMAIL})
OUR_NUMBER = "+15005550006"


# -- what the caller does --------------------------------------------------------------------


@dataclass(frozen=True)
class Speak:
    text: str
    confidence: float = 0.92


@dataclass(frozen=True)
class Press:
    digits: str


@dataclass(frozen=True)
class Silence:
    pass


@dataclass(frozen=True)
class HangUp:
    pass


@dataclass(frozen=True)
class Voicemail:
    url: str
    seconds: int = 12


Action = Speak | Press | Silence | HangUp | Voicemail


# -- what happened -----------------------------------------------------------------------------


@dataclass
class Exchange:
    """One webhook: where it went, what it carried, what came back."""

    public_url: str
    params: dict[str, str]
    status_code: int
    body: str


@dataclass
class Call:
    call_sid: str
    caller: str
    said: list[str] = field(default_factory=list)  # every <Say>, in order
    says: list[dict[str, str]] = field(default_factory=list)  # {text, voice, language}
    gathers: list[dict[str, str]] = field(default_factory=list)  # each Gather's attributes
    dialed: list[str] = field(default_factory=list)
    screened: list[str] = field(default_factory=list)  # what those who picked up heard first
    recordings: list[str] = field(default_factory=list)
    exchanges: list[Exchange] = field(default_factory=list)
    ended_by: str = ""  # "app" (Hangup, or no more TwiML) or "caller"
    status: str = ""

    @property
    def text(self) -> str:
        return "\n".join(self.said)

    def exchange(self, path: str) -> list[Exchange]:
        """The exchanges with a path (``/twilio/voice/turn``), in order."""
        return [e for e in self.exchanges if urlsplit(e.public_url).path == path]


# -- the caller --------------------------------------------------------------------------------


class FakeCaller:
    def __init__(
        self,
        local_url: str,
        public_url: str,
        auth_token: str,
        *,
        client: httpx.Client | None = None,
        voice_path: str = "/twilio/voice",
        status_path: str = "/twilio/voice/status",
    ) -> None:
        self.local_url = local_url.rstrip("/")
        self.public_url = public_url.rstrip("/")
        self.validator = RequestValidator(auth_token)
        self.client = client or httpx.Client(timeout=60)
        self.voice_path = voice_path
        self.status_path = status_path
        self._sids = itertools.count(1)

    # -- low level: one signed webhook -------------------------------------------------------

    def signature(self, public_url: str, params: dict[str, str]) -> str:
        return self.validator.compute_signature(public_url, params)

    def post(
        self,
        public_url: str,
        params: dict[str, str],
        *,
        signature: str | None = "sign",
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """POST ``params`` to the local server at the path and query of ``public_url``, signed
        over ``public_url`` (``signature=None``: no header; any other text: that header), with
        ``headers`` besides."""
        parts = urlsplit(public_url)
        local = self.local_url + parts.path + (f"?{parts.query}" if parts.query else "")
        headers = dict(headers or {})
        if signature == "sign":
            headers["X-Twilio-Signature"] = self.signature(public_url, params)
        elif signature is not None:
            headers["X-Twilio-Signature"] = signature
        return self.client.post(local, data=params, headers=headers)

    def replay(self, exchange: Exchange) -> httpx.Response:
        """Send a webhook again, as Twilio does when it retries."""
        return self.post(exchange.public_url, exchange.params)

    def base_params(self, call_sid: str, caller: str, to: str, status: str) -> dict[str, str]:
        return {
            "AccountSid": ACCOUNT_SID,
            "ApiVersion": "2010-04-01",
            "CallSid": call_sid,
            "CallStatus": status,
            "Direction": "inbound",
            "From": caller,
            "Caller": caller,
            "To": to,
            "Called": to,
        }

    def status(
        self, call_sid: str, caller: str, status: str, *, to: str = OUR_NUMBER, **extra: str
    ) -> httpx.Response:
        params = self.base_params(call_sid, caller, to, status) | extra
        return self.post(self.public_url + self.status_path, params)

    def outbound_params(self, placed: Mapping[str, Any], status: str) -> dict[str, str]:
        """What Twilio posts about a call the app placed: from our number to the person."""
        params = self.base_params(placed["sid"], placed["from"], placed["to"], status)
        return params | {"Direction": "outbound-api"}

    def placed_status(self, placed: Mapping[str, Any], status: str, **extra: str) -> httpx.Response:
        """The status callback of a call the app placed, to the URL it asked for."""
        url = placed.get("status_callback")
        assert url, f"the app asked for no status callback for the call to {placed['to']}"
        return self.post(url, self.outbound_params(placed, status) | extra)

    def pick_up(
        self, placed: Mapping[str, Any], script: Sequence[Action], *, max_steps: int = 20
    ) -> Call:
        """Answer a call the app placed: hear its inline TwiML, do what ``script`` says at each
        point it waits, then send its status callback ("completed"), as Twilio does."""
        call = Call(call_sid=placed["sid"], caller=placed["to"])
        assert placed.get("twiml"), "the call has no inline TwiML to follow"
        actions = list(script)
        url = str(placed.get("status_callback") or self.public_url + self.voice_path)
        doc = ET.fromstring(placed["twiml"])
        for _ in range(max_steps):
            outcome = self._follow(call, doc, url, actions, {})
            if outcome is None:
                break
            url, extra = outcome
            doc = self._request(call, url, self.outbound_params(placed, "in-progress") | extra)
        else:
            raise AssertionError(f"the call went on for more than {max_steps} steps")
        call.status = "completed"
        if placed.get("status_callback"):
            response = self.placed_status(placed, "completed", CallDuration="30")
            assert response.status_code == 200, response.text
        return call

    def new_sid(self) -> str:
        return f"CA{next(self._sids):04d}{uuid.uuid4().hex[:28]}"

    # -- a whole call --------------------------------------------------------------------------

    def call(
        self,
        script: Sequence[Action],
        *,
        caller: str,
        to: str = OUR_NUMBER,
        call_sid: str | None = None,
        answers: dict[str, str] | None = None,
        status_callback: bool = True,
        max_steps: int = 60,
    ) -> Call:
        """Call the app and do what ``script`` says at each point it waits for the caller."""
        call = Call(call_sid=call_sid or self.new_sid(), caller=caller)
        actions = list(script)
        answers = answers or {}
        started = time.monotonic()
        url = self.public_url + self.voice_path
        params = self.base_params(call.call_sid, caller, to, "ringing")
        for _ in range(max_steps):
            doc = self._request(call, url, params)
            outcome = self._follow(call, doc, url, actions, answers)
            if outcome is None:
                break
            url, extra = outcome
            params = self.base_params(call.call_sid, caller, to, "in-progress") | extra
            if extra.get("CallStatus") == "completed":  # hung up: Twilio still tells the action
                self._request(call, url, params)
                break
        else:
            raise AssertionError(f"the call went on for more than {max_steps} steps")
        call.status = "completed"
        if status_callback:
            duration = str(max(1, int(time.monotonic() - started)))
            response = self.status(call.call_sid, caller, "completed", to=to, CallDuration=duration)
            assert response.status_code == 200, response.text
        return call

    def _request(self, call: Call, url: str, params: dict[str, str]) -> ET.Element:
        response = self.post(url, params)
        call.exchanges.append(Exchange(url, dict(params), response.status_code, response.text))
        assert response.status_code == 200, f"{url}: {response.status_code} {response.text}"
        assert response.headers["content-type"].startswith(("application/xml", "text/xml"))
        root = ET.fromstring(response.content)
        assert root.tag == "Response", response.text
        return root

    def _follow(
        self,
        call: Call,
        doc: ET.Element,
        url: str,
        actions: list[Action],
        answers: dict[str, str],
    ) -> tuple[str, dict[str, str]] | None:
        """Run one TwiML document; the next request to make, or None when the call is over."""
        for verb in doc:
            if verb.tag == "Say":
                self._hear(call, verb)
            elif verb.tag == "Pause":
                continue
            elif verb.tag == "Gather":
                call.gathers.append(dict(verb.attrib))
                for inner in verb:
                    if inner.tag == "Say":
                        self._hear(call, inner)
                action = actions.pop(0) if actions else HangUp()
                posted = self._answer_gather(verb, action)
                if posted is None:
                    if isinstance(action, HangUp):
                        call.ended_by = "caller"
                        return None
                    continue  # nothing heard and no actionOnEmptyResult: the next verb
                return urljoin(url, verb.get("action") or url), posted
            elif verb.tag == "Dial":
                nouns = [n for n in verb if n.tag == "Number"] or [verb]
                hang_up = bool(actions) and isinstance(actions[0], HangUp)
                if hang_up:
                    actions.pop(0)
                status, dial_sid, talked = "no-answer", self.new_sid(), False
                for noun in nouns:
                    number = (noun.text or "").strip()
                    call.dialed.append(number)
                    status = "canceled" if hang_up else answers.get(number, "no-answer")
                    if status in PICKED_UP:
                        self._answered(call, noun, number, dial_sid)
                        talked = status != VOICEMAIL
                        screen = noun.get("url")
                        if screen:
                            talked = self._screen(call, screen, number, dial_sid, person=talked)
                        # Picked up: "completed" whoever it was (a voicemail, a screening
                        # that hung up): the app must not take it for a person.
                        status = "completed"
                        break
                posted = {
                    "DialCallStatus": status,
                    "DialCallSid": dial_sid,
                    "DialCallDuration": "30" if talked else "0",
                }
                if hang_up:
                    call.ended_by = "caller"
                    posted["CallStatus"] = "completed"
                if verb.get("action"):
                    return urljoin(url, verb.get("action") or ""), posted
                if hang_up:
                    return None
            elif verb.tag == "Record":
                action = actions.pop(0) if actions else HangUp()
                if isinstance(action, Silence):
                    continue  # no audio: Twilio goes on to the next verb
                if isinstance(action, HangUp):
                    call.ended_by = "caller"
                    return None
                if not isinstance(action, Voicemail):
                    raise AssertionError(f"a <Record> is waiting, the script has {action}")
                call.recordings.append(action.url)
                posted = {
                    "RecordingUrl": action.url,
                    "RecordingSid": "RE" + uuid.uuid4().hex,
                    "RecordingDuration": str(action.seconds),
                    "Digits": "#",
                }
                return urljoin(url, verb.get("action") or url), posted
            elif verb.tag == "Redirect":
                return urljoin(url, (verb.text or "").strip()), {}
            elif verb.tag in ("Hangup", "Reject"):
                call.ended_by = "app"
                return None
            else:
                raise AssertionError(f"the fake caller does not know <{verb.tag}>")
        call.ended_by = "app"  # no more TwiML: Twilio hangs up
        return None

    def _answered(self, call: Call, number: ET.Element, phone: str, dial_sid: str) -> None:
        """The number the call was put through to answered: its status callback, when the
        <Number> asked for the "answered" event (signed, as Twilio signs it)."""
        url = number.get("statusCallback")
        if not url or "answered" not in (number.get("statusCallbackEvent") or "").split():
            return
        params = self._leg_params(call, phone, dial_sid)
        response = self.post(url, params)
        call.exchanges.append(Exchange(url, dict(params), response.status_code, response.text))
        assert response.status_code in (200, 204), f"{url}: {response.status_code}"

    def _leg_params(self, call: Call, phone: str, dial_sid: str) -> dict[str, str]:
        """What Twilio posts about the call leg to ``phone`` that a <Dial> placed."""
        return self.base_params(dial_sid, call.caller, phone, "in-progress") | {
            "Direction": "outbound-dial",
            "ParentCallSid": call.call_sid,
        }

    def _screen(self, call: Call, url: str, phone: str, dial_sid: str, *, person: bool) -> bool:
        """The <Number>'s url, run for whoever picked up before the call is connected: a person
        presses 1 at its Gather, a voicemail presses nothing. True when the document ends
        without hanging up (connected)."""
        url = urljoin(self.public_url, url)
        params = self._leg_params(call, phone, dial_sid)
        for _ in range(10):
            doc = self._request(call, url, params)
            posted: dict[str, str] | None = None
            for verb in doc:
                if verb.tag in ("Say", "Gather"):
                    heard = [verb] if verb.tag == "Say" else [v for v in verb if v.tag == "Say"]
                    call.screened += [say.text or "" for say in heard]
                if verb.tag == "Gather":
                    empty = verb.get("actionOnEmptyResult") == "true"
                    posted = {"Digits": "1"} if person else ({} if empty else None)
                    if posted is not None:
                        url = urljoin(url, verb.get("action") or url)
                        break
                elif verb.tag in ("Hangup", "Reject"):
                    return False
                elif verb.tag not in ("Say", "Pause"):
                    raise AssertionError(f"<{verb.tag}> in a call screening")
            if posted is None:
                return True  # the end of the document: the two are connected
            params = self._leg_params(call, phone, dial_sid) | posted
        raise AssertionError("the call screening went on for more than 10 steps")

    @staticmethod
    def _hear(call: Call, say: ET.Element) -> None:
        text = say.text or ""
        call.said.append(text)
        call.says.append(
            {"text": text, "voice": say.get("voice", ""), "language": say.get("language", "")}
        )

    @staticmethod
    def _answer_gather(gather: ET.Element, action: Action) -> dict[str, str] | None:
        """What the Gather posts for ``action``; None when it posts nothing."""
        inputs = (gather.get("input") or "dtmf").split()
        empty = gather.get("actionOnEmptyResult") == "true"
        if isinstance(action, HangUp):
            return None
        if isinstance(action, Speak) and "speech" in inputs:
            return {"SpeechResult": action.text, "Confidence": f"{action.confidence:.6f}"}
        if isinstance(action, Press) and "dtmf" in inputs:
            limit = gather.get("numDigits")
            digits = action.digits[: int(limit)] if limit else action.digits
            return {"Digits": digits}
        if isinstance(action, Voicemail):
            raise AssertionError("a <Gather> is waiting, the script leaves a voicemail")
        return {} if empty else None  # silence, or speech to a keys-only Gather


# -- the app on a real port --------------------------------------------------------------------


@contextmanager
def serve(app: Any, host: str = "127.0.0.1") -> Iterator[str]:
    """Run an ASGI app with uvicorn on a free port of ``host`` in a thread; yields its URL."""
    config = uvicorn.Config(app, host=host, port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the app did not start (see the log above)")
        if time.monotonic() > deadline:
            raise RuntimeError("the app did not start within 60 s")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
