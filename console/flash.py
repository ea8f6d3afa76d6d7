"""One-time notices ("case 2026-000123 claimed") carried to the next page in the session, and
redirects that work for plain forms and for htmx alike."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import RedirectResponse, Response

from console.web import is_htmx


def flash(request: Request, level: str, key: str, **params: Any) -> None:
    """Queue a notice: ``key`` is a catalog key, rendered in the page language on the next page."""
    notices = list(request.session.get("flash", []))
    notices.append({"level": level, "key": key, "params": {k: str(v) for k, v in params.items()}})
    request.session["flash"] = notices[-5:]


def take_flashes(request: Request) -> list[dict[str, Any]]:
    return list(request.session.pop("flash", []))


def go(request: Request, url: str) -> Response:
    """After a form: 303 to ``url`` (htmx follows HX-Redirect instead)."""
    if is_htmx(request):
        return Response(status_code=204, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)
