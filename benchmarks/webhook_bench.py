"""Webhook latency and throughput: 50 simulated texters and callers against `hotline serve` on
PostgreSQL, each Twilio webhook signed as Twilio signs it, beside GET /healthz of the same
servers measured in the same run under the same load model; then the database shows whether
every conversation filed exactly the cases its script files.

The server is the real thing: `hotline serve --workers N` in a subprocess (HOTLINE_RUN_WORKER=false,
so the replies stay in the outbox): N uvicorn worker processes on one port, the kernel spreading
connections among them (a call's place travels in its action URLs, so any process can take its
next webhook).

The conversations are turn_bench.py's scripts: texters POST /twilio/messaging, one message per
line; callers POST /twilio/voice, then follow the TwiML (tests/fakes/caller.py), answering each
<Gather> with SpeechResult (silence: an empty post), and end with the status callback.
"Inbound messages" are what a person said or wrote: POST /twilio/messaging and /twilio/voice/turn.
With --delivery-reports each SMS is followed by the two status callbacks Twilio posts about our
reply (sent, delivered: POST /twilio/messaging/status), load a real deployment has on top.

Two load models, both printed (as in turn_bench.py):
  paced:       every conversation waits a think time (1-2 s) before each message; /healthz is
               called by 50 clients with the same think time. The p99 target is judged here.
  closed loop: the next webhook as soon as the reply comes (capacity); /healthz back to back by
               50 clients. The messages-per-second target is judged here.
Targets: p99 of every webhook route within 3 times GET /healthz's p99; at least 300 inbound
messages per second. GET /readyz (one "SELECT 1" on a worker thread) is measured the same way
after /healthz: the floor of any webhook that touches the database.

Run: .venv/bin/python benchmarks/webhook_bench.py [--postgres-url URL] [--conversations 50]
     [--processes 1 2] [--models paced closed] [--paced-seconds 40] [--closed-seconds 20]
     [--healthz-seconds 20] [--think 1.0 2.0] [--delivery-reports]
(about 4 minutes; PostgreSQL: a throwaway server from tests/pg_server.py, or --postgres-url /
HOTLINE_TEST_POSTGRES_URL)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import SplitResult, urlencode, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root

import httpx
import psutil
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from twilio.request_validator import RequestValidator

from benchmarks.queue_bench import ServerCpu
from benchmarks.turn_bench import (
    BACKGROUND_CHANNEL,
    SCRIPTS,
    Script,
    figures,
    fill,
    pct_ms,
    phone,
    quiet_logs,
    script_for,
    server_version,
)
from bot.conversation.state import DialogueState
from config.settings import Settings
from nlu.embedded import load_bundle
from storage.db import make_engine
from storage.models import Case, ConversationState, Direction, Message, RetireePhone
from tests.fakes.caller import ACCOUNT_SID, OUR_NUMBER, Call, FakeCaller, Silence, Speak
from tests.pg_server import server_for_benchmark

PUBLIC_URL = "https://hotline.example.org"
TOKEN = "webhook-bench-auth-token"
REPO = Path(__file__).resolve().parents[1]
SMS_PATH, VOICE_PATH = "/twilio/messaging", "/twilio/voice"
TURN_PATH, STATUS_PATH = "/twilio/voice/turn", "/twilio/voice/status"
DELIVERY_PATH = "/twilio/messaging/status"
DELIVERY_REPORTS = ("sent", "delivered")  # Twilio's status callbacks for one SMS we send
MESSAGE_ROUTES = frozenset({SMS_PATH, TURN_PATH, "/twilio/voice/confirm"})
HEALTHZ = "/healthz"
KEPT = "database_down_webhook_kept"  # a webhook kept in the spool: the database failed
READYZ = "/readyz"  # "SELECT 1" on a worker thread: the least any database work costs
TARGET_RATIO, TARGET_RATE = 3.0, 300.0


# --- the servers ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Servers:
    """`hotline serve --workers count` on the database ``url``: one port, ``count`` processes."""

    def __init__(self, url: str, data_dir: Path, count: int) -> None:
        self.processes: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []
        self.urls: list[str] = []
        hotline = Path(sys.executable).with_name("hotline")
        port = free_port()
        env = {
            **os.environ,
            "HOTLINE_DATABASE_URL": url,
            "HOTLINE_DATA_DIR": str(data_dir),
            "HOTLINE_PORT": str(port),
            "HOTLINE_PUBLIC_URL": PUBLIC_URL,
            "HOTLINE_TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "HOTLINE_TWILIO_AUTH_TOKEN": TOKEN,
            "HOTLINE_TWILIO_FROM_NUMBER": OUR_NUMBER,
            "HOTLINE_RUN_WORKER": "false",
            "HOTLINE_LOG_LEVEL": "WARNING",
        }
        log = data_dir / f"serve-{port}.log"
        command = [str(hotline), "serve", "--workers", str(count)]
        with open(log, "wb") as out:
            self.processes.append(
                subprocess.Popen(
                    command, env=env, cwd=data_dir, stdout=out, stderr=subprocess.STDOUT
                )
            )
        self.logs.append(log)
        self.urls.append(f"http://127.0.0.1:{port}")

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=5) as client:
            for process, url, log in zip(self.processes, self.urls, self.logs, strict=True):
                while True:
                    if process.poll() is not None:
                        raise SystemExit(f"`hotline serve` exited: {log.read_text()[-2000:]}")
                    try:
                        if client.get(url + "/readyz").status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    if time.monotonic() > deadline:
                        raise SystemExit(f"`hotline serve` not ready: {log.read_text()[-2000:]}")
                    time.sleep(0.1)

    def cpu_s(self) -> float:
        """The server's CPU time: the parent and its worker processes."""
        total = 0.0
        for p in self.processes:
            if p.poll() is None:
                parent = psutil.Process(p.pid)
                total += _cpu(parent) + sum(_cpu(c) for c in parent.children(recursive=True))
        return total

    def errors(self) -> list[str]:
        """The errors the servers logged (they log at WARNING and above), and the webhooks they
        kept for later because the database failed under them (answered 2xx all the same,
        bot/channels/twilio/outage.py)."""
        lines = [line for log in self.logs for line in log.read_text(errors="replace").splitlines()]
        return [line for line in lines if '"level": "warning"' not in line or KEPT in line]

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def postgres_cpu_s(postmaster: int | None) -> float | None:
    """CPU seconds of a local PostgreSQL server: the postmaster, its live backends and the
    backends it has reaped."""
    if postmaster is None:
        return None
    try:
        root = psutil.Process(postmaster)
        times = root.cpu_times()
        total = times.user + times.system + times.children_user + times.children_system
        for child in root.children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):
                total += _cpu(child)
        return total
    except psutil.Error:
        return None


