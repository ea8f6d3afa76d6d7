"""The console's actions as a JSON API under /api/v1, for integrations (documented at /docs).

A request carries a personal token (``Authorization: Bearer <token>``, made with
`hotline users token`) and acts as the person who owns it: the same scope and the same case
rules as their console pages, and the same audit log. Only a SHA-256 hash of a token is stored.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from console.auth import token_holder
from console.case_actions import TEXT_ACTIONS, transfer_case
from console.case_view import find_case, load_case_view
from console.queue import Filters, View, load_queue, queue_row
from console.web import DB, console
from storage import actions
from storage.errors import InvalidCaseInput
from storage.models import Case, Staff, Unit
from storage.permissions import Actor
from storage.types import utcnow

Holder = Annotated[Staff, Depends(token_holder)]
router = APIRouter(prefix="/api/v1", tags=["cases"])


class CaseSummary(BaseModel):
    number: str
    category: str
    priority: int
    status: str
    channel: str
    summary: str
    unit: str
    assignee: str | None
    created_at: datetime
    claim_deadline: datetime | None
    resolve_deadline: datetime | None
    minutes_left: int | None = Field(description="To the deadline that matters now; < 0: overdue")


class QueueOut(BaseModel):
    total: int
    page: int
    cases: list[CaseSummary]


class RetireeOut(BaseModel):
    id: int
    name: str
    age_band: str
    lives_alone: bool
    self_care: str
    hardship: str
    phones: list[str] | None = Field(description="null when this person may not see them yet")
    address: str | None
    emergency_contacts: list[dict[str, str]] | None
    health_notes: str | None


class EventOut(BaseModel):
    at: datetime
    kind: str
    action: str
    who: str
    text: str


class CaseOut(CaseSummary):
    outcome: str
    recording_url: str
    retiree: RetireeOut | None
    timeline: list[EventOut]
    allowed_actions: list[str]


class TextIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(default="", max_length=4000, description="The note, reason or outcome.")


class TransferIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=4000)
    to_unit: str | None = Field(default=None, description="A unit's code.")
    to_username: str | None = Field(default=None, description="A person's user name.")


def _summary(case: Case, unit_code: str, now: datetime) -> dict[str, Any]:
    row = queue_row(case, now)
    return {
        "number": case.number,
        "category": case.category,
        "priority": case.priority,
        "status": case.status.value,
        "channel": case.channel,
        "summary": case.summary,
        "unit": unit_code,
        "assignee": case.assignee.name if case.assignee is not None else None,
        "created_at": case.created_at,
        "claim_deadline": case.claim_deadline,
        "resolve_deadline": case.resolve_deadline,
        "minutes_left": row.minutes_left,
    }


def _unit_codes(session: Session) -> dict[int, str]:
    return {uid: code for uid, code in session.execute(select(Unit.id, Unit.code))}


@router.get("/cases", response_model=QueueOut)
def list_cases(
    request: Request,
    me: Holder,
    session: DB,
    view: View = View.OPEN,
    category: Annotated[str, Query(max_length=40)] = "",
    unit: Annotated[str, Query(max_length=32, description="A unit's code.")] = "",
    channel: Annotated[str, Query(max_length=20)] = "",
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> dict[str, Any]:
    """The cases this person may see, best first (as the console's queue)."""
    codes = _unit_codes(session)
    unit_id = next((uid for uid, code in codes.items() if code == unit), None)
    if unit and unit_id is None:
        raise InvalidCaseInput(f"no unit with the code {unit!r}")
    filters = Filters(view, category, unit_id, channel, page)
    now = utcnow()
    queue = load_queue(session, me, console(request).categories, filters, now, codes)
    return {
        "total": queue.total,
        "page": page,
        "cases": [_summary(row.case, codes.get(row.case.unit_id, ""), now) for row in queue.rows],
    }


@router.get("/cases/{number}", response_model=CaseOut)
def get_case(request: Request, number: str, me: Holder, session: DB) -> dict[str, Any]:
    """One case with its retiree (what this person may see of them; audited) and timeline."""
    config = console(request)
    view = load_case_view(
        session, me, number, config.categories, utcnow().astimezone(config.zone).date()
    )
    case = view.case
    out = _summary(case, case.unit.code, utcnow())
    retiree = None
    if view.card is not None:
        r, card = view.card.retiree, view.card
        retiree = {
            "id": r.id,
            "name": r.name,
            "age_band": card.age_band,
            "lives_alone": r.lives_alone,
            "self_care": r.self_care.value,
            "hardship": r.hardship.value,
            "phones": [p.number for p in r.phones] if card.show_contact else None,
            "address": r.address if card.show_contact else None,
            "emergency_contacts": (
                [
                    {"name": c.name, "relation": c.relation, "phone": c.phone}
                    for c in r.emergency_contacts
                ]
                if card.show_contact
                else None
            ),
            "health_notes": r.health_notes if card.show_notes else None,
        }
    out.update(
        outcome=case.outcome,
        recording_url=view.recording_url,
        retiree=retiree,
        timeline=[
            {"at": i.at, "kind": i.kind, "action": i.action, "who": i.who, "text": i.text}
            for i in view.timeline
        ],
        allowed_actions=sorted(view.allowed),
    )
    return out


@router.post("/queue/claim-next", response_model=CaseSummary | None)
def claim_next(request: Request, me: Holder, session: DB) -> dict[str, Any] | None:
    """Claim the best waiting case; null when nothing is waiting."""
    case = actions.claim_next(session, Actor.person(me), categories=console(request).categories)
    if case is None:
        return None
    return _summary(case, _unit_codes(session).get(case.unit_id, ""), utcnow())


@router.post("/cases/{number}/claim", response_model=CaseSummary)
def claim(request: Request, number: str, me: Holder, session: DB) -> dict[str, Any]:
    case = find_case(session, number)
    actions.claim(session, case, Actor.person(me), categories=console(request).categories)
    return _summary(case, case.unit.code, utcnow())


@router.post("/cases/{number}/transfer", response_model=CaseSummary)
def transfer(
    request: Request, number: str, body: TransferIn, me: Holder, session: DB
) -> dict[str, Any]:
    """To another unit's queue, or to a person (by user name), with a reason."""
    unit = person = None
    if body.to_unit:
        unit = session.scalars(select(Unit).where(Unit.code == body.to_unit)).one_or_none()
        if unit is None:
            raise InvalidCaseInput(f"no unit with the code {body.to_unit!r}")
    if body.to_username:
        person = session.scalars(
            select(Staff).where(Staff.username == body.to_username)
        ).one_or_none()
        if person is None:
            raise InvalidCaseInput(f"no person with the user name {body.to_username!r}")
    case = find_case(session, number)
    transfer_case(
        console(request),
        session,
        case,
        Actor.person(me),
        reason=body.reason,
        to_unit=unit,
        to_staff=person,
    )
    session.refresh(case, ["unit"])
    return _summary(case, case.unit.code, utcnow())


def _text_route(action: str) -> None:
    _field, _required, call = TEXT_ACTIONS[action]

    def endpoint(
        request: Request, number: str, body: TextIn, me: Holder, session: DB
    ) -> dict[str, Any]:
        case = find_case(session, number)
        call(session, case, Actor.person(me), body.text, console(request).categories)
        return _summary(case, case.unit.code, utcnow())

    endpoint.__name__ = action
    endpoint.__doc__ = f"{action.capitalize()} the case; `text` is its {_field}."
    router.add_api_route(
        f"/cases/{{number}}/{action}", endpoint, methods=["POST"], response_model=CaseSummary
    )


for _action in TEXT_ACTIONS:
    _text_route(_action)
