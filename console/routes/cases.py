"""The case page and its actions: claim, note, release, transfer, resolve, close, reopen, cancel.

Every action goes through storage.actions (the same rules as Telegram and the CLI, which check the
person's role and units again); the page only offers what makes sense for this person now.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from console.auth import check_csrf, signed_in
from console.case_actions import DONE_KEYS, TEXT_ACTIONS, TextAction, transfer_case
from console.case_view import check_may_see, find_case, load_case_view
from console.flash import flash, go
from console.web import DB, console, render
from storage import actions
from storage.audit import record_access
from storage.errors import InvalidCaseInput, NotFound
from storage.models import Attachment, Case, Role, Staff, Unit
from storage.permissions import Actor, units_in_scope
from storage.types import utcnow

router = APIRouter(include_in_schema=False)
Me = Annotated[Staff, Depends(signed_in)]
Text = Annotated[str, Form(max_length=4000)]
CSRF = [Depends(check_csrf)]


@router.get("/cases/{number}")
def case_page(request: Request, number: str, me: Me, session: DB) -> Response:
    config = console(request)
    today = utcnow().astimezone(config.zone).date()
    view = load_case_view(session, me, number, config.categories, today)
    context: dict[str, Any] = {"view": view, "case": view.case}
    if "transfer" in view.allowed:
        context["transfer_units"], context["transfer_people"] = _transfer_targets(session, me)
    return render(request, "case.html", context)


@router.get("/cases/{number}/attachments/{attachment_id}")
def attachment(request: Request, number: str, attachment_id: int, me: Me, session: DB) -> Response:
    """A voice message or recording of the case, for those who may open it; every play is in
    the audit log (it may hold the caller's health or address)."""
    case = find_case(session, number)
    check_may_see(session, me, case, console(request).categories)
    found = session.get(Attachment, attachment_id)
    if found is None or found.case_id != case.id:
        raise NotFound(f"case {number} has no attachment {attachment_id}")
    record_access(
        session,
        actor=me,
        actor_label=me.role.value,
        action="play_attachment",
        subject_type="case",
        subject_id=case.id,
        detail={"attachment": found.id, "case": case.number},
    )
    return Response(
        found.data,
        media_type=found.content_type,
        headers={"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"},
    )


def _transfer_targets(session: DB, me: Staff) -> tuple[list[Unit], list[Staff]]:
    """Any unit of the centre (a case may need another station), and the people of my units."""
    units = list(session.scalars(select(Unit).order_by(Unit.level, Unit.code)))
    scope = units_in_scope(session, me)
    people = [
        person
        for person in session.scalars(
            select(Staff)
            .where(Staff.active.is_(True))
            .options(selectinload(Staff.units))
            .order_by(Staff.name)
        )
        if me.role == Role.ADMIN or any(u.id in scope for u in person.units)
    ]
    return units, people


def _act(
    request: Request,
    session: DB,
    me: Staff,
    number: str,
    do: Callable[[Case, Actor], object],
    done_key: str,
) -> Response:
    case = find_case(session, number)
    do(case, Actor.person(me))
    flash(request, "ok", done_key, number=case.number)
    return go(request, f"/cases/{case.number}")


@router.post("/cases/{number}/claim", dependencies=CSRF)
def claim(request: Request, number: str, me: Me, session: DB) -> Response:
    cats = console(request).categories
    return _act(
        request,
        session,
        me,
        number,
        lambda case, actor: actions.claim(session, case, actor, categories=cats),
        "console.case.claimed",
    )


@router.post("/cases/{number}/transfer", dependencies=CSRF)
def transfer(
    request: Request,
    number: str,
    me: Me,
    session: DB,
    reason: Text,
    to_unit: Annotated[str, Form(max_length=12)] = "",
    to_staff: Annotated[str, Form(max_length=12)] = "",
) -> Response:
    unit = session.get(Unit, int(to_unit)) if to_unit.isdecimal() else None
    person = session.get(Staff, int(to_staff)) if to_staff.isdecimal() else None
    if (to_unit and unit is None) or (to_staff and person is None):
        raise InvalidCaseInput(
            "the unit or person to transfer to does not exist",
            key="console.errors.required.transfer_to",
        )
    return _act(
        request,
        session,
        me,
        number,
        lambda case, actor: transfer_case(
            console(request), session, case, actor, reason=reason, to_unit=unit, to_staff=person
        ),
        "console.case.transferred",
    )


def _text_route(action: str, field: str, required: bool, call: TextAction) -> None:
    form_value = Form(alias=field, max_length=4000)

    def endpoint(
        request: Request,
        number: str,
        me: Me,
        session: DB,
        value: str,
    ) -> Response:
        cats = console(request).categories
        return _act(
            request,
            session,
            me,
            number,
            lambda case, actor: call(session, case, actor, value, cats),
            DONE_KEYS[action],
        )

    endpoint.__name__ = action
    # The field's name and default differ per action: set the parameter's type here (a string
    # annotation could not refer to this function's local ``form_value``).
    endpoint.__annotations__["value"] = Annotated[str, form_value]
    if not required:
        endpoint.__defaults__ = ("",)
    router.add_api_route(
        f"/cases/{{number}}/{action}", endpoint, methods=["POST"], dependencies=CSRF
    )


for _action, (_field, _required, _call) in TEXT_ACTIONS.items():
    _text_route(_action, _field, _required, _call)
