"""storage/messages.py: a provider's status word is ours, or UNKNOWN with the word kept; a
redelivery records nothing twice. On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine, select

from storage import messages
from storage.db import transaction
from storage.models import Direction, Message, MessageStatus

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def record(engine: Engine, provider_id: str, status: str) -> int | None:
    with transaction(engine) as session:
        return messages.record_once(
            session,
            channel="phone",
            direction=Direction.INBOUND,
            address="+8613800000001",
            provider_id=provider_id,
            status=status,
            payload={"event": "call_status"},
            now=NOW,
        )


def stored(engine: Engine, provider_id: str) -> tuple[MessageStatus, dict[str, object]]:
    with transaction(engine) as session:
        row = session.scalars(select(Message).where(Message.provider_id == provider_id)).one()
        return row.status, row.payload


def test_a_known_word_is_our_status_and_a_redelivery_records_nothing(engine: Engine) -> None:
    assert record(engine, "CA1:status:no-answer", "no-answer") is not None
    assert record(engine, "CA1:status:no-answer", "no-answer") is None
    assert stored(engine, "CA1:status:no-answer") == (
        MessageStatus.NO_ANSWER,
        {"event": "call_status"},
    )


def test_an_unknown_word_is_kept_as_it_came(engine: Engine) -> None:
    assert record(engine, "CA2:status:paused", "Paused") is not None
    assert stored(engine, "CA2:status:paused") == (
        MessageStatus.UNKNOWN,
        {"event": "call_status", "status": "Paused"},
    )
