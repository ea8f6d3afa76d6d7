"""Phone numbers in one form (E.164), so that a caller is recognised however the number was written."""

from __future__ import annotations

from functools import lru_cache

import phonenumbers

DEFAULT_REGION = "CN"  # a number written without +86 is taken as Chinese


class InvalidPhoneNumber(ValueError):
    def __init__(self, raw: str, why: str = "not a valid phone number") -> None:
        self.raw = raw
        super().__init__(f"{raw!r} is {why}")


def normalize_phone(raw: str, region: str = DEFAULT_REGION) -> str:
    """Return the E.164 form of ``raw`` (``+8613812345678``) or raise InvalidPhoneNumber.

    Accepts spaces, dashes, a leading 0086, a ``tel:`` or ``whatsapp:`` prefix.
    """
    text = str(raw).strip()
    for prefix in ("tel:", "whatsapp:", "sms:"):
        if text.lower().startswith(prefix):
            text = text[len(prefix) :]
    if text.startswith("00"):
        text = "+" + text[2:]
    if not text:
        raise InvalidPhoneNumber(str(raw), "empty")
    e164 = _e164(text, region)
    if e164 is None:
        raise InvalidPhoneNumber(str(raw))
    return e164


@lru_cache(maxsize=4096)  # every webhook of a call or SMS looks up the same few numbers
def _e164(text: str, region: str) -> str | None:
    try:
        parsed = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def mask_phone(e164: str) -> str:
    """A phone number with the middle hidden, for people who may not see it in full."""
    if len(e164) <= 7:
        return "*" * len(e164)
    return e164[:-8] + "****" + e164[-4:]
