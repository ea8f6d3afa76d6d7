#!/usr/bin/env python3
"""PJSUA2 spike: registering SIP agent that answers calls, plays a prompt, records
the caller, collects DTMF (RFC 2833 + SIP INFO) and, on a trigger digit, dials a
'staff phone' through Kamailio (with ring-no-answer timeout -> CANCEL).

Modes:
  --poll     (default) threadCnt=0 for SIP and media, mainThreadOnly=True; Python
             main thread pumps ep.libHandleEvents(). All callbacks in main thread.
  --threads  pjsua worker thread + media thread; callbacks arrive on PJSIP threads
             (SWIG takes the GIL); main thread only sleeps.
"""
import argparse, json, os, re, signal, sys, threading, time
import pjsua2 as pj

T0 = time.monotonic()
def now(): return time.monotonic()
def log(*a):
    print(f"{now()-T0:9.3f} [{threading.current_thread().name[:10]:>10}]", *a, flush=True)

ARGS = None
EP = None
CALLS = {}          # pjsua call id -> Call object (must keep Python references!)
GRAVE = []          # objects to drop later (never delete a Call inside its own callback)
STATS = {"incoming": [], "outgoing": [], "cb_threads": set()}
PENDING = []        # (deadline, func) simple timer list serviced by main loop


def mark_thread(): STATS["cb_threads"].add(threading.current_thread().name)


def from_header(wholeMsg):
    m = re.search(r"^(?:From|f)\s*:\s*(.*)$", wholeMsg, re.M | re.I)
    return m.group(1).strip() if m else None


def user_of(uri):
    m = re.search(r"sips?:([^@;>]+)@", uri or "")
    return m.group(1) if m else None


class PromptPlayer(pj.AudioMediaPlayer):
    def __init__(self, call):
        super().__init__(); self.call = call
    def onEof2(self):            # called at end of file (NO_LOOP)
        mark_thread(); log(f"call {self.call.cid}: prompt finished")


