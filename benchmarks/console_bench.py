"""Console page render times on a centre-sized database: 100,000 retirees, 10,000 open cases
and a quarter of finished ones on PostgreSQL; p50/p99 of the queue, its live rows, the report
page, a case page and the registry search, each for the person who would open it.

The pages are served by the console's own app (mount_console, as `hotline serve` mounts it)
through an in-process ASGI client, so the figures are the server's time (routing, session
cookie, queries, Jinja2) without a network in between. Target: p99 under 200 ms.
"""

# Run: .venv/bin/python benchmarks/console_bench.py [--postgres-url URL] [--retirees 100000]
#      [--open-cases 10000] [--finished-cases 30000] [--requests 60]

from __future__ import annotations

import argparse
import logging
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root

import structlog
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event, insert, select, text

from bot.runtime.configure import load_deployment
from config.categories import get_categories
from config.settings import Settings
from console import bind_engine, mount_console
from storage.db import make_engine, transaction
from storage.migrate import upgrade
from storage.models import Case, CaseEvent, CaseStatus, Retiree, RetireePhone, Role, Unit, Visit
from storage.passwords import hash_password
from tests.factories import make_staff, make_unit
from tests.pg_server import server_for_benchmark

TARGET_P99_MS = 200.0
PASSWORD = "bench password 1"
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "秀英桂兰玉兰淑珍凤英建国志强德明丽华文斌国华桂英淑华"
CHANNELS = ("phone", "phone", "phone", "sms", "telegram", "whatsapp", "web")
BATCH = 5_000


@dataclass
class World:
    center: int
    stations: list[int]
    communities: list[int]  # [station index] → its communities, flattened in order
    community_station: dict[int, int]


def quiet_logs() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    logging.getLogger().setLevel(logging.WARNING)


def build_units(engine: Engine, stations: int, per_station: int) -> World:
    with transaction(engine) as session:
        from storage.models import UnitLevel

        center = make_unit(session, "C", UnitLevel.CENTER, name_zh="退管中心", name_en="Center")
        session.flush()
        world = World(center.id, [], [], {})
        for s in range(stations):
            station = make_unit(
                session, f"S{s}", UnitLevel.STATION, center, name_zh=f"街道{s}", name_en=f"St{s}"
            )
            session.flush()
            world.stations.append(station.id)
            for c in range(per_station):
                community = make_unit(
                    session,
                    f"S{s}C{c}",
                    UnitLevel.COMMUNITY,
                    station,
                    name_zh=f"社区{s}-{c}",
                    name_en=f"Community {s}-{c}",
                )
                session.flush()
                world.communities.append(community.id)
                world.community_station[community.id] = station.id
    return world


def fill_retirees(engine: Engine, world: World, count: int, rng: random.Random) -> list[int]:
    now = datetime.now(UTC)
    ids: list[int] = []
    for start in range(0, count, BATCH):
        rows = [
            {
                "name": rng.choice(SURNAMES) + "".join(rng.sample(GIVEN, 2)),
                "birth_date": date(1930 + rng.randrange(35), 1 + rng.randrange(12), 1),
                "community_id": world.communities[i % len(world.communities)],
                "address": f"和平路 {i % 300} 号 {i % 7 + 1} 单元 {i % 30 + 101}",
                "lives_alone": i % 5 == 0,
                "health_notes": "高血压" if i % 3 == 0 else "",
                "registered_on": date(2024, 1, 1) + timedelta(days=i % 700),
                "created_at": now,
                "updated_at": now,
            }
            for i in range(start, min(start + BATCH, count))
        ]
        with transaction(engine) as session:
            batch = list(session.scalars(insert(Retiree).returning(Retiree.id), rows))
            session.execute(
                insert(RetireePhone),
                [{"retiree_id": r, "number": f"+86139{r:08d}", "label": ""} for r in batch],
            )
            session.execute(
                insert(Visit),
                [
                    {"retiree_id": r, "visited_on": date(2026, 1, 1) + timedelta(days=r % 300)}
                    for r in batch
                    if r % 4
                ],
            )
        ids += batch
    return ids


