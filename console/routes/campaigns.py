"""The campaign pages (console/campaigns.py): the list and the form that starts one, a
campaign's page (staff and admins), and "my visits" (everyone signed in, volunteers too).
Refusals are the registry's error pages (403, 404)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from console.auth import signed_in
from console.campaigns import (
    CampaignForm,
    load_campaign,
    load_list,
    load_my_visits,
    open_campaign,
    reassign,
    record_round_visit,
    start_campaign,
    visitors,
)
from console.flash import flash, go
from console.registry import communities_in_scope, registry_scope
from console.registry_visits import VisitForm
from console.routes.registry import CSRF, Me, RegistryRoute, Submitted, Today
from console.web import DB, console, form_text, language, render
from storage import campaigns
from storage.campaigns import FACTORS, MESSAGE_CHANNELS
from storage.models import CampaignKind, CampaignStatus, Staff
from storage.types import utcnow

router = APIRouter(include_in_schema=False, route_class=RegistryRoute)
Anyone = Annotated[Staff, Depends(signed_in)]


def _list_page(
    request: Request, me: Staff, session: DB, form: CampaignForm, status_code: int = 200
) -> Response:
    scope = registry_scope(session, me)
    context: dict[str, Any] = {
        "rows": load_list(session, scope),
        "form": form,
        "communities": communities_in_scope(session, scope, language(request)),
        "visitors": visitors(session, scope),
        "kinds": [k.value for k in CampaignKind],
        "factors": FACTORS,
        "channels": MESSAGE_CHANNELS,
        "centre_wide": scope.everything,
    }
    return render(request, "campaigns.html", context, status_code=status_code)


@router.get("/campaigns")
def campaigns_page(request: Request, me: Me, session: DB) -> Response:
    return _list_page(request, me, session, CampaignForm())


@router.post("/campaigns", dependencies=CSRF)
def start(request: Request, me: Me, session: DB, today: Today, form: Submitted) -> Response:
    typed = CampaignForm.parse(form)
    scope = registry_scope(session, me)
    new = typed.checked(
        communities=communities_in_scope(session, scope, language(request)),
        visitors=visitors(session, scope),
        scope=scope,
        today=today,
        zone=console(request).zone,
    )
    campaign = None
    if new is not None:
        campaign = start_campaign(session, me, typed, new, now=utcnow())
    if campaign is None:
        return _list_page(request, me, session, typed, 422)
    flash(request, "ok", "console.campaigns.started")
    return go(request, f"/campaigns/{campaign.id}")


@router.get("/campaigns/{campaign_id:int}")
def campaign_page(request: Request, campaign_id: int, me: Me, session: DB) -> Response:
    scope = registry_scope(session, me)
    campaign = open_campaign(session, scope, campaign_id)
    page = load_campaign(session, me, scope, campaign, language(request))
    return render(request, "campaign.html", {"page": page})


@router.post("/campaigns/{campaign_id:int}/cancel", dependencies=CSRF)
def cancel(request: Request, campaign_id: int, me: Me, session: DB) -> Response:
    campaign = open_campaign(session, registry_scope(session, me), campaign_id)
    if campaign.status == CampaignStatus.ACTIVE:
        campaigns.cancel(session, campaign, now=utcnow())
        flash(request, "ok", "console.campaigns.cancelled")
    return go(request, f"/campaigns/{campaign.id}")


@router.post("/campaigns/{campaign_id:int}/targets/{target_id:int}/assign", dependencies=CSRF)
def assign(
    request: Request, campaign_id: int, target_id: int, me: Me, session: DB, form: Submitted
) -> Response:
    scope = registry_scope(session, me)
    campaign = open_campaign(session, scope, campaign_id)
    to = form_text(form, "assignee")
    done = reassign(session, me, scope, campaign, target_id, to)
    flash(
        request,
        "ok" if done else "error",
        "console.campaigns.reassigned" if done else "console.campaigns.errors.reassign",
    )
    return go(request, f"/campaigns/{campaign.id}#target-{target_id}")


def _visits_page(
    request: Request,
    me: Staff,
    session: DB,
    today: Today,
    form: VisitForm | None = None,
    target_id: int | None = None,
    status_code: int = 200,
) -> Response:
    context = {
        "rows": load_my_visits(session, me),
        "today": today,
        "form": form,
        "form_target": target_id,
    }
    return render(request, "my_visits.html", context, status_code=status_code)


@router.get("/my-visits")
def my_visits(request: Request, me: Anyone, session: DB, today: Today) -> Response:
    return _visits_page(request, me, session, today)


@router.post("/my-visits/{target_id:int}", dependencies=CSRF)
def record(
    request: Request, target_id: int, me: Anyone, session: DB, today: Today, form: Submitted
) -> Response:
    typed = VisitForm.parse(form)
    scope = registry_scope(session, me)
    done = record_round_visit(session, me, scope, target_id, typed, today=today, now=utcnow())
    if done is None:
        return _visits_page(request, me, session, today, typed, target_id, 422)
    flash(request, "ok", "console.campaigns.visit_recorded")
    return go(request, "/my-visits")
