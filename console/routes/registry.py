"""The registry pages: search, profile, edit, visits, import and export (staff and admins only).

Every refusal (a volunteer, a retiree outside the person's units, an unknown retiree) is the
error page with 403 or 404, for forms too: this router's route class turns RegistryRefused into
that page.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute
from starlette.datastructures import FormData, UploadFile

from config.care import CHANNELS, WEEKDAYS
from console.auth import check_csrf, signed_in
from console.care import FamilyForm, PlanForm, family_of, plan_view
from console.flash import flash, go
from console.registry import (
    Marker,
    RegistryRefused,
    Search,
    audit_view,
    communities_in_scope,
    load_profile,
    open_retiree,
    registry_scope,
    require_registry_role,
    search_retirees,
)
from console.registry_edit import ProfileChecker, ProfileForm, apply_changes
from console.registry_files import MEDIA_TYPES, export_file, import_upload
from console.registry_visits import VisitForm, load_visits_page, record_visit, visit_status
from console.web import DB, Texts, console, language, render
from storage import family
from storage.models import Retiree, RetireeStatus, Staff
from storage.registry_format import COLUMNS, REQUIRED
from storage.site import site_of
from storage.types import utcnow


class RegistryRoute(APIRoute):
    """Shows RegistryRefused as the error page (GET and POST alike)."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except RegistryRefused as exc:
                return render(request, "error.html", {"key": exc.key}, status_code=exc.status)

        return guarded


router = APIRouter(include_in_schema=False, route_class=RegistryRoute)
CSRF = [Depends(check_csrf)]


def registry_staff(me: Annotated[Staff, Depends(signed_in)]) -> Staff:
    require_registry_role(me)
    return me


def local_today(request: Request) -> date:
    """Today in the centre's time zone (tests set the day by overriding this dependency)."""
    return utcnow().astimezone(console(request).zone).date()


async def submitted_form(request: Request) -> FormData:
    """The posted form, read once (the CSRF check reads the same one)."""
    return await request.form()


Me = Annotated[Staff, Depends(registry_staff)]
Today = Annotated[date, Depends(local_today)]
Submitted = Annotated[FormData, Depends(submitted_form)]


# --------------------------------------------------------------------------- search