class AgentCall(pj.Call):
    def __init__(self, acc, call_id=pj.PJSUA_INVALID_ID, role="in", parent=None):
        super().__init__(acc, call_id)
        self.role, self.parent = role, parent
        self.cid = call_id
        self.player = self.recorder = self.am = None
        self.rec = {"role": role, "digits": [], "t_start": now()}
        self.child = None

    # ---------------------------------------------------------------- state
    def onCallState(self, prm):
        mark_thread()
        ci = self.getInfo()
        self.cid = ci.id
        st = ci.state
        r = self.rec
        log(f"call {ci.id} ({self.role}) state={ci.stateText} code={ci.lastStatusCode} {ci.lastReason}")
        if st == pj.PJSIP_INV_STATE_CALLING: r.setdefault("t_calling", now())
        if st == pj.PJSIP_INV_STATE_EARLY:   r.setdefault("t_early", now())
        if st == pj.PJSIP_INV_STATE_CONFIRMED:
            r.setdefault("t_confirmed", now())
            if self.role == "out" and self.parent is not None:
                self.parent.staff_answered(self)
        if st == pj.PJSIP_INV_STATE_DISCONNECTED:
            r["t_end"] = now(); r["end_code"] = ci.lastStatusCode; r["end_reason"] = ci.lastReason
            self.cleanup()
            if self.role == "out" and self.parent is not None:
                self.parent.staff_done(self)
            CALLS.pop(ci.id, None)
            # break parent<->child reference cycle, else the Call is destroyed by the
            # Python GC after libDestroy() -> assertion abort in pjsua_call_set_user_data
            if self.parent is not None and self.parent.child is self: self.parent.child = None
            self.parent = None
            GRAVE.append(self)   # drop reference later, outside this callback

    def onCallMediaState(self, prm):
        mark_thread()
        ci = self.getInfo()
        for mi in ci.media:
            if mi.type == pj.PJMEDIA_TYPE_AUDIO and mi.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                if self.am is not None:
                    continue
                self.am = self.getAudioMedia(mi.index)
                if self.role == "in":
                    # record caller audio
                    self.recorder = pj.AudioMediaRecorder()
                    fn = os.path.join(ARGS.recdir, f"rec_{ci.id}_{int(time.time()*1000)}.wav")
                    self.recorder.createRecorder(fn)
                    self.am.startTransmit(self.recorder)
                    self.rec["record_file"] = fn
                    # play prompt to caller
                    self.player = PromptPlayer(self)
                    self.player.createPlayer(ARGS.prompt, pj.PJMEDIA_FILE_NO_LOOP)
                    self.player.startTransmit(self.am)
                    log(f"call {ci.id}: media active, playing {ARGS.prompt}, recording {fn}")
                else:
                    log(f"call {ci.id}: outgoing media active")

    # ---------------------------------------------------------------- DTMF
    def onDtmfDigit(self, prm):
        mark_thread()
        meth = {pj.PJSUA_DTMF_METHOD_RFC2833: "rfc2833",
                pj.PJSUA_DTMF_METHOD_SIP_INFO: "info"}.get(prm.method, str(prm.method))
        t = now()
        self.rec["digits"].append({"d": prm.digit, "m": meth, "dur": prm.duration, "t": t, "wall": time.time()})
        log(f"call {self.cid} ({self.role}) DTMF '{prm.digit}' via {meth} dur={prm.duration}")
        if self.role == "in" and prm.digit == ARGS.trigger and ARGS.dial and self.child is None:
            self.dial_staff(t)

    # ---------------------------------------------------------------- outgoing
    def dial_staff(self, t_digit):
        if self.player:                      # stop prompt
            try: self.player.stopTransmit(self.am)
            except pj.Error: pass
        c = AgentCall(ACC, role="out", parent=self)
        c.rec["t_digit"] = t_digit
        c.rec["wall_digit"] = time.time()
        c.rec["target"] = ARGS.dial
        op = pj.CallOpParam(True)
        c.makeCall(ARGS.dial, op)            # returns after INVITE is queued
        c.rec["t_makecall_ret"] = now()
        CALLS[c.getId()] = c
        self.child = c
        # ring-no-answer timeout: hang up (=> CANCEL) if not answered in time
        PENDING.append((now() + ARGS.ring_timeout, lambda: self.staff_timeout(c)))
        log(f"call {self.cid}: dialing {ARGS.dial} as call {c.getId()}")

    def staff_timeout(self, c):
        if c.rec.get("t_confirmed") or c.rec.get("t_end"):
            return
        log(f"call {c.getId()}: ring timeout {ARGS.ring_timeout}s -> hangup (CANCEL)")
        c.rec["timed_out"] = True
        op = pj.CallOpParam(); op.statusCode = pj.PJSIP_SC_REQUEST_TERMINATED
        try: c.hangup(op)
        except pj.Error as e: log("hangup err", e.info())

    def staff_answered(self, c):
        # bridge caller <-> staff in the conference bridge
        if self.am is not None and c.am is not None:
            self.am.startTransmit(c.am); c.am.startTransmit(self.am)
            log(f"call {self.cid}: bridged with staff call {c.getId()}")

    def staff_done(self, c):
        STATS["outgoing"].append(c.rec)

    # ---------------------------------------------------------------- misc
    def onCallTransferRequest(self, prm):
        mark_thread(); log(f"call {self.cid}: REFER to {prm.dstUri} -> accepting"); prm.statusCode = 202

    def cleanup(self):
        try:
            if self.recorder and self.am: self.am.stopTransmit(self.recorder)
        except pj.Error: pass
        if self.role == "in":
            STATS["incoming"].append(self.rec)
        self.recorder = None      # destroys recorder => WAV header finalised
        self.player = None


class AgentAccount(pj.Account):
    def onRegState(self, prm):
        mark_thread()
        log(f"REGISTER -> {prm.code} {prm.reason} expiration={prm.expiration}")
        STATS["reg_code"] = prm.code

    def onIncomingCall(self, prm):
        mark_thread()
        c = AgentCall(self, prm.callId, role="in")
        ci = c.getInfo()
        frm = from_header(prm.rdata.wholeMsg)
        c.rec.update({"remoteUri": ci.remoteUri, "from_hdr": frm, "caller": user_of(ci.remoteUri),
                      "src": prm.rdata.srcAddress})
        CALLS[prm.callId] = c
        log(f"incoming call {prm.callId} from {ci.remoteUri} (caller={user_of(ci.remoteUri)})")
        op = pj.CallOpParam(); op.statusCode = 200
        c.answer(op)


ACC = None


