"""A throwaway PostgreSQL server for the test suite: started from the installed server binaries
(as the ``postgres`` user when run as root), or an existing one named by HOTLINE_TEST_POSTGRES_URL.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy.engine import URL, make_url

ENV_URL = "HOTLINE_TEST_POSTGRES_URL"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0
NO_BINARIES = "PostgreSQL server binaries not found (install the postgresql package)"


class PostgresServer:
    """A PostgreSQL server the tests may create and drop databases on."""

    def __init__(
        self,
        base_url: URL,
        process: subprocess.Popen[bytes] | None = None,
        tempdir: Path | None = None,
    ) -> None:
        self._base_url = base_url
        self._process = process
        self._tempdir = tempdir
        self._admin: psycopg.Connection[Any] | None = None
        self._stopped = False
        if process is not None or tempdir is not None:
            atexit.register(self.stop)

    def url(self, database: str = "postgres") -> str:
        """SQLAlchemy URL of ``database`` on this server."""
        return self._base_url.set(database=database).render_as_string(hide_password=False)

    def create_database(self, name: str, template: str | None = None) -> str:
        """Create database ``name`` (a copy of ``template`` if given) and return its URL."""
        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            query = sql.SQL("{} TEMPLATE {}").format(query, sql.Identifier(template))
        self._execute(query)
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name``, disconnecting its sessions; no error if it is already gone."""
        self._execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )

    def refuse_connections(self, name: str) -> None:
        """Database ``name`` goes down for its clients: its sessions are ended and new ones
        refused ("database ... is not currently accepting connections"), its data kept."""
        self._execute(
            sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(sql.Identifier(name))
        )
        self._execute(
            sql.SQL(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = {}"
            ).format(sql.Literal(name))
        )

    def allow_connections(self, name: str) -> None:
        """Database ``name`` is back (see `refuse_connections`)."""
        self._execute(
            sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(sql.Identifier(name))
        )

    def stop(self) -> None:
        """Close connections, shut a server we started down fast, and delete its files."""
        if self._stopped:
            return
        self._stopped = True
        atexit.unregister(self.stop)
        if self._admin is not None:
            with contextlib.suppress(Exception):
                self._admin.close()
            self._admin = None
        if self._process is not None:
            _shutdown(self._process, self._tempdir)
            self._process = None
        if self._tempdir is not None:
            shutil.rmtree(self._tempdir, ignore_errors=True)
            self._tempdir = None

    def _execute(self, query: sql.Composable) -> None:
        if self._stopped:
            raise RuntimeError("the PostgreSQL server has been stopped")
        if self._admin is None or self._admin.closed or self._admin.broken:
            self._admin = _connect(self._base_url)
        try:
            self._admin.execute(query)
        except psycopg.OperationalError:
            # The admin connection may have died (server restart, idle timeout): retry once.
            with contextlib.suppress(Exception):
                self._admin.close()
            self._admin = _connect(self._base_url)
            self._admin.execute(query)


def start_postgres() -> tuple[PostgresServer | None, str | None]:
    """Start a throwaway cluster; return (server, None) or (None, one-line reason why not)."""
    external = os.environ.get(ENV_URL, "").strip()
    if external:
        return _use_external(external)

    bindir = _find_bindir()
    if bindir is None:
        return None, NO_BINARIES

    as_postgres = os.geteuid() == 0
    runner: list[str] = []
    owner: pwd.struct_passwd | None = None
    if as_postgres:
        # initdb refuses to run as root: run the server as the postgres system user.
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            return None, "running as root and there is no 'postgres' system user to run initdb as"
        runuser = shutil.which("runuser")
        if runuser is None:
            return None, "running as root and runuser (util-linux) is not installed"
        runner = [runuser, "-u", "postgres", "--"]

    tempdir = Path(tempfile.mkdtemp(prefix="hotline-pg-", dir=_temp_parent(as_postgres)))
    try:
        server, reason = _start_in(tempdir, bindir, runner, owner)
    except Exception as exc:  # never leave the temporary cluster behind
        server, reason = None, f"starting PostgreSQL failed: {_one_line(repr(exc))}"
    if server is None:
        shutil.rmtree(tempdir, ignore_errors=True)
    return server, reason


