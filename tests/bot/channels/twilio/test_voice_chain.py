"""An emergency's alert calls, one after another, end to end: a retiree's call files the emergency,
the real worker places the calls through the real twilio client against the fake Twilio REST API,
and the fake caller answers them (or does not) the way Twilio would: signed webhooks to the
public URL, reaching the app on 127.0.0.1. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import shutil
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from bot.channels import senders_for
from bot.runtime.app import create_app
from bot.runtime.worker import OutboxWorker
from config.categories import get_categories
from config.settings import Settings
from storage import actions, alert_chain, escalation
from storage.alert_chain import ALERT_MESSAGE
from storage.db import make_engine, transaction
from storage.models import Case, CaseEvent, CaseStatus, OutboxItem, OutboxStatus, Staff
from storage.permissions import Actor
from storage.types import utcnow
from tests.bot.channels.twilio.test_voice import (
    PUBLIC_URL,
    SON,
    STAFF_A1,
    STAFF_SA,
    TOKEN,
    WANG,
    settings_for,
    world,
)
from tests.fakes.caller import VOICEMAIL, FakeCaller, HangUp, Press, Silence, Speak, serve
from tests.fakes.twilio_rest import FakeTwilio, TwilioReply

STAFF_TEXT = "【紧急求助"
PRESS_ONE = "要接手这个紧急情况，请按1。"


class Clock:
    """The worker's clock: the real time, moved on by the test (the app enqueues at real time)."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return utcnow() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


@dataclass
class Line:
    caller: FakeCaller
    engine: Engine
    twilio: FakeTwilio
    settings: Settings
    clock: Clock

    def worker(self, engine: Engine | None = None) -> OutboxWorker:
        return OutboxWorker(engine or self.engine, senders_for(self.settings), clock=self.clock)

    def calls(self) -> list[dict[str, Any]]:
        return list(self.twilio.calls)


@pytest.fixture
def line(db_url: str, engine: Engine, trained_nlu_dir: Path, tmp_path: Path) -> Iterator[Line]:
    shutil.copytree(trained_nlu_dir / "nlu-cache", tmp_path / "nlu-cache")
    world(engine)
    with FakeTwilio() as twilio:
        settings = settings_for(db_url, tmp_path, twilio_api_url=twilio.url)
        with serve(create_app(settings, engine)) as local, httpx.Client(timeout=60) as client:
            caller = FakeCaller(local, PUBLIC_URL, TOKEN, client=client)
            yield Line(caller, engine, twilio, settings, Clock())


def emergency_by_phone(line: Line) -> Case:
    """王秀英 calls and says she fell: the case is filed and its alerts queued."""
    line.caller.call([Speak("我摔倒了，起不来"), HangUp()], caller=WANG)
    with Session(line.engine) as session:
        [case] = session.scalars(select(Case)).all()
        return case


def chain_notes(engine: Engine, case: Case) -> list[str]:
    with Session(engine) as session:
        return list(
            session.scalars(
                select(CaseEvent.note)
                .where(CaseEvent.case_id == case.id, CaseEvent.actor_label == alert_chain.LABEL)
                .order_by(CaseEvent.id)
            )
        )


def alert_calls(engine: Engine) -> list[OutboxItem]:
    with Session(engine) as session:
        items = session.scalars(select(OutboxItem).where(OutboxItem.channel == "voice")).all()
        return sorted(items, key=lambda i: i.payload["order"])


def alert_messages(engine: Engine) -> list[OutboxItem]:
    """The emergency's alert messages (SMS, Telegram: all at once, beside the calls)."""
    with Session(engine) as session:
        items = session.scalars(select(OutboxItem).order_by(OutboxItem.id)).all()
        return [i for i in items if i.payload.get("kind") == ALERT_MESSAGE]


def key_of(placed: dict[str, Any]) -> str:
    return parse_qs(urlsplit(placed["status_callback"]).query)["k"][0]


# -- in turn, until somebody presses 1 ------------------------------------------------------------


