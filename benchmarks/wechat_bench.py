"""WeChat webhook latency: 50 conversations at once against `hotline serve` on PostgreSQL, each
message signed (and, with --aes, encrypted) as WeChat sends it; WeChat waits 5 s for an answer.

The conversations are turn_bench.py's scripts, written over WeChat by retirees whose accounts
are linked (the phone lines' scripts are written too: words are words). Each person waits a
think time (1-2 s) before each message (paced), or sends the next one as soon as the answer
comes (--closed). Printed: the webhook's latency (p50, p90, p99, max) against WeChat's 5 s,
how many answers came in the webhook's own reply and how many got "success" (their reply then
goes by the customer-service API), and whether every conversation filed what its script files.

Run: .venv/bin/python benchmarks/wechat_bench.py [--conversations 50] [--seconds 40]
     [--processes 1] [--aes] [--closed] [--postgres-url URL]
(about a minute; PostgreSQL: a throwaway server from tests/pg_server.py)
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import platform
import random
import re
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root

import httpx
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from wechatpy.crypto import WeChatCrypto
from wechatpy.utils import WeChatSigner

from benchmarks.turn_bench import SCRIPTS, Script, figures, fill, phone, quiet_logs
from benchmarks.turn_bench import server_version as version_of
from benchmarks.webhook_bench import Servers, nlu_cache
from storage.db import make_engine
from storage.models import Case, MessagingIdentity, RetireePhone
from tests.pg_server import server_for_benchmark

TOKEN, APP_ID, SECRET = "wechat-bench-token", "wxbench000000000", "wechat-bench-secret"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
WINDOW_S = 5.0  # WeChat's wait before it asks again
ENCRYPT = re.compile(r"<Encrypt><!\[CDATA\[(.*?)\]\]></Encrypt>")
SIGNED = re.compile(r"<MsgSignature><!\[CDATA\[(.*?)\]\]></MsgSignature>")


def openid(i: int) -> str:
    return f"oBENCH{i:022d}"


def link_accounts(url: str, people: int) -> None:
    """Each retiree's WeChat account, linked to their profile."""
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            for i in range(people):
                retiree_id = session.scalar(
                    select(RetireePhone.retiree_id).where(RetireePhone.number == phone(i))
                )
                session.add(
                    MessagingIdentity(retiree_id=retiree_id, channel="wechat", address=openid(i))
                )
            session.commit()
    finally:
        engine.dispose()


@dataclass
class Seen:
    seconds: list[float] = field(default_factory=list)
    passive: int = 0
    success: int = 0
    failed: Counter[str] = field(default_factory=Counter)


class WeChat:
    """What WeChat's servers post: signed, optionally encrypted."""

    def __init__(self, http: httpx.AsyncClient, url: str, aes: bool) -> None:
        self.http, self.url = http, url
        self.crypto = WeChatCrypto(TOKEN, AES_KEY, APP_ID) if aes else None
        self.ids = itertools.count(10_000_000)

    async def say(self, who: str, text: str, seen: Seen) -> None:
        now, nonce, msg_id = str(int(time.time())), uuid.uuid4().hex[:10], next(self.ids)
        signer = WeChatSigner()
        signer.add_data(TOKEN, now, nonce)
        query = {"signature": signer.signature, "timestamp": now, "nonce": nonce}
        xml = (
            f"<xml><ToUserName><![CDATA[gh_bench]]></ToUserName><FromUserName><![CDATA[{who}]]>"
            f"</FromUserName><CreateTime>{now}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
            f"<Content><![CDATA[{text}]]></Content><MsgId>{msg_id}</MsgId></xml>"
        )
        if self.crypto is not None:
            sealed = self.crypto.encrypt_message(xml, nonce, now)
            found, signed = ENCRYPT.search(sealed), SIGNED.search(sealed)
            assert found and signed
            xml = f"<xml><Encrypt><![CDATA[{found.group(1)}]]></Encrypt></xml>"
            query.update(encrypt_type="aes", msg_signature=signed.group(1))
        started = time.perf_counter()
        try:
            response = await self.http.post(self.url + "/wechat", params=query, content=xml)
        except httpx.HTTPError as exc:
            seen.failed[type(exc).__name__] += 1
            return
        seen.seconds.append(time.perf_counter() - started)
        if response.status_code != 200:
            seen.failed[f"HTTP {response.status_code}"] += 1
        elif response.text == "success":
            seen.success += 1
        else:
            seen.passive += 1


WRITTEN = tuple(s for s in SCRIPTS if all(s.lines))  # a silent caller writes nothing


def script_of(i: int) -> Script:
    return WRITTEN[i % len(WRITTEN)]


