"""`hotline spool list` and `hotline spool retry`: what this machine's servers kept while the
database was down (bot/channels/twilio/outage.py), and the items they could not hand back.

An item is set aside as ``*.failed`` when running it again failed for a reason other than the
database (a bug). Once the cause is fixed, `retry` hands it back: the replayer of a running
`hotline serve` takes it within seconds. Nothing here needs the database, and nothing printed
is personal data (who sent what stays in the files, readable by root only).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from bot.cli.common import current_settings, fail
from storage.spool import FAILED_BECAUSE, Spool

app = typer.Typer(
    help="The spool: webhooks kept while the database was down.", no_args_is_help=True
)


def _spool() -> Spool:
    from bot.channels.twilio.outage import spool_of

    return spool_of(current_settings())


def _describe(path: Path) -> dict[str, Any]:
    """What an operator needs of a failed item (not the form: that is who sent what)."""
    try:
        item = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as exc:
        return {"file": path.name, "failed_because": f"unreadable: {exc}"}
    if not isinstance(item, dict):
        return {"file": path.name, "failed_because": "unreadable: not a JSON object"}
    return {
        "file": path.name,
        "route": item.get("path", ""),
        "received_at": item.get("received_at", ""),
        "kept_because": item.get("why", ""),
        "failed_because": item.get(FAILED_BECAUSE, "(not recorded)"),
    }


@app.command("list")
def list_command(
    as_json: bool = typer.Option(False, "--json", help="One JSON object, for scripts."),
) -> None:
    """How many items wait to be handed back, and the failed ones with what went wrong."""
    spool = _spool()
    failed = [_describe(path) for path in spool.failed_items()]
    if as_json:
        payload = {"folder": str(spool.directory), "waiting": spool.count(), "failed": failed}
        typer.echo(json.dumps(payload, ensure_ascii=False, indent=2))
        return
    typer.echo(f"{spool.directory}: {spool.count()} waiting, {len(failed)} failed")
    for entry in failed:
        typer.echo(f"\n{entry['file']}")
        for key in ("route", "received_at", "kept_because", "failed_because"):
            if key in entry:
                typer.echo(f"  {key}: {entry[key]}")


@app.command("retry")
def retry_command(
    files: list[str] = typer.Argument(
        None, help="Failed items' file names (as `list` prints them); none: every failed item."
    ),
) -> None:
    """Hand failed items back (their cause fixed): a running server takes them within seconds."""
    spool = _spool()
    paths = [spool.directory / Path(name).name for name in files] if files else None
    if paths is None:
        paths = spool.failed_items()
        if not paths:
            typer.echo(f"{spool.directory}: no failed item")
            return
    problems: list[str] = []
    for path in paths:
        try:
            spool.retry(path)
        except (ValueError, OSError) as exc:
            problems.append(str(exc))
            continue
        typer.echo(f"handed back: {path.name}")
    if problems:
        fail("; ".join(problems))
