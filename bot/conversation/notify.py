"""A message the conversation sends to staff, written to the outbox in the turn's transaction
(the worker sends it, bot/channels): the person working on a case hears that its retiree
cancelled it, say. An emergency's alerts are storage/alert_chain.py's."""

from __future__ import annotations

from sqlalchemy.orm import Session

from config.i18n import Catalogs
from storage import outbox
from storage.alert_chain import message_channel
from storage.models import Case


def tell_assignee(
    session: Session,
    case: Case,
    kind: str,
    text_key: str,
    catalogs: Catalogs,
    lang: str,
    *,
    once_per: str = "",
    **params: str,
) -> bool:
    """A message to the person working on ``case`` (say, the retiree cancelled it); once per
    case and kind, or once per ``once_per`` too (each thing the retiree added)."""
    if case.assignee is None:
        return False
    target = message_channel(case.assignee)
    if target is None:
        return False
    channel, address = target
    text = catalogs.text(text_key, lang, number=case.number, **params)
    outbox.enqueue(
        session,
        channel=channel,
        address=address,
        payload={"kind": kind, "case": case.number, "text": text, "language": lang},
        idempotency_key=f"{case.number}:{kind}:{channel}:{address}"
        + (f":{once_per}" if once_per else ""),
        priority=2,
        case_id=case.id,
    )
    return True