def main():
    global ARGS, EP, ACC
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", action="store_true", help="use PJSIP internal worker threads")
    ap.add_argument("--port", type=int, default=5070)
    ap.add_argument("--rtp-port", type=int, default=40000)
    ap.add_argument("--registrar", default="sip:127.0.0.1:5060")
    ap.add_argument("--user", default="agent")
    ap.add_argument("--prompt", default="/tmp/sipspike/prompt.wav")
    ap.add_argument("--recdir", default="/tmp/sipspike/rec")
    ap.add_argument("--trigger", default="1")
    ap.add_argument("--dial", default="", help="URI to dial on trigger digit ('' = off)")
    ap.add_argument("--ring-timeout", type=float, default=8.0)
    ap.add_argument("--duration", type=float, default=0, help="exit after N s (0 = until SIGTERM)")
    ap.add_argument("--stats", default="/tmp/sipspike/stats.json")
    ap.add_argument("--loglevel", type=int, default=1)
    ap.add_argument("--max-calls", type=int, default=30)
    ARGS = ap.parse_args()
    os.makedirs(ARGS.recdir, exist_ok=True)
    threading.current_thread().name = "main"

    EP = pj.Endpoint(); EP.libCreate()
    cfg = pj.EpConfig()
    poll = not ARGS.threads
    cfg.uaConfig.threadCnt = 0 if poll else 1
    cfg.uaConfig.mainThreadOnly = poll
    cfg.uaConfig.maxCalls = ARGS.max_calls     # must be < PJSUA_MAX_CALLS (32) else silently 4
    cfg.uaConfig.userAgent = "pjsua2-spike"
    cfg.medConfig.threadCnt = 0 if poll else 1  # 0: RTP polled by libHandleEvents too
    cfg.medConfig.clockRate = 8000
    cfg.medConfig.sndClockRate = 8000
    cfg.medConfig.ecTailLen = 0
    cfg.medConfig.noVad = True
    cfg.logConfig.level = ARGS.loglevel
    cfg.logConfig.consoleLevel = ARGS.loglevel
    EP.libInit(cfg)
    tc = pj.TransportConfig(); tc.port = ARGS.port; tc.boundAddress = "127.0.0.1"
    EP.transportCreate(pj.PJSIP_TRANSPORT_UDP, tc)
    EP.libStart()
    EP.audDevManager().setNullDev()            # no sound card; conf bridge clocked by null dev
    # codecs: keep G.711 only (sipp pcaps are PCMA/PCMU)
    for ci in EP.codecEnum2():
        pri = 200 if ci.codecId.startswith(("PCMU", "PCMA")) else 0
        EP.codecSetPriority(ci.codecId, pri)

    acfg = pj.AccountConfig()
    acfg.idUri = f"sip:{ARGS.user}@127.0.0.1"
    acfg.regConfig.registrarUri = ARGS.registrar
    acfg.regConfig.timeoutSec = 300
    acfg.sipConfig.proxies.append(ARGS.registrar + ";lr")   # all requests via Kamailio
    acfg.mediaConfig.transportConfig.port = ARGS.rtp_port
    acfg.mediaConfig.transportConfig.portRange = 200
    acfg.mediaConfig.transportConfig.boundAddress = "127.0.0.1"
    ACC = AgentAccount(); ACC.create(acfg)
    log(f"started pjsua2 {EP.libVersion().full} mode={'poll' if poll else 'threads'}")

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    t_end = now() + ARGS.duration if ARGS.duration else None
    while not stop.is_set() and (t_end is None or now() < t_end):
        if poll:
            EP.libHandleEvents(10)
        else:
            time.sleep(0.01)
        if PENDING:
            due = [p for p in PENDING if p[0] <= now()]
            for p in due:
                PENDING.remove(p); p[1]()
            due = p = None                     # don't keep closures (and Calls) alive
        if GRAVE:
            GRAVE.clear()
    log("shutting down")
    EP.hangupAllCalls()
    for _ in range(50):
        if poll: EP.libHandleEvents(10)
        else: time.sleep(0.01)
    ACC.shutdown()
    CALLS.clear(); GRAVE.clear()
    import gc; gc.collect()                    # all pj objects must die before libDestroy
    left = [o for o in gc.get_objects() if isinstance(o, pj.Call)]
    for o in left:
        log("LEFT", o.role, [type(r).__name__ for r in gc.get_referrers(o)])
    del left
    STATS["cb_threads"] = sorted(STATS["cb_threads"])
    import resource; ru = resource.getrusage(resource.RUSAGE_SELF)
    STATS["cpu_s"] = round(ru.ru_utime + ru.ru_stime, 2); STATS["maxrss_mb"] = round(ru.ru_maxrss / 1024, 1)
    with open(ARGS.stats, "w") as f:
        json.dump(STATS, f, indent=1, default=str)
    EP.libDestroy()
    log("bye")


if __name__ == "__main__":
    main()