@pytest.mark.asyncio
async def test_the_calls_ring_in_turn_and_whoever_presses_1_takes_the_emergency(
    line: Line,
) -> None:
    case = emergency_by_phone(line)
    worker = line.worker()
    try:
        await worker.run_once()
        # The messages go to everyone at once; the calls one after another.
        assert sorted(m["to"] for m in line.twilio.messages) == sorted([STAFF_A1, STAFF_SA, SON])
        [first] = line.calls()
        assert first["to"] == STAFF_A1
        assert STAFF_TEXT in first["twiml"] and PRESS_ONE in first["twiml"]
        assert first["status_callback"].startswith(f"{PUBLIC_URL}/twilio/voice/status?k=")
        assert await worker.run_once() == 0  # the next waits for this one

        assert line.caller.placed_status(first, "no-answer").status_code == 200
        assert await worker.run_once() == 1
        second = line.calls()[1]
        assert second["to"] == STAFF_SA

        answered = line.caller.pick_up(second, [Press("1")])
        assert answered.said[1:] == [
            PRESS_ONE,
            "谢谢您，已经记下由您接手，其他人不再呼叫。请马上联系求助的人。",
        ]
        assert answered.said[0].startswith(f"{STAFF_TEXT} {case.number}】王秀英")
        assert answered.ended_by == "app"
        # The staff member who pressed 1 owns the case now, as if claimed in the console: the
        # only thing sent is the message telling 王秀英 so.
        assert await worker.run_once() == 1
        told = line.twilio.messages[-1]
        assert told["to"] == WANG and "紧急求助" in told["body"] and "赵站长" in told["body"]
        # Nobody else is called: not now, not after the calls' time-out.
        assert await worker.run_once() == 0
        line.clock.advance(alert_chain.CALL_TIMEOUT.total_seconds() + 60)
        await worker.maintain()
        assert await worker.run_once() == 0
    finally:
        await worker.aclose()
    assert [c["to"] for c in line.calls()] == [STAFF_A1, STAFF_SA]
    assert chain_notes(line.engine, case) == [
        f"赵站长（{STAFF_SA}）接听了紧急电话，按1接手了这个紧急情况。"
    ]
    with Session(line.engine) as session:
        claimed = session.get(Case, case.id)
        assert claimed is not None and claimed.status.value == "claimed"
        assert claimed.assignee is not None and claimed.assignee.phone == STAFF_SA
    staff_one, staff_two = alert_calls(line.engine)
    # The status callbacks are recorded on the calls' outbox items.
    assert staff_one.payload["call_sid"] == first["sid"]
    assert (staff_one.payload["call_status"], staff_one.payload["outcome"]) == (
        "no-answer",
        "passed",
    )
    assert (staff_two.payload["call_status"], staff_two.payload["outcome"]) == (
        "completed",
        "taken",
    )
    assert [c["who"] for c in staff_two.payload["chain"]] == ["李强（儿子）"]


@pytest.mark.asyncio
async def test_nobody_takes_it_and_the_case_says_so(line: Line) -> None:
    case = emergency_by_phone(line)
    worker = line.worker()
    try:
        await worker.run_once()
        line.caller.placed_status(line.calls()[0], "busy")
        await worker.run_once()
        # Answered, but no key: asked twice, then told the next person is called.
        heard = line.caller.pick_up(line.calls()[1], [Silence(), Silence()])
        assert heard.said.count(PRESS_ONE) == 2
        assert heard.said[-1] == "没有收到按键。我们会继续呼叫下一位。"
        await worker.run_once()
        son = line.calls()[2]
        assert son["to"] == SON and "您的家人王秀英刚才紧急求助" in son["twiml"]
        last = line.caller.placed_status(son, "no-answer")
        assert last.status_code == 200
        # Twilio repeats the last callback: the note is not written twice.
        assert line.caller.placed_status(son, "no-answer").status_code == 200
        assert await worker.run_once() == 0
    finally:
        await worker.aclose()
    assert chain_notes(line.engine, case) == [
        "紧急电话无人接手：已依次呼叫钱社工、赵站长、李强（儿子），都没有接听或没有按1。"
        "请立即另行安排人员联系求助的人。"
    ]
    outcomes = [
        (i.address, i.payload["call_status"], i.payload["outcome"])
        for i in alert_calls(line.engine)
    ]
    assert outcomes == [
        (STAFF_A1, "busy", "passed"),
        (STAFF_SA, "completed", "passed"),
        (SON, "no-answer", "passed"),
    ]


