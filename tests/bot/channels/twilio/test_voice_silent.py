"""A one-key call in which nothing was said (the person pressed the key and waited, or hung up at
once) becomes one call-back case, however often and however at once Twilio delivers the call's
status; the engine's entry point for it files what a conversation left half-way too. On SQLite
and PostgreSQL."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import Engine, select

from bot.conversation.engine import ConversationEngine
from bot.conversation.messages import Inbound
from storage.db import transaction
from storage.models import ConversationState, Message
from tests.bot.channels.twilio.test_voice import (
    PUBLIC_URL,
    TOKEN,
    WANG,
    Line,
    cases,
    line,  # noqa: F401 (the fixture)
    world,
)
from tests.fakes.caller import FakeCaller, HangUp

NOW = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)  # Tuesday 10:00 in Shanghai


def test_a_hang_up_delivered_three_times_at_once_files_one_callback(line: Line) -> None:  # noqa: F811
    call = line.caller.call([HangUp()], caller=WANG, status_callback=False)
    assert cases(line.engine) == []  # nothing yet: the status callback decides
    barrier = threading.Barrier(3)

    def deliver(_: int) -> int:
        with httpx.Client(timeout=60) as client:
            caller = FakeCaller(line.caller.local_url, PUBLIC_URL, TOKEN, client=client)
            barrier.wait()
            return caller.status(call.call_sid, WANG, "completed", CallDuration="1").status_code

    with ThreadPoolExecutor(3) as pool:
        assert list(pool.map(deliver, range(3))) == [200, 200, 200]
    [case] = cases(line.engine)
    assert (case.category, case.priority, case.channel) == ("callback", 2, "phone")
    assert case.details["reason"] == "silent" and case.details["caller"] == WANG
    with transaction(line.engine) as session:
        silent = session.execute(
            select(Message.case_id, Message.payload).where(
                Message.provider_id == f"{call.call_sid}:silent"
            )
        ).all()
    assert silent == [(case.id, {"event": "silent_call", "filed": [case.number]})]


def test_file_silent_call_files_a_half_told_request_and_the_callback_once(
    engine: Engine, bot: ConversationEngine
) -> None:
    world(engine)
    said = Inbound(
        channel="phone",
        address=WANG,
        provider_id="CA1:1",
        received_at=NOW,
        text="我想报销住院的药费",
    )
    assert bot.handle(said).cases == []  # asked how much: the request is half-way
    later = NOW + timedelta(minutes=1)
    first = bot.file_silent_call("phone", WANG, "CA2:silent", later)
    again = bot.file_silent_call("phone", WANG, "CA2:silent", later + timedelta(seconds=5))
    medication, callback = cases(engine)
    assert medication.category == "medication_reimbursement" and medication.details["incomplete"]
    assert (callback.category, callback.priority, callback.details["reason"]) == (
        "callback",
        2,
        "silent",
    )
    assert callback.retiree is not None and callback.retiree.name == "王秀英"
    assert (first.filed, first.redelivered) == ([medication.number, callback.number], False)
    assert (again.filed, again.redelivered) == (first.filed, True)
    # The conversation starts afresh: nothing is left half-way for the idle sweep to file again.
    assert bot.idle_conversations(now=later + timedelta(days=1)) == []
    with transaction(engine) as session:
        state = session.scalar(select(ConversationState.state))
    assert state is not None and "task" not in state


def test_file_silent_call_at_the_same_moment_files_once(
    engine: Engine, bot: ConversationEngine
) -> None:
    world(engine)
    barrier = threading.Barrier(4)

    def file(_: int) -> Any:
        barrier.wait()
        return bot.file_silent_call("phone", WANG, "CA3:silent", NOW)

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(file, range(4)))
    [callback] = cases(engine)
    assert sorted(r.redelivered for r in results) == [False, True, True, True]
    assert all(r.filed == [callback.number] for r in results)
