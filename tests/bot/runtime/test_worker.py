"""The outbox worker against fake Twilio and Telegram APIs (real HTTP servers on 127.0.0.1, reached
through the real clients), on SQLite and PostgreSQL: each notification sent once, retries with
back-off and Retry-After, permanent failures shown on the case, several workers, crashes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from structlog.testing import capture_logs
from typer.testing import CliRunner

from bot.channels import senders_for
from bot.channels.base import SendOutcome
from bot.channels.twilio.rest import IDEMPOTENCY_HEADER, idempotency_token
from bot.runtime.worker import OutboxWorker, mask, start_outbox_worker
from config.i18n import get_catalogs
from config.settings import Settings
from storage import actions, alert_chain, outbox
from storage.alert_chain import alert_emergency
from storage.db import make_engine, transaction
from storage.models import (
    CaseEvent,
    EmergencyContact,
    Message,
    OutboxItem,
    OutboxStatus,
    UnitLevel,
)
from storage.permissions import Actor
from storage.types import utcnow
from tests.factories import make_retiree, make_staff, make_unit, make_unit_tree
from tests.fakes.telegram_api import FakeTelegramApi
from tests.fakes.twilio_rest import FakeTwilio, TwilioReply

SID = "AC" + "1" * 32
OUR_NUMBER = "+15005550006"
STAFF_PHONE = "+8613900000001"
STAFF_TELEGRAM = 501
CONTACT_PHONE = "+8613900000003"


class Clock:
    """The worker's clock, moved by the test (the fakes answer in real time)."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def twilio() -> Iterator[FakeTwilio]:
    with FakeTwilio() as fake:
        yield fake


@pytest.fixture
def telegram() -> Iterator[FakeTelegramApi]:
    with FakeTelegramApi(token="123:ABC") as fake:
        yield fake


def make_settings(twilio: FakeTwilio | None, telegram: FakeTelegramApi | None, **kw: Any):
    values: dict[str, Any] = {"_env_file": None}
    if twilio is not None:
        values.update(
            twilio_account_sid=SID,
            twilio_auth_token="secret",
            twilio_from_number=OUR_NUMBER,
            twilio_api_url=twilio.url,
        )
    if telegram is not None:
        values.update(telegram_bot_token="123:ABC", telegram_api_url=telegram.url)
    values.update(kw)
    return Settings(**values)


def file_emergency(engine: Engine) -> str:
    """An emergency as the engine files it: a case and its alerts in the outbox (a Telegram
    alert to the on-duty staff member, an SMS to the emergency contact, and the first of the
    calls, to the staff member: the contact's call comes only if that one is not taken)."""
    with Session(engine, expire_on_commit=False) as s:
        tree = make_unit_tree(s)
        make_staff(
            s,
            units=[tree.community_a1],
            phone=STAFF_PHONE,
            telegram_user_id=STAFF_TELEGRAM,
            on_duty=True,
        )
        retiree = make_retiree(s, tree.community_a1, name="王大爷", address="幸福路1号")
        retiree.emergency_contacts.append(
            EmergencyContact(name="王小明", relation="儿子", phone=CONTACT_PHONE)
        )
        case = actions.file_case(
            s, category="emergency", channel="voice", actor=Actor.system(), retiree=retiree
        )
        queued = alert_emergency(
            s, case, retiree, "我摔倒了", "+8613800000009", get_catalogs(), "zh"
        )
        assert queued == 3
        s.commit()
        return case.number


def put(engine: Engine, key: str, *, channel: str = "sms", now: datetime | None = None) -> None:
    with Session(engine) as s:
        outbox.enqueue(
            s,
            channel=channel,
            address="+8613800000001" if channel != "telegram" else "7",
            payload={"kind": "reply", "text": f"hello {key}", "language": "zh"},
            idempotency_key=key,
            now=now,
        )
        s.commit()


