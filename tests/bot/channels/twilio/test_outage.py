"""The phone line and text messages while the database is down (bot/channels/twilio/outage.py):
a real PostgreSQL refuses connections under the app, a fake caller and Twilio's signed webhooks
reach it over 127.0.0.1; then the database comes back and what was kept is handled."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from sqlalchemy import Engine, make_url, select

from bot.channels.twilio import messaging as twilio_messaging
from bot.channels.twilio.messaging import INBOUND_PATH, STATUS_PATH
from bot.channels.twilio.outage import RECEIVED_HEADER, REPLAY_HEADER, SPOOL_FOLDER
from bot.channels.twilio.voice import records
from bot.runtime.app import create_app
from storage.alert_chain import HELD
from storage.db import make_engine, transaction
from storage.models import Case, Direction, Message, OutboxItem, OutboxStatus
from storage.spool import FAILED_BECAUSE, Spool
from storage.types import utcnow
from tests.bot.channels.twilio.test_voice import PUBLIC_URL, TOKEN, WANG, settings_for, world
from tests.fakes.caller import FakeCaller, Speak, serve
from tests.pg_server import PostgresServer

pytestmark = pytest.mark.postgres

DESK = "+8602188880000"  # the community centre's own phone (HOTLINE_TWILIO_OUTAGE_NUMBERS)
OUR_NUMBER = "+15005550006"
T = TypeVar("T")


@dataclass
class Outage:
    """The app on 127.0.0.1 over a PostgreSQL database that can be taken down and back."""

    caller: FakeCaller
    engine: Engine
    spool: Spool
    server: PostgresServer
    database: str

    def down(self) -> None:
        self.server.refuse_connections(self.database)

    def back(self) -> None:
        self.server.allow_connections(self.database)

    def sms(self, body: str, sid: str, sender: str = WANG) -> httpx.Response:
        params = {
            "AccountSid": "AC" + "0" * 32,
            "MessageSid": sid,
            "SmsMessageSid": sid,
            "From": sender,
            "To": OUR_NUMBER,
            "Body": body,
            "NumMedia": "0",
        }
        return self.caller.post(PUBLIC_URL + INBOUND_PATH, params)


@pytest.fixture
def outage(
    postgres_url: str, pg_server: PostgresServer, trained_nlu_dir: Path, tmp_path: Path
) -> Iterator[Outage]:
    shutil.copytree(trained_nlu_dir / "nlu-cache", tmp_path / "nlu-cache")
    engine = make_engine(postgres_url)
    world(engine)
    settings = settings_for(postgres_url, tmp_path, twilio_outage_numbers=DESK)
    app = create_app(settings, engine)
    database = str(make_url(postgres_url).database)
    try:
        with serve(app) as local, httpx.Client(timeout=60) as client:
            caller = FakeCaller(local, PUBLIC_URL, TOKEN, client=client)
            yield Outage(caller, engine, Spool(tmp_path / SPOOL_FOLDER), pg_server, database)
    finally:
        pg_server.allow_connections(database)
        engine.dispose()


def eventually(read: Callable[[], T], done: Callable[[T], bool], seconds: float = 20.0) -> T:
    """Read until ``done`` says so (the replayer runs every 2 s in the server)."""
    deadline = time.monotonic() + seconds
    while True:
        value = read()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def cases(engine: Engine) -> list[Case]:
    with transaction(engine) as session:
        found = session.scalars(select(Case).order_by(Case.id)).all()
        for case in found:
            _ = case.retiree
        return list(found)


def provider_ids(engine: Engine, direction: Direction = Direction.INBOUND) -> list[str]:
    with transaction(engine) as session:
        rows = session.scalars(
            select(Message.provider_id)
            .where(Message.direction == direction, Message.provider_id.is_not(None))
            .order_by(Message.id)
        ).all()
        return [r for r in rows if r]


# -- a call -------------------------------------------------------------------------------------


def test_a_call_while_the_database_is_down_is_put_through_and_called_back(outage: Outage) -> None:
    outage.down()
    call = outage.caller.call([Speak("喂，有人吗")], caller=WANG)

    # Not Twilio's "application error": she is told, put through to the desk, told what next.
    assert [e.status_code for e in call.exchanges] == [200]
    assert call.said == [
        "对不起，系统暂时出了故障。",
        "正在为您转接社区工作人员，请稍等。",
        "我们已经记下了您的来电，会尽快给您回电。如有危险，请立即拨打120。再见。",
    ]
    assert call.dialed == [DESK] and call.ended_by == "app"
    # The call and its status callback (answered 200 all the same) wait in the spool.
    assert outage.spool.count() == 2

    outage.back()
    filed = eventually(lambda: cases(outage.engine), lambda found: bool(found))
    [case] = filed
    assert (case.category, case.priority, case.retiree.name) == ("callback", 2, "王秀英")
    assert (
        case.details["reason"] == "outage"
        and case.summary == "系统故障期间来电，当时无法登记，请回电问清需要"
    )
    assert eventually(outage.spool.count, lambda n: n == 0) == 0
    sid = call.call_sid
    # The status callback came after the call's item: no second ("silent") call-back.
    ids = eventually(lambda: provider_ids(outage.engine), lambda ids: len(ids) == 2)
    assert ids == [f"{sid}:outage", f"{sid}:status:completed"]
    assert len(cases(outage.engine)) == 1


def test_words_heard_before_the_database_went_down_are_on_the_call_back(outage: Outage) -> None:
    outage.down()
    params = outage.caller.base_params("CA-mid", WANG, OUR_NUMBER, "in-progress") | {
        "SpeechResult": "我要报销上个月的药费",
        "Confidence": "0.91",
    }
    turn = outage.caller.post(f"{PUBLIC_URL}/twilio/voice/turn?n=2&lang=zh", params)
    assert turn.status_code == 200 and f"<Number>{DESK}</Number>" in turn.text
    again = outage.caller.post(f"{PUBLIC_URL}/twilio/voice/turn?n=2&lang=zh", params)
    assert again.status_code == 200  # Twilio's retry: kept again, filed once

    outage.back()
    [case] = eventually(lambda: cases(outage.engine), lambda found: bool(found))
    assert case.original_text == "我要报销上个月的药费" and case.details["reason"] == "outage"
    eventually(outage.spool.count, lambda n: n == 0)
    assert len(cases(outage.engine)) == 1


def test_an_emergency_told_while_the_database_was_down_is_filed_and_alerted_when_it_is_back(
    outage: Outage,
) -> None:
    """She was told to call 120 and put through to the desk; once the database answers, her
    words run as the turn they were: an emergency, whose alert calls go at once (none is held
    for a call that is long over), and no call-back besides."""
    outage.down()
    params = outage.caller.base_params("CA-fall", WANG, OUR_NUMBER, "in-progress") | {
        "SpeechResult": "我摔倒了，起不来了",
        "Confidence": "0.88",
    }
    turn = outage.caller.post(f"{PUBLIC_URL}/twilio/voice/turn?n=1&lang=zh", params)
    assert turn.status_code == 200 and "如有危险，请立即拨打120" in turn.text
    outage.back()
    [case] = eventually(lambda: cases(outage.engine), lambda found: bool(found))
    assert (case.category, case.priority, case.retiree.name) == ("emergency", 1, "王秀英")
    eventually(outage.spool.count, lambda n: n == 0)
    with transaction(outage.engine) as session:
        calls = session.scalars(select(OutboxItem).where(OutboxItem.channel == "voice")).all()
        pending = [c for c in calls if c.status == OutboxStatus.PENDING]
        assert pending and not any(c.payload.get(HELD) for c in pending)  # none held back
        assert min(c.next_attempt_at for c in pending) <= utcnow()
    assert len(cases(outage.engine)) == 1 and provider_ids(outage.engine) == ["CA-fall:1"]


def test_a_bug_on_the_phone_line_still_gets_the_caller_put_through(
    outage: Outage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not only the database: whatever fails while a person is on the line, she hears the
    outage answer, not Twilio's English application error. Nothing is kept (running it again
    would fail again); the call's status callback, when it comes, files the call-back."""

    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(records, "arrival", broken)  # a fault put in, not a stand-in
    call = outage.caller.call([], caller=WANG)
    assert [e.status_code for e in call.exchanges] == [200]
    assert call.said[0] == "对不起，系统暂时出了故障。" and call.dialed == [DESK]
    assert outage.spool.count() == 0
    [case] = cases(outage.engine)  # the status callback: a call in which nothing was said
    assert case.category == "callback" and case.details["reason"] == "silent"


