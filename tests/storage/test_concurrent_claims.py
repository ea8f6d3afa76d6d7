"""Concurrent claimers (16 threads; 4 processes) empty a queue of 2,000 cases: every case is
claimed exactly once and none is lost, on PostgreSQL (FOR UPDATE SKIP LOCKED) and on SQLite."""

from __future__ import annotations

import multiprocessing
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, literal_column, select
from sqlalchemy.orm import Session, sessionmaker

from storage import actions
from storage.db import make_engine
from storage.errors import CaseConflict
from storage.models import Case, CaseEvent, CaseStatus, Role, Staff
from storage.permissions import Actor
from tests.factories import make_retiree, make_staff, make_unit_tree
from tests.pg_server import PostgresServer

# A Monday in Beijing: 2026-06-01 10:00 +08:00 (the working-day calendar covers 2026).
NOW = datetime(2026, 6, 1, 2, 0, tzinfo=UTC)
CLAIM_AT = NOW + timedelta(hours=1)
SYSTEM = Actor.system()
CASES = 2_000
CLAIMERS = 16
PROCESSES = 4
BATCH = 500  # cases filed per transaction
TIME_LIMIT_S = 300.0  # a claimer that has not emptied the queue by then has hung

# Categories a station's staff can take (community- and station-level queues), with
# their default priorities 1-3 and deadlines in minutes, hours and working days.
CATEGORIES = (
    "general",
    "help_request",
    "callback",
    "policy_question",
    "complaint",
    "medication_reimbursement",
    "hospital_transfer",
    "registration",
    "bereavement",
    "general",
    "help_request",
    "emergency",
)


@dataclass
class Queue:
    staff_ids: list[int]
    case_ids: list[int]  # the cases the claimers must take, in claim order (best first)
    elsewhere_ids: list[int]  # cases of another station, which they must leave alone


def queue_rank(case: Case) -> tuple[Any, ...]:
    """The documented claim order: priority, earliest claim deadline (none last), oldest."""
    deadline = case.claim_deadline
    return (case.priority, deadline is None, deadline or NOW, case.created_at, case.id)