def _start_in(
    tempdir: Path, bindir: Path, runner: list[str], owner: pwd.struct_passwd | None
) -> tuple[PostgresServer | None, str | None]:
    data = tempdir / "data"
    sockets = tempdir / "sockets"
    log_path = tempdir / "postgres.log"
    for path in (data, sockets):
        path.mkdir(mode=0o700)
    if owner is not None:
        for path in (tempdir, data, sockets):
            os.chown(path, owner.pw_uid, owner.pw_gid)

    initdb = [*runner, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"]
    initdb += ["-E", "UTF8", "--no-sync"]
    for locale in ("C.UTF-8", "C"):
        result = subprocess.run(
            [*initdb, f"--locale={locale}"],
            cwd=tempdir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode == 0:
            break
    else:
        return None, f"initdb failed: {_tail(result.stdout + result.stderr)}"

    error, log_text = "not started", ""
    for _attempt in range(3):  # another process may grab the free port before postgres binds it
        port = _free_port()
        command = [*runner, str(bindir / "postgres"), "-D", str(data), "-k", str(sockets)]
        command += ["-p", str(port), "-c", "listen_addresses=127.0.0.1"]
        for setting in (
            "fsync=off",
            "synchronous_commit=off",
            "full_page_writes=off",
            "max_connections=200",
            "shared_buffers=128MB",
        ):
            command += ["-c", setting]
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                command,
                cwd=tempdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in the terminal is for pytest, not postgres
            )
        base_url = URL.create(
            "postgresql+psycopg", username="postgres", host="127.0.0.1", port=port
        )
        try:
            error = _wait_until_ready(process, base_url, data)
        except BaseException:
            _shutdown(process, tempdir)
            raise
        if error is None:
            return PostgresServer(base_url, process, tempdir), None
        _shutdown(process, tempdir)
        log_text = log_path.read_text(errors="replace")
        if not re.search(r"could not bind|already in use", log_text):
            break
    return None, f"PostgreSQL did not start: {error}; log: {_tail(log_text)}"


def _use_external(raw_url: str) -> tuple[PostgresServer | None, str | None]:
    try:
        url = make_url(raw_url)
    except Exception as exc:
        return None, f"{ENV_URL} is not a valid URL: {_one_line(str(exc))}"
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    try:
        _connect(url).close()
    except Exception as exc:
        return None, f"cannot connect to {ENV_URL}: {_one_line(str(exc))}"
    return PostgresServer(url), None


def _find_bindir() -> Path | None:
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=30, check=True
            ).stdout.strip()
            if out and _has_server(Path(out)):
                return Path(out)

    def version(bindir: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", bindir.parent.name))

    candidates = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if _has_server(p)]
    return max(candidates, key=version, default=None)


def _has_server(bindir: Path) -> bool:
    return all(os.access(bindir / name, os.X_OK) for name in ("initdb", "postgres"))


def _temp_parent(as_postgres: bool) -> str | None:
    """Where to make the temp dir; the postgres user must be able to traverse its ancestors."""
    if not as_postgres:
        return None
    parent = Path(tempfile.gettempdir()).resolve()
    for directory in (parent, *parent.parents):
        if not directory.stat().st_mode & stat.S_IXOTH:
            return "/tmp"
    return str(parent)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _connect(url: URL, connect_timeout: int = 10) -> psycopg.Connection[Any]:
    params: dict[str, Any] = {
        "host": url.host or "127.0.0.1",
        "port": url.port or 5432,
        "user": url.username,
        "password": url.password,
        "dbname": url.database or "postgres",
        "connect_timeout": connect_timeout,
    }
    params.update({k: v for k, v in url.query.items() if isinstance(v, str)})
    params = {k: v for k, v in params.items() if v is not None}
    return psycopg.connect(autocommit=True, **params)


def _wait_until_ready(process: subprocess.Popen[bytes], url: URL, data: Path) -> str | None:
    """None once our server answers on ``url``; else why not (it exited, or time ran out)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    last_error = "timed out"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return f"the server exited with status {process.returncode}"
        try:
            with _connect(url, connect_timeout=2) as conn:
                row = conn.execute("SHOW data_directory").fetchone()
            # Some other server may hold the port (it was free a moment ago): not ours, wait on.
            if row is not None and Path(row[0]).resolve() == data.resolve():
                return None
            last_error = f"port {url.port} is answered by another server"
        except psycopg.Error as exc:
            last_error = _one_line(str(exc))
        time.sleep(0.1)
    return f"no connection after {START_TIMEOUT_S:.0f} s ({last_error})"


def _postmaster_pid(process: subprocess.Popen[bytes], tempdir: Path | None) -> int:
    """The postmaster's pid: runuser forks it and does not pass SIGINT on, so signal it directly."""
    if tempdir is not None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid_file = tempdir / "data" / "postmaster.pid"
            return int(pid_file.read_text().splitlines()[0])
    with contextlib.suppress(OSError, ValueError):
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
        if children:
            return int(children[0])
    return process.pid


def _shutdown(process: subprocess.Popen[bytes], tempdir: Path | None) -> None:
    """Fast shutdown (SIGINT); immediate (SIGQUIT), then SIGKILL, if it takes too long."""
    if process.poll() is not None:
        return
    pid = _postmaster_pid(process, tempdir)
    for sig, timeout in ((signal.SIGINT, STOP_TIMEOUT_S), (signal.SIGQUIT, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        try:
            process.wait(timeout=timeout)
            return
        except subprocess.TimeoutExpired:
            continue
    for target in {pid, process.pid}:
        with contextlib.suppress(ProcessLookupError):
            os.kill(target, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)


def _tail(text: str, lines: int = 5) -> str:
    kept = [line.strip() for line in text.strip().splitlines() if line.strip()][-lines:]
    return " | ".join(kept) or "(no output)"


def _one_line(text: str) -> str:
    return " ".join(text.split())


@contextlib.contextmanager
def server_for_benchmark(url: str | None) -> Iterator[PostgresServer]:
    """For benchmarks/: the server at ``url`` (a --postgres-url), or a throwaway one; exits with
    the reason when there is none."""
    if url:
        os.environ[ENV_URL] = url
    server, reason = start_postgres()
    if server is None:
        raise SystemExit(f"no PostgreSQL: {reason}")
    try:
        yield server
    finally:
        server.stop()