@pytest.mark.asyncio
async def test_a_call_with_no_status_in_time_is_passed_on(line: Line) -> None:
    case = emergency_by_phone(line)
    worker = line.worker()
    try:
        await worker.run_once()
        [first] = line.calls()
        line.clock.advance(alert_chain.CALL_TIMEOUT.total_seconds() - 10)
        await worker.maintain()
        assert await worker.run_once() == 0  # still ringing, perhaps
        line.clock.advance(20)
        await worker.maintain()
        assert await worker.run_once() == 1
        assert [c["to"] for c in line.calls()] == [STAFF_A1, STAFF_SA]
        line.caller.placed_status(line.calls()[1], "no-answer")
        assert [i.address for i in alert_calls(line.engine)] == [STAFF_A1, STAFF_SA, SON]
        # The first call was going on after all: its callee presses 1 before the son is rung,
        # and the call's status ("completed") comes last, passing on nothing.
        line.caller.pick_up(first, [Press("1")])
        assert await worker.run_once() == 1  # 王秀英 is told who has her case; nobody is rung
        assert line.twilio.messages[-1]["to"] == WANG
    finally:
        await worker.aclose()
    assert [c["to"] for c in line.calls()] == [STAFF_A1, STAFF_SA]
    # The son's call stays on record, cancelled: never sent.
    son = alert_calls(line.engine)[2]
    assert (son.address, son.status, son.payload["outcome"]) == (
        SON,
        OutboxStatus.CANCELLED,
        "called_off",
    )
    assert chain_notes(line.engine, case) == [
        f"钱社工（{STAFF_A1}）接听了紧急电话，按1接手了这个紧急情况。不再呼叫：李强（儿子）。"
    ]
    assert alert_calls(line.engine)[0].payload["passed_because"] == alert_chain.TIMED_OUT


@pytest.mark.asyncio
async def test_a_call_still_ringing_when_somebody_takes_it_calls_nobody_after(line: Line) -> None:
    case = emergency_by_phone(line)
    worker = line.worker()
    try:
        await worker.run_once()
        first = line.calls()[0]
        line.clock.advance(alert_chain.CALL_TIMEOUT.total_seconds() + 1)
        await worker.maintain()
        await worker.run_once()
        line.caller.pick_up(first, [Press("1")])  # late, while the second phone rings
        line.caller.placed_status(line.calls()[1], "no-answer")
        line.clock.advance(alert_chain.CALL_TIMEOUT.total_seconds() + 1)
        await worker.maintain()
        assert await worker.run_once() == 1  # only 王秀英 is told who has her case
        assert line.twilio.messages[-1]["to"] == WANG
    finally:
        await worker.aclose()
    assert [c["to"] for c in line.calls()] == [STAFF_A1, STAFF_SA]
    assert [i.payload["outcome"] for i in alert_calls(line.engine)] == ["passed", "not_needed"]
    assert chain_notes(line.engine, case) == [
        f"钱社工（{STAFF_A1}）接听了紧急电话，按1接手了这个紧急情况。"
    ]


def act_in_the_console(engine: Engine, case: Case, action: str) -> None:
    """孙社工 (off duty, at the desk) claims the case in the console, takes the next case of
    her queue (on PostgreSQL one statement claims it), or cancels it: the same case actions
    the console, Telegram and the API call."""
    with transaction(engine) as session:
        staff = session.scalars(select(Staff).where(Staff.name == "孙社工")).one()
        found = session.get(Case, case.id)
        assert found is not None
        if action == "claim":
            actions.claim(session, found, Actor.person(staff))
        elif action == "claim_next":
            taken = actions.claim_next(session, Actor.person(staff))
            assert taken is not None and taken.id == case.id
        else:
            actions.cancel(session, found, Actor.person(staff), reason="误报：老人说按错了")