def fill_queue(
    engine: Engine, *, cases: int = CASES, staff: int = CLAIMERS, varied: bool = True
) -> Queue:
    """A unit tree, ``staff`` staff members of station A and ``cases`` open cases in station A's
    queues (station and communities); also a few cases of station B.

    ``varied``: many categories, vulnerable retirees and ties in the filing time (so priority,
    deadline, age and id all decide the order); otherwise one emergency (priority 1), filed
    last, among ``cases - 1`` general requests (priority 3).
    """
    with Session(engine, expire_on_commit=False) as session:
        units = make_unit_tree(session)
        people = [
            make_retiree(session, units.community_a1, age=70),
            make_retiree(session, units.community_a2, age=85),  # raises priority 3 → 2
            make_retiree(session, units.community_a1, age=66, lives_alone=True),
            make_retiree(session, units.community_a2, age=72, hardship="dibao"),
            make_retiree(session, units.community_a1, age=68),
            None,  # an unknown caller: filed on the community given
        ]
        staff_ids = [make_staff(session, Role.STAFF, [units.station_a]).id for _ in range(staff)]
        session.commit()

        filed: list[Case] = []
        for i in range(cases):
            if varied:
                category = CATEGORIES[i % len(CATEGORIES)]
                retiree = people[i % len(people)]
                at = NOW + timedelta(seconds=i // 3)  # three cases share each filing time
            else:
                category = "emergency" if i == cases - 1 else "general"
                retiree, at = None, NOW + timedelta(seconds=i)
            unit = units.community_a2 if retiree is None else None
            filed.append(
                actions.file_case(
                    session,
                    category=category,
                    channel="phone",
                    actor=SYSTEM,
                    retiree=retiree,
                    unit=unit,
                    now=at,
                )
            )
            if (i + 1) % BATCH == 0:
                session.commit()
        elsewhere = [
            actions.file_case(
                session,
                category=category,
                channel="phone",
                actor=SYSTEM,
                unit=units.community_b1,
                now=NOW,
            )
            for category in ("emergency", "general", "complaint")
        ]
        session.commit()
        return Queue(
            staff_ids=staff_ids,
            case_ids=[case.id for case in sorted(filed, key=queue_rank)],
            elsewhere_ids=[case.id for case in elsewhere],
        )


def claim_until_empty(
    factory: sessionmaker[Session],
    staff_id: int,
    start: Any,
    on_claim: Callable[[int], None] | None = None,
) -> list[int]:
    """Claim the next case, one transaction each, until the queue is empty; retry a claim
    that conflicted. ``start`` is a barrier all claimers wait at; returns the ids claimed."""
    claimed: list[int] = []
    try:
        with factory() as session:
            staff = session.get(Staff, staff_id)
            assert staff is not None
            assert staff.units  # loaded once; the session keeps it
            session.commit()
            actor = Actor.person(staff)
            start.wait(timeout=120)
            deadline = time.monotonic() + TIME_LIMIT_S
            while time.monotonic() < deadline:
                try:
                    case = actions.claim_next(session, actor, now=CLAIM_AT)
                    if case is None:
                        session.rollback()
                        return claimed
                    case_id = case.id
                    session.commit()
                except CaseConflict:
                    session.rollback()
                    continue
                claimed.append(case_id)
                if on_claim is not None:
                    on_claim(case_id)
            raise TimeoutError(f"staff #{staff_id} still claiming after {TIME_LIMIT_S:.0f} s")
    except BaseException:
        start.abort()  # do not leave the other claimers waiting at the barrier
        raise


@dataclass
class Claims:
    """Every successful claim: (case id, staff id) in the order the claims committed."""

    in_commit_order: list[tuple[int, int]]


def claim_with_threads(url: str, staff_ids: list[int]) -> Claims:
    engine = make_engine(url, pool_size=len(staff_ids) + 4, max_overflow=0)
    factory = sessionmaker(engine, expire_on_commit=False)
    start = threading.Barrier(len(staff_ids))
    lock = threading.Lock()
    order: list[tuple[int, int]] = []

    def run(staff_id: int) -> list[int]:
        def record(case_id: int) -> None:
            with lock:
                order.append((case_id, staff_id))

        return claim_until_empty(factory, staff_id, start, record)

    try:
        with ThreadPoolExecutor(max_workers=len(staff_ids)) as pool:
            futures = [pool.submit(run, staff_id) for staff_id in staff_ids]
            per_thread = [future.result(timeout=TIME_LIMIT_S + 120) for future in futures]
    finally:
        engine.dispose()
    assert sum(len(ids) for ids in per_thread) == len(order)
    return Claims(order)


def _claim_in_process(url: str, staff_id: int, start: Any, results: Any) -> None:
    """A claimer process (spawned: no connection is inherited); reports (staff, ids, error)."""
    engine = make_engine(url, pool_size=1, max_overflow=0)
    try:
        claimed = claim_until_empty(sessionmaker(engine, expire_on_commit=False), staff_id, start)
        results.put((staff_id, claimed, None))
    except BaseException as exc:
        results.put((staff_id, [], repr(exc)))
    finally:
        engine.dispose()


def assert_each_claimed_once(url: str, queue: Queue, claims: list[tuple[int, int]]) -> None:
    """In what the claimers recorded and in the database: every case of the queue claimed
    exactly once, by whoever recorded it, with exactly one claim event; others untouched."""
    claimed_ids = [case_id for case_id, _ in claims]
    assert len(claims) == len(queue.case_ids)
    duplicates = [case_id for case_id, n in Counter(claimed_ids).items() if n > 1]
    assert duplicates == []
    assert set(claimed_ids) == set(queue.case_ids)

    engine = make_engine(url)
    try:
        with Session(engine) as session:
            rows = session.execute(select(Case.id, Case.status, Case.assignee_id)).all()
            state = {case_id: (status, assignee) for case_id, status, assignee in rows}
            assert {case_id: state[case_id] for case_id, _ in claims} == {
                case_id: (CaseStatus.CLAIMED, staff_id) for case_id, staff_id in claims
            }
            assert {state[case_id][0] for case_id in queue.elsewhere_ids} == {CaseStatus.OPEN}
            claim_events = dict(
                session.execute(
                    select(CaseEvent.case_id, func.count())
                    .where(CaseEvent.action == "claim")
                    .group_by(CaseEvent.case_id)
                ).all()
            )
            assert claim_events == dict.fromkeys(queue.case_ids, 1)
    finally:
        engine.dispose()


def claim_event_order(url: str) -> list[int]:
    """The case ids in the order their claim events were written (inside each claim)."""
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            return list(
                session.scalars(
                    select(CaseEvent.case_id)
                    .where(CaseEvent.action == "claim")
                    .order_by(CaseEvent.id)
                )
            )
    finally:
        engine.dispose()


def claims_in_lock_order(url: str) -> list[int]:
    """PostgreSQL: the case ids in the order their claim transactions took their first lock
    (the transaction id, ``xmin``, of each claim event; a fresh cluster, so no wraparound)."""
    xid = literal_column("xmin::text::bigint")
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            return list(
                session.scalars(
                    select(CaseEvent.case_id).where(CaseEvent.action == "claim").order_by(xid)
                )
            )
    finally:
        engine.dispose()


def assert_claimed_in_queue_order(url: str, queue: Queue, slack: int) -> None:
    """No case was claimed while more than ``slack`` better cases were still waiting.

    A claimer takes the best case that nobody else holds; the others (``slack`` of them at
    most) hold one case each until they commit. So the case written k-th (0-based) is at
    most ``k + slack``-th in the queue. With ``slack`` 0 the claims follow the queue exactly.
    """
    rank = {case_id: i for i, case_id in enumerate(queue.case_ids)}
    late = [
        (position, rank[case_id])
        for position, case_id in enumerate(claim_event_order(url))
        if rank[case_id] > position + slack
    ]
    assert late == [], "(claim position, queue rank) of cases taken out of order"


# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def filled_postgres(pg_server: PostgresServer, pg_template: str) -> Iterator[tuple[str, Queue]]:
    """A migrated PostgreSQL database with the 2,000 cases, filled once for this module."""
    name = f"claims_{uuid.uuid4().hex[:12]}"
    url = pg_server.create_database(name, template=pg_template)
    engine = make_engine(url)
    try:
        queue = fill_queue(engine)
    finally:
        engine.dispose()  # no connection may stay: it is copied (CREATE DATABASE ... TEMPLATE)
    yield name, queue
    pg_server.drop_database(name)


@pytest.fixture
def postgres_queue(
    pg_server: PostgresServer, filled_postgres: tuple[str, Queue]
) -> Iterator[tuple[str, Queue]]:
    """(URL, queue) of a fresh copy of the filled database."""
    template, queue = filled_postgres
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield pg_server.create_database(name, template=template), queue
    pg_server.drop_database(name)


@pytest.fixture
def sqlite_queue(sqlite_url: str) -> tuple[str, Queue]:
    engine = make_engine(sqlite_url)
    try:
        return sqlite_url, fill_queue(engine)
    finally:
        engine.dispose()


# --- threads ------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["postgres", "sqlite"])
def test_16_threads_claim_each_case_exactly_once(
    request: pytest.FixtureRequest, backend: str
) -> None:
    url, queue = request.getfixturevalue(f"{backend}_queue")
    assert len(queue.staff_ids) == CLAIMERS and len(queue.case_ids) == CASES

    claims = claim_with_threads(url, queue.staff_ids)

    assert_each_claimed_once(url, queue, claims.in_commit_order)
    # SQLite runs one claim at a time (BEGIN IMMEDIATE): exactly in queue order.
    slack = CLAIMERS - 1 if backend == "postgres" else 0
    assert_claimed_in_queue_order(url, queue, slack)
    busy = {staff_id for _, staff_id in claims.in_commit_order}
    assert len(busy) > 1, "only one thread ever claimed: the test did not run concurrently"


@pytest.mark.slow
@pytest.mark.postgres
def test_urgent_case_is_among_the_first_claims_under_concurrency(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    try:
        queue = fill_queue(engine, cases=500, varied=False)
    finally:
        engine.dispose()
    urgent = queue.case_ids[0]  # the emergency, filed last

    claims = claim_with_threads(postgres_url, queue.staff_ids)

    assert_each_claimed_once(postgres_url, queue, claims.in_commit_order)
    # Which claim came first is when its row was locked, not when its thread got to commit
    # (16 threads share 2 cores: a claimer can wait on the GIL while others commit many).
    # PostgreSQL gives a transaction its id when it first writes, and a claim's first write
    # is locking the case it picked: the first claim to lock anything must take the urgent one.
    first_locks = claims_in_lock_order(postgres_url)
    assert first_locks[0] == urgent, f"locked as claim #{first_locks.index(urgent) + 1}"
    assert_claimed_in_queue_order(postgres_url, queue, CLAIMERS - 1)


# --- processes ----------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.postgres
def test_4_processes_claim_each_case_exactly_once(postgres_queue: tuple[str, Queue]) -> None:
    url, queue = postgres_queue
    staff_ids = queue.staff_ids[:PROCESSES]
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(PROCESSES)
    results = context.Queue()
    processes = [
        context.Process(
            target=_claim_in_process,
            args=(url, staff_id, start, results),
            name=f"claimer-{staff_id}",
        )
        for staff_id in staff_ids
    ]
    for process in processes:
        process.start()
    try:
        reports = [results.get(timeout=TIME_LIMIT_S + 120) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=60)
            if process.is_alive():
                process.kill()
                process.join()

    assert [error for _, _, error in reports if error] == []
    assert [process.exitcode for process in processes] == [0] * PROCESSES
    claims = [(case_id, staff_id) for staff_id, ids, _ in reports for case_id in ids]
    assert_each_claimed_once(url, queue, claims)
    assert all(ids for _, ids, _ in reports), "a process claimed nothing"
    assert_claimed_in_queue_order(url, queue, PROCESSES - 1)
