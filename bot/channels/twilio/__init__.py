"""Twilio's two channels, the one-key phone line (``voice/``) and SMS/WhatsApp (``messaging/``),
and what they share: the webhook signature (``signature.py``), answering webhooks while the
database is down (``outage.py``) and the REST client their senders use (``rest.py``)."""

from __future__ import annotations

from config.settings import Settings

ACCOUNT_SETTINGS = (
    "HOTLINE_TWILIO_ACCOUNT_SID, HOTLINE_TWILIO_AUTH_TOKEN and HOTLINE_TWILIO_FROM_NUMBER"
)


def why_off(settings: Settings) -> str:
    """Why Twilio's webhooks are not served ("" when they are)."""
    if not settings.twilio_enabled:
        return f"no {ACCOUNT_SETTINGS.replace(' and ', ' or ')}"
    if not settings.public_url:
        return "no HOTLINE_PUBLIC_URL (Twilio signs against it)"
    return ""