@pytest.mark.asyncio
@pytest.mark.parametrize("action", ["claim", "claim_next", "cancel"])
async def test_an_emergency_taken_in_the_console_calls_nobody_more(line: Line, action: str) -> None:
    """Claimed (or withdrawn) at the desk before the worker placed the first alert call: that
    call is called off, kept as cancelled, and the timeline says whom it would have rung. A
    withdrawn emergency's alert messages not sent yet are withheld too; a claimed one's go."""
    case = emergency_by_phone(line)
    messages = alert_messages(line.engine)
    assert messages and {m.status for m in messages} == {OutboxStatus.PENDING}
    act_in_the_console(line.engine, case, action)
    worker = line.worker()
    try:
        await worker.run_once()
        line.clock.advance(alert_chain.CALL_TIMEOUT.total_seconds() * 3)
        await worker.maintain()
        await worker.run_once()
    finally:
        await worker.aclose()
    assert line.calls() == []
    [call] = alert_calls(line.engine)
    assert (call.address, call.status, call.payload["outcome"]) == (
        STAFF_A1,
        OutboxStatus.CANCELLED,
        "called_off",
    )
    claimed = ["孙社工已接手这个紧急个案，不再拨打提醒电话：钱社工。"]
    expected = {
        "claim": claimed,
        "claim_next": claimed,
        "cancel": [
            "紧急个案已取消，不再拨打提醒电话：钱社工。",
            f"紧急个案已取消，还没发出的{len(messages)}条紧急提醒消息不再发送。",
        ],
    }
    assert chain_notes(line.engine, case) == expected[action]
    after = alert_messages(line.engine)
    sms_sent = [m["to"] for m in line.twilio.messages]
    if action == "cancel":
        assert {(m.status, m.payload["outcome"]) for m in after} == {
            (OutboxStatus.CANCELLED, "called_off")
        }
        assert not {m.address for m in after if m.channel == "sms"} & set(sms_sent)
    else:
        assert {m.status for m in after} == {OutboxStatus.SENT}
        assert {m.address for m in after if m.channel == "sms"} <= set(sms_sent)


@pytest.mark.asyncio
async def test_an_emergency_claimed_while_an_alert_call_rings_goes_no_further(line: Line) -> None:
    """The first alert call rings when 孙社工 claims the case in the console: nobody presses 1,
    and the chain stops there instead of ringing the next staff member and the son."""
    case = emergency_by_phone(line)
    worker = line.worker()
    try:
        await worker.run_once()
        [first] = line.calls()
        act_in_the_console(line.engine, case, "claim")
        assert line.caller.placed_status(first, "no-answer").status_code == 200
        line.clock.advance(alert_chain.CALL_TIMEOUT.total_seconds() * 3)
        await worker.maintain()
        await worker.run_once()
    finally:
        await worker.aclose()
    assert [c["to"] for c in line.calls()] == [STAFF_A1]
    [call] = alert_calls(line.engine)
    assert call.payload["outcome"] == "not_needed"
    assert chain_notes(line.engine, case) == [
        "孙社工已接手这个紧急个案，不再拨打提醒电话：赵站长、李强（儿子）。"
    ]
    # The escalation's second wave does not ring for a claimed case either.
    with transaction(line.engine) as session:
        escalation.run_due(session, utcnow() + timedelta(minutes=5), get_categories())
    assert [i.address for i in alert_calls(line.engine)] == [STAFF_A1]


@pytest.mark.asyncio
@pytest.mark.parametrize("action", ["claim", "cancel"])
async def test_one_pressed_after_the_emergency_was_taken_says_so(line: Line, action: str) -> None:
    """钱社工 answers the alert call while 孙社工 claims (or cancels) the case at the desk, and
    presses 1: she hears who has it (or that it was withdrawn), not that it is hers; the case
    stays 孙社工's and the timeline says she pressed too late."""
    case = emergency_by_phone(line)
    worker = line.worker()
    try:
        await worker.run_once()
        [first] = line.calls()
        act_in_the_console(line.engine, case, action)
        heard = line.caller.pick_up(first, [Press("1")])
        line.clock.advance(alert_chain.CALL_TIMEOUT.total_seconds() * 3)
        await worker.maintain()
        await worker.run_once()
    finally:
        await worker.aclose()
    told = {
        "claim": "谢谢您。这个紧急情况已经由孙社工接手了，其他人不再呼叫。",
        "cancel": "谢谢您。这个紧急情况已经取消了，不用再处理。",
    }
    assert heard.said[-1] == told[action]
    assert [c["to"] for c in line.calls()] == [STAFF_A1]
    with transaction(line.engine) as session:
        found = session.get(Case, case.id)
        assert found is not None
        taken = (found.status, found.assignee.name if found.assignee else None)
    assert taken == (
        (CaseStatus.CLAIMED, "孙社工") if action == "claim" else (CaseStatus.CANCELLED, None)
    )
    [call] = alert_calls(line.engine)
    assert call.payload["outcome"] == "not_needed"
    pressed = {
        "claim": f"钱社工（{STAFF_A1}）按了1，这时孙社工已经接手了这个紧急情况。",
        "cancel": f"钱社工（{STAFF_A1}）按了1，这时这个紧急个案已经取消了。",
    }
    assert chain_notes(line.engine, case) == [pressed[action]]


