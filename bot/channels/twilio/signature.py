"""Every Twilio webhook is signed: `X-Twilio-Signature` is checked with twilio's RequestValidator
against HOTLINE_PUBLIC_URL + path + query, which is what Twilio called and signed (behind a
TLS-terminating proxy the app itself sees another URL). A bad or missing signature: 403, and
nothing is read or stored."""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException, Request
from twilio.request_validator import RequestValidator

from config.settings import Settings

FORM_STATE = "twilio_form"  # request.state's attribute holding the checked form


def signed_url(settings: Settings, request: Request) -> str:
    """The URL Twilio signed: the public base, the path and the raw query string."""
    url = settings.public_url.rstrip("/") + request.url.path
    query = request.url.query
    return f"{url}?{query}" if query else url


async def verified_form(request: Request) -> dict[str, Any]:
    """The webhook's form fields, once its signature is checked (FastAPI dependency)."""
    settings: Settings = request.app.state.settings
    validator = RequestValidator(settings.twilio_auth_token)
    form = {key: value for key, value in (await request.form()).multi_items()}
    signature = request.headers.get("X-Twilio-Signature", "")
    if not signature or not validator.validate(signed_url(settings, request), form, signature):
        raise HTTPException(403, detail="X-Twilio-Signature does not match this request")
    setattr(request.state, FORM_STATE, form)  # for outage.py: what may be kept
    return form