def items(engine: Engine) -> list[OutboxItem]:
    with Session(engine) as s:
        return list(s.scalars(select(OutboxItem).order_by(OutboxItem.id)))


def item(engine: Engine, key: str) -> OutboxItem:
    with Session(engine) as s:
        return s.scalars(select(OutboxItem).where(OutboxItem.idempotency_key == key)).one()


def worker_notes(engine: Engine, number: str) -> list[str]:
    with Session(engine) as s:
        case = actions.get_case(s, number)
        return list(
            s.scalars(
                select(CaseEvent.note).where(
                    CaseEvent.case_id == case.id,
                    CaseEvent.action == "note",
                    CaseEvent.actor_label == "worker",
                )
            )
        )


def chain_notes(engine: Engine, number: str) -> list[str]:
    """The notes of the emergency's chain of calls (nobody took it, who took it)."""
    with Session(engine) as s:
        case = actions.get_case(s, number)
        return list(
            s.scalars(
                select(CaseEvent.note).where(
                    CaseEvent.case_id == case.id, CaseEvent.actor_label == alert_chain.LABEL
                )
            )
        )


async def drain(worker: OutboxWorker) -> int:
    total = 0
    try:
        while n := await worker.run_once():
            total += n
    finally:
        await worker.aclose()
    return total


# -- sending ------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_an_emergency_is_sent_once_each(
    engine: Engine, twilio: FakeTwilio, telegram: FakeTelegramApi
) -> None:
    number = file_emergency(engine)
    clock = Clock()
    worker = OutboxWorker(
        engine, senders_for(make_settings(twilio, telegram)), concurrency=1, clock=clock
    )
    try:
        assert await worker.run_once() == 3
        assert await worker.run_once() == 0
        # The calls go one after another: the contact's only once the staff member's call had
        # its time (no public URL here, so no status callback says how it went).
        clock.advance(alert_chain.CALL_TIMEOUT.total_seconds() - 1)
        await worker.maintain()
        assert await worker.run_once() == 0
        clock.advance(2)
        await worker.maintain()
        assert await worker.run_once() == 1
        clock.advance(alert_chain.CALL_TIMEOUT.total_seconds() + 1)
        await worker.maintain()
        assert await worker.run_once() == 0
    finally:
        await worker.aclose()
    assert [i.status for i in items(engine)] == [OutboxStatus.SENT] * 4
    calls = twilio.creates("Calls")
    assert [c.form["To"] for c in calls] == [STAFF_PHONE, CONTACT_PHONE]
    assert "王大爷" in calls[0].form["Twiml"] and "StatusCallback" not in calls[0].form
    (sms,) = twilio.creates("Messages")
    assert sms.form["To"] == CONTACT_PHONE and number in sms.form["Body"]
    (alert,) = telegram.calls_to("sendMessage")
    assert alert["chat_id"] == STAFF_TELEGRAM and number in alert["text"]
    keys = {idempotency_token(i.idempotency_key) for i in items(engine) if i.channel != "telegram"}
    assert {r.header(IDEMPOTENCY_HEADER) for r in twilio.creates()} == keys
    assert worker_notes(engine, number) == []
    (nobody,) = chain_notes(engine, number)  # the last call had its time too: staff are told
    assert nobody.startswith("紧急电话无人接手：已依次呼叫") and "王小明（儿子）" in nobody