@pytest.mark.asyncio
async def test_a_number_that_cannot_be_called_is_passed_on_at_once(line: Line) -> None:
    case = emergency_by_phone(line)
    line.twilio.script(TwilioReply.invalid_to(), resource="Calls")
    worker = line.worker()
    try:
        await worker.run_once()
        assert line.calls() == []
        assert await worker.run_once() == 1
        assert [c["to"] for c in line.calls()] == [STAFF_SA]
    finally:
        await worker.aclose()
    dead, placed = alert_calls(line.engine)
    assert dead.status == OutboxStatus.DEAD and dead.payload["passed_because"] == "undeliverable"
    assert placed.status == OutboxStatus.SENT
    assert chain_notes(line.engine, case) == []  # the worker's own note says the call failed


# -- several servers and workers, restarts ----------------------------------------------------------


@pytest.mark.asyncio
async def test_repeated_callbacks_and_two_workers_ring_the_next_once(
    line: Line, db_url: str
) -> None:
    emergency_by_phone(line)
    first_worker = line.worker()
    await first_worker.run_once()
    await first_worker.aclose()  # the worker stops; another one (its own pool) carries on
    [first] = line.calls()

    barrier = threading.Barrier(3)

    def deliver() -> int:
        with httpx.Client(timeout=60) as client:
            caller = FakeCaller(line.caller.local_url, PUBLIC_URL, TOKEN, client=client)
            barrier.wait()
            return caller.placed_status(first, "no-answer").status_code

    threads = [asyncio.to_thread(deliver) for _ in range(3)]
    assert await asyncio.gather(*threads) == [200, 200, 200]

    engines = [make_engine(db_url), make_engine(db_url)]
    workers = [line.worker(e) for e in engines]
    try:
        placed = await asyncio.gather(*(w.run_once() for w in workers))
        assert sorted(placed) == [0, 1]
        # Its status never comes: both workers' upkeep at once passes it on once.
        line.clock.advance(alert_chain.CALL_TIMEOUT.total_seconds() + 1)
        await asyncio.gather(*(w.maintain() for w in workers))
        placed = await asyncio.gather(*(w.run_once() for w in workers))
        assert sorted(placed) == [0, 1]
    finally:
        for w in workers:
            await w.aclose()
        for e in engines:
            e.dispose()
    assert [c["to"] for c in line.calls()] == [STAFF_A1, STAFF_SA, SON]
    assert [i.address for i in alert_calls(line.engine)] == [STAFF_A1, STAFF_SA, SON]


def test_the_alert_routes_check_the_signature_and_ignore_unknown_calls(line: Line) -> None:
    url = f"{PUBLIC_URL}/twilio/voice/alert?k=2026-000001%3Aemergency_call%3Avoice%3A%2B86"
    placed = {"sid": "CA" + "2" * 32, "from": "+15005550006", "to": STAFF_A1}
    params = line.caller.outbound_params(placed, "in-progress") | {"Digits": "1"}
    assert line.caller.post(url, params, signature=None).status_code == 403
    unknown = line.caller.post(url, params)
    assert unknown.status_code == 200 and "<Hangup />" in unknown.text
    status = line.caller.post(
        url.replace("/alert", "/status"), line.caller.outbound_params(placed, "no-answer")
    )
    assert status.status_code == 200
    with Session(line.engine) as session:
        assert session.scalars(select(OutboxItem)).all() == []


