"""Engines and sessions. A session is opened at the edge (one per request, command or job)."""

from __future__ import annotations

import select
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, exc, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from config.settings import get_settings


def make_engine(url: str | None = None, **kwargs: Any) -> Engine:
    """An engine for ``url`` (default: the configured database).

    SQLite runs in WAL mode with foreign keys on, and every transaction starts with
    BEGIN IMMEDIATE: writers queue on the busy timeout instead of failing half-way when a
    read transaction tries to become a write transaction.

    PostgreSQL: a pooled connection the server has closed (a restart, a terminated backend,
    an idle timeout) is replaced when it is taken from the pool, found by a look at its socket
    instead of a "SELECT 1" round trip each time (``pool_pre_ping``, which cost a webhook
    about 7% of its CPU); see `_replace_closed_connections`.
    """
    url = url or get_settings().effective_database_url
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        kwargs.setdefault("connect_args", {})
        kwargs["connect_args"].setdefault("timeout", 30)
        kwargs["connect_args"].setdefault("check_same_thread", False)
        engine = create_engine(url, **kwargs)
        _configure_sqlite(engine)
        return engine
    if parsed.get_backend_name() != "postgresql":
        kwargs.setdefault("pool_pre_ping", True)
        return create_engine(url, **kwargs)
    # Fail fast (readyz answers 503) instead of hanging on an unreachable server.
    kwargs.setdefault("connect_args", {}).setdefault("connect_timeout", 5)
    kwargs.setdefault("pool_pre_ping", False)
    if parsed.get_driver_name() in ("", "psycopg2"):
        url = str(parsed.set(drivername="postgresql+psycopg"))
    engine = create_engine(url, **kwargs)
    if not kwargs["pool_pre_ping"]:
        _replace_closed_connections(engine)
    return engine


def _replace_closed_connections(engine: Engine) -> None:
    """Check each connection as it leaves the pool: when the server has closed it, the whole
    pool is renewed (after a restart every pooled connection is dead) and a fresh one is used.

    A server that ends a connection (shut down, restarted, pg_terminate_backend, an idle
    timeout) says so and closes the socket, which then reads as ready while the connection is
    idle in the pool; a live idle connection has nothing to read (we never LISTEN). A poll of
    the socket costs microseconds where "SELECT 1" costs a round trip and the server's time.
    What neither notices: a server gone without a word (its host lost); the query then fails
    and SQLAlchemy renews the pool for the next one.
    """

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        if _closed_by_server(dbapi_connection):
            raise exc.InvalidatePoolError("the server closed this pooled connection")


def _closed_by_server(connection: Any) -> bool:
    """An idle psycopg connection that is broken, or whose socket has something to read."""
    if connection.closed or connection.broken:
        return True
    poller = select.poll()
    poller.register(connection.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
    return bool(poller.poll(0))


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


_engine: Engine | None = None
_factory: sessionmaker[Session] | None = None


def get_engine() -> Engine:
    global _engine
    if _engine is None:
        _engine = make_engine()
    return _engine


def session_factory(engine: Engine | None = None) -> sessionmaker[Session]:
    global _factory
    if engine is not None:
        return sessionmaker(engine, expire_on_commit=False)
    if _factory is None:
        _factory = sessionmaker(get_engine(), expire_on_commit=False)
    return _factory


@contextmanager
def transaction(engine: Engine | None = None) -> Iterator[Session]:
    """One unit of work: commits when the block ends, rolls back on an exception."""
    with session_factory(engine).begin() as session:
        yield session


def dialect_insert(session: Session) -> Any:
    """The INSERT construct of the session's database, which has ON CONFLICT (both do)."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert
    return sqlite.insert


def for_this_worker(session: Session, query: Any, model: Any) -> Any:
    """``query``'s rows of ``model`` locked for this worker: on PostgreSQL FOR UPDATE SKIP
    LOCKED, so other workers pass them by; SQLite has one writer at a time anyway."""
    if session.get_bind().dialect.name == "postgresql":
        return query.with_for_update(skip_locked=True, of=model)
    return query


_BUILT: dict[tuple[str, str], Any] = {}


def insert_statement(session: Session, name: str, build: Callable[[Any], Any]) -> Any:
    """The statement ``name``, built once per database kind by ``build(insert)`` from that
    database's INSERT construct (a statement on a webhook's path: building it anew each time,
    and working out its cache key, costs more than running it)."""
    key = (name, session.get_bind().dialect.name)
    statement = _BUILT.get(key)
    if statement is None:
        statement = _BUILT[key] = build(dialect_insert(session))
    return statement


# The database cannot be reached or went away mid-way (as opposed to a bug, or a refused row).
DATABASE_DOWN: tuple[type[Exception], ...] = (
    exc.OperationalError,
    exc.InterfaceError,
    exc.TimeoutError,  # no pooled connection came free in time
)


def is_database_down(error: BaseException) -> bool:
    if isinstance(error, DATABASE_DOWN):
        return True
    return isinstance(error, exc.DBAPIError) and error.connection_invalidated


def ping(engine: Engine | None = None) -> None:
    """Raise if the database cannot be reached."""
    with (engine or get_engine()).connect() as conn:
        conn.execute(text("SELECT 1"))
