"""`hotline cases ...`: staff at a desk file and work on cases from the command line."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import typer
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from bot.cli.common import cli_transaction, current_settings, fail
from config.categories import get_categories
from storage import actions
from storage.audit import record_access, viewed_retiree
from storage.directory import find_staff, find_unit
from storage.errors import CaseError
from storage.identities import retiree_by_phone
from storage.models import Case, CaseStatus, Retiree
from storage.permissions import Actor
from storage.phones import InvalidPhoneNumber, normalize_phone

app = typer.Typer(help="File, list and work on cases.", no_args_is_help=True)

AS_HELP = "Your username: the action is done, checked and recorded as you."


def _local_zone() -> ZoneInfo:
    return ZoneInfo(current_settings().timezone)


def _iso(value: datetime | None, zone: ZoneInfo) -> str | None:
    """ISO 8601 in the deployment's local time (with its offset), as a desk worker reads it."""
    if value is None:
        return None
    return value.astimezone(zone).isoformat(timespec="seconds")


def case_row(case: Case, zone: ZoneInfo) -> dict[str, Any]:
    """The fields `cases list --json` gives for each case."""
    retiree = case.retiree
    return {
        "number": case.number,
        "category": case.category,
        "priority": case.priority,
        "status": case.status.value,
        "channel": case.channel,
        "unit": case.unit.code,
        "retiree": {"id": retiree.id, "name": retiree.name} if retiree else None,
        "assignee": case.assignee.username if case.assignee else None,
        "summary": case.summary,
        "created_at": _iso(case.created_at, zone),
        "claim_deadline": _iso(case.claim_deadline, zone),
        "resolve_deadline": _iso(case.resolve_deadline, zone),
    }


def case_detail(case: Case, zone: ZoneInfo) -> dict[str, Any]:
    row = case_row(case, zone)
    retiree: Retiree | None = case.retiree
    row.update(
        details=case.details,
        original_text=case.original_text,
        outcome=case.outcome,
        first_contact_owner=case.first_contact_owner.username if case.first_contact_owner else None,
        claimed_at=_iso(case.claimed_at, zone),
        resolved_at=_iso(case.resolved_at, zone),
        closed_at=_iso(case.closed_at, zone),
        retiree=None
        if retiree is None
        else {
            "id": retiree.id,
            "name": retiree.name,
            "phones": [p.number for p in retiree.phones],
            "address": retiree.address,
            "birth_date": retiree.birth_date.isoformat() if retiree.birth_date else None,
            "lives_alone": retiree.lives_alone,
            "self_care": retiree.self_care.value,
            "hardship": retiree.hardship.value,
        },
        events=[
            {
                "at": _iso(e.at, zone),
                "action": e.action,
                "by": e.actor.username if e.actor else e.actor_label,
                "from": e.from_status,
                "to": e.to_status,
                "reason": e.reason,
                "note": e.note,
            }
            for e in case.events
        ],
    )
    return row


def _actor(session: Session, username: str | None) -> Actor:
    return Actor.person(find_staff(session, username)) if username else Actor.system("cli")


def _print_table(rows: list[dict[str, Any]]) -> None:
    if not rows:
        typer.echo("no cases")
        return
    for r in rows:
        who = r["retiree"]["name"] if r["retiree"] else "-"
        typer.echo(
            f"{r['number']}  P{r['priority']}  {r['status']:<9} {r['category']:<24} "
            f"{r['unit']:<8} {who}  {r['summary']}"
        )


@app.command("file")
def file_command(
    phone: str = typer.Option(..., "--phone", help="The retiree's phone number."),
    category: str = typer.Option(..., "--category"),
    text: str = typer.Option(..., "--text", help="What the person asked for, in their words."),
    channel: str = typer.Option("walk_in", "--channel"),
    unit: str | None = typer.Option(None, "--unit", help="Queue for an unknown caller."),
    by: str | None = typer.Option(None, "--as", help=AS_HELP),
) -> None:
    """Log a request that came in person or on an ordinary phone."""
    try:
        with cli_transaction() as session:
            retiree = retiree_by_phone(session, normalize_phone(phone), inactive=True)
            if retiree is None and unit is None:
                fail(f"no retiree has the phone {phone}; give --unit to file for an unknown caller")
            details = {} if retiree is not None else {"caller_phone": phone}
            case = actions.file_case(
                session,
                category=category,
                channel=channel,
                actor=_actor(session, by),
                retiree=retiree,
                unit=find_unit(session, unit) if unit else None,
                summary=text[:80],
                details=details,
                original_text=text,
            )
            number, priority, queue = case.number, case.priority, case.unit.code
    except (CaseError, InvalidPhoneNumber) as exc:
        fail(str(exc))
    typer.echo(f"filed {number} ({category}, priority {priority}) in the queue of {queue}")