def fill_cases(
    engine: Engine,
    world: World,
    retirees: list[int],
    open_cases: int,
    finished: int,
    staff_ids: list[int],
    rng: random.Random,
) -> None:
    """Open cases spread over the communities (a few escalated to stations), and finished
    ones over the last 90 days with their claim and resolve events."""
    categories = get_categories()
    names = [c for c in categories.categories if c not in ("registration",)]
    now = datetime.now(UTC)
    counter = 0

    def case_row(status: CaseStatus, created: datetime) -> dict[str, Any]:
        nonlocal counter
        counter += 1
        category = rng.choice(names)
        community = rng.choice(world.communities)
        unit = world.community_station[community] if counter % 20 == 0 else community
        row: dict[str, Any] = {
            "number": f"B{counter:09d}",
            "retiree_id": rng.choice(retirees),
            "category": category,
            "priority": 1 if category == "emergency" else rng.choice((2, 3, 3, 3)),
            "status": status,
            "channel": rng.choice(CHANNELS),
            "summary": "帮忙买菜，下午送到家",
            "details": {},
            "unit_id": unit,
            "created_at": created,
            "updated_at": created,
            "claim_deadline": created + timedelta(hours=rng.choice((1, 4, 24))),
            "resolve_deadline": created + timedelta(days=rng.choice((1, 3, 5))),
        }
        if status != CaseStatus.OPEN:
            row["assignee_id"] = rng.choice(staff_ids)
            row["first_contact_owner_id"] = row["assignee_id"]
            row["claimed_at"] = created + timedelta(minutes=rng.randrange(5, 600))
        if status in (CaseStatus.RESOLVED, CaseStatus.CLOSED):
            row["resolved_at"] = row["claimed_at"] + timedelta(hours=rng.randrange(1, 96))
            row["outcome"] = "已办好"
        if status == CaseStatus.CLOSED:
            row["closed_at"] = row["resolved_at"] + timedelta(days=1)
        return row

    plan = [(CaseStatus.OPEN, open_cases)]
    plan += [(CaseStatus.CLOSED, finished * 3 // 4), (CaseStatus.RESOLVED, finished // 4)]
    for status, count in plan:
        for start in range(0, count, BATCH):
            rows = []
            for _ in range(min(BATCH, count - start)):
                back = timedelta(
                    minutes=rng.randrange(1, 60 * 24 * (3 if status == CaseStatus.OPEN else 90))
                )
                rows.append(case_row(status, now - back))
            with transaction(engine) as session:
                ids = list(session.scalars(insert(Case).returning(Case.id), rows))
                events = [
                    {
                        "case_id": case_id,
                        "at": row["created_at"],
                        "actor_label": "system",
                        "action": "file",
                        "from_status": "",
                        "to_status": "open",
                        "reason": "",
                        "note": "",
                        "data": {},
                    }
                    for case_id, row in zip(ids, rows, strict=True)
                ]
                for case_id, row in zip(ids, rows, strict=True):
                    for action, at, before, after in (
                        ("claim", row.get("claimed_at"), "open", "claimed"),
                        ("resolve", row.get("resolved_at"), "claimed", "resolved"),
                        ("close", row.get("closed_at"), "resolved", "closed"),
                    ):
                        if at is not None:
                            events.append(
                                {
                                    "case_id": case_id,
                                    "at": at,
                                    "actor_id": row["assignee_id"],
                                    "actor_label": "",
                                    "action": action,
                                    "from_status": before,
                                    "to_status": after,
                                    "reason": "",
                                    "note": "",
                                    "data": {},
                                }
                            )
                session.execute(insert(CaseEvent), events)


def make_people(engine: Engine, world: World) -> list[int]:
    password = hash_password(PASSWORD)
    with transaction(engine) as session:
        units = {u.id: u for u in session.scalars(select(Unit))}
        people = [
            make_staff(session, Role.ADMIN, [units[world.center]], username="admin", name="管理员"),
            make_staff(
                session, Role.STAFF, [units[world.stations[0]]], username="staff", name="张社工"
            ),
            make_staff(
                session, Role.VOLUNTEER, [units[world.communities[0]]], username="vol", name="王芳"
            ),
        ]
        for i, station in enumerate(world.stations):
            people.append(make_staff(session, Role.STAFF, [units[station]], name=f"社工{i}"))
        for person in people:
            person.password_hash = password
            person.phone = "+8613700000000"
        return [p.id for p in people]


def console_app(engine: Engine, data_dir: Path) -> FastAPI:
    settings = Settings(
        database_url=engine.url.render_as_string(hide_password=False),
        data_dir=data_dir,
        secret_key="bench-secret-key-bench-secret-key",
        _env_file=None,
    )
    app = FastAPI()
    mount_console(app, load_deployment(settings))
    bind_engine(app, engine)
    return app


def signed_in(app: FastAPI, username: str) -> TestClient:
    client = TestClient(app)
    page = client.get("/login").text
    token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    response = client.post(
        "/login",
        data={"username": username, "password": PASSWORD, "csrf_token": token},
        follow_redirects=False,
    )
    assert response.status_code in (302, 303), response.text[:300]
    return client


class QueryTimes:
    """With --queries: the database time of each statement, summed per page (what to index)."""

    def __init__(self, engine: Engine) -> None:
        self.by_statement: dict[str, list[float]] = {}
        self._started: list[float] = []

        @event.listens_for(engine, "before_cursor_execute")
        def before(*_: Any) -> None:
            self._started.append(time.perf_counter())

        @event.listens_for(engine, "after_cursor_execute")
        def after(_conn: Any, _cursor: Any, statement: str, *__: Any) -> None:
            ms = (time.perf_counter() - self._started.pop()) * 1000
            key = " ".join(statement.split())[:150]
            self.by_statement.setdefault(key, []).append(ms)

    def report(self, requests: int, top: int = 4) -> None:
        ranked = sorted(self.by_statement.items(), key=lambda kv: -sum(kv[1]))
        for statement, times in ranked[:top]:
            per_request = sum(times) / requests
            print(f"      {per_request:7.1f} ms/request  x{len(times) / requests:.0f}  {statement}")
        self.by_statement.clear()


def measure(client: TestClient, url: str, requests: int) -> tuple[list[float], int]:
    for _ in range(3):  # warm: templates compiled, statements cached, pool filled
        response = client.get(url)
        assert response.status_code == 200, f"{url}: {response.status_code} {response.text[:300]}"
    times = []
    size = 0
    for _ in range(requests):
        started = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, url
        size = len(response.content)
    return times, size


def pct(values: list[float], p: int) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--postgres-url", help="an existing server (default: start a throwaway one)"
    )
    parser.add_argument("--retirees", type=int, default=100_000)
    parser.add_argument("--open-cases", type=int, default=10_000)
    parser.add_argument("--finished-cases", type=int, default=30_000)
    parser.add_argument("--stations", type=int, default=4)
    parser.add_argument("--communities-per-station", type=int, default=6)
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument(
        "--queries", action="store_true", help="also print each page's slowest statements"
    )
    args = parser.parse_args(argv)
    quiet_logs()
    rng = random.Random(7)
    print(
        f"console_bench on {platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    with server_for_benchmark(args.postgres_url) as server, tempfile.TemporaryDirectory() as tmp:
        url = server.create_database(f"console_bench_{uuid.uuid4().hex[:8]}")
        engine = make_engine(url, pool_size=5)
        upgrade(engine)
        started = time.perf_counter()
        world = build_units(engine, args.stations, args.communities_per_station)
        people = make_people(engine, world)
        retirees = fill_retirees(engine, world, args.retirees, rng)
        fill_cases(engine, world, retirees, args.open_cases, args.finished_cases, people, rng)
        # As autovacuum leaves a settled database: statistics, and the visibility map that
        # lets counts come from indexes alone.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE"))
            version = connection.execute(text("SHOW server_version")).scalar()
            counts = connection.execute(
                text(
                    "SELECT (SELECT count(*) FROM retirees), "
                    "(SELECT count(*) FROM cases WHERE status = 'open'), "
                    "(SELECT count(*) FROM cases), (SELECT count(*) FROM case_events)"
                )
            ).one()
        print(
            f"PostgreSQL {version}: {counts[0]:,} retirees, {counts[1]:,} open cases, "
            f"{counts[2]:,} cases, {counts[3]:,} case events "
            f"(filled in {time.perf_counter() - started:.0f} s)"
        )
        app = console_app(engine, Path(tmp))
        with transaction(engine) as session:
            some_case = session.scalar(
                select(Case.number)
                .where(Case.unit_id == world.communities[0], Case.status == CaseStatus.OPEN)
                .limit(1)
            )
        today = datetime.now(UTC).date()
        quarter_from = (today - timedelta(days=90)).isoformat()
        pages = [
            ("admin", "/queue", "queue, whole centre (admin)"),
            ("admin", "/queue/rows", "queue live rows, whole centre"),
            ("staff", "/queue", "queue, one station (staff)"),
            ("vol", "/queue", "queue, one community (volunteer)"),
            (
                "admin",
                f"/reports?from={quarter_from}&to={today.isoformat()}",
                "report, centre, 90 days",
            ),
            ("staff", "/reports", "report, one station, this quarter"),
            ("staff", f"/cases/{some_case}", "case page (staff)"),
            ("admin", "/retirees?q=%E7%8E%8B%E7%A7%80", "registry search 王秀 (admin)"),
            ("staff", "/visits", "visits due, one station (staff)"),
        ]
        clients = {name: signed_in(app, name) for name in ("admin", "staff", "vol")}
        print(
            f"{args.requests} requests each after 3 warm-ups; target p99 < {TARGET_P99_MS:.0f} ms"
        )
        print(f"{'page':<40} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'KiB':>7}")
        worst = 0.0
        queries = QueryTimes(engine) if args.queries else None
        for who, page, label in pages:
            times, size = measure(clients[who], page, args.requests)
            p99 = pct(times, 99)
            worst = max(worst, p99)
            print(
                f"{label:<40} {statistics.median(times):>8.1f} {p99:>8.1f} "
                f"{max(times):>8.1f} {size / 1024:>7.0f}"
            )
            if queries is not None:
                queries.report(args.requests + 3)
        print(
            f"worst p99 {worst:.1f} ms: {'meets' if worst < TARGET_P99_MS else 'MISSES'} the target"
        )
        for client in clients.values():
            client.close()
        engine.dispose()
        server.drop_database(url.rsplit("/", 1)[1])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
