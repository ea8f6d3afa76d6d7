"""The queue page, its live rows, and Claim next."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from sqlalchemy import select

from console.auth import check_csrf, signed_in
from console.flash import flash, go
from console.queue import Filters, QueuePage, View, load_queue
from console.web import DB, console, language, render
from storage import actions
from storage.models import Staff, Unit
from storage.permissions import Actor
from storage.types import utcnow

router = APIRouter(include_in_schema=False)
Me = Annotated[Staff, Depends(signed_in)]


def _filters(
    view: Annotated[View, Query()] = View.OPEN,
    category: Annotated[str, Query(max_length=40)] = "",
    unit: Annotated[str, Query(max_length=12)] = "",
    channel: Annotated[str, Query(max_length=20)] = "",
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> Filters:
    return Filters(
        view=view,
        category=category,
        unit_id=int(unit) if unit.isdecimal() else None,
        channel=channel,
        page=page,
    )


def _unit_names(request: Request, session: DB) -> dict[int, str]:
    lang = language(request)
    return {u.id: u.name(lang) for u in session.scalars(select(Unit))}


def _page(request: Request, me: Me, session: DB, filters: Filters) -> QueuePage:
    categories = console(request).categories
    return load_queue(session, me, categories, filters, utcnow(), _unit_names(request, session))


@router.get("/queue")
def queue_page(
    request: Request, me: Me, session: DB, filters: Annotated[Filters, Depends(_filters)]
) -> Response:
    page = _page(request, me, session, filters)
    return render(request, "queue.html", {"queue": page, "views": list(View)})


@router.get("/queue/rows")
def queue_rows(
    request: Request, me: Me, session: DB, filters: Annotated[Filters, Depends(_filters)]
) -> Response:
    """The rows alone, for the live refresh (htmx polls this every 20 seconds)."""
    return render(request, "_queue_rows.html", {"queue": _page(request, me, session, filters)})


@router.post("/queue/claim-next", dependencies=[Depends(check_csrf)])
def claim_next(request: Request, me: Me, session: DB) -> Response:
    config = console(request)
    case = actions.claim_next(session, Actor.person(me), categories=config.categories)
    if case is None:
        flash(request, "info", "console.queue.nothing_waiting")
        return go(request, "/queue")
    flash(request, "ok", "console.case.claimed", number=case.number)
    return go(request, f"/cases/{case.number}")