# -- the caller's own call and the alert calls ------------------------------------------------


def _emergency_call_up_to_the_dial(line: Line) -> tuple[str, dict[str, str], str]:
    """王秀英 calls and says she fell; the app puts her through (the first <Dial>). Returns the
    turn's public URL, the call's parameters and the TwiML answered."""
    sid = line.caller.new_sid()
    params = line.caller.base_params(sid, WANG, "+15005550006", "ringing")
    greeting = line.caller.post(f"{PUBLIC_URL}/twilio/voice", params)
    action = ET.fromstring(greeting.text).find("Gather").get("action")  # type: ignore[union-attr]
    url = urljoin(f"{PUBLIC_URL}/twilio/voice", action)
    params = params | {"CallStatus": "in-progress"}
    turn = line.caller.post(url, params | {"SpeechResult": "我摔倒了，起不来", "Confidence": "0.9"})
    assert turn.status_code == 200 and "<Dial" in turn.text
    return url, params, turn.text


def _held(item: OutboxItem) -> bool:
    return bool(item.payload.get("held")) and item.next_attempt_at > utcnow() + timedelta(
        seconds=60
    )


@pytest.mark.asyncio
async def test_the_alert_calls_wait_while_the_caller_is_put_through_and_go_when_nobody_answers(
    line: Line,
) -> None:
    url, params, twiml = _emergency_call_up_to_the_dial(line)
    [waiting] = alert_calls(line.engine)
    assert waiting.address == STAFF_A1 and _held(waiting)
    worker = line.worker()
    try:
        await worker.run_once()
        # The messages go at once; the phone that rings now is the caller's own call's.
        assert sorted(m["to"] for m in line.twilio.messages) == sorted([STAFF_A1, STAFF_SA, SON])
        assert line.calls() == []
        dialed = []
        while "<Dial" in twiml:
            dial = ET.fromstring(twiml).find("Dial")
            assert dial is not None
            dialed.append((dial.findtext("Number") or "").strip())
            [still] = alert_calls(line.engine)
            assert _held(still)  # nobody has been reached yet, and somebody may still answer
            action = urljoin(url, dial.get("action") or "")
            twiml = line.caller.post(action, params | {"DialCallStatus": "no-answer"}).text
        assert dialed == [STAFF_A1, STAFF_SA, SON]
        assert "电话暂时没有接通" in twiml
        # Nobody answered her: the alert calls go now, one after another, from the first.
        [released] = alert_calls(line.engine)
        assert "held" not in released.payload and released.next_attempt_at <= utcnow()
        assert await worker.run_once() == 1
        [first] = line.calls()
        assert first["to"] == STAFF_A1 and PRESS_ONE in first["twiml"]
    finally:
        await worker.aclose()


@pytest.mark.asyncio
async def test_staff_who_answer_her_own_call_are_noted_and_the_alert_calls_wait_for_it_to_end(
    line: Line,
) -> None:
    url, params, twiml = _emergency_call_up_to_the_dial(line)
    number = ET.fromstring(twiml).find("Dial/Number")
    assert number is not None and number.get("statusCallbackEvent") == "answered"
    # 钱社工 answers: Twilio tells the answered route at once (the leg's own CallSid).
    leg = line.caller.base_params(line.caller.new_sid(), WANG, STAFF_A1, "in-progress")
    leg |= {"Direction": "outbound-dial", "ParentCallSid": params["CallSid"]}
    told = line.caller.post(number.get("statusCallback") or "", leg)
    assert told.status_code == 204
    assert line.caller.post(number.get("statusCallback") or "", leg).status_code == 204  # again
    [case] = [c for c in _cases(line.engine) if c.category == "emergency"]
    note = (
        f"钱社工（{STAFF_A1}）接通了求助人的电话。"
        "这通电话结束后（最迟在求助90秒后），提醒电话照常呼叫值班人员，有人按1才算接手。"
    )
    assert chain_notes(line.engine, case) == [note]  # once
    [waiting] = alert_calls(line.engine)
    # Not taken (a voicemail answers too), and her phone does not ring twice while they talk.
    assert not waiting.payload.get("taken") and _held(waiting)
    worker = line.worker()
    try:
        await worker.run_once()
        assert line.calls() == []
        # They hang up: the alert calls go, and whoever presses 1 takes the emergency.
        dial = ET.fromstring(twiml).find("Dial")
        assert dial is not None
        # She pressed a key at the call screening (a person, not a voicemail), then talked.
        pressed = line.caller.post(number.get("url") or "", leg | {"Digits": "1"})
        assert pressed.status_code == 200 and "<Hangup" not in pressed.text
        done = {
            "DialCallStatus": "completed",
            "DialCallDuration": "45",
            "DialCallSid": leg["CallSid"],
        }
        ended = line.caller.post(urljoin(url, dial.get("action") or ""), params | done)
        assert ended.status_code == 200 and "<Hangup" in ended.text
        assert await worker.run_once() == 1
        assert [c["to"] for c in line.calls()] == [STAFF_A1]
    finally:
        await worker.aclose()