# --- Twilio's side --------------------------------------------------------------------------


@dataclass
class Sample:
    route: str
    done_at: float  # time.perf_counter() when the response was in
    seconds: float
    status: int


@dataclass
class Conversation:
    index: int
    script: Script
    address: str
    runs: int = 0
    messages: int = 0  # inbound messages sent (SMS, voice turns)
    error: str | None = None


@dataclass
class Response:
    status_code: int
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")


class Http:
    """A minimal HTTP/1.1 client with kept-alive connections: httpx's AsyncClient costs ~8 ms
    of CPU per webhook, which on a small machine is taken from the server under test."""

    def __init__(self) -> None:
        self.idle: dict[tuple[str, int], list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]
        self.idle = {}

    async def request(self, method: str, url: str, body: bytes = b"", **headers: str) -> Response:
        parts = urlsplit(url)
        where = (parts.hostname or "127.0.0.1", parts.port or 80)
        idle = self.idle.setdefault(where, [])
        while idle:
            reader, writer = idle.pop()
            try:
                return await self._exchange(reader, writer, idle, method, parts, body, headers)
            except (ConnectionError, asyncio.IncompleteReadError):
                writer.close()  # the server closed it (uvicorn: after 5 s idle); another one
        reader, writer = await asyncio.open_connection(*where)
        return await self._exchange(reader, writer, idle, method, parts, body, headers)

    async def _exchange(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]],
        method: str,
        parts: SplitResult,
        body: bytes,
        headers: dict[str, str],
    ) -> Response:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        head = f"{method} {target} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        if body:
            head += "Content-Type: application/x-www-form-urlencoded\r\n"
        head += "".join(f"{k.replace('_', '-')}: {v}\r\n" for k, v in headers.items())
        writer.write(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
        lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        fields = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
        content = await reader.readexactly(int(fields.get("content-length", "0")))
        if fields.get("connection") == "close":
            writer.close()
        else:
            idle.append((reader, writer))
        return Response(int(lines[0].split()[1]), content)

    async def aclose(self) -> None:
        for connections in self.idle.values():
            for _, writer in connections:
                writer.close()


class Twilio:
    """Sends the webhooks Twilio would send, signed over the public URL, to the servers in
    turn; every request is timed."""

    def __init__(self, client: Http, servers: list[str], delivery_reports: bool = False) -> None:
        self.client = client
        self.delivery_reports = delivery_reports
        self.servers = itertools.cycle(servers)
        self.validator = RequestValidator(TOKEN)
        self.caller = FakeCaller(servers[0], PUBLIC_URL, TOKEN)  # for its TwiML following
        self.samples: list[Sample] = []

    async def request(self, path: str, params: dict[str, str] | None = None) -> Response:
        """POST ``params`` (signed) to ``path`` (with its query); GET when there are none."""
        url = next(self.servers) + path
        began = time.perf_counter()
        if params is None:
            response = await self.client.request("GET", url)
        else:
            signature = self.validator.compute_signature(PUBLIC_URL + path, params)
            body = urlencode(params).encode()
            response = await self.client.request("POST", url, body, X_Twilio_Signature=signature)
        done = time.perf_counter()
        self.samples.append(Sample(urlsplit(path).path, done, done - began, response.status_code))
        if response.status_code >= 300:
            raise RuntimeError(f"{path}: {response.status_code} {response.text[:200]}")
        return response

    async def text(self, conversation: Conversation, body: str) -> None:
        sid = "SM" + uuid.uuid4().hex
        params = {
            "AccountSid": ACCOUNT_SID,
            "ApiVersion": "2010-04-01",
            "MessageSid": sid,
            "SmsMessageSid": sid,
            "SmsSid": sid,
            "From": conversation.address,
            "To": OUR_NUMBER,
            "Body": body,
            "NumMedia": "0",
            "NumSegments": "1",
        }
        conversation.messages += 1
        await self.request(SMS_PATH, params)
        if self.delivery_reports:
            # What Twilio posts about our reply (the app sends it through the outbox; here the
            # outbox is not sent, so the reply's sid is made up: the app records it all the same).
            reply = "SM" + uuid.uuid4().hex
            for status in DELIVERY_REPORTS:
                report = {
                    "AccountSid": ACCOUNT_SID,
                    "ApiVersion": "2010-04-01",
                    "MessageSid": reply,
                    "SmsSid": reply,
                    "MessageStatus": status,
                    "SmsStatus": status,
                    "From": OUR_NUMBER,
                    "To": conversation.address,
                }
                await self.request(DELIVERY_PATH, report)

    async def call(
        self, conversation: Conversation, think: tuple[float, float] | None, rng: random.Random
    ) -> None:
        """One call: the script's lines said at the Gathers (FakeCaller follows the TwiML),
        thinking before each answer; then the status callback."""
        caller, address = self.caller, conversation.address
        call = Call(call_sid=caller.new_sid(), caller=address)
        actions = [Speak(line) if line else Silence() for line in conversation.script.lines]
        url = PUBLIC_URL + VOICE_PATH
        params = caller.base_params(call.call_sid, address, OUR_NUMBER, "ringing")
        for _ in range(60):
            parts = urlsplit(url)
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            if parts.path in MESSAGE_ROUTES:
                conversation.messages += 1
            response = await self.request(path, params)
            if params.get("CallStatus") == "completed":
                break  # hung up while a <Dial> rang: Twilio still tells its action
            outcome = caller._follow(call, ET.fromstring(response.content), url, actions, {})
            if outcome is None:
                break
            url, extra = outcome
            params = caller.base_params(call.call_sid, address, OUR_NUMBER, "in-progress") | extra
            if think and urlsplit(url).path in MESSAGE_ROUTES:
                await asyncio.sleep(rng.uniform(*think))
        params = caller.base_params(call.call_sid, address, OUR_NUMBER, "completed")
        await self.request(STATUS_PATH, params | {"CallDuration": "30"})

    async def run_script(
        self, conversation: Conversation, think: tuple[float, float] | None, rng: random.Random
    ) -> None:
        if conversation.script.channel == "sms":
            for line in conversation.script.lines:
                if think:
                    await asyncio.sleep(rng.uniform(*think))
                await self.text(conversation, line)
        else:
            if think:
                await asyncio.sleep(rng.uniform(*think))
            await self.call(conversation, think, rng)
        conversation.runs += 1


async def converse(
    twilio: Twilio,
    conversation: Conversation,
    think: tuple[float, float] | None,
    stop: asyncio.Event,
) -> None:
    """Run the script again and again until ``stop``; the run in progress is finished."""
    rng = random.Random(conversation.index)
    try:
        if think:
            await asyncio.sleep(rng.uniform(0, think[1]))  # not all at the same instant
        while not stop.is_set():
            await twilio.run_script(conversation, think, rng)
    except Exception as exc:
        conversation.error = repr(exc)


async def healthz_load(
    twilio: Twilio,
    clients: int,
    seconds: float,
    think: tuple[float, float] | None,
    path: str = HEALTHZ,
) -> tuple[float, list[Sample]]:
    """GET ``path`` (/healthz) by ``clients`` clients for ``seconds`` under the load model."""
    twilio.samples = []
    began = time.perf_counter()
    deadline = began + seconds

    async def client(i: int) -> None:
        rng = random.Random(i)
        if think:
            await asyncio.sleep(rng.uniform(0, think[1]))
        while time.perf_counter() < deadline:
            await twilio.request(path)
            if think:
                await asyncio.sleep(rng.uniform(*think))

    await asyncio.gather(*(client(i) for i in range(clients)))
    return time.perf_counter() - began, twilio.samples


async def probe(twilio: Twilio, stop: asyncio.Event, found: list[Sample]) -> None:
    """GET /healthz every 100 ms while the webhooks run: how long the event loop keeps it."""
    while not stop.is_set():
        began = time.perf_counter()
        response = await twilio.client.request("GET", next(twilio.servers) + HEALTHZ)
        done = time.perf_counter()
        found.append(Sample(HEALTHZ, done, done - began, response.status_code))
        await asyncio.sleep(0.1)


# --- one run --------------------------------------------------------------------------------


def reference_loop_ms() -> float:
    """The CPU time of a fixed pure-Python loop (the best of three): how fast the machine is
    right now. A shared virtual machine's speed drifts by tens of percent between runs, which
    shows in every CPU figure; this says which runs to compare."""
    best = float("inf")
    for _ in range(3):
        began = time.process_time()
        total = 0
        for i in range(2_000_000):
            total += i
        best = min(best, time.process_time() - began)
    return best * 1000


@dataclass
class Run:
    processes: int
    model: str
    healthz_s: float = 0.0
    healthz: list[Sample] = field(default_factory=list)
    healthz_cpu_s: float = 0.0  # of the servers
    readyz_s: float = 0.0
    readyz: list[Sample] = field(default_factory=list)
    window_s: float = 0.0
    began: float = 0.0
    webhooks: list[Sample] = field(default_factory=list)
    probes: list[Sample] = field(default_factory=list)
    conversations: list[Conversation] = field(default_factory=list)
    expected: dict[str, Counter[str]] = field(default_factory=dict)
    cpu: dict[str, float | None] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    speed_ms: float = 0.0  # reference_loop_ms() before the run

    @property
    def messages_s(self) -> list[float]:
        return [s.seconds for s in self.webhooks if s.route in MESSAGE_ROUTES]


@dataclass(frozen=True)
class Verdict:
    worst_route: str  # the webhook with the highest p99 / /healthz's p99
    ratio: float
    rate: float  # inbound messages per second
    healthz_n: int  # /healthz samples behind its p99


# A p99 from fewer samples is one or two stray requests: with 160 /healthz samples one 43 ms
# hiccup made its "p99" 19 ms, and every webhook "within 3x". Below this the ratio is not judged.
MIN_HEALTHZ_SAMPLES = 500


def cases_of(db: Session, address: str) -> Counter[str]:
    rows = db.scalars(
        select(Case.category)
        .join(RetireePhone, RetireePhone.retiree_id == Case.retiree_id)
        .where(RetireePhone.number == address, Case.channel != BACKGROUND_CHANNEL)
    )
    return Counter(rows)


async def reference(twilio: Twilio, url: str, first: int) -> dict[str, Counter[str]]:
    """Each script once, alone, on a retiree of its own (also the servers' warm-up): the
    cases one run of it files."""
    engine = make_engine(url)
    found = {}
    try:
        for i, script in enumerate(SCRIPTS):
            conversation = Conversation(first + i, script, phone(first + i))
            await twilio.run_script(conversation, None, random.Random(0))
            with Session(engine) as db:
                found[script.name] = cases_of(db, conversation.address)
    finally:
        engine.dispose()
    return found


async def load(
    run: Run,
    servers: Servers,
    url: str,
    args: argparse.Namespace,
    postmaster: int | None,
) -> None:
    client = Http()
    try:
        twilio = Twilio(client, servers.urls, args.delivery_reports)
        run.expected = await reference(twilio, url, args.conversations)
        think = (args.think[0], args.think[1]) if run.model == "paced" else None
        cpu = servers.cpu_s()
        run.healthz_s, run.healthz = await healthz_load(
            twilio, args.conversations, args.healthz_seconds, think
        )
        run.healthz_cpu_s = servers.cpu_s() - cpu
        run.readyz_s, run.readyz = await healthz_load(
            twilio, args.conversations, args.healthz_seconds, think, READYZ
        )
        twilio.samples = run.webhooks
        run.conversations = [
            Conversation(i, script_for(i, args.conversations), phone(i))
            for i in range(args.conversations)
        ]
        stop = asyncio.Event()
        before = (time.process_time(), servers.cpu_s(), postgres_cpu_s(postmaster))
        run.began = time.perf_counter()
        tasks = [asyncio.create_task(converse(twilio, c, think, stop)) for c in run.conversations]
        prober = asyncio.create_task(probe(twilio, stop, run.probes))
        seconds = args.paced_seconds if run.model == "paced" else args.closed_seconds
        await asyncio.sleep(seconds)
        run.window_s = time.perf_counter() - run.began
        after = (time.process_time(), servers.cpu_s(), postgres_cpu_s(postmaster))
        stop.set()
        await asyncio.gather(*tasks, prober)
    finally:
        await client.aclose()
    run.cpu["client"] = after[0] - before[0]
    run.cpu["hotline serve"] = after[1] - before[1]
    pg_before, pg_after = before[2], after[2]
    run.cpu["PostgreSQL"] = None if pg_before is None or pg_after is None else pg_after - pg_before


def check(run: Run, url: str) -> list[str]:
    """Every conversation's retiree has the cases its runs file, every message was recorded
    once, and no conversation is left with a request half-way."""
    problems = [f"{c.address} ({c.script.name}): {c.error}" for c in run.conversations if c.error]
    answered = run.webhooks + run.healthz + run.readyz + run.probes
    bad = Counter(s.status for s in answered if s.status >= 300)
    problems += [f"{n} responses {status}" for status, n in sorted(bad.items())]
    engine = make_engine(url)
    try:
        with Session(engine) as db:
            for c in run.conversations:
                want = Counter({k: v * c.runs for k, v in run.expected[c.script.name].items()})
                got = cases_of(db, c.address)
                if got != want:
                    problems.append(f"{c.address} ({c.script.name}, {c.runs} runs): {dict(got)}")
                recorded = (
                    select(func.count())
                    .select_from(Message)
                    .where(Message.address == c.address, Message.direction == Direction.INBOUND)
                )
                if c.script.channel == "phone":  # the turns, not the call's other records
                    recorded = recorded.where(Message.provider_id.regexp_match(r"^[^:]+:[0-9]+$"))
                if (n := db.scalar(recorded)) != c.messages:
                    problems.append(f"{c.address}: {n} inbound recorded, {c.messages} sent")
            for address, data in db.execute(
                select(ConversationState.address, ConversationState.state)
            ):
                state = DialogueState.load(data)
                if (state.task is not None and not state.task.done) or state.suspended:
                    problems.append(f"{address}: a request is left half-way")
    finally:
        engine.dispose()
    return problems


# --- figures --------------------------------------------------------------------------------


def report(run: Run, args: argparse.Namespace) -> Verdict:
    """Print one run; returns its figures for the verdicts (p99 ratio, messages/s)."""
    n = args.conversations
    if run.model == "paced":
        label = f"paced (think {args.think[0]:g}-{args.think[1]:g} s before each message)"
    else:
        label = "closed loop (next webhook as soon as the reply comes: capacity)"
    print(f"\n== {run.processes} `hotline serve` process(es), {label}")
    print(
        f"  this machine's speed before the run: a fixed Python loop took {run.speed_ms:.0f} ms "
        "(it varies between runs on a shared machine; a run with a slower loop has higher CPU "
        "figures)"
    )
    health = [s.seconds for s in run.healthz]
    health_p99 = pct_ms(health, 99)
    print(
        f"  GET /healthz, {n} clients: {len(health):,} in {run.healthz_s:.1f} s = "
        f"{len(health) / run.healthz_s:,.1f}/s; {figures(health)}; hotline serve "
        f"{run.healthz_cpu_s * 1000 / max(len(health), 1):.2f} ms CPU/request"
    )
    ready = [s.seconds for s in run.readyz]
    print(
        f"  GET /readyz (SELECT 1 on a worker thread), {n} clients: {len(ready):,} in "
        f"{run.readyz_s:.1f} s; {figures(ready)}; p99 = {pct_ms(ready, 99) / health_p99:.1f}x "
        "/healthz"
    )
    end = run.began + run.window_s
    inside = [s for s in run.webhooks if s.done_at <= end]
    messages = [s for s in inside if s.route in MESSAGE_ROUTES]
    rate = len(messages) / run.window_s
    sms = sum(1 for s in messages if s.route == SMS_PATH)
    print(
        f"  webhooks, {n} conversations, {run.window_s:.1f} s: {len(messages):,} inbound messages "
        f"({sms:,} SMS, {len(messages) - sms:,} voice turns) = {rate:,.1f} messages/s; "
        f"{len(inside):,} webhooks = {len(inside) / run.window_s:,.1f}/s"
    )
    print(f"  latency per webhook (all {len(run.webhooks):,}, the runs' ends included):")
    by_route: dict[str, list[float]] = {}
    for s in run.webhooks:
        by_route.setdefault(s.route, []).append(s.seconds)
    ratios = {}  # the routes with enough requests for a p99
    for route, values in sorted(by_route.items(), key=lambda kv: -len(kv[1])):
        ratio = pct_ms(values, 99) / health_p99
        if len(values) >= 100:
            ratios[route] = ratio
        print(
            f"    POST {route:<22} n={len(values):>6,}  {figures(values)}  "
            f"p99 = {ratio:.1f}x /healthz"
        )
    print(f"    inbound messages          n={len(run.messages_s):>6,}  {figures(run.messages_s)}")
    probes = [s.seconds for s in run.probes]
    print(f"  GET /healthz during the webhooks (every 100 ms): {figures(probes)}")
    used = ", ".join(
        f"{name} {s:.1f} CPU-s ({s / run.window_s:.0%} of a core, "
        f"{s * 1000 / max(len(messages), 1):.2f} ms/message)"
        for name, s in run.cpu.items()
        if s is not None
    )
    print(f"  CPU during the webhooks: {used}; the machine has {os.cpu_count()} cores")
    cases = sum(sum(run.expected[c.script.name].values()) * c.runs for c in run.conversations)
    print(
        f"  correctness: {sum(c.runs for c in run.conversations):,} script runs, "
        f"{cases:,} cases expected; "
        + ("OK (every case filed, every message recorded, all 2xx)" if not run.problems else "")
        + (f"{len(run.problems)} PROBLEMS" if run.problems else "")
    )
    for line in run.problems[:10]:
        print(f"    ! {line}")
    worst = max(ratios, key=lambda r: ratios[r])
    return Verdict(worst, ratios[worst], rate, len(health))


# --- main -----------------------------------------------------------------------------------


def nlu_cache(folder: Path) -> None:
    """The embedded model in ``folder``/nlu-cache: the repository's data/ copy when it is
    current, else trained now (the servers would each train it)."""
    cached = REPO / "data" / "nlu-cache"
    if cached.is_dir():
        shutil.copytree(cached, folder / "nlu-cache")
    load_bundle(Settings(data_dir=folder, _env_file=None))  # type: ignore[call-arg]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--postgres-url", help="a server to create throwaway databases on")
    parser.add_argument("--conversations", type=int, default=50)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--models", nargs="+", choices=["paced", "closed"], default=["paced", "closed"]
    )
    parser.add_argument("--paced-seconds", type=float, default=40.0)
    parser.add_argument("--closed-seconds", type=float, default=20.0)
    parser.add_argument("--healthz-seconds", type=float, default=20.0)
    parser.add_argument(
        "--delivery-reports",
        action="store_true",
        help="after each SMS, the status callbacks Twilio posts about its reply (sent, "
        "delivered): load a real deployment has, not counted as inbound messages",
    )
    parser.add_argument(
        "--think", type=float, nargs=2, default=[1.0, 2.0], metavar=("MIN_S", "MAX_S")
    )
    args = parser.parse_args(argv)
    quiet_logs()
    folder = Path(tempfile.mkdtemp(prefix="webhook-bench-"))
    verdicts: list[tuple[Run, Verdict]] = []
    try:
        nlu_cache(folder)
        with server_for_benchmark(args.postgres_url) as server:
            prefix = f"webhook_bench_{uuid.uuid4().hex[:8]}"
            template = f"{prefix}_template"
            template_url = server.create_database(template)
            databases = [template]
            try:
                fill(template_url, args.conversations + len(SCRIPTS))
                postmaster = ServerCpu(server.url("postgres")).postmaster
                print("Webhook benchmark: simulated texters and callers against `hotline serve`")
                print(
                    f"  machine: {platform.machine()}, {os.cpu_count()} CPU cores; Python "
                    f"{platform.python_version()}; {server_version(template_url)}"
                )
                mix = ", ".join(
                    f"{s.name} ({s.channel}, {len(s.lines)} messages) x"
                    f"{sum(script_for(i, args.conversations) is s for i in range(args.conversations))}"
                    for s in SCRIPTS
                )
                print(f"  conversations: {mix}")
                if args.delivery_reports:
                    print(
                        f"  delivery reports: {', '.join(DELIVERY_REPORTS)} for each SMS's "
                        f"reply (POST {DELIVERY_PATH}), not counted as inbound messages"
                    )
                print(
                    f"  targets: p99 of every webhook <= {TARGET_RATIO:g}x the p99 of GET /healthz"
                    f" (judged on the paced run); >= {TARGET_RATE:g} inbound messages/s (judged "
                    "on the closed loop); N processes: `hotline serve --workers N`, one port"
                )
                for count, model in itertools.product(args.processes, args.models):
                    name = f"{prefix}_{len(databases)}"
                    url = server.create_database(name, template=template)
                    databases.append(name)
                    servers = Servers(url, folder, count)
                    run = Run(count, model)
                    run.speed_ms = reference_loop_ms()
                    try:
                        servers.wait_ready()
                        asyncio.run(load(run, servers, url, args, postmaster))
                    finally:
                        servers.stop()
                    run.problems = check(run, url)
                    run.problems += [f"server log: {line[:300]}" for line in servers.errors()]
                    verdicts.append((run, report(run, args)))
                    server.drop_database(name)
                    databases.remove(name)
            finally:
                for name in reversed(databases):
                    server.drop_database(name)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print("\n== verdicts")
    ok = True
    for run, verdict in verdicts:
        if run.model == "paced":
            met = verdict.ratio <= TARGET_RATIO
            if verdict.healthz_n < MIN_HEALTHZ_SAMPLES:
                judged = (
                    f"not judged: {verdict.healthz_n} /healthz samples, fewer than "
                    f"{MIN_HEALTHZ_SAMPLES} (a longer --healthz-seconds)"
                )
            else:
                judged = "met" if met else "NOT met"
            print(
                f"  {run.processes} process(es), paced: worst p99 {verdict.worst_route} = "
                f"{verdict.ratio:.1f}x /healthz's (target <= {TARGET_RATIO:g}x): {judged}"
            )
        else:
            met = verdict.rate >= TARGET_RATE
            print(
                f"  {run.processes} process(es), closed loop: {verdict.rate:,.1f} inbound "
                f"messages/s (target >= {TARGET_RATE:g}): " + ("met" if met else "NOT met")
            )
        print(f"    correctness: {'OK' if not run.problems else 'FAILED'}")
        ok = ok and not run.problems
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