@pytest.mark.asyncio
async def test_a_server_error_then_success_is_delivered_once(
    engine: Engine, twilio: FakeTwilio
) -> None:
    clock = Clock()
    put(engine, "k1", now=clock.now)
    twilio.script(TwilioReply.server_error(500))
    worker = OutboxWorker(engine, senders_for(make_settings(twilio, None)), clock=clock)
    try:
        assert await worker.run_once() == 1
        failed = item(engine, "k1")
        assert failed.status == OutboxStatus.PENDING and failed.attempts == 1
        assert failed.last_error.startswith("twilio 500")
        assert failed.next_attempt_at == clock.now + timedelta(seconds=outbox.RETRY_DELAYS[0])
        clock.advance(outbox.RETRY_DELAYS[0] - 1)
        assert await worker.run_once() == 0  # not before the back-off
        clock.advance(1)
        assert await worker.run_once() == 1
        assert await worker.run_once() == 0
    finally:
        await worker.aclose()
    done = item(engine, "k1")
    assert done.status == OutboxStatus.SENT and done.attempts == 2 and done.last_error == ""
    assert len(twilio.messages) == 1
    assert [r.header(IDEMPOTENCY_HEADER) for r in twilio.creates()] == [idempotency_token("k1")] * 2


@pytest.mark.asyncio
async def test_429_waits_at_least_the_retry_after(engine: Engine, twilio: FakeTwilio) -> None:
    clock = Clock()
    put(engine, "k1", now=clock.now)
    twilio.script(TwilioReply.rate_limited(retry_after=45))
    worker = OutboxWorker(engine, senders_for(make_settings(twilio, None)), clock=clock)
    try:
        assert await worker.run_once() == 1
        waiting = item(engine, "k1")
        assert waiting.status == OutboxStatus.PENDING
        assert waiting.next_attempt_at >= clock.now + timedelta(seconds=45)
        clock.advance(44)
        assert await worker.run_once() == 0
        clock.advance(1)
        assert await worker.run_once() == 1
    finally:
        await worker.aclose()
    assert item(engine, "k1").status == OutboxStatus.SENT
    assert len(twilio.creates()) == 2 and len(twilio.messages) == 1


@pytest.mark.asyncio
@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")  # inside PTB
async def test_telegram_flood_control_waits_its_retry_after(
    engine: Engine, telegram: FakeTelegramApi
) -> None:
    clock = Clock()
    put(engine, "t1", channel="telegram", now=clock.now)
    telegram.fail("sendMessage", error_code=429, description="Too Many Requests", retry_after=40)
    worker = OutboxWorker(engine, senders_for(make_settings(None, telegram)), clock=clock)
    try:
        assert await worker.run_once() == 1
        assert item(engine, "t1").next_attempt_at == clock.now + timedelta(seconds=40)
        clock.advance(40)
        assert await worker.run_once() == 1
    finally:
        await worker.aclose()
    assert item(engine, "t1").status == OutboxStatus.SENT
    assert len(telegram.calls_to("sendMessage")) == 2


@pytest.mark.asyncio
async def test_a_refused_number_dies_and_shows_on_the_case(
    engine: Engine, twilio: FakeTwilio, telegram: FakeTelegramApi
) -> None:
    number = file_emergency(engine)
    twilio.script(TwilioReply.invalid_to(), resource="Messages")
    telegram.fail(
        "sendMessage", error_code=403, description="Forbidden: bot was blocked by the user"
    )
    worker = OutboxWorker(engine, senders_for(make_settings(twilio, telegram)))
    assert await drain(worker) == 3
    by_channel = {i.channel: i for i in items(engine) if i.channel != "voice"}
    for dead in by_channel.values():
        assert dead.status == OutboxStatus.DEAD and dead.attempts == 1
    assert "21211" in by_channel["sms"].last_error
    assert "blocked" in by_channel["telegram"].last_error
    notes = worker_notes(engine, number)
    assert len(notes) == 2
    sms_note = next(n for n in notes if CONTACT_PHONE in n)
    assert "紧急通知" in sms_note and "21211" in sms_note and "已尝试 1 次" in sms_note
    assert any(str(STAFF_TELEGRAM) in n and "blocked" in n for n in notes)
    with Session(engine) as s:
        case = actions.get_case(s, number)
        listed = outbox.failed_deliveries(s)
        assert {i.channel for i in listed} == {"sms", "telegram"}
        assert len(outbox.failed_deliveries(s, unit_ids=[case.unit_id])) == 2
        other = make_unit(s, "Z9", UnitLevel.COMMUNITY)
        s.flush()
        assert outbox.failed_deliveries(s, unit_ids=[other.id]) == []


