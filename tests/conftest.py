"""Fixtures shared by the whole suite: a fresh, migrated database per test, on SQLite and PostgreSQL.

Every test that takes ``engine`` (or ``session``) runs twice: once on an SQLite file and once on
a real PostgreSQL server that the suite starts itself (tests/pg_server.py). Without PostgreSQL
binaries the PostgreSQL half is skipped with the reason, unless HOTLINE_REQUIRE_POSTGRES=1.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from storage.db import make_engine
from storage.migrate import upgrade
from tests.pg_server import PostgresServer, start_postgres

BACKENDS = ["sqlite", "postgres"]


def _require_postgres() -> bool:
    return os.environ.get("HOTLINE_REQUIRE_POSTGRES", "") not in ("", "0", "false")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    server, reason = start_postgres()
    if server is None:
        if _require_postgres():
            pytest.fail(f"PostgreSQL is required (HOTLINE_REQUIRE_POSTGRES=1) but: {reason}")
        pytest.skip(f"no PostgreSQL: {reason}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def pg_template(pg_server: PostgresServer) -> str:
    """A database migrated once; each test copies it (CREATE DATABASE ... TEMPLATE)."""
    url = pg_server.create_database("hotline_template")
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return "hotline_template"


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()  # closing the last connection checkpoints the WAL into the file
    assert not path.with_name(path.name + "-wal").exists()
    return path


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "hotline.db"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def postgres_url(request: pytest.FixtureRequest) -> Iterator[str]:
    server: PostgresServer = request.getfixturevalue("pg_server")
    template: str = request.getfixturevalue("pg_template")
    name = f"t_{uuid.uuid4().hex[:12]}"
    url = server.create_database(name, template=template)
    yield url
    server.drop_database(name)


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest) -> str:
    """The URL of a fresh, migrated database, once per backend."""
    if request.param == "postgres":
        return request.getfixturevalue("postgres_url")
    return request.getfixturevalue("sqlite_url")


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    """A session whose changes the test commits (or not) itself."""
    with Session(engine, expire_on_commit=False) as s:
        yield s


@pytest.fixture(scope="session")
def trained_nlu_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder whose NLU cache holds the parser trained on nlu/data (trained once)."""
    from config.settings import Settings
    from nlu.embedded import EmbeddedParser

    data_dir = tmp_path_factory.mktemp("nlu-data")
    EmbeddedParser.train(Settings(data_dir=data_dir, _env_file=None))
    return data_dir


@pytest.fixture(scope="session")
def nlu_parser(trained_nlu_dir: Path) -> Any:
    """The embedded NLU parser, trained once per test run."""
    from config.settings import Settings
    from nlu.embedded import EmbeddedParser

    return EmbeddedParser.load(Settings(data_dir=trained_nlu_dir, _env_file=None))


@pytest.fixture(scope="session")
def deployment() -> Any:
    """The shipped configuration and handlers (bot/runtime/configure.py)."""
    from tests.factories import shipped_deployment

    return shipped_deployment()


@pytest.fixture
def bot(engine: Engine, nlu_parser: Any) -> Any:
    """A conversation engine over the test's database with the shipped configuration."""
    from bot.conversation.engine import ConversationEngine
    from bot.runtime.configure import load_deployment
    from config.settings import Settings

    return ConversationEngine(engine, nlu_parser, load_deployment(Settings(_env_file=None)))