@app.command("list")
def list_command(
    status: CaseStatus | None = typer.Option(None, "--status"),
    unit: str | None = typer.Option(None, "--unit", help="Code or name of the unit."),
    limit: int = typer.Option(200, "--limit", min=1),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON array."),
) -> None:
    """List cases, most urgent first."""
    try:
        with cli_transaction() as session:
            query = select(Case).options(
                selectinload(Case.retiree), selectinload(Case.unit), selectinload(Case.assignee)
            )
            if status is not None:
                query = query.where(Case.status == status)
            if unit is not None:
                query = query.where(Case.unit_id == find_unit(session, unit).id)
            query = query.order_by(Case.priority, Case.claim_deadline.asc().nulls_last(), Case.id)
            zone = _local_zone()
            rows = [case_row(c, zone) for c in session.scalars(query.limit(limit))]
            record_access(
                session,
                actor=None,
                actor_label="cli",
                action="list_cases",
                subject_type="case",
                subject_id=None,
                detail={"count": len(rows)},
            )
    except CaseError as exc:
        fail(str(exc))
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=2))
    else:
        _print_table(rows)


@app.command("show")
def show_command(
    number: str = typer.Argument(..., help="The case number, e.g. 2026-000123."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Show one case with the retiree's card and its timeline."""
    try:
        with cli_transaction() as session:
            case = actions.get_case(session, number)
            detail = case_detail(case, _local_zone())
            if case.retiree_id is not None:
                viewed_retiree(session, "cli", case.retiree_id, case=case.number)
    except CaseError as exc:
        fail(str(exc))
    if as_json:
        typer.echo(json.dumps(detail, ensure_ascii=False, indent=2))
        return
    cats = get_categories()
    typer.echo(
        f"{detail['number']}  {cats.get(detail['category']).name.zh}  P{detail['priority']}  {detail['status']}"
    )
    typer.echo(
        f"unit {detail['unit']}  channel {detail['channel']}  assignee {detail['assignee'] or '-'}"
    )
    if detail["retiree"]:
        r = detail["retiree"]
        typer.echo(f"retiree {r['name']}  {', '.join(r['phones'])}  {r['address']}")
    typer.echo(
        f"claim by {detail['claim_deadline'] or '-'}  resolve by {detail['resolve_deadline'] or '-'}"
    )
    typer.echo(f"words: {detail['original_text']}")
    for e in detail["events"]:
        extra = " ".join(x for x in (e["reason"], e["note"]) if x)
        typer.echo(
            f"  {e['at']}  {e['action']:<9} {e['by']:<12} {e['from'] or ''}->{e['to']}  {extra}"
        )


def _act(number: str, username: str, verb: str, **kw: Any) -> None:
    try:
        with cli_transaction() as session:
            case = actions.get_case(session, number)
            getattr(actions, verb)(session, case, _actor(session, username), **kw)
            status = case.status.value
    except CaseError as exc:
        fail(str(exc))
    typer.echo(f"{number} is now {status}")


@app.command("claim")
def claim_command(
    number: str = typer.Argument(...), by: str = typer.Option(..., "--as", help=AS_HELP)
) -> None:
    """Take a case from its queue."""
    _act(number, by, "claim")


@app.command("claim-next")
def claim_next_command(by: str = typer.Option(..., "--as", help=AS_HELP)) -> None:
    """Take the most urgent waiting case of your queues."""
    try:
        with cli_transaction() as session:
            case = actions.claim_next(session, _actor(session, by))
            number = case.number if case else None
    except CaseError as exc:
        fail(str(exc))
    typer.echo(f"claimed {number}" if number else "nothing is waiting in your queues")


@app.command("release")
def release_command(
    number: str = typer.Argument(...),
    by: str = typer.Option(..., "--as", help=AS_HELP),
    reason: str = typer.Option("", "--reason"),
) -> None:
    """Put a claimed case back in its queue."""
    _act(number, by, "release", reason=reason)


@app.command("resolve")
def resolve_command(
    number: str = typer.Argument(...),
    by: str = typer.Option(..., "--as", help=AS_HELP),
    outcome: str = typer.Option(..., "--outcome", help="What was done."),
) -> None:
    """Record that the work is done."""
    _act(number, by, "resolve", outcome=outcome)


@app.command("close")
def close_command(
    number: str = typer.Argument(...),
    by: str = typer.Option(..., "--as", help=AS_HELP),
    note: str = typer.Option("", "--note"),
) -> None:
    """Close a resolved case (staff only)."""
    _act(number, by, "close", note=note)