def test_a_forged_webhook_is_refused_and_not_kept_while_the_database_is_down(
    outage: Outage,
) -> None:
    outage.down()
    params = outage.caller.base_params("CA-forged", WANG, OUR_NUMBER, "ringing")
    forged = outage.caller.post(f"{PUBLIC_URL}/twilio/voice", params, signature="forged")
    unsigned = outage.caller.post(f"{PUBLIC_URL}{INBOUND_PATH}", {"From": WANG}, signature=None)
    assert (forged.status_code, unsigned.status_code) == (403, 403)
    assert outage.spool.count() == 0


def test_a_key_pressed_by_staff_while_the_database_is_down_is_noted_and_handled_later(
    outage: Outage,
) -> None:
    outage.down()
    params = outage.caller.base_params("CA-alert", "+15005550006", "+8613700000002", "in-progress")
    pressed = outage.caller.post(
        f"{PUBLIC_URL}/twilio/voice/alert?k=alert-1", params | {"Digits": "1"}
    )
    nothing = outage.caller.post(f"{PUBLIC_URL}/twilio/voice/alert?k=alert-1", params)
    assert pressed.status_code == 200 and "您按的键已经记下" in pressed.text
    assert nothing.status_code == 200 and "<Say" not in nothing.text and "<Hangup" in nothing.text
    assert outage.spool.count() == 2
    outage.back()
    # Run again through /alert when the database is back (an unknown call here: nothing to take).
    assert eventually(outage.spool.count, lambda n: n == 0) == 0
    assert not list(outage.spool.directory.glob("*.failed"))