def test_an_emergency_put_through_to_a_voicemail_goes_on_to_the_next_number(line: Line) -> None:
    call = line.caller.call(
        [Speak("救命，我摔倒了")],
        caller=WANG,
        answers={STAFF_A1: VOICEMAIL, SON: VOICEMAIL},
    )
    assert call.dialed == [STAFF_A1, STAFF_SA, SON]
    emergency = "这里是社区一键通，紧急求助！和平社区的王秀英来电求助。请按任意键接听。"
    family = "这里是社区一键通，紧急求助！您的家人王秀英打电话求助。请按任意键接听。"
    assert call.screened == [emergency, emergency, family, family]
    assert "电话暂时没有接通" in call.text  # nobody was reached: she is told, and asked where


@pytest.mark.asyncio
async def test_family_who_answer_the_callers_own_call_do_not_stop_the_alert_calls_to_staff(
    line: Line,
) -> None:
    call = line.caller.call([Speak("救命，我摔倒了")], caller=WANG, answers={SON: "completed"})
    assert call.dialed == [STAFF_A1, STAFF_SA, SON]
    [case] = [c for c in _cases(line.engine) if c.category == "emergency"]
    [item] = alert_calls(line.engine)
    assert not item.payload.get("taken") and "held" not in item.payload
    assert chain_notes(line.engine, case) == [
        f"求助人的电话接通了家属李强（{SON}）；提醒电话照常呼叫工作人员。"
    ]
    worker = line.worker()
    try:
        assert await worker.run_once() >= 1
        assert [c["to"] for c in line.calls()] == [STAFF_A1]
    finally:
        await worker.aclose()


def _cases(engine: Engine) -> list[Case]:
    with Session(engine) as session:
        return list(session.scalars(select(Case)))


@pytest.mark.asyncio
async def test_the_second_wave_takes_over_from_a_first_wave_still_ringing(line: Line) -> None:
    case = emergency_by_phone(line)
    worker = line.worker()
    try:
        await worker.run_once()
        [first] = line.calls()
        assert first["to"] == STAFF_A1
        # Two minutes on and nobody has it: the escalation rings again while that call rings.
        with transaction(line.engine) as session:
            later = utcnow() + escalation.EMERGENCY_AFTER + timedelta(seconds=1)
            escalation.run_due(session, later, get_categories())
        second_wave = [c for c in alert_calls(line.engine) if c.payload.get("wave") == 2]
        [waiting] = second_wave
        assert waiting.address == STAFF_A1 and waiting.payload["held"] == "ringing"
        assert await worker.run_once() == 0  # her phone is ringing already
        # That call ends unanswered: the second wave goes on from here, the first does not.
        assert line.caller.placed_status(first, "no-answer").status_code == 200
        assert await worker.run_once() == 1
        assert [c["to"] for c in line.calls()] == [STAFF_A1, STAFF_A1]
        assert await worker.run_once() == 0
    finally:
        await worker.aclose()
    first_wave = [c for c in alert_calls(line.engine) if "wave" not in c.payload]
    assert [(c.address, c.payload["outcome"]) for c in first_wave] == [(STAFF_A1, "passed")]
    assert chain_notes(line.engine, case) == []
