"""The SIP user agent of `hotline sip`: PJSIP's pjsua2 registers as an extension on the PBX or
trunk, answers each call and carries out its `CallFlow` (flow.py).

Threads. pjsua2 runs in polling mode: one thread (this process's main one) calls
``libHandleEvents`` in a loop, so every SIP and media callback comes there, and only there are
pjsua2 objects touched. The callbacks only note what happened (`_events`); the loop then feeds
the flows and carries out their actions. What may take a while (rendering a prompt, a
conversation turn, the database) runs on a small pool of worker threads (`Line`, the port to the
rest of the system) and comes back through the same queue. A call keeps its pjsua2 objects (the
call, its player and recorder) referenced until it is over, and none is dropped inside a
callback: pjsua2 destroys what Python lets go of.

The outbox's calls (sender.py) come in through `place`, from the worker's thread: each waits
until a line is free, then is dialled and carried out by its `CalloutFlow` (callout.py).

At most ``sip_max_calls`` calls at once (the pjsua2 wheel's own limit is 4), counting the calls
placed to put a caller through and the outbox's calls: the next caller gets "486 Busy Here",
which a PBX sends to its next extension. The outbox's calls leave two lines free, for a caller
and the staff phone they may be put through to (one at least is always theirs).
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pjsua2 as pj
import structlog

from bot.channels.sip.callout import CalloutFlow, Converse, Ended, Hear, Heard, Placed
from bot.channels.sip.flow import (
    Action,
    Answer,
    Ask,
    Attach,
    CallFlow,
    Connected,
    Dial,
    FileSilent,
    HangUp,
    Play,
    Record,
    Released,
    StopDialing,
    StopRecording,
    WaitForKey,
)
from bot.channels.sip.line import Caller, Line
from bot.channels.sip.prompts import Prompts
from bot.channels.sip.sender import DialFailed, LineBusy
from config.settings import Settings
from config.sip import SipConfig

log = structlog.get_logger(__name__)

POLL_MS = 10
USER = re.compile(r"sips?:([^@;>]+)@")
BUSY = 486
RESERVED = 2  # lines the outbox's calls leave free: a caller, and their put-through
# What means nothing once the caller has hung up; all else still settles the call's accounts.
LIVE_ONLY = frozenset({"digit", "media", "confirmed", "played", "out_media", "out_answered"})
DIGITS = {
    getattr(pj, "PJSUA_DTMF_METHOD_RFC2833", 0): "rfc2833",
    getattr(pj, "PJSUA_DTMF_METHOD_SIP_INFO", 1): "info",
}


def number_in(uri: str) -> str:
    """The user part of a SIP URI ("13800000001" of ``"x" <sip:13800000001@pbx>``)."""
    found = USER.search(uri or "")
    return found.group(1) if found else ""


def dial_uri(phone: str, settings: Settings) -> str:
    """The SIP URI the PBX or trunk rings ``phone`` (E.164) at: a mainland number as its
    national digits (+8613700000001: 13700000001), another with the international prefix 00."""
    digits = phone[3:] if phone.startswith("+86") else "00" + phone.lstrip("+")
    return f"sip:{digits}@{registrar_host(settings)}"


def registrar_host(settings: Settings) -> str:
    """HOTLINE_SIP_DOMAIN, else the registrar's host (sip:pbx.example.org:5060: pbx.example.org)."""
    if settings.sip_domain:
        return settings.sip_domain
    address = settings.sip_registrar.split(":", 1)[-1].split(";")[0]
    return address.rsplit("@", 1)[-1].split(":")[0]


class _Player(pj.AudioMediaPlayer):  # type: ignore[misc]
    def __init__(self, agent: Agent, call_id: int) -> None:
        super().__init__()
        self.agent, self.call_id = agent, call_id

    def onEof2(self) -> None:  # on the media clock's thread: only noted
        self.agent.note(self.call_id, "played", self)