def _search(
    name: Annotated[str, Query(max_length=100)] = "",
    phone: Annotated[str, Query(max_length=40)] = "",
    community: Annotated[str, Query(max_length=12)] = "",
    status: Annotated[str, Query(max_length=12)] = "",
    marker: Annotated[list[str] | None, Query()] = None,
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> Search:
    """The list's filters; an unknown value is ignored rather than refused."""
    markers = tuple(m for m in Marker if m.value in (marker or []))
    statuses = {s.value: s for s in RetireeStatus}
    return Search(
        name=name.strip(),
        phone=phone.strip(),
        community_id=int(community) if community.isdecimal() else None,
        status=statuses.get(status),
        markers=markers,
        page=page,
    )


@router.get("/retirees")
def retirees_page(
    request: Request,
    me: Me,
    session: DB,
    today: Today,
    search: Annotated[Search, Depends(_search)],
) -> Response:
    page = search_retirees(session, me, search, today, language(request))
    return render(
        request,
        "registry_list.html",
        {"page": page, "markers": list(Marker), "statuses": list(RetireeStatus)},
    )


# --------------------------------------------------------------------------- import, export


def _import_context(**extra: Any) -> dict[str, Any]:
    return {"columns": COLUMNS, "required": REQUIRED, **extra}


@router.get("/retirees/import")
def import_page(request: Request, me: Me) -> Response:
    return render(request, "registry_import.html", _import_context(outcome=None))


@router.post("/retirees/import", dependencies=CSRF)
def import_post(request: Request, me: Me, session: DB, today: Today, form: Submitted) -> Response:
    upload = form.get("file")
    texts = Texts(console(request).catalogs, language(request))
    if not isinstance(upload, UploadFile) or not upload.filename:
        context = _import_context(outcome=None, error_key="console.registry.import.no_file")
        return render(request, "registry_import.html", context, status_code=422)
    outcome = import_upload(session, me, upload.file, upload.filename, today, texts)
    status = 422 if outcome.error_key else 200
    return render(
        request, "registry_import.html", _import_context(outcome=outcome), status_code=status
    )


def _export(request: Request, me: Staff, session: DB, today: date, suffix: str) -> Response:
    name, content = export_file(session, me, suffix, today)
    return Response(
        content,
        media_type=MEDIA_TYPES[suffix],
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get("/retirees/export.xlsx")
def export_xlsx(request: Request, me: Me, session: DB, today: Today) -> Response:
    return _export(request, me, session, today, ".xlsx")


@router.get("/retirees/export.csv")
def export_csv(request: Request, me: Me, session: DB, today: Today) -> Response:
    return _export(request, me, session, today, ".csv")


# --------------------------------------------------------------------------- the profile


def profile_response(
    request: Request,
    me: Staff,
    session: DB,
    retiree: Retiree,
    today: date,
    visit_form: VisitForm | None = None,
    status_code: int = 200,
    plan_form: PlanForm | None = None,
    family_form: FamilyForm | None = None,
) -> Response:
    """The profile page (with a form's errors when one was refused)."""
    profile = load_profile(session, me, retiree, today)
    site = site_of(session)
    plan = plan_view(session, retiree, site.care, today)
    context = {
        "profile": profile,
        "r": retiree,
        "visit_status": visit_status(retiree, today, site.working_days),
        "visit_form": visit_form or VisitForm(visited_on=today.isoformat()),
        "plan": plan,
        "plan_form": plan_form or PlanForm.of(plan),
        "weekdays": WEEKDAYS,
        "channels": CHANNELS,
        "family": family_of(session, retiree),
        "family_form": family_form or FamilyForm(consented_on=today.isoformat()),
        "family_topics": family.TOPICS,
        "family_channels": family.CHANNELS,
        "today": today,
    }
    return render(request, "registry_profile.html", context, status_code=status_code)


@router.get("/retirees/{retiree_id:int}")
def profile_page(request: Request, retiree_id: int, me: Me, session: DB, today: Today) -> Response:
    retiree = open_retiree(session, me, retiree_id)
    return profile_response(request, me, session, retiree, today)


def _edit_response(
    request: Request,
    me: Staff,
    session: DB,
    retiree: Retiree,
    form: ProfileForm,
    status_code: int = 200,
) -> Response:
    scope = registry_scope(session, me)
    audit_view(session, me, retiree, "edit")
    phones, contacts = form.rows_to_show()
    context = {
        "r": retiree,
        "form": form,
        "phones": phones,
        "contacts": contacts,
        "communities": communities_in_scope(session, scope, language(request)),
        "may_clear_community": scope.everything,
        "statuses": list(RetireeStatus),
    }
    return render(request, "registry_edit.html", context, status_code=status_code)


@router.get("/retirees/{retiree_id:int}/edit")
def edit_page(request: Request, retiree_id: int, me: Me, session: DB) -> Response:
    retiree = open_retiree(session, me, retiree_id)
    return _edit_response(request, me, session, retiree, ProfileForm.of(retiree))


@router.post("/retirees/{retiree_id:int}", dependencies=CSRF)
def save_profile(
    request: Request,
    retiree_id: int,
    me: Me,
    session: DB,
    today: Today,
    form: Submitted,
) -> Response:
    retiree = open_retiree(session, me, retiree_id)
    scope = registry_scope(session, me)
    community_ids = {cid for cid, _ in communities_in_scope(session, scope, language(request))}
    typed = ProfileForm.submitted(form)
    cleaned = ProfileChecker(session, retiree, scope, community_ids, today).check(typed)
    if cleaned is None:
        return _edit_response(request, me, session, retiree, typed, status_code=422)
    changed = apply_changes(session, me, retiree, cleaned)
    flash(
        request,
        "ok",
        "console.registry.edit.saved" if changed else "console.registry.edit.unchanged",
    )
    return go(request, f"/retirees/{retiree.id}")


@router.post("/retirees/{retiree_id:int}/visits", dependencies=CSRF)
def add_visit(
    request: Request,
    retiree_id: int,
    me: Me,
    session: DB,
    today: Today,
    form: Submitted,
) -> Response:
    retiree = open_retiree(session, me, retiree_id)
    visit_form = VisitForm.parse(form)
    visited_on = visit_form.check(today)
    if visited_on is None:
        return profile_response(request, me, session, retiree, today, visit_form, 422)
    record_visit(session, me, retiree, visited_on, visit_form.notes)
    flash(request, "ok", "console.registry.visit.recorded")
    return go(request, f"/retirees/{retiree.id}")


# --------------------------------------------------------------------------- visits due


@router.get("/visits")
def visits_page(
    request: Request,
    me: Me,
    session: DB,
    today: Today,
    community: Annotated[str, Query(max_length=12)] = "",
) -> Response:
    scope = registry_scope(session, me)
    communities = communities_in_scope(session, scope, language(request))
    chosen = int(community) if community.isdecimal() else None
    page = load_visits_page(session, communities, chosen, today)
    return render(request, "registry_visits.html", {"visits": page})
