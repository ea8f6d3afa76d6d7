"""The SIP line under load, with real peers on 127.0.0.1: 20 one-key calls at once, and how soon
an emergency key rings the first staff phone.

Kamailio is the registrar and proxy; five `hotline sip` processes register as extensions agent1
to agent5 (the pjsua2 wheel takes 4 calls a process; a PBX's ring group would spread the calls,
here the callers do); SIPp places the calls. Each caller presses 1 (SIP INFO), speaks for about
2.5 s (RTP), presses # (RFC 2833) and waits for the line to read back the case number and hang
up. Then: calls completed, cases filed, recordings kept (and their length), keys the lines
logged. The database is a throwaway PostgreSQL (tests/pg_server.py).

Emergencies: --emergencies calls, four at a time, each pressing 9; the on-duty staff phone is a
SIPp that rings and never answers. Printed: from the key reaching the line to the line's INVITE
to the staff phone (each line's log), and to that INVITE reaching the staff phone (its SIPp
message trace, the same leg by its Call-ID), p50 and p99. When the staff phone rang out, the
lines also place the emergency's alert calls (`hotline sip` sends the outbox's calls); they are
counted.

Run: .venv/bin/python benchmarks/sip_bench.py [--calls 20] [--processes 5] [--emergencies 20]
(about two minutes; needs kamailio, sip-tester, espeak-ng and sox)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import wave
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from benchmarks.turn_bench import server_version
from config.settings import CONFIG_DIR, Settings
from nlu.embedded import load_bundle
from storage.db import make_engine
from storage.migrate import upgrade
from storage.models import Attachment, Case
from tests.factories import make_retiree, make_staff, make_unit_tree
from tests.pg_server import server_for_benchmark
from tests.sip_peers import (
    Audio,
    AwaitBye,
    HangUpCall,
    Info,
    Kamailio,
    Pause,
    Rfc2833,
    SipLine,
    StaffPhone,
    free_udp_port,
    free_udp_range,
    missing_tools,
    scenario,
    spoken,
)

FIRST = 13800001000
STAFF_PHONE = "+8613900000009"  # on the proxy, 139... ring and never answer


def fill(url: str, people: int) -> None:
    engine = make_engine(url)
    try:
        upgrade(engine)
        with Session(engine) as session:
            units = make_unit_tree(session)
            for i in range(people):
                make_retiree(session, units.community_a1, phone=f"+86{FIRST + i}", age=80)
            make_staff(session, units=[units.community_a1], phone=STAFF_PHONE, on_duty=True)
            session.commit()
    finally:
        engine.dispose()


def sipp(
    proxy: Kamailio, folder: Path, xml: str, inf: str, calls: int, limit: int
) -> tuple[int, str]:
    name = uuid.uuid4().hex[:8]
    (folder / f"{name}.xml").write_text(xml)
    (folder / f"{name}.csv").write_text(inf)
    command = [
        shutil.which("sipp") or "sipp",
        f"127.0.0.1:{proxy.port}",
        *(
            "-sf",
            f"{name}.xml",
            "-inf",
            f"{name}.csv",
            "-i",
            "127.0.0.1",
            "-p",
            str(free_udp_port()),
        ),
        *("-mi", "127.0.0.1", "-mp", str(free_udp_range(2 * calls + 8))),
        *("-m", str(calls), "-l", str(limit), "-r", str(limit), "-rp", "1000"),
        *("-nostdin", "-timeout", "300s", "-trace_err", "-trace_stat", "-trace_msg"),
    ]
    done = subprocess.run(command, cwd=folder, capture_output=True, timeout=400)
    return done.returncode, (done.stdout + done.stderr).decode(errors="replace")[-1500:]


def pct(values: list[float], p: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


def events(log: Path) -> list[dict[str, object]]:
    found = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):  # a line cut short by a crash
                found.append(json.loads(line))
    return found


def at(event: dict[str, object]) -> float:
    return datetime.fromisoformat(str(event["timestamp"]).replace("Z", "+00:00")).timestamp()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--processes", type=int, default=5)
    parser.add_argument("--emergencies", type=int, default=20)
    parser.add_argument("--postgres-url", help="a server to create a throwaway database on")
    parser.add_argument("--keep", action="store_true", help="keep the logs (the folder is printed)")
    args = parser.parse_args(argv)
    missing = missing_tools()
    if missing:
        raise SystemExit(
            f"needs {', '.join(missing)} (apt-get install kamailio sip-tester espeak-ng sox)"
        )
    folder = Path(tempfile.mkdtemp(prefix="sip-bench-"))
    try:
        return run(args, folder)
    finally:
        if args.keep:
            print(f"logs kept in {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


def run(args: argparse.Namespace, folder: Path) -> int:
    load_bundle(Settings(data_dir=folder, _env_file=None))  # type: ignore[call-arg]
    config = folder / "config"
    shutil.copytree(CONFIG_DIR, config, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    sip_yml = config / "sip.yml"
    # Faster speech (the same sentences) and a shorter ring: the same work in less time.
    faster = sip_yml.read_text().replace("speed: 130", "speed: 260")
    sip_yml.write_text(faster.replace("ring_seconds: 20", "ring_seconds: 5"))
    said = spoken(folder, "我想报销药费，上个月住院，花了三百块钱。")
    with server_for_benchmark(args.postgres_url) as server, ExitStack() as stack:
        name = f"sip_bench_{uuid.uuid4().hex[:8]}"
        url = server.create_database(name)
        stack.callback(server.drop_database, name)
        fill(url, args.calls + args.emergencies)
        proxy = stack.enter_context(Kamailio(folder))
        lines = []
        for n in range(1, args.processes + 1):
            own = folder / f"line{n}"
            own.mkdir()
            env = {
                "HOTLINE_DATABASE_URL": url,
                "HOTLINE_DATA_DIR": str(folder),
                "HOTLINE_CONFIG_DIR": str(config),
                "HOTLINE_SIP_USER": f"agent{n}",
                "HOTLINE_LOG_LEVEL": "INFO",
            }
            lines.append(stack.enter_context(SipLine(proxy, own, env)))
        print("SIP line benchmark: one-key calls through Kamailio to `hotline sip` on 127.0.0.1")
        print(
            f"  machine: {platform.machine()}, {os.cpu_count()} CPU cores; Python "
            f"{platform.python_version()}; {server_version(url)}; {args.processes} `hotline sip` "
            "processes (4 calls each at most)"
        )
        # -- 20 calls at once ----------------------------------------------------------------
        # 1, then after the beep she speaks (about 7 s), and presses # a moment after.
        steps = [
            Pause(1500),
            Info("1"),
            Pause(8000),
            Audio(said),
            Pause(9000),
            Rfc2833("#"),
            AwaitBye(120),
        ]
        xml = scenario("[field0]", steps, callee="[field1]")
        inf = "SEQUENTIAL\n" + "".join(
            f"{FIRST + i};agent{i % args.processes + 1}\n" for i in range(args.calls)
        )
        started = time.monotonic()
        code, output = sipp(proxy, folder, xml, inf, args.calls, args.calls)
        took = time.monotonic() - started
        engine = make_engine(url)
        try:
            with Session(engine) as session:
                filed = session.scalar(
                    select(func.count())
                    .select_from(Case)
                    .where(Case.category == "medication_reimbursement")
                )
                kept = session.scalars(select(Attachment.data)).all()
        finally:
            engine.dispose()
        lengths = []
        for n, data in enumerate(kept):
            path = folder / f"kept-{n}.wav"
            path.write_bytes(data)
            with wave.open(str(path)) as audio:
                lengths.append(audio.getnframes() / audio.getframerate())
        overs = [e for line in lines for e in events(line.log) if e.get("event") == "sip_call_over"]
        whole = sum(1 for e in overs if e.get("digits") == "1#")
        print(f"\n== {args.calls} calls at once ({took:.1f} s; SIPp exit {code})")
        print(
            f"  calls the lines saw end: {len(overs)}; with both keys (1 by INFO, # by RFC 2833): {whole}"
        )
        print(f"  cases filed: {filed}; recordings kept: {len(kept)}")
        if lengths:
            print(
                f"  recording length: min {min(lengths):.1f} s, median {statistics.median(lengths):.1f} s, "
                f"max {max(lengths):.1f} s (the caller spoke {_seconds(said):.1f} s; "
                f"{sum(1 for n in lengths if n >= _seconds(said))} hold all of it)"
            )
        spoke = _seconds(said)
        full = sum(1 for length in lengths if length >= spoke)  # all she said is in it
        lost = args.calls - min(len(overs), whole, filed or 0, full)
        if code != 0:
            print(f"  SIPp: {output}")
        # -- emergencies -----------------------------------------------------------------------
        phone = stack.enter_context(
            # Each emergency rings it twice: put through from the call, then its alert call.
            StaffPhone(proxy, folder, answers=False, calls=2 * args.emergencies, trace=True)
        )
        steps = [Pause(1500), Info("9"), Pause(6000), HangUpCall()]
        xml = scenario("[field0]", steps, callee="[field1]")
        first = FIRST + args.calls
        inf = "SEQUENTIAL\n" + "".join(
            f"{first + i};agent{i % args.processes + 1}\n" for i in range(args.emergencies)
        )
        code, output = sipp(proxy, folder, xml, inf, args.emergencies, min(4, args.processes))
        time.sleep(1)  # the last CANCEL reaches the staff phone
        phone.stop()  # its message trace written out
        inside, ringing, keyed, refused = [], [], 0, 0
        invites = phone.invites()  # by Call-ID: the put-through legs and the alert calls
        for line in lines:  # each key pairs with its call's dial (the agent's own call serials)
            pressed: dict[object, float] = {}
            for e in events(line.log):
                if e.get("event") == "sip_digit" and e.get("digit") == "9":
                    pressed[e["call"]] = at(e)
                    keyed += 1
                elif e.get("event") == "sip_dialling" and e.get("call") in pressed:
                    key = pressed.pop(e["call"])
                    inside.append(at(e) - key)
                    if e.get("leg") in invites:  # the same leg arriving at the staff phone
                        ringing.append(invites[str(e["leg"])] - key)
                elif e.get("event") == "sip_dial_failed":
                    refused += 1
        alert_calls = sum(
            1 for line in lines for e in events(line.log) if e.get("event") == "sip_calling"
        )
        print(f"\n== {args.emergencies} emergencies (key 9), 4 at a time; SIPp exit {code}")
        if code != 0:
            print(f"  SIPp: {output}")
        print(
            f"  put through: {len(inside)} of {keyed} keys; the line could not place the call "
            f"(no pjsua2 call slot left) for {refused}; INVITEs at the staff phone: {len(invites)} "
            f"(of which alert calls the lines placed once nobody answered: {alert_calls})"
        )
        print(
            f"  key at the line → INVITE sent to the first staff phone: p50 {pct(inside, 50) * 1000:.1f} ms, "
            f"p99 {pct(inside, 99) * 1000:.1f} ms ({len(inside)} calls)"
        )
        print(
            f"  key at the line → INVITE at the staff phone (through Kamailio): p50 "
            f"{pct(ringing, 50) * 1000:.1f} ms, p99 {pct(ringing, 99) * 1000:.1f} ms ({len(ringing)} calls)"
        )
        print(
            f"\n== lost: {lost} of {args.calls} calls (a call, its keys, its case or its recording)"
        )
        return 0 if lost == 0 and len(inside) + refused == args.emergencies else 1


def _seconds(ulaw: Path) -> float:
    return ulaw.stat().st_size / 8000


if __name__ == "__main__":
    sys.exit(main())