@dataclass
class _Call:
    """One call's state on the loop's thread."""

    call: Any  # the pjsua2 Call
    flow: CallFlow | CalloutFlow
    source: str  # "sip:<Call-ID>": the call's provider id
    caller: Caller | None = None  # for a call we placed: the person called
    placed: Placed | None = None  # a call we placed for the outbox
    confirmed: bool = False  # answered (a call we placed: not early media)
    started: bool = False  # the flow heard it was answered
    give_up_at: float | None = None  # a call we placed rings until then
    media: Any = None  # its AudioMedia, once active
    player: Any = None
    recorder: Any = None
    recording: Path | None = None
    wait_until: float | None = None  # the silence timer
    record_until: float | None = None
    asks: int = 0
    out: Any = None  # the call to the person the caller is put through to
    out_media: Any = None
    out_answered: bool = False
    ring_until: float | None = None
    busy: int = 0  # work out on the pool
    over: bool = False
    digits: list[tuple[str, str]] = field(default_factory=list)  # (digit, method)


class _SipCall(pj.Call):  # type: ignore[misc]
    """A caller's call, or one the line placed for the outbox (no ``call_id`` yet). pjsua2 reuses
    its call numbers as soon as a call ends, while work for that call may still be out: the
    agent knows each call by a serial of its own."""

    def __init__(self, agent: Agent, account: Any, call_id: int = pj.PJSUA_INVALID_ID) -> None:
        super().__init__(account, call_id)
        self.agent = agent
        self.serial = next(agent.serials)

    def onCallState(self, prm: Any) -> None:
        info = self.getInfo()
        if info.state == pj.PJSIP_INV_STATE_CONFIRMED:
            self.agent.note(self.serial, "confirmed")
        elif info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.agent.note(self.serial, "hung_up", info.lastStatusCode)

    def onCallMediaState(self, prm: Any) -> None:
        self.agent.note(self.serial, "media")

    def onDtmfDigit(self, prm: Any) -> None:
        method = DIGITS.get(prm.method, str(prm.method))
        self.agent.note(self.serial, "digit", (prm.digit, method))


class _OutCall(pj.Call):  # type: ignore[misc]
    """A call the line places to put a caller through: its events are the caller's call's."""

    def __init__(self, agent: Agent, account: Any, parent: int) -> None:
        super().__init__(account)
        self.agent, self.parent = agent, parent

    def onCallState(self, prm: Any) -> None:
        info = self.getInfo()
        if info.state == pj.PJSIP_INV_STATE_CONFIRMED:
            self.agent.note(self.parent, "out_answered", self)
        elif info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.agent.note(self.parent, "out_ended", (self, info.lastStatusCode))

    def onCallMediaState(self, prm: Any) -> None:
        self.agent.note(self.parent, "out_media", self)


class _Account(pj.Account):  # type: ignore[misc]
    def __init__(self, agent: Agent) -> None:
        super().__init__()
        self.agent = agent

    def onRegState(self, prm: Any) -> None:
        self.agent.note(-1, "registered", (prm.code, prm.reason))

    def onIncomingCall(self, prm: Any) -> None:
        # pjsua2 rejects a call that has no Call object when this returns: made here, the
        # rest on the loop.
        call = _SipCall(self.agent, self, prm.callId)
        self.agent.note(call.serial, "incoming", call)


