"""Engines: a PostgreSQL pool replaces the connections the server closed, without a round trip
each time a connection is taken."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text

from storage.db import make_engine
from tests.pg_server import PostgresServer

pytestmark = pytest.mark.postgres


def backend_pids(engine: Engine, connections: int) -> set[int]:
    """Open ``connections`` at once (the pool keeps them), each saying its server process."""
    opened = [engine.connect() for _ in range(connections)]
    try:
        return {c.execute(text("SELECT pg_backend_pid()")).scalar_one() for c in opened}
    finally:
        for connection in opened:
            connection.close()


def terminate(pg_server: PostgresServer, pids: set[int]) -> None:
    admin = make_engine(pg_server.url("postgres"))
    try:
        with admin.begin() as conn:
            for pid in pids:
                # With a timeout it waits until the backend is gone (its socket closed), as
                # after a restart; without, a pooled connection could be taken in between.
                ended = conn.execute(text("SELECT pg_terminate_backend(:p, 5000)"), {"p": pid})
                assert ended.scalar()
    finally:
        admin.dispose()


def test_connections_the_server_closed_are_replaced_unseen(
    postgres_url: str, pg_server: PostgresServer
) -> None:
    engine = make_engine(postgres_url)
    try:
        old = backend_pids(engine, 3)
        terminate(pg_server, old)  # as a restart of the server would
        for _ in range(4):  # every pooled connection is dead: none of them is used
            with engine.begin() as conn:
                pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
            assert pid not in old
    finally:
        engine.dispose()


def test_taking_a_pooled_connection_sends_nothing_to_the_server(
    postgres_url: str, pg_server: PostgresServer
) -> None:
    engine = make_engine(postgres_url)
    admin = make_engine(pg_server.url("postgres"))
    try:
        [pid] = backend_pids(engine, 1)  # one connection in the pool
        with engine.connect(), admin.connect() as conn:
            last = conn.execute(
                text("SELECT query FROM pg_stat_activity WHERE pid = :p"), {"p": pid}
            ).scalar_one()
        # Its last statement is still the one before it went back to the pool (the reset's
        # ROLLBACK), not a ping.
        assert last == "ROLLBACK"
    finally:
        engine.dispose()
        admin.dispose()