async def converse(
    wechat: WeChat, i: int, until: float, think: tuple[float, float] | None, seen: Seen
) -> int:
    """Conversation ``i``: its script again and again until ``until``; runs completed."""
    rng = random.Random(i)
    script = script_of(i)
    runs = 0
    while time.monotonic() < until:
        for line in script.lines:
            if think is not None:
                await asyncio.sleep(rng.uniform(*think))
            await wechat.say(openid(i), line, seen)
        runs += 1
    return runs


def filed(url: str) -> Counter[str]:
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            rows = session.execute(
                select(Case.category, func.count())
                .where(Case.channel == "wechat")
                .group_by(Case.category)
            ).all()
            return Counter({category: int(n) for category, n in rows})
    finally:
        engine.dispose()


async def load(url: str, args: argparse.Namespace) -> tuple[Seen, list[int], float]:
    seen = Seen()
    think = None if args.closed else (1.0, 2.0)
    limits = httpx.Limits(max_connections=args.conversations + 10)
    async with httpx.AsyncClient(timeout=30, limits=limits) as http:
        wechat = WeChat(http, url, args.aes)
        started = time.monotonic()
        until = started + args.seconds
        runs = await asyncio.gather(
            *(converse(wechat, i, until, think, seen) for i in range(args.conversations))
        )
        return seen, list(runs), time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--postgres-url", help="a server to create a throwaway database on")
    parser.add_argument("--conversations", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--aes", action="store_true", help="safe mode: every message encrypted")
    parser.add_argument("--closed", action="store_true", help="no think time (capacity)")
    args = parser.parse_args(argv)
    quiet_logs()
    folder = Path(tempfile.mkdtemp(prefix="wechat-bench-"))
    try:
        nlu_cache(folder)
        with server_for_benchmark(args.postgres_url) as server:
            name = f"wechat_bench_{uuid.uuid4().hex[:8]}"
            url = server.create_database(name)
            try:
                fill(url, args.conversations + len(SCRIPTS))
                link_accounts(url, args.conversations)
                env = {
                    "HOTLINE_WECHAT_TOKEN": TOKEN,
                    "HOTLINE_WECHAT_APP_ID": APP_ID,
                    "HOTLINE_WECHAT_APP_SECRET": SECRET,
                    **({"HOTLINE_WECHAT_AES_KEY": AES_KEY} if args.aes else {}),
                }
                os.environ.update(env)
                servers = Servers(url, folder, args.processes)
                try:
                    servers.wait_ready()
                    seen, runs, elapsed = asyncio.run(load(servers.urls[0], args))
                    cpu = servers.cpu_s()
                finally:
                    servers.stop()
                got = filed(url)
                version = version_of(url)
            finally:
                server.drop_database(name)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    # Each completed run files its script's categories; the run cut off at the end may too.
    least: Counter[str] = Counter()
    most: Counter[str] = Counter()
    for i, done in enumerate(runs):
        for category in script_of(i).files:
            least[category] += done
            most[category] += done + 1
    as_scripted = all(least[c] <= got[c] <= most[c] for c in set(least) | set(got))
    print("WeChat webhook benchmark: signed messages against `hotline serve` on PostgreSQL")
    print(
        f"  machine: {platform.machine()}, {os.cpu_count()} CPU cores; Python "
        f"{platform.python_version()}; {version}"
    )
    print(
        f"  {args.conversations} conversations, {'closed loop' if args.closed else 'paced 1-2 s'}, "
        f"{args.processes} process(es), {'safe mode (AES)' if args.aes else 'plain mode'}, "
        f"{elapsed:.0f} s"
    )
    total = len(seen.seconds)
    print(f"  webhooks: {total:,} ({total / elapsed:.1f}/s), scripts completed: {sum(runs):,}")
    print(f"  latency: {figures(seen.seconds)}")
    late = sum(1 for s in seen.seconds if s >= WINDOW_S)
    print(
        f"  answered in the webhook's reply: {seen.passive:,}; 'success' (reply by the API): "
        f"{seen.success:,}; failed: {dict(seen.failed) or 0}; at or past WeChat's 5 s: {late}"
    )
    print(f"  server CPU: {cpu:.1f} s ({cpu / max(total, 1) * 1000:.1f} ms per webhook)")
    print(
        f"  cases filed over WeChat: {dict(sorted(got.items()))}: "
        + (
            "as the scripts file"
            if as_scripted
            else f"NOT as scripted (between {dict(least)} and {dict(most)})"
        )
    )
    p99 = sorted(seen.seconds)[int(0.99 * (total - 1))] if total else float("inf")
    met = p99 < WINDOW_S and not seen.failed and as_scripted
    print(f"== p99 {p99 * 1000:.0f} ms inside WeChat's 5 s window: {'met' if met else 'NOT met'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