@pytest.mark.asyncio
async def test_the_last_failure_dies_with_a_note_in_english(engine: Engine) -> None:
    number = file_emergency(engine)

    class Down:
        async def send(self, channel: str, address: str, payload: Any, key: str) -> SendOutcome:
            return SendOutcome.retry("gateway down")

    clock = Clock()
    senders = {"sms": Down(), "voice": Down(), "telegram": Down()}
    worker = OutboxWorker(engine, senders, clock=clock, language="en")
    for _ in range(len(outbox.RETRY_DELAYS) + 1):
        assert await worker.run_once() == 3
        clock.advance(3600)
    # The staff member's call died: the contact's is placed at once, and fails as often.
    for _ in range(len(outbox.RETRY_DELAYS) + 1):
        assert await worker.run_once() == 1
        clock.advance(3600)
    assert await worker.run_once() == 0
    assert {i.status for i in items(engine)} == {OutboxStatus.DEAD}
    notes = worker_notes(engine, number)
    assert len(notes) == 4
    assert sum(n.startswith("Could not deliver the emergency call by voice") for n in notes) == 2
    assert all("after 7 attempt(s): gateway down" in n for n in notes)
    (nobody,) = chain_notes(engine, number)
    assert nobody.startswith("紧急电话无人接手") and "王小明（儿子）" in nobody


# -- channels without a sender, misbehaving senders -----------------------------------------------


@pytest.mark.asyncio
async def test_an_item_without_a_sender_waits_and_is_not_dropped(
    engine: Engine, twilio: FakeTwilio
) -> None:
    number = file_emergency(engine)
    clock = Clock()
    worker = OutboxWorker(engine, senders_for(make_settings(twilio, None)), clock=clock)
    try:
        await worker.maintain()
        assert await worker.run_once() == 2
        (waiting,) = [i for i in items(engine) if i.channel == "telegram"]
        assert waiting.status == OutboxStatus.PENDING and waiting.attempts == 0
        assert waiting.last_error == "telegram 渠道没有配置发件方式"
        assert worker_notes(engine, number) == []
        clock.advance(outbox.NO_SENDER_GIVE_UP_AFTER.total_seconds() + 1)
        await worker.maintain()
    finally:
        await worker.aclose()
    (given_up,) = [i for i in items(engine) if i.channel == "telegram"]
    assert given_up.status == OutboxStatus.DEAD
    (note,) = worker_notes(engine, number)
    assert "没有配置发件方式" in note


@pytest.mark.asyncio
async def test_calls_another_process_places_are_not_flagged_and_that_process_flags_nothing_else(
    engine: Engine, twilio: FakeTwilio
) -> None:
    """With the SIP line, `hotline sip` places the calls: the app's worker leaves them as they
    are, and the worker of `hotline sip` (calls alone) does not judge the other channels."""
    file_emergency(engine)
    clock = Clock()
    app_worker = OutboxWorker(
        engine, {}, clock=clock, sent_elsewhere={"voice"}
    )  # no sender of its own here
    sip_worker = OutboxWorker(engine, {"voice": Broken()}, clock=clock, flag_unsendable=False)
    try:
        clock.advance(outbox.NO_SENDER_GIVE_UP_AFTER.total_seconds() + 1)
        await sip_worker.maintain()
        assert {i.last_error for i in items(engine)} == {""}  # nothing flagged
        await app_worker.maintain()
    finally:
        await app_worker.aclose()
        await sip_worker.aclose()
    by_channel = {i.channel: i for i in items(engine)}
    assert by_channel["voice"].status == OutboxStatus.PENDING
    assert by_channel["voice"].last_error == ""
    assert by_channel["sms"].status == OutboxStatus.DEAD  # nobody sends SMS here


