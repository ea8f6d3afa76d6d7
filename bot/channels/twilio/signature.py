"""Every Twilio webhook is signed: `X-Twilio-Signature` is checked with twilio's RequestValidator
against HOTLINE_PUBLIC_URL + path + query, which is what Twilio called and signed (behind a
TLS-terminating proxy the app itself sees another URL). A bad or missing signature: 403, and
nothing is read or stored. Twilio posts a plain form: any other body (JSON, a multipart form
with a file) is refused with 415 before anything else, and a form that cannot be parsed with
400. Once the signature is checked, a NUL character is taken out of every field (PostgreSQL
cannot store one; Twilio would not send one)."""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException, Request
from starlette.formparsers import MultiPartException
from twilio.request_validator import RequestValidator

from bot.channels.base import NUL
from config.settings import Settings

FORM_STATE = "twilio_form"  # request.state's attribute holding the checked form
FORM_TYPE = "application/x-www-form-urlencoded"


def signed_url(settings: Settings, request: Request) -> str:
    """The URL Twilio signed: the public base, the path and the raw query string."""
    url = settings.public_url.rstrip("/") + request.url.path
    query = request.url.query
    return f"{url}?{query}" if query else url


async def verified_form(request: Request) -> dict[str, Any]:
    """The webhook's form fields, once its signature is checked (FastAPI dependency)."""
    settings: Settings = request.app.state.settings
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith(FORM_TYPE):
        raise HTTPException(415, detail=f"a Twilio webhook is a form ({FORM_TYPE})")
    try:
        fields = (await request.form()).multi_items()
    except (ValueError, UnicodeDecodeError, MultiPartException) as exc:
        raise HTTPException(400, detail=f"the form cannot be read ({exc})") from None
    form = {key: value for key, value in fields if isinstance(value, str)}
    validator = RequestValidator(settings.twilio_auth_token)
    signature = request.headers.get("X-Twilio-Signature", "")
    if not signature or not validator.validate(signed_url(settings, request), form, signature):
        raise HTTPException(403, detail="X-Twilio-Signature does not match this request")
    form = {key: value.replace(NUL, "") for key, value in form.items()}
    setattr(request.state, FORM_STATE, form)  # for outage.py: what may be kept
    return form
