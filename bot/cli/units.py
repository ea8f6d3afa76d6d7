"""`hotline units ...`: the units (center, stations, communities) and their Telegram group chats.

`hotline units telegram-chat A1 --chat-id -1001234567890` links a group chat to a unit (`--clear`
forgets it): for an operator, e.g. when a group is gone and nobody can send /unlinkunit in it.
Staff usually link a group themselves with /linkunit in it (bot/channels/telegram/groups.py).
"""

from __future__ import annotations

import json

import typer
from sqlalchemy import select

from bot.cli.common import cli_transaction, fail
from storage.directory import find_unit
from storage.errors import NotFound
from storage.models import Unit
from storage.permissions import Actor
from storage.unit_chats import UnitChatConflict, link_unit_chat, unlink_unit_chat

app = typer.Typer(help="Units and their Telegram group chats.", no_args_is_help=True)

VIA = "cli"


@app.command("list")
def list_command(as_json: bool = typer.Option(False, "--json", help="Print a JSON array.")) -> None:
    """List the units: code, level, parent, names and Telegram group chat."""
    with cli_transaction() as session:
        units = session.scalars(select(Unit).order_by(Unit.id)).all()
        rows = [
            {
                "code": u.code,
                "level": u.level.value,
                "parent": u.parent.code if u.parent is not None else None,
                "name_zh": u.name_zh,
                "name_en": u.name_en,
                "telegram_chat_id": u.telegram_chat_id,
            }
            for u in units
        ]
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    for row in rows:
        chat = row["telegram_chat_id"] if row["telegram_chat_id"] is not None else "-"
        typer.echo(
            f"{row['code']:<10} {row['level']:<10} {row['parent'] or '-':<10} "
            f"{row['name_zh']} / {row['name_en']}  telegram {chat}"
        )


@app.command("telegram-chat")
def telegram_chat_command(
    unit: str = typer.Argument(..., help="Code or name of the unit."),
    chat_id: int | None = typer.Option(
        None,
        "--chat-id",
        help="The group's chat id (negative, e.g. -1001234567890; a supergroup's starts -100).",
    ),
    clear: bool = typer.Option(False, "--clear", help="Forget the unit's group chat."),
) -> None:
    """Link a Telegram group chat to a unit (its new cases are posted there), or --clear it."""
    if (chat_id is None) == (not clear):
        fail("give either --chat-id CHAT_ID or --clear")
    if chat_id is not None and chat_id >= 0:
        fail(f"--chat-id {chat_id}: a group's chat id is negative (a positive id is a person)")
    try:
        with cli_transaction() as session:
            found = find_unit(session, unit)
            code = found.code
            if chat_id is None:
                old = unlink_unit_chat(session, found, Actor.system(VIA), via=VIA)
                message = f"unit {code}: group chat {old} forgotten" if old else None
            else:
                changed = link_unit_chat(session, found, chat_id, Actor.system(VIA), via=VIA)
                message = f"unit {code}: new cases are posted to Telegram chat {chat_id}"
                if not changed:
                    message = f"unit {code} is already linked to Telegram chat {chat_id}"
    except (NotFound, UnitChatConflict) as exc:
        fail(str(exc))
    typer.echo(message or f"unit {code} has no group chat: nothing to clear")