class Broken:
    async def send(self, channel: str, address: str, payload: Any, key: str) -> SendOutcome:
        raise RuntimeError("never called")


@pytest.mark.asyncio
async def test_a_sender_that_raises_or_hangs_loses_nothing(engine: Engine) -> None:
    class Broken:
        async def send(self, channel: str, address: str, payload: Any, key: str) -> SendOutcome:
            if channel == "sms":
                raise KeyError("bug")
            await asyncio.sleep(5)
            return SendOutcome.ok("late")

    put(engine, "a", channel="sms")
    put(engine, "b", channel="telegram")
    worker = OutboxWorker(engine, {"sms": Broken(), "telegram": Broken()}, send_timeout_s=0.2)
    with capture_logs() as logs:
        assert await worker.run_once() == 2
    attempts = [e for e in logs if e["event"] == "outbox_attempt"]
    assert sorted(e["result"] for e in attempts) == ["retry", "retry"]
    a, b = items(engine)
    assert a.status == b.status == OutboxStatus.PENDING
    assert a.last_error.startswith("sender error: KeyError")
    assert b.last_error == "no outcome within 0.2 s"


@pytest.mark.asyncio
async def test_after_sent_hook_failure_still_marks_sent(engine: Engine) -> None:
    class WithHook:
        async def send(self, channel: str, address: str, payload: Any, key: str) -> SendOutcome:
            return SendOutcome.ok("X1")

        def after_sent(self, session: Session, item: OutboxItem, outcome: SendOutcome) -> None:
            session.add(CaseEvent(case_id=999_999, action="bogus"))  # fails: no such case
            session.flush()

    put(engine, "a")
    with capture_logs() as logs:  # (and no slow rendering of the traceback)
        assert await OutboxWorker(engine, {"sms": WithHook()}).run_once() == 1
    assert item(engine, "a").status == OutboxStatus.SENT
    assert "outbox_after_sent_failed" in [e["event"] for e in logs]


@pytest.mark.asyncio
async def test_a_failing_sender_upkeep_keeps_the_others_and_the_maintenance_going(
    engine: Engine,
) -> None:
    """Senders' upkeep hooks run once each per maintenance, each in its own transaction: a
    failing one is logged and rolled back, the next still runs and its work is kept."""
    ran: list[str] = []

    class Upkept:
        def __init__(self, name: str, fails: bool) -> None:
            self.name, self.fails = name, fails

        async def send(self, channel: str, address: str, payload: Any, key: str) -> SendOutcome:
            return SendOutcome.ok(None)

        def upkeep(self, session: Session, *, catalogs: Any, language: str | None) -> int:
            ran.append(self.name)
            if self.fails:
                session.add(CaseEvent(case_id=999_999, action="bogus"))
                session.flush()  # fails: no such case
            else:
                outbox.enqueue(
                    session, channel="sms", address="+1", payload={}, idempotency_key="kept"
                )
            return 1

    broken, fine = Upkept("broken", fails=True), Upkept("fine", fails=False)
    worker = OutboxWorker(engine, {"sms": broken, "whatsapp": broken, "voice": fine})
    with capture_logs() as logs:
        await worker.maintain()
    assert ran == ["broken", "fine"]  # a sender of two channels is kept up once
    assert "outbox_sender_upkeep_failed" in [e["event"] for e in logs]
    assert [i.idempotency_key for i in items(engine)] == ["kept"]


@pytest.mark.asyncio
async def test_a_sent_sms_gets_its_outbound_record(engine: Engine, twilio: FakeTwilio) -> None:
    pytest.importorskip("bot.channels.twilio.messaging")
    from storage.models import Direction, Message

    put(engine, "a")
    assert await drain(OutboxWorker(engine, senders_for(make_settings(twilio, None)))) == 1
    with Session(engine) as s:
        (record,) = s.scalars(select(Message).where(Message.direction == Direction.OUTBOUND))
        assert record.provider_id == twilio.messages[0]["sid"]
        assert record.text == "hello a"