class Agent:
    def __init__(self, settings: Settings, config: SipConfig, line: Line, prompts: Prompts) -> None:
        self.settings = settings
        self.config = config
        self.line = line
        self.prompts = prompts
        self.recordings = Path(settings.data_dir) / "recordings"
        self.recordings.mkdir(parents=True, exist_ok=True)
        self.calls: dict[int, _Call] = {}
        self.registered: tuple[int, str] | None = None
        self._events: collections.deque[tuple[int, str, Any]] = collections.deque()
        # The outbox's calls waiting for a free line: (placed, future, wait until).
        self._waiting: collections.deque[tuple[Placed, Future[str], float]] = collections.deque()
        self._dialling = threading.Lock()
        self._closed = False
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="sip-line")
        self._numbers = itertools.count(1)
        self.serials = itertools.count(1)  # the agent's own numbers for calls
        self._ep: Any = None
        self._account: Any = None
        self._graveyard: list[Any] = []

    # -- from pjsua2's callbacks and the pool: only noted --------------------------------------

    def note(self, call_id: int, what: str, value: Any = None) -> None:
        self._events.append((call_id, what, value))

    def place(self, placed: Placed, wait_s: float) -> Future[str]:
        """Dial ``placed`` once a line is free (within ``wait_s``, else LineBusy); the future's
        result is the call's id. Any thread."""
        future: Future[str] = Future()
        with self._dialling:
            if self._closed:
                _settle(future, error=LineBusy())
            else:
                self.note(-1, "place", (placed, future, time.monotonic() + wait_s))
        return future

    def stop_dialling(self) -> None:
        """No more of the outbox's calls: those not dialled yet go back to it now. On the
        loop's thread, after `run`."""
        with self._dialling:
            self._closed = True
        self._handle_events()
        while self._waiting:
            _, future, _ = self._waiting.popleft()
            _settle(future, error=LineBusy())

    # -- the loop ---------------------------------------------------------------------------

    def start(self) -> None:
        ep = pj.Endpoint()
        ep.libCreate()
        config = pj.EpConfig()
        config.uaConfig.threadCnt = 0
        config.uaConfig.mainThreadOnly = True
        config.uaConfig.maxCalls = self.settings.sip_max_calls
        config.uaConfig.userAgent = "community-hotline"
        config.medConfig.threadCnt = 0
        config.medConfig.clockRate = 8000
        config.medConfig.sndClockRate = 8000
        config.medConfig.ecTailLen = 0
        config.medConfig.noVad = True
        config.logConfig.level = 1
        config.logConfig.consoleLevel = 1
        ep.libInit(config)
        transport = pj.TransportConfig()
        transport.port = self.settings.sip_port
        transport.boundAddress = self.settings.sip_bind
        ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, transport)
        ep.libStart()
        ep.audDevManager().setNullDev()
        for codec in ep.codecEnum2():  # telephone audio: G.711 only
            ep.codecSetPriority(
                codec.codecId, 200 if codec.codecId.startswith(("PCMU", "PCMA")) else 0
            )
        self._ep = ep
        self._account = _Account(self)
        self._account.create(self._account_config())
        log.info("sip_started", registrar=self.settings.sip_registrar, user=self.settings.sip_user)

    def _account_config(self) -> Any:
        s = self.settings
        account = pj.AccountConfig()
        account.idUri = f"sip:{s.sip_user}@{registrar_host(s)}"
        account.regConfig.registrarUri = s.sip_registrar
        # Renewed often (a PBX that restarted has forgotten us until then); after a failure,
        # tried again every 30 s (a trunk that refused, a PBX that is down).
        account.regConfig.timeoutSec = s.sip_register_s
        account.regConfig.delayBeforeRefreshSec = min(5, max(1, s.sip_register_s // 3))
        account.regConfig.retryIntervalSec = 30
        account.sipConfig.proxies.append(f"{s.sip_registrar};lr")
        if s.sip_password:
            credentials = pj.AuthCredInfo("digest", "*", s.sip_user, 0, s.sip_password)
            account.sipConfig.authCreds.append(credentials)
        account.mediaConfig.transportConfig.port = s.sip_rtp_port
        account.mediaConfig.transportConfig.portRange = 200
        account.mediaConfig.transportConfig.boundAddress = s.sip_bind
        return account

    def run(self, stop: threading.Event) -> None:
        """Until ``stop``: poll pjsua2, handle what happened, dial what waits, run the timers."""
        while not stop.is_set():
            self._ep.libHandleEvents(POLL_MS)
            self._handle_events()
            self._dial_waiting()
            self._timers()
            self._graveyard.clear()

    def stop(self) -> None:
        self.stop_dialling()
        self._ep.hangupAllCalls()
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and any(not c.over for c in self.calls.values()):
            self._ep.libHandleEvents(POLL_MS)
            self._handle_events()
        self._pool.shutdown(wait=True)
        self._handle_events()
        self._account.shutdown()
        self.calls.clear()
        self._graveyard.clear()
        self._account = None
        import gc

        gc.collect()  # every pjsua2 object must be gone before libDestroy
        self._ep.libDestroy()

    # -- events -----------------------------------------------------------------------------

    def _handle_events(self) -> None:
        while self._events:
            call_id, what, value = self._events.popleft()
            if what == "registered":
                self._registered(*value)
                continue
            if what == "incoming":
                self._incoming(call_id, value)
                continue
            if what == "place":
                self._waiting.append(value)
                continue
            state = self.calls.get(call_id)
            if state is None or (state.over and what in LIVE_ONLY):
                continue
            getattr(self, f"_on_{what}")(call_id, state, value)
            if state.over:  # what a call that ended still had out may have come back
                self._forget_if_done(call_id, state)

    def _registered(self, code: int, reason: str) -> None:
        self.registered = (code, reason)
        if 200 <= code < 300:
            log.info("sip_registered", code=code)
        else:
            log.error("sip_registration_refused", code=code, reason=reason, retry_s=30)

    def _incoming(self, call_id: int, call: Any) -> None:
        answer = pj.CallOpParam()
        if self._in_use() >= self.settings.sip_max_calls:
            answer.statusCode = BUSY
            call.answer(answer)
            self._graveyard.append(call)
            log.warning("sip_busy", calls=len(self.calls))
            return
        remote = call.getInfo().remoteUri
        source = f"sip:{call.getInfo().callIdString[:80]}"
        state = _Call(call, CallFlow(self.config), source)
        self.calls[call_id] = state
        answer.statusCode = 200
        call.answer(answer)
        number = number_in(remote)
        state.busy += 1
        self._work(call_id, "caller", lambda: self.line.caller(number))
        log.info("sip_call", call=call_id)

    def _in_use(self) -> int:
        """Lines in use: the calls not over, and the calls placed to put callers through."""
        return sum(1 + (c.out is not None) for c in self.calls.values() if not c.over)

    def _dial_waiting(self) -> None:
        """Dial the outbox's calls that wait, while a line is free: two are kept for a caller and
        the staff phone they may be put through to (`RESERVED`)."""
        now = time.monotonic()
        free = max(1, self.settings.sip_max_calls - RESERVED) - self._in_use()
        while self._waiting and (free > 0 or self._waiting[0][2] <= now):
            placed, future, _ = self._waiting.popleft()
            if future.cancelled():
                continue
            if free <= 0:
                _settle(future, error=LineBusy())
                continue
            free -= self._place(placed, future)

    def _place(self, placed: Placed, future: Future[str]) -> int:
        """Dial ``placed``; how many lines that took."""
        call = _SipCall(self, self._account)
        try:
            call.makeCall(dial_uri(placed.address, self.settings), pj.CallOpParam(True))
        except pj.Error as exc:
            self._graveyard.append(call)
            _settle(future, error=DialFailed(str(exc.info())[:200]))
            return 0
        source = f"sip:{call.getInfo().callIdString[:80]}"
        caller = Caller(placed.address, None, placed.language)
        state = _Call(call, CalloutFlow(self.config, placed), source, caller, placed)
        state.give_up_at = time.monotonic() + self.config.ring_seconds
        self.calls[call.serial] = state
        _settle(future, result=source)
        log.info("sip_calling", call=call.serial, kind=placed.kind.value)
        return 1

    def _on_caller(self, call_id: int, state: _Call, caller: Caller) -> None:
        state.busy -= 1
        state.caller = caller
        if isinstance(state.flow, CallFlow):
            state.flow.name = caller.name
        self._start(call_id, state)

    def _on_media(self, call_id: int, state: _Call, _: Any) -> None:
        if state.media is not None:
            return
        info = state.call.getInfo()
        for media in info.media:
            if media.type == pj.PJMEDIA_TYPE_AUDIO and media.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                state.media = state.call.getAudioMedia(media.index)
                break
        self._start(call_id, state)

    def _on_confirmed(self, call_id: int, state: _Call, _: Any) -> None:
        state.confirmed, state.give_up_at = True, None
        self._start(call_id, state)

    def _start(self, call_id: int, state: _Call) -> None:
        """The flow begins once the call has audio and we know who is on it (and a call we
        placed was answered, not only ringing with early media)."""
        answered = state.confirmed or state.placed is None
        if state.started or state.over or state.media is None or state.caller is None:
            return
        if answered:
            state.started = True
            self._act(call_id, state, state.flow.answered())

    def _on_digit(self, call_id: int, state: _Call, value: tuple[str, str]) -> None:
        digit, method = value
        state.digits.append((digit, method))
        log.info("sip_digit", call=call_id, digit=digit, method=method)
        self._act(call_id, state, state.flow.key(digit))

    def _on_played(self, call_id: int, state: _Call, player: Any) -> None:
        if player is not state.player:
            return  # a prompt cut off by a key: its end means nothing now
        self._stop_player(state)
        self._act(call_id, state, state.flow.played())

    def _on_prompt(self, call_id: int, state: _Call, path: Path) -> None:
        state.busy -= 1
        if state.over or state.media is None:
            return
        self._stop_player(state)
        player = _Player(self, call_id)
        player.createPlayer(str(path), pj.PJMEDIA_FILE_NO_LOOP)
        player.startTransmit(state.media)
        state.player = player

    def _on_answer(self, call_id: int, state: _Call, answer: Answer) -> None:
        state.busy -= 1
        assert isinstance(state.flow, CallFlow)
        self._act(call_id, state, state.flow.answer(answer))

    def _on_heard(self, call_id: int, state: _Call, heard: Heard) -> None:
        state.busy -= 1
        assert isinstance(state.flow, CalloutFlow)
        self._act(call_id, state, state.flow.heard(heard))

    def _on_done(self, call_id: int, state: _Call, _: Any) -> None:
        state.busy -= 1

    def _on_failed(self, call_id: int, state: _Call, error: str) -> None:
        state.busy -= 1
        log.error("sip_line_failed", call=call_id, error=error[:300])
        if isinstance(state.flow, CalloutFlow):  # goes on as if the key had done nothing
            self._act(call_id, state, state.flow.heard(Heard()))
        elif not state.over:
            self._act(call_id, state, [HangUp()])

    def _on_out_media(self, call_id: int, state: _Call, out: Any) -> None:
        if out is not state.out or state.out_media is not None:
            return
        for media in out.getInfo().media:
            if media.type == pj.PJMEDIA_TYPE_AUDIO and media.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                state.out_media = out.getAudioMedia(media.index)
                break
        self._bridge(state)

    def _on_out_answered(self, call_id: int, state: _Call, out: Any) -> None:
        if out is not state.out:
            return
        state.out_answered, state.ring_until = True, None
        log.info("sip_put_through", call=call_id)
        self._bridge(state)
        self._act(call_id, state, state.flow.dial_answered())

    def _on_out_ended(self, call_id: int, state: _Call, value: tuple[Any, int]) -> None:
        out, code = value
        if out is not state.out:
            return
        answered = state.out_answered
        self._graveyard.append(out)
        state.out, state.out_media, state.out_answered, state.ring_until = None, None, False, None
        log.info("sip_put_through_ended", call=call_id, code=code, answered=answered)
        if state.over:
            return  # the caller is gone: the event loop lets go of the call now
        self._act(
            call_id, state, state.flow.bridge_over() if answered else state.flow.dial_failed()
        )

    def _bridge(self, state: _Call) -> None:
        if state.out_answered and state.out_media is not None and state.media is not None:
            self._stop_player(state)
            state.media.startTransmit(state.out_media)
            state.out_media.startTransmit(state.media)

    def _on_hung_up(self, call_id: int, state: _Call, code: int) -> None:
        if state.over:
            return
        state.over = True
        self._stop_player(state)
        log.info(
            "sip_call_over", call=call_id, code=code, digits="".join(d for d, _ in state.digits)
        )
        self._act(call_id, state, state.flow.hung_up(code))

    # -- actions ------------------------------------------------------------------------------

    def _act(self, call_id: int, state: _Call, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Play):
                state.wait_until = None
                self._stop_player(state)
                language = state.caller.language if state.caller else self.settings.default_language
                state.busy += 1
                self._work(call_id, "prompt", partial(self.prompts.join, action.parts, language))
            elif isinstance(action, WaitForKey):
                state.wait_until = time.monotonic() + action.seconds
            elif isinstance(action, Record):
                self._record(call_id, state, action.seconds)
            elif isinstance(action, StopRecording):
                self._stop_recording(call_id, state)
            elif isinstance(action, Ask):
                self._ask(call_id, state, action)
            elif isinstance(action, Attach):
                state.busy += 1
                attach = partial(self.line.attach, action.case, Path(action.audio), state.source)
                self._work(call_id, "done", attach)
            elif isinstance(action, FileSilent):
                state.busy += 1
                silent = partial(self.line.file_silent, state.source, self._address(state))
                self._work(call_id, "done", silent)
            elif isinstance(action, Dial):
                self._dial(call_id, state, action.phone)
            elif isinstance(action, StopDialing):
                self._stop_dialing(state)
            elif isinstance(action, Released):
                state.busy += 1
                self._work(call_id, "done", partial(self.line.released, action.case))
            elif isinstance(action, Connected):
                state.busy += 1
                connected = partial(self.line.connected, action.case, action.phone, action.family)
                self._work(call_id, "done", connected)
            elif isinstance(action, HangUp):
                self._hang_up(state)
            elif isinstance(action, Hear) and state.placed is not None:
                state.busy += 1
                hear = partial(self.line.hear, state.placed, state.source, action.digit)
                self._work(call_id, "heard", hear)
            elif isinstance(action, Converse) and state.placed is not None:
                self._converse(call_id, state, state.placed)
            elif isinstance(action, Ended) and state.placed is not None:
                state.busy += 1
                over = partial(self.line.call_over, state.placed, state.source, action.status)
                self._work(call_id, "done", over)
                log.info("sip_call_placed_over", call=call_id, status=action.status)

    def _converse(self, call_id: int, state: _Call, placed: Placed) -> None:
        """The person we rang goes on as a caller (a check-in's 2): the caller's flow, with who
        they are looked up as for a call in; the placed call's end is nobody's business now."""
        state.flow, state.placed, state.started = CallFlow(self.config), None, False
        state.busy += 1
        self._work(call_id, "caller", lambda: self.line.caller(placed.address))
        log.info("sip_check_in_converse", call=call_id)

    def _ask(self, call_id: int, state: _Call, ask: Ask) -> None:
        state.asks += 1
        state.busy += 1
        provider_id = f"{state.source}:{state.asks}"
        address = self._address(state)
        language = state.caller.language if state.caller else self.settings.default_language
        self._work(call_id, "answer", lambda: self.line.ask(provider_id, address, ask, language))

    def _record(self, call_id: int, state: _Call, seconds: int) -> None:
        if state.media is None:
            return
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", state.source)
        path = self.recordings / f"{name}-{next(self._numbers)}.wav"
        recorder = pj.AudioMediaRecorder()
        recorder.createRecorder(str(path))
        state.media.startTransmit(recorder)
        state.recorder, state.recording = recorder, path
        state.record_until = time.monotonic() + seconds

    def _stop_recording(self, call_id: int, state: _Call) -> None:
        if state.recorder is None:
            return
        if state.media is not None and not state.over:
            with contextlib.suppress(pj.Error):
                state.media.stopTransmit(state.recorder)
        self._graveyard.append(state.recorder)  # destroyed: its WAV header is written
        state.recorder, path = None, state.recording
        state.record_until = None
        self._graveyard.clear()
        self._act(call_id, state, state.flow.recorded(str(path)))

    def _stop_player(self, state: _Call) -> None:
        if state.player is None:
            return
        if state.media is not None and not state.over:
            with contextlib.suppress(pj.Error):
                state.player.stopTransmit(state.media)
        self._graveyard.append(state.player)
        state.player = None

    def _dial(self, call_id: int, state: _Call, phone: str) -> None:
        out = _OutCall(self, self._account, call_id)
        try:
            out.makeCall(dial_uri(phone, self.settings), pj.CallOpParam(True))
        except pj.Error as exc:
            log.warning("sip_dial_failed", call=call_id, error=str(exc.info())[:200])
            self._graveyard.append(out)
            self._act(call_id, state, state.flow.dial_failed())
            return
        state.out, state.out_answered = out, False
        state.ring_until = time.monotonic() + self.config.ring_seconds
        # The leg's Call-ID: what the PBX and the staff phone know it by.
        log.info("sip_dialling", call=call_id, leg=out.getInfo().callIdString[:80])

    def _stop_dialing(self, state: _Call) -> None:
        if state.out is None:
            return
        params = pj.CallOpParam()
        params.statusCode = pj.PJSIP_SC_REQUEST_TERMINATED
        with contextlib.suppress(pj.Error):
            state.out.hangup(params)

    def _hang_up(self, state: _Call) -> None:
        """End the call (one we placed that is still ringing: CANCEL)."""
        if state.over:
            return
        try:
            state.call.hangup(pj.CallOpParam())
        except pj.Error as exc:
            log.info("sip_hangup_failed", error=str(exc.info())[:200])

    def _timers(self) -> None:
        now = time.monotonic()
        for call_id, state in list(self.calls.items()):
            if state.record_until is not None and now >= state.record_until:
                self._stop_recording(call_id, state)
            if state.ring_until is not None and now >= state.ring_until:
                state.ring_until = None
                self._stop_dialing(state)  # rang out: its end is a failed dial
            if state.give_up_at is not None and now >= state.give_up_at:
                state.give_up_at = None  # rang out: cancelled, its end is "no-answer"
                self._hang_up(state)
            if state.wait_until is not None and now >= state.wait_until:
                state.wait_until = None
                self._act(call_id, state, state.flow.silence())

    def _forget_if_done(self, call_id: int, state: _Call) -> None:
        """A call over, with nothing of it left out on the pool or the line: let go of it
        (pjsua2 then frees its slot; until then it counts against the 4)."""
        done = state.busy <= 0 and state.recorder is None and state.out is None
        if state.over and done and self.calls.get(call_id) is state:
            self._graveyard.append(self.calls.pop(call_id).call)

    # -- the pool -----------------------------------------------------------------------------

    def _work(self, call_id: int, then: str, job: Callable[[], Any]) -> None:
        def done(future: Future[Any]) -> None:
            error = future.exception()
            if error is not None:
                self.note(call_id, "failed", f"{type(error).__name__}: {error}")
            else:
                self.note(call_id, then, future.result())

        self._pool.submit(job).add_done_callback(done)

    def _address(self, state: _Call) -> str:
        return state.caller.address if state.caller else "sip:anonymous"


def _settle(future: Future[str], *, result: str = "", error: Exception | None = None) -> None:
    """Give the waiting sender its answer (unless it stopped waiting)."""
    with contextlib.suppress(InvalidStateError):
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
