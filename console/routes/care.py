"""The proactive-care pages (console/care.py): a retiree's check-in plan, set on their profile,
and the day's check-ins of the communities a person serves. Staff and admins only, as the
registry (its refusals are the same error pages)."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from console.care import FamilyForm, PlanForm, add_family, load_day, remove_family, save_plan
from console.flash import flash, go
from console.registry import communities_in_scope, open_retiree, registry_scope
from console.routes.registry import CSRF, Me, RegistryRoute, Submitted, Today, profile_response
from console.web import DB, language, parse_day, render
from storage.site import site_of
from storage.types import utcnow

router = APIRouter(include_in_schema=False, route_class=RegistryRoute)


@router.post("/retirees/{retiree_id:int}/care-plan", dependencies=CSRF)
def save_care_plan(
    request: Request, retiree_id: int, me: Me, session: DB, today: Today, form: Submitted
) -> Response:
    retiree = open_retiree(session, me, retiree_id)
    typed = PlanForm.parse(form)
    care = site_of(session).care
    if not save_plan(session, me, retiree, typed, care, today=today, now=utcnow()):
        return profile_response(request, me, session, retiree, today, None, 422, typed)
    flash(request, "ok", "console.care.saved")
    return go(request, f"/retirees/{retiree.id}#care-plan")


@router.post("/retirees/{retiree_id:int}/family", dependencies=CSRF)
def link_family(
    request: Request, retiree_id: int, me: Me, session: DB, today: Today, form: Submitted
) -> Response:
    """Link a family member with the retiree's consent (what it covers, how it was given)."""
    retiree = open_retiree(session, me, retiree_id)
    typed = FamilyForm.parse(form)
    if add_family(session, me, retiree, typed, today=today, now=utcnow()) is None:
        return profile_response(request, me, session, retiree, today, None, 422, None, typed)
    flash(request, "ok", "console.care.family.linked")
    return go(request, f"/retirees/{retiree.id}#family")


@router.post("/retirees/{retiree_id:int}/family/{member_id:int}/remove", dependencies=CSRF)
def unlink_family(
    request: Request, retiree_id: int, member_id: int, me: Me, session: DB
) -> Response:
    """The consent is withdrawn: nothing more goes to them, and they no longer ask for her."""
    retiree = open_retiree(session, me, retiree_id)
    removed = remove_family(session, me, retiree, member_id)
    flash(
        request,
        "ok" if removed else "error",
        "console.care.family.removed" if removed else "console.care.family.errors.gone",
    )
    return go(request, f"/retirees/{retiree.id}#family")


@router.get("/check-ins")
def check_ins_page(
    request: Request,
    me: Me,
    session: DB,
    today: Today,
    day: Annotated[str, Query(max_length=10)] = "",
    community: Annotated[str, Query(max_length=12)] = "",
) -> Response:
    scope = registry_scope(session, me)
    communities = communities_in_scope(session, scope, language(request))
    chosen = int(community) if community.isdecimal() else None
    if chosen is not None and chosen not in {cid for cid, _ in communities}:
        chosen = None  # not theirs: the whole of their scope instead
    shown: date = today
    if day:
        try:
            shown = parse_day(day)
        except ValueError:
            flash(request, "error", "console.care.errors.day", day=day)
    page = load_day(session, me, scope, communities, shown, chosen, language(request))
    return render(request, "check_ins.html", {"page": page, "today": today})