# -- several workers, crashes ---------------------------------------------------------------------


def test_two_workers_send_each_item_exactly_once(
    engine: Engine, db_url: str, twilio: FakeTwilio
) -> None:
    keys = [f"k{n:02d}" for n in range(60)]
    with Session(engine) as s:
        for key in keys:
            outbox.enqueue(
                s,
                channel="sms",
                address="+8613800000001",
                payload={"kind": "reply", "text": key},
                idempotency_key=key,
            )
        s.commit()
    twilio.delay_s = 0.01
    settings = make_settings(twilio, None)
    barrier = threading.Barrier(2)

    def one_worker() -> int:
        own = make_engine(db_url)  # its own pool, as another process would have
        try:
            barrier.wait()
            return asyncio.run(drain(OutboxWorker(own, senders_for(settings), batch_size=7)))
        finally:
            own.dispose()

    with ThreadPoolExecutor(2) as pool:
        results = [f.result() for f in [pool.submit(one_worker) for _ in range(2)]]
    assert sum(results) == 60 and all(results), results
    sent = sorted(r.header(IDEMPOTENCY_HEADER) or "" for r in twilio.creates())
    assert sent == sorted(idempotency_token(k) for k in keys)  # each once, none twice
    assert {i.status for i in items(engine)} == {OutboxStatus.SENT}


@pytest.mark.asyncio
@pytest.mark.parametrize("twilio_answers", [True, False], ids=["found-at-twilio", "twilio-down"])
async def test_a_crash_before_recording_is_looked_for_at_twilio_a_minute_later(
    engine: Engine, twilio: FakeTwilio, twilio_answers: bool
) -> None:
    """The worker dies after Twilio took the message, before recording it: the item stays
    'sending' for a minute (storage.outbox.STUCK_AFTER), then goes back marked unsure. The next
    attempt finds the message among those Twilio has and sends nothing; only when Twilio
    cannot be asked is it sent again (one duplicate, never a lost reply)."""
    clock = Clock()
    put(engine, "k1", now=clock.now)
    senders = senders_for(make_settings(twilio, None))
    crashing = OutboxWorker(engine, senders, clock=clock)

    def power_cut(attempts: Any) -> None:
        raise RuntimeError("power cut before the commit")

    crashing._record = power_cut  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        await crashing.run_once()
    stuck = item(engine, "k1")
    assert stuck.status == OutboxStatus.SENDING and len(twilio.messages) == 1

    survivor = OutboxWorker(engine, senders, clock=clock)
    try:
        assert await survivor.run_once() == 0  # someone is (was) sending it
        clock.advance(59)
        await survivor.keep_up()
        assert await survivor.run_once() == 0  # not yet given up on
        clock.advance(2)
        await survivor.keep_up()  # release_stuck, every few seconds
        assert item(engine, "k1").unsure_since is not None
        if not twilio_answers:
            twilio.script(TwilioReply.server_error(), resource="Messages")  # the lookup fails
        assert await survivor.run_once() == 1
        clock.advance(3600)
        await survivor.keep_up()
        assert await survivor.run_once() == 0
    finally:
        await survivor.aclose()
    done = item(engine, "k1")
    assert done.status == OutboxStatus.SENT and done.unsure_since is None
    assert len(twilio.creates()) == (1 if twilio_answers else 2)
    assert len(twilio.messages) == (1 if twilio_answers else 2)
    if twilio_answers:
        with transaction(engine) as session:  # the record the status callbacks will update
            sid = session.scalars(
                select(Message.provider_id).where(Message.direction == "outbound")
            ).one()
        assert sid == twilio.messages[0]["sid"]