# -- text messages ------------------------------------------------------------------------------


def test_messages_while_the_database_is_down_are_answered_in_order_when_it_is_back(
    outage: Outage,
) -> None:
    outage.down()
    first = outage.sms("我要报销药费", "SM-1")
    second = outage.sms("一千二百块", "SM-2")
    status = outage.caller.post(
        PUBLIC_URL + STATUS_PATH,
        {"MessageSid": "SM-out-1", "MessageStatus": "delivered", "To": WANG},
    )
    assert (first.status_code, second.status_code, status.status_code) == (200, 200, 204)
    assert first.text.endswith("<Response/>")
    assert outage.spool.count() == 3

    back = utcnow()
    outage.back()
    # At once, before the replayer's next round: behind the others, so it keeps its place.
    third = outage.sms("上门来取票据", "SM-3")
    assert third.status_code == 200
    ids = eventually(lambda: provider_ids(outage.engine), lambda ids: len(ids) >= 3)
    assert ids == ["SM-1", "SM-2", "SM-3"]
    # Each turn took the time its message came, not the time it was handed back.
    with transaction(outage.engine) as session:
        came = dict(
            session.execute(
                select(Message.provider_id, Message.created_at).where(
                    Message.direction == Direction.INBOUND
                )
            ).all()
        )
    assert came["SM-1"] <= came["SM-2"] < back <= came["SM-3"]
    eventually(outage.spool.count, lambda n: n == 0)
    # Each message was a turn, answered through the outbox; the status found its way too.
    with transaction(outage.engine) as session:
        keys = session.scalars(select(OutboxItem.idempotency_key).order_by(OutboxItem.id)).all()
        delivered = session.scalars(
            select(Message.status).where(Message.provider_id == "SM-out-1")
        ).all()
    replies = [k for k in keys if k.startswith("reply:sms:")]
    assert [k.split(":")[2] for k in replies] == ["SM-1", "SM-2", "SM-3"]
    assert delivered == ["delivered"]
    # Twilio sends SM-2 again now: recognised, nothing twice.
    assert outage.sms("一千二百块", "SM-2").status_code == 200
    assert provider_ids(outage.engine) == ["SM-1", "SM-2", "SM-3"]


def test_a_message_that_fails_when_handed_back_is_set_aside_until_an_operator_retries_it(
    outage: Outage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kept message whose turn fails on replay for another reason than the database (a bug)
    is set aside with what went wrong; /readyz counts it for monitoring; the messages after it
    are not held; once the cause is fixed, handed back, it is answered."""
    outage.down()
    assert outage.sms("我要报销药费", "SM-F1").status_code == 200

    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("a bug in the turn")

    monkeypatch.setattr(twilio_messaging, "_handle", broken)  # a fault put in, not a stand-in
    outage.back()
    [failed] = eventually(outage.spool.failed_items, bool)
    kept = json.loads(failed.read_text(encoding="utf-8"))
    assert kept["form"]["MessageSid"] == "SM-F1"
    assert kept[FAILED_BECAUSE] == "RuntimeError: a bug in the turn"
    assert outage.spool.count() == 0
    ready = outage.caller.client.get(outage.caller.local_url + "/readyz")
    assert ready.json()["spool"] == {"waiting": 0, "failed": 1}

    monkeypatch.undo()  # the cause fixed
    assert outage.sms("一千二百块", "SM-F2").status_code == 200  # not held behind it
    outage.spool.retry(failed)
    ids = eventually(lambda: provider_ids(outage.engine), lambda ids: len(ids) == 2)
    assert sorted(ids) == ["SM-F1", "SM-F2"]
    assert eventually(outage.spool.count, lambda n: n == 0) == 0
    assert outage.spool.failed_items() == []


def test_a_replay_mark_from_outside_neither_jumps_the_queue_nor_backdates_a_message(
    outage: Outage,
) -> None:
    """Only the app's own replays carry its secret: a signed webhook that says it is a replay
    (an old capture sent again with headers added) is queued behind the spool like any other,
    and keeps the time it really came."""
    outage.down()
    assert outage.sms("我要报销药费", "SM-R1").status_code == 200
    params = {
        "AccountSid": "AC" + "0" * 32,
        "MessageSid": "SM-R2",
        "From": WANG,
        "To": OUR_NUMBER,
        "Body": "一千二百块",
    }
    marked = {REPLAY_HEADER: "1", RECEIVED_HEADER: "2020-01-01T00:00:00+00:00"}
    outage.back()
    sent = utcnow()
    answer = outage.caller.post(PUBLIC_URL + INBOUND_PATH, params, headers=marked)
    assert answer.status_code == 200
    ids = eventually(lambda: provider_ids(outage.engine), lambda ids: len(ids) >= 2)
    assert ids == ["SM-R1", "SM-R2"]
    with transaction(outage.engine) as session:
        came = session.scalars(
            select(Message.created_at).where(Message.provider_id == "SM-R2")
        ).one()
    assert came >= sent
