"""`hotline users ...`: staff and volunteer accounts."""

from __future__ import annotations

import sys

import typer
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.cli.common import cli_transaction, fail
from storage.audit import record_access
from storage.directory import find_staff, find_unit
from storage.errors import NotFound
from storage.models import ApiToken, Role, Staff
from storage.passwords import WeakPassword, hash_password
from storage.tokens import (
    PASSWORD_RESET,
    SWITCHED_OFF,
    end_sessions_of,
    hash_token,
    new_token,
    revoke_tokens_of,
)
from storage.types import utcnow

app = typer.Typer(help="Staff and volunteer accounts.", no_args_is_help=True)


def _audit(
    session: Session, action: str, staff_id: int, detail: dict[str, object] | None = None
) -> None:
    """What this command did to the account ``staff_id``, in the audit log."""
    record_access(
        session,
        actor=None,
        actor_label="cli",
        action=action,
        subject_type="staff",
        subject_id=staff_id,
        detail=detail,
    )


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        fail("no terminal to ask for the password: pass it on standard input with --password-stdin")
    return typer.prompt("Password", hide_input=True, confirmation_prompt=True)


@app.command("add")
def add(
    username: str = typer.Option(..., "--username", help="Sign-in name."),
    role: Role = typer.Option(..., "--role", help="admin, staff or volunteer."),
    unit: list[str] = typer.Option(..., "--unit", help="A unit served (code or name); repeatable."),
    name: str = typer.Option("", "--name", help="Full name (default: the username)."),
    phone: str = typer.Option("", "--phone"),
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="Read the password from stdin."
    ),
    no_password: bool = typer.Option(
        False, "--no-password", help="No console sign-in (e.g. Telegram only)."
    ),
    wecom_user: str = typer.Option("", "--wecom-user", help="Their UserID in the WeCom app."),
) -> None:
    """Add a staff member or volunteer."""
    password = None if no_password else _read_password(password_stdin)
    try:
        with cli_transaction() as session:
            units = [find_unit(session, u) for u in unit]
            staff = Staff(
                name=name or username,
                role=role,
                phone=phone,
                username=username,
                password_hash=hash_password(password) if password is not None else None,
                units=units,
                wecom_user_id=wecom_user or None,
            )
            session.add(staff)
            session.flush()
            _audit(session, "add_user", staff.id, {"role": role.value})
    except (NotFound, WeakPassword) as exc:
        fail(str(exc))
    except IntegrityError:
        fail(f"a user named {username!r} (or with that WeCom UserID) already exists")
    typer.echo(f"added {role.value} {username} serving {', '.join(unit)}")


@app.command("set-wecom")
def set_wecom(
    username: str = typer.Option(..., "--username"),
    wecom_user: str = typer.Option(
        ..., "--wecom-user", help="Their UserID in the WeCom app; empty to unlink."
    ),
) -> None:
    """Link (or unlink) a user's WeCom account: cases come to them there as cards."""
    try:
        with cli_transaction() as session:
            staff = find_staff(session, username)
            staff.wecom_user_id = wecom_user.strip() or None
            _audit(session, "set_wecom", staff.id, {"linked": staff.wecom_user_id is not None})
    except NotFound as exc:
        fail(str(exc))
    except IntegrityError:
        fail(f"another user has the WeCom UserID {wecom_user!r}")
    typer.echo(
        f"{username}: WeCom "
        + (f"UserID {wecom_user.strip()}" if wecom_user.strip() else "unlinked")
    )


@app.command("reset-password")
def reset_password(
    username: str = typer.Option(..., "--username"),
    password_stdin: bool = typer.Option(False, "--password-stdin"),
) -> None:
    """Set a new console password for a user."""
    password = _read_password(password_stdin)
    try:
        with cli_transaction() as session:
            staff = find_staff(session, username)
            staff.password_hash = hash_password(password)
            ended = end_sessions_of(session, staff.id, PASSWORD_RESET, now=utcnow())
            _audit(session, "reset_password", staff.id, {"sessions_ended": ended})
    except (NotFound, WeakPassword) as exc:
        fail(str(exc))
    typer.echo(f"password of {username} changed; {ended} console session(s) signed out")


@app.command("disable")
def disable(username: str = typer.Option(..., "--username")) -> None:
    """Switch an account off: no sign-in, its console sessions end on every server and its
    API tokens stop working. Its cases and history stay."""
    try:
        with cli_transaction() as session:
            staff = find_staff(session, username)
            staff.active = False
            staff.on_duty = False
            now = utcnow()
            ended = end_sessions_of(session, staff.id, SWITCHED_OFF, now=now)
            revoked = revoke_tokens_of(session, staff.id, now=now)
            _audit(
                session,
                "disable_user",
                staff.id,
                {"sessions_ended": ended, "tokens_revoked": revoked},
            )
    except NotFound as exc:
        fail(str(exc))
    typer.echo(f"{username} switched off; {ended} session(s) ended, {revoked} token(s) revoked")


@app.command("token")
def add_token(
    username: str = typer.Option(..., "--username", help="Whose token: it acts as this person."),
    name: str = typer.Option(..., "--name", help="What it is for (e.g. the integration's name)."),
) -> None:
    """Make a personal token for the JSON API (/api/v1, see /docs). It is shown only now."""
    token = new_token()
    try:
        with cli_transaction() as session:
            staff = find_staff(session, username)
            row = ApiToken(staff_id=staff.id, name=name, token_hash=hash_token(token))
            session.add(row)
            session.flush()
            _audit(session, "add_api_token", staff.id, {"token_id": row.id, "name": name})
    except NotFound as exc:
        fail(str(exc))
    typer.echo(f"token #{row.id} for {username} ({name}); keep it secret, it is not shown again:")
    typer.echo(token)


@app.command("revoke-token")
def revoke_token(token_id: int = typer.Option(..., "--id", help="The token's number.")) -> None:
    """Stop a personal token from working."""
    with cli_transaction() as session:
        row = session.get(ApiToken, token_id)
        if row is None:
            fail(f"no token #{token_id}")
        row.revoked_at = utcnow()
        _audit(session, "revoke_api_token", row.staff_id, {"token_id": token_id})
    typer.echo(f"token #{token_id} revoked")