@pytest.mark.asyncio
async def test_a_short_database_outage_while_recording_sends_no_duplicate(
    engine: Engine, twilio: FakeTwilio, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("bot.runtime.worker.RECORD_RETRY_PAUSES_S", (0.01, 0.01))
    put(engine, "k1")
    worker = OutboxWorker(engine, senders_for(make_settings(twilio, None)))
    record, failures = worker._record, []

    def flaky(attempts: Any) -> None:
        if len(failures) < 2:
            failures.append(1)
            raise OperationalError("UPDATE outbox", {}, Exception("connection lost"))
        record(attempts)

    worker._record = flaky  # type: ignore[method-assign]
    try:
        assert await worker.run_once() == 1
    finally:
        await worker.aclose()
    assert item(engine, "k1").status == OutboxStatus.SENT
    assert len(twilio.creates()) == 1


@pytest.mark.asyncio
async def test_a_late_outcome_does_not_overwrite_the_new_claim(
    engine: Engine, twilio: FakeTwilio
) -> None:
    """A worker that stalled past stuck_after finds its item claimed again: the new claim's
    outcome stands."""
    clock = Clock()
    put(engine, "k1", now=clock.now)
    senders = senders_for(make_settings(twilio, None))
    slow = OutboxWorker(engine, senders, clock=clock)
    claimed = await asyncio.to_thread(slow._claim)
    clock.advance(6 * 60)
    other = OutboxWorker(engine, senders, clock=clock)
    await other.maintain()
    # The released item is unsure: Twilio is asked first (nothing there), then it refuses it.
    twilio.script(TwilioReply.created(), TwilioReply.invalid_to(), resource="Messages")
    assert await other.run_once() == 1
    assert item(engine, "k1").status == OutboxStatus.DEAD
    attempt = await slow._send(claimed[0], time.monotonic() + 60)
    assert attempt.outcome.sent
    await asyncio.to_thread(slow._record, [attempt])
    assert item(engine, "k1").status == OutboxStatus.DEAD  # unchanged
    await slow.aclose()
    await other.aclose()


# -- the loop, the app, the command -----------------------------------------------------------------


async def wait_until(check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


@pytest.mark.asyncio
async def test_run_sends_until_stopped(engine: Engine, twilio: FakeTwilio) -> None:
    worker = OutboxWorker(engine, senders_for(make_settings(twilio, None)))
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop, interval_s=0.05))
    put(engine, "a")
    await wait_until(lambda: item(engine, "a").status == OutboxStatus.SENT)
    put(engine, "b")
    await wait_until(lambda: item(engine, "b").status == OutboxStatus.SENT)
    stop.set()
    await asyncio.wait_for(task, timeout=5)
    await worker.aclose()
    assert len(twilio.messages) == 2


@pytest.mark.asyncio
async def test_start_outbox_worker_follows_the_setting(engine: Engine, twilio: FakeTwilio) -> None:
    assert start_outbox_worker(make_settings(twilio, None, run_worker=False), engine) is None
    running = start_outbox_worker(make_settings(twilio, None), engine, interval_s=0.05)
    assert running is not None and sorted(running.worker.senders) == ["sms", "voice"]
    put(engine, "a")
    await wait_until(lambda: len(twilio.messages) == 1)
    await running.stop()
    assert running.task.done()


def test_serve_runs_the_worker_unless_turned_off(
    db_url: str, tmp_path: Path, twilio: FakeTwilio
) -> None:
    from fastapi.testclient import TestClient

    from bot.runtime.app import create_app

    engine = make_engine(db_url)
    try:
        put(engine, "a")
        off = make_settings(twilio, None, database_url=db_url, data_dir=tmp_path, run_worker=False)
        with TestClient(create_app(off)) as client:
            assert client.app.state.outbox_worker is None
            time.sleep(0.5)
        assert twilio.messages == []
        on = make_settings(twilio, None, database_url=db_url, data_dir=tmp_path)
        with TestClient(create_app(on)) as client:
            assert client.app.state.outbox_worker is not None
            deadline = time.monotonic() + 10
            while item(engine, "a").status != OutboxStatus.SENT:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            task = client.app.state.outbox_worker.task
        assert task.done()  # stopped with the app
        assert len(twilio.messages) == 1
    finally:
        engine.dispose()


