"""Replies that were acknowledged are never lost, and how many go twice, when the worker is
killed (kill -9) and the database restarts under load (issue 18).

N replies (SMS) are in the outbox, as turns leave them: acknowledged to the person's channel.
A real `hotline worker` process sends them to a fake Twilio REST API on 127.0.0.1 (every answer
takes ``--delay-ms``, as Twilio's does), on a PostgreSQL server the benchmark starts:

1. the first worker is killed with SIGKILL once ``--kill-at`` of them reached Twilio;
2. a second worker starts; once ``--restart-at`` reached Twilio the database refuses every
   connection for ``--down-s`` seconds (its sessions are ended), then comes back;
3. the benchmark waits until every item is ``sent`` (or ``--wait-s`` passes).

Printed: lost (acknowledged replies Twilio never got), duplicates (replies Twilio got more than
once), and how long after the kill the last one went (the window in which a reply the dead
worker held is sent again).

Run: .venv/bin/python benchmarks/outbox_crash.py [--messages 1000] [--postgres-url URL]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the repository root

from sqlalchemy import func, select  # noqa: E402

from storage import outbox  # noqa: E402
from storage.db import make_engine, transaction  # noqa: E402
from storage.migrate import upgrade  # noqa: E402
from storage.models import OutboxItem, OutboxStatus  # noqa: E402
from tests.fakes.twilio_rest import FakeTwilio  # noqa: E402
from tests.pg_server import server_for_benchmark  # noqa: E402

ACCOUNT_SID = "AC" + "0" * 32
DATABASE = "outbox_crash"


def fill(url: str, count: int) -> None:
    engine = make_engine(url)
    upgrade(engine)
    with transaction(engine) as session:
        for n in range(count):
            outbox.enqueue(
                session,
                channel="sms",
                address=f"+8613800{n:06d}",
                payload={"kind": "reply", "text": f"回复 {n}", "language": "zh"},
                idempotency_key=f"bench:{n}:reply:sms",
            )
    engine.dispose()


def sent_items(url: str) -> int:
    engine = make_engine(url)
    try:
        with transaction(engine) as session:
            return int(
                session.scalar(
                    select(func.count())
                    .select_from(OutboxItem)
                    .where(OutboxItem.status == OutboxStatus.SENT)
                )
                or 0
            )
    finally:
        engine.dispose()


def start_worker(
    url: str, twilio: FakeTwilio, data_dir: Path, log: Path
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "HOTLINE_DATABASE_URL": url,
        "HOTLINE_DATA_DIR": str(data_dir),
        "HOTLINE_TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "HOTLINE_TWILIO_AUTH_TOKEN": "bench-token",
        "HOTLINE_TWILIO_FROM_NUMBER": "+15005550006",
        "HOTLINE_TWILIO_API_URL": twilio.url,
        "HOTLINE_LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),  # this tree's code, whatever the environment has installed
    }
    command = [sys.executable, "-c", "from bot.cli import app; app()", "worker"]
    with open(log, "ab") as out:
        return subprocess.Popen(
            command, env=env, cwd=data_dir, stdout=out, stderr=subprocess.STDOUT
        )


def wait_for(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up waiting for {what}")
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--delay-ms", type=float, default=20.0, help="each Twilio answer")
    parser.add_argument("--kill-at", type=float, default=0.3, help="share sent at the kill")
    parser.add_argument("--restart-at", type=float, default=0.6, help="share sent at the restart")
    parser.add_argument("--down-s", type=float, default=1.5)
    parser.add_argument("--wait-s", type=float, default=600.0)
    parser.add_argument("--postgres-url", default=None)
    args = parser.parse_args()
    n = args.messages
    with server_for_benchmark(args.postgres_url) as pg, tempfile.TemporaryDirectory() as folder:
        pg.drop_database(DATABASE)
        url = pg.create_database(DATABASE)
        fill(url, n)
        data_dir, log = Path(folder), Path(folder) / "workers.log"
        with FakeTwilio() as twilio:
            twilio.delay_s = args.delay_ms / 1000
            started = time.monotonic()
            first = start_worker(url, twilio, data_dir, log)
            wait_for(lambda: len(twilio.messages) >= n * args.kill_at, 120, "the first sends")
            first.send_signal(signal.SIGKILL)
            first.wait()
            killed_at = time.monotonic()
            at_kill = len(twilio.messages)
            second = start_worker(url, twilio, data_dir, log)
            try:
                wait_for(lambda: len(twilio.messages) >= n * args.restart_at, 120, "more sends")
                pg.refuse_connections(DATABASE)
                time.sleep(args.down_s)
                pg.allow_connections(DATABASE)
                wait_for(lambda: sent_items(url) >= n, args.wait_s, "every item sent")
                done_at = time.monotonic()
                time.sleep(2.0)  # anything still on its way
            finally:
                second.send_signal(signal.SIGTERM)
                second.wait(timeout=30)
            bodies = Counter(m["body"] for m in twilio.messages)
    expected = {f"回复 {i}" for i in range(n)}
    lost = len(expected - set(bodies))
    duplicates = sum(count - 1 for count in bodies.values() if count > 1)
    print(f"{n} acknowledged replies; Twilio delay {args.delay_ms:g} ms each")
    print(f"worker killed (SIGKILL) after {at_kill} reached Twilio; database down {args.down_s} s")
    print(f"lost: {lost}")
    print(f"duplicates: {duplicates} ({100 * duplicates / n:.1f} %)")
    print(f"all sent {done_at - killed_at:.1f} s after the kill ({done_at - started:.1f} s in all)")


if __name__ == "__main__":
    main()
