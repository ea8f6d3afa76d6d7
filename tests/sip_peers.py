"""Real SIP peers on 127.0.0.1 for the SIP line's tests: Debian's Kamailio as the registrar and
proxy the line registers with, and SIPp (Debian's sip-tester) as a caller that presses keys
(SIP INFO or RFC 2833), speaks (RTP from a file), stays silent or hangs up. `hotline sip` itself
runs as the process it is in production. Nothing here speaks SIP by itself.

    with Kamailio(tmp) as proxy, SipLine(proxy, env) as line:
        result = call(proxy, tmp, [Pause(1500), Info("1"), Pause(4000), Audio(ulaw), Info("#"),
                                   AwaitBye()])
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent / "sip"
TOOLS = ("kamailio", "sipp", "espeak-ng", "sox")


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_udp_range(size: int) -> int:
    """The first of ``size`` consecutive free UDP ports (RTP wants pairs)."""
    for _ in range(50):
        first = free_udp_port() & ~1
        try:
            socks = []
            for port in range(first, first + size):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError("no free UDP port range")


class Kamailio:
    """A throwaway Kamailio: registrar (locations in memory) and proxy on a free UDP port."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder / "kamailio"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_udp_port()
        self.staff_port = free_udp_port()
        self.noanswer_port = free_udp_port()
        self.log = self.folder / "kamailio.log"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Kamailio:
        self._start()
        return self

    def restart(self) -> None:
        """Killed and started again on the same port: it has forgotten every registration (as
        a PBX that restarts may) but routes the calls in progress by their Route headers."""
        self._stop(signal.SIGKILL)
        self._start()

    def _start(self) -> None:
        modules = sorted(glob.glob("/usr/lib/*/kamailio/modules/"))
        if not modules:
            raise RuntimeError("no Kamailio modules found (apt-get install kamailio)")
        config = (HERE / "kamailio.cfg").read_text()
        for name, value in (
            ("@PORT@", self.port),
            ("@STAFF@", self.staff_port),
            ("@NOANSWER@", self.noanswer_port),
            ("@MODULES@", modules[0]),
        ):
            config = config.replace(name, str(value))
        cfg = self.folder / "kamailio.cfg"
        cfg.write_text(config)
        command = [
            shutil.which("kamailio") or "kamailio",
            *("-f", str(cfg), "-DD", "-E", "-Y", str(self.folder)),
            *(
                "-P",
                str(self.folder / "kamailio.pid"),
                "-w",
                str(self.folder),
                "-m",
                "32",
                "-M",
                "8",
            ),
        ]
        with open(self.log, "wb") as out:
            # Its own process group: its worker processes go with it (`_stop`).
            self.process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + 15
        while "SO_RCVBUF is finally" not in self.log.read_text(errors="replace"):  # UDP is up
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"kamailio did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.05)

    def __exit__(self, *_: object) -> None:
        self._stop(signal.SIGTERM)

    def _stop(self, how: signal.Signals) -> None:
        """Kamailio and every worker it forked (its process group)."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, how)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        time.sleep(0.1)  # its workers are gone too
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)

    @property
    def uri(self) -> str:
        return f"sip:127.0.0.1:{self.port}"


class SipLine:
    """`hotline sip` registered with ``proxy``; ``env``: the rest of its settings."""

    def __init__(
        self, proxy: Kamailio, folder: Path, env: dict[str, str], *, ready: str = '"sip_registered"'
    ) -> None:
        self.proxy = proxy
        self.ready = ready
        self.folder = folder
        self.log = folder / "hotline-sip.log"
        self.env = {
            **os.environ,
            "HOTLINE_SIP_REGISTRAR": proxy.uri,
            "HOTLINE_SIP_USER": "agent",
            "HOTLINE_SIP_BIND": "127.0.0.1",
            "HOTLINE_SIP_PORT": str(free_udp_port()),
            "HOTLINE_SIP_RTP_PORT": str(free_udp_range(16)),
            "HOTLINE_LOG_JSON": "true",
            "PYTHONUNBUFFERED": "1",  # its log is read while it runs
            **env,
        }
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> SipLine:
        hotline = Path(sys.executable).with_name("hotline")
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                [str(hotline), "sip"],
                env=self.env,
                cwd=self.folder,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.wait_for(self.ready, 60)
        return self

    def wait_for(self, text: str, seconds: float) -> str:
        deadline = time.monotonic() + seconds
        while True:
            logged = self.log.read_text(errors="replace")
            if text in logged:
                return logged
            assert self.process is not None
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"`hotline sip` never logged {text}:\n{logged[-3000:]}")
            time.sleep(0.05)

    def __exit__(self, *_: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# -- the caller (SIPp) ------------------------------------------------------------------------


@dataclass(frozen=True)
class Pause:
    ms: int


@dataclass(frozen=True)
class Info:
    """A key by SIP INFO (application/dtmf-relay)."""

    digit: str


@dataclass(frozen=True)
class Rfc2833:
    """A key as RTP telephone-event (the pcap Debian's sip-tester ships for it)."""

    digit: str


@dataclass(frozen=True)
class Audio:
    """The caller speaks: raw 8 kHz µ-law streamed as RTP."""

    path: Path


@dataclass(frozen=True)
class HangUpCall:
    pass


@dataclass(frozen=True)
class AwaitBye:
    """The line hangs up: its BYE is answered."""

    seconds: int = 90


Step = Pause | Info | Rfc2833 | Audio | HangUpCall | AwaitBye

# The audio a SIPp peer offers or answers: G.711 µ-law and RFC 2833 keys.
_SDP = """v=0
o=sipp 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=ptime:20"""

_INVITE = """<send retrans="500"><![CDATA[
INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: "Caller" <sip:{caller}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:{caller}@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

{sdp}
]]></send>
<recv response="100" optional="true"/>
<recv response="180" optional="true"/>
<recv response="183" optional="true"/>
<recv response="200" rtd="true" rrs="true"/>
<send><![CDATA[
ACK [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
[routes]
[last_From:]
[last_To:]
Call-ID: [call_id]
CSeq: 1 ACK
Contact: <sip:{caller}@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Length: 0
]]></send>
"""

_IN_DIALOG = """<send retrans="500"><![CDATA[
{method} [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
[routes]
[last_From:]
[last_To:]
Call-ID: [call_id]
CSeq: {cseq} {method}
Contact: <sip:{caller}@[local_ip]:[local_port]>
Max-Forwards: 70
{body_headers}Content-Length: [len]
{body}
]]></send>
<recv response="200"{crlf}/>
"""

_BYE_IN = """<recv request="BYE" timeout="{ms}"/>
<send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0
]]></send>
"""


def scenario(caller: str, steps: Sequence[Step], *, callee: str = "[service]") -> str:
    """A caller's SIPp scenario: ``caller`` may be "[field0]" and ``callee`` "[field1]" of an
    injection file (-inf), for many callers at once."""
    parts = [_INVITE.format(caller=caller, sdp=_SDP).replace("[service]", callee)]
    cseq = 2
    for step in steps:
        if isinstance(step, Pause):
            parts.append(f'<pause milliseconds="{step.ms}"/>')
        elif isinstance(step, Info):
            body = f"\nSignal={step.digit}\nDuration=160"
            parts.append(
                _IN_DIALOG.format(
                    caller=caller,
                    method="INFO",
                    cseq=cseq,
                    body_headers="Content-Type: application/dtmf-relay\n",
                    body=body,
                    crlf="",
                )
            )
            cseq += 1
        elif isinstance(step, Rfc2833):
            name = {"#": "pound", "*": "star"}.get(step.digit, step.digit)
            pcap = f"/usr/share/sip-tester/dtmf_2833_{name}.pcap"
            parts.append(f'<nop><action><exec play_pcap_audio="{pcap}"/></action></nop>')
        elif isinstance(step, Audio):
            parts.append(f'<nop><action><exec rtp_stream="{step.path},1,0"/></action></nop>')
        elif isinstance(step, HangUpCall):
            parts.append(
                _IN_DIALOG.format(
                    caller=caller,
                    method="BYE",
                    cseq=cseq,
                    body_headers="",
                    body="",
                    crlf=' crlf="true"',
                )
            )
            cseq += 1
        else:
            parts.append(_BYE_IN.format(ms=step.seconds * 1000))
    body = "\n".join(parts)
    return f'<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="caller">\n{body}\n</scenario>\n'


@dataclass(frozen=True)
class Called:
    code: int
    output: str


def call(
    proxy: Kamailio, folder: Path, steps: Sequence[Step], *, caller: str = "13800000001"
) -> Called:
    """One call from ``caller`` to the line through the proxy, scripted by ``steps``."""
    xml = folder / f"caller-{time.monotonic_ns()}.xml"
    xml.write_text(scenario(caller, steps))
    command = [
        shutil.which("sipp") or "sipp",
        f"127.0.0.1:{proxy.port}",
        *("-sf", str(xml), "-s", "agent", "-i", "127.0.0.1", "-p", str(free_udp_port())),
        *("-mi", "127.0.0.1", "-mp", str(free_udp_range(8)), "-m", "1", "-l", "1"),
        *("-nostdin", "-timeout", "180s", "-timeout_error", "-trace_err"),
    ]
    done = subprocess.run(command, cwd=folder, capture_output=True, timeout=240)
    errors = "".join(p.read_text(errors="replace") for p in folder.glob("caller-*_errors.log"))
    return Called(
        done.returncode,
        (done.stdout + done.stderr).decode(errors="replace")[-3000:] + errors[-3000:],
    )


def spoken(folder: Path, text: str, voice: str = "cmn") -> Path:
    """``text`` as raw 8 kHz µ-law (what SIPp streams): the caller's voice."""
    wav, raw = folder / "said.wav", folder / "said.ulaw"
    subprocess.run(
        ["espeak-ng", "-v", voice, "-w", str(wav), text], check=True, capture_output=True
    )
    subprocess.run(
        ["sox", str(wav), "-r", "8000", "-c", "1", "-t", "raw", "-e", "u-law", str(raw)],
        check=True,
        capture_output=True,
    )
    return raw


_ANSWER = """<recv request="INVITE" crlf="true" rrs="true">
  <action><ereg regexp=".*" search_in="hdr" header="From:" assign_to="remfrom"/></action>
</recv>
<send><![CDATA[
SIP/2.0 180 Ringing
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
[last_Record-Route:]
Contact: <sip:staff@[local_ip]:[local_port]>
Content-Length: 0
]]></send>
<pause milliseconds="{ring_ms}"/>
<send retrans="500"><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
[last_Record-Route:]
Contact: <sip:staff@[local_ip]:[local_port]>
Content-Type: application/sdp
Content-Length: [len]

{sdp}
]]></send>
<recv request="ACK" crlf="true">
  <action><ereg regexp=".*" search_in="hdr" header="To:" assign_to="remto"/></action>
</recv>
"""

_CALLEE_INFO = """<send retrans="500"><![CDATA[
INFO [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
[routes]
From:[$remto]
To:[$remfrom]
Call-ID: [call_id]
CSeq: {cseq} INFO
Contact: <sip:staff@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Type: application/dtmf-relay
Content-Length: [len]

Signal={digit}
Duration=160
]]></send>
<recv response="200" crlf="true"/>
"""

_CALLEE_BYE = """<send retrans="500"><![CDATA[
BYE [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
[routes]
From:[$remto]
To:[$remfrom]
Call-ID: [call_id]
CSeq: {cseq} BYE
Contact: <sip:staff@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Length: 0
]]></send>
<recv response="200" crlf="true"/>
"""

CalleeStep = Pause | Info | HangUpCall | AwaitBye


def callee_scenario(steps: Sequence[CalleeStep], *, ring_ms: int = 500) -> str:
    """A phone the line calls: rings ``ring_ms``, answers, then ``steps`` (keys by SIP INFO)."""
    parts = [_ANSWER.format(ring_ms=ring_ms, sdp=_SDP)]
    cseq = 1
    for step in steps:
        if isinstance(step, Pause):
            parts.append(f'<pause milliseconds="{step.ms}"/>')
        elif isinstance(step, Info):
            parts.append(_CALLEE_INFO.format(cseq=cseq, digit=step.digit))
            cseq += 1
        elif isinstance(step, HangUpCall):
            parts.append(_CALLEE_BYE.format(cseq=cseq))
            cseq += 1
        else:
            parts.append(_BYE_IN.format(ms=step.seconds * 1000))
    body = "\n".join(parts)
    return f'<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="callee">\n{body}\n</scenario>\n'


class StaffPhone:
    """A staff phone on the proxy's staff port (``answers``: rings 1 s, answers, talks 3 s and
    hangs up; or, with ``steps``, answers and goes through them) or its
    never-answering port: SIPp as a user agent server, for ``calls`` calls; with ``trace``, its
    message log says when each INVITE came (`invites`)."""

    def __init__(
        self,
        proxy: Kamailio,
        folder: Path,
        *,
        answers: bool,
        calls: int = 1,
        trace: bool = False,
        steps: Sequence[CalleeStep] = (),
    ) -> None:
        self.port = proxy.staff_port if answers else proxy.noanswer_port
        self.folder = folder / f"staff-{self.port}"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.scenario = HERE / "staff_never_answers.xml"
        if answers:
            self.scenario = self.folder / "callee.xml"
            talks = callee_scenario(steps or (Pause(3000), HangUpCall()), ring_ms=1000)
            self.scenario.write_text(talks)
        self.calls = calls
        self.trace = trace
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> StaffPhone:
        command = [
            shutil.which("sipp") or "sipp",
            *("-sf", str(self.scenario), "-i", "127.0.0.1", "-p", str(self.port)),
            *("-mi", "127.0.0.1", "-mp", str(free_udp_range(8 + 2 * self.calls))),
            *("-m", str(self.calls), "-nostdin", "-timeout", "300s", "-timeout_error"),
            *("-trace_err", *(["-trace_msg"] if self.trace else [])),
        ]
        self.process = subprocess.Popen(
            command, cwd=self.folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        time.sleep(0.3)  # bound to its port
        return self

    def rang(self, seconds: float = 30) -> tuple[int, str]:
        """Wait for its calls to end: (SIPp's exit code, what it printed)."""
        assert self.process is not None
        out, _ = self.process.communicate(timeout=seconds)
        return self.process.returncode, out.decode(errors="replace")[-2000:]

    def stop(self) -> None:
        """End it now (SIPp writes out its logs as it goes)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def invites(self) -> dict[str, float]:
        """When each call's first INVITE reached it (epoch seconds), by its Call-ID, from its
        message trace."""
        found: dict[str, float] = {}
        for log in self.folder.glob("*_messages.log"):
            text = log.read_text(errors="replace")
            for block in re.split(r"^(?=-{10,} \d{4}-)", text, flags=re.M):
                head = re.match(
                    r"-+ (\d{4}-\d\d-\d\d\s\d\d:\d\d:\d\d\.\d+)\n.*received.*\n\nINVITE ", block
                )
                call_id = re.search(r"^(?:Call-ID|i):\s*(\S+)", block, re.M | re.I)
                if head and call_id and call_id.group(1) not in found:
                    stamp = datetime.strptime(head.group(1), "%Y-%m-%d %H:%M:%S.%f")
                    found[call_id.group(1)] = stamp.timestamp()
        return found

    def __exit__(self, *_: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