def cli_env(db_url: str, twilio: FakeTwilio) -> dict[str, str]:
    return {
        "HOTLINE_DATABASE_URL": db_url,
        "HOTLINE_TWILIO_ACCOUNT_SID": SID,
        "HOTLINE_TWILIO_AUTH_TOKEN": "secret",
        "HOTLINE_TWILIO_FROM_NUMBER": OUR_NUMBER,
        "HOTLINE_TWILIO_API_URL": twilio.url,
        "HOTLINE_TELEGRAM_BOT_TOKEN": "",
        "HOTLINE_TWILIO_WHATSAPP_FROM": "",
    }


def test_worker_once(engine: Engine, db_url: str, twilio: FakeTwilio) -> None:
    from bot.cli import app

    for n in range(25):  # more than one batch
        put(engine, f"k{n}")
    result = CliRunner().invoke(app, ["worker", "--once"], env=cli_env(db_url, twilio))
    assert result.exit_code == 0, result.output
    assert "sms: on" in result.output and "telegram: off" in result.output
    assert "attempted 25 notification(s)" in result.output
    assert "follow_ups: 0 handled" in result.output  # the periodic case jobs ran once too
    assert len(twilio.messages) == 25


def test_worker_leaves_the_calls_to_the_sip_line_and_says_so(
    engine: Engine, db_url: str, twilio: FakeTwilio
) -> None:
    from bot.cli import app

    file_emergency(engine)
    env = {
        **cli_env(db_url, twilio),
        "HOTLINE_SIP_REGISTRAR": "sip:127.0.0.1:5060",
        "HOTLINE_SIP_USER": "8001",
    }
    result = CliRunner().invoke(app, ["worker", "--once"], env=env)
    assert result.exit_code == 0, result.output
    assert "voice: sent by `hotline sip`" in result.output and "sms: on" in result.output
    by_channel = {i.channel: i for i in items(engine)}
    assert by_channel["sms"].status == OutboxStatus.SENT  # Twilio sent the alert message
    assert by_channel["voice"].status == OutboxStatus.PENDING  # the call waits for the line
    assert twilio.calls == []


def test_worker_without_any_sender_says_so(db_url: str) -> None:
    from bot.cli import app

    env = {"HOTLINE_DATABASE_URL": db_url, "HOTLINE_TWILIO_ACCOUNT_SID": ""}
    env["HOTLINE_TELEGRAM_BOT_TOKEN"] = ""
    result = CliRunner().invoke(app, ["worker", "--once"], env=env)
    assert result.exit_code == 1
    assert "no channel can send" in result.output + (result.stderr or "")


def test_worker_process_stops_on_sigterm(
    engine: Engine, db_url: str, twilio: FakeTwilio, tmp_path: Path
) -> None:
    hotline = Path(sys.executable).with_name("hotline")
    env = {**os.environ, **cli_env(db_url, twilio), "HOTLINE_DATA_DIR": str(tmp_path)}
    log = (tmp_path / "worker.log").open("w+")
    proc = subprocess.Popen(
        [str(hotline), "worker", "--interval", "0.1"], env=env, stdout=log, stderr=log
    )
    try:
        put(engine, "a")
        deadline = time.monotonic() + 30
        while item(engine, "a").status != OutboxStatus.SENT:
            assert proc.poll() is None, Path(log.name).read_text()
            assert time.monotonic() < deadline, Path(log.name).read_text()
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    output = Path(log.name).read_text()
    assert "outbox_worker_stopped" in output
    assert '"event": "outbox_attempt"' in output or "outbox_attempt" in output


def test_mask_keeps_addresses_out_of_the_logs() -> None:
    assert mask("+8613912345678") == "…5678"
    assert mask("whatsapp:+8613912345678") == "whatsapp:…5678"
    assert mask("7") == "…"
