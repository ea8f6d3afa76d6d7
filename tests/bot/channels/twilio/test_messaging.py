"""SMS and WhatsApp through Twilio Messaging: signed webhooks over real HTTP on 127.0.0.1, one
turn per message, replies through the outbox, redeliveries, delivery status callbacks."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, delete, func, select
from sqlalchemy import text as sql
from twilio.request_validator import RequestValidator

from bot.channels.base import split_body, typed_number
from bot.channels.twilio import messaging as twilio_messaging
from bot.channels.twilio.messaging import INBOUND_PATH, MAX_BODY, STATUS_PATH
from bot.channels.twilio.messaging.delivery import record_sent, record_status, status_rank
from bot.runtime.app import create_app
from config.settings import Settings
from storage.db import transaction
from storage.models import (
    Case,
    ConversationState,
    Direction,
    Message,
    OutboxItem,
    OutboxStatus,
)
from storage.outbox import enqueue
from storage.types import utcnow
from tests.bot.channels.serving import free_socket, served, with_trained_model
from tests.factories import make_retiree, make_unit_tree
from tests.fakes.twilio_rest import FakeTwilio

ACCOUNT = "AC" + "1" * 32
TOKEN = "twilio-auth-token-for-tests"
OUR_NUMBER = "+15005550006"
OUR_WHATSAPP = "whatsapp:+14155238886"
PERSON = "+8613800000001"
START = datetime.fromisoformat("2026-11-24T10:00:00+08:00")  # a Tuesday morning


class Clock:
    """The time each message arrives: START, then a minute later for each one."""

    def __init__(self) -> None:
        self.now = START - timedelta(minutes=1)

    def __call__(self) -> datetime:
        self.now += timedelta(minutes=1)
        return self.now


@pytest.fixture(autouse=True)
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fixed = Clock()
    monkeypatch.setattr(twilio_messaging, "utcnow", fixed)
    return fixed


@dataclass
class Hotline:
    """The app, served by uvicorn on 127.0.0.1; Twilio's side of the webhooks."""

    url: str  # where the server listens
    public_url: str  # what Twilio was given (and signs)
    http: httpx.Client
    token: str = TOKEN

    def signature(self, path: str, params: dict[str, str], base: str | None = None) -> str:
        return RequestValidator(self.token).compute_signature(
            (base or self.public_url) + path, params
        )

    def post(
        self,
        path: str,
        params: dict[str, str],
        *,
        signature: str | None = None,
        signed: bool = True,
    ) -> httpx.Response:
        headers = {}
        if signed:
            given = signature if signature is not None else self.signature(path, params)
            headers["X-Twilio-Signature"] = given
        return self.http.post(self.url + path, data=params, headers=headers)

    def message(self, body: str, sid: str, sender: str = PERSON, **extra: str) -> httpx.Response:
        to = OUR_WHATSAPP if sender.startswith("whatsapp:") else OUR_NUMBER
        params = {
            "AccountSid": ACCOUNT,
            "ApiVersion": "2010-04-01",
            "MessageSid": sid,
            "SmsMessageSid": sid,
            "SmsSid": sid,
            "From": sender,
            "To": to,
            "Body": body,
            "NumMedia": "0",
            "NumSegments": "1",
            **extra,
        }
        return self.post(INBOUND_PATH, params)

    def status(self, sid: str, status: str, to: str = PERSON, **extra: str) -> httpx.Response:
        params = {
            "AccountSid": ACCOUNT,
            "ApiVersion": "2010-04-01",
            "MessageSid": sid,
            "SmsSid": sid,
            "MessageStatus": status,
            "SmsStatus": status,
            "From": OUR_WHATSAPP if to.startswith("whatsapp:") else OUR_NUMBER,
            "To": to,
            **extra,
        }
        return self.post(STATUS_PATH, params)


def settings_for(db_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": db_url,
        "data_dir": tmp_path,
        "twilio_account_sid": ACCOUNT,
        "twilio_auth_token": TOKEN,
        "twilio_from_number": OUR_NUMBER,
        "twilio_whatsapp_from": OUR_WHATSAPP,
        "run_worker": False,
    }
    values.update(overrides)
    return Settings(**values, _env_file=None)


@contextmanager
def hotline(
    db_url: str,
    engine: Engine,
    trained_nlu_dir: Path,
    tmp_path: Path,
    *,
    public_url: str | None = None,
    **overrides: Any,
) -> Iterator[Hotline]:
    """The whole app on a real server on 127.0.0.1 (a free port); ``public_url`` is what Twilio
    signs against (default: the server's own URL, as without a proxy)."""
    with_trained_model(trained_nlu_dir, tmp_path)
    sock, url = free_socket()
    settings = settings_for(db_url, tmp_path, public_url=public_url or url, **overrides)
    with served(create_app(settings, engine), sock), httpx.Client(timeout=60) as http:
        yield Hotline(url=url, public_url=public_url or url, http=http)


@pytest.fixture
def app_of(db_url: str, engine: Engine, trained_nlu_dir: Path, tmp_path: Path) -> Any:
    def start(**kwargs: Any) -> Any:
        return hotline(db_url, engine, trained_nlu_dir, tmp_path, **kwargs)

    return start


def registered_person(engine: Engine, phone: str = PERSON, **kw: Any) -> None:
    with transaction(engine) as session:
        tree = make_unit_tree(session)
        make_retiree(session, tree.community_a1, name="王秀英", age=75, phone=phone, **kw)


def outbox(engine: Engine) -> list[OutboxItem]:
    with transaction(engine) as session:
        return list(session.scalars(select(OutboxItem).order_by(OutboxItem.id)))


def messages(engine: Engine) -> list[Message]:
    with transaction(engine) as session:
        return list(session.scalars(select(Message).order_by(Message.id)))


def count(engine: Engine, model: type) -> int:
    with transaction(engine) as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def is_empty_twiml(response: httpx.Response) -> bool:
    return (
        response.status_code == 200
        and response.headers["content-type"].startswith("text/xml")
        and response.text == '<?xml version="1.0" encoding="UTF-8"?><Response/>'
    )


ASK_RECEIPTS = (
    "票据是请工作人员上门来取，还是您自己送过去？\n1. 上门来取\n2. 自己送去\n请回复数字选择。"
)
READ_BACK = (
    "我核对一下：报销药费，上个月住院的，金额300元，票据上门来取。对吗？\n"
    "1. 对\n2. 不对\n请回复数字选择。"
)
FILED = (
    "已经为您登记了药费报销，编号是2026-000001。\n"
    "和平社区的工作人员会在明天上午11点前联系您。\n"
    "争取在12月1日星期二上午10点半前办好。\n"
    "请问还有别的事吗？"
)


# -- a conversation ------------------------------------------------------------------------------


@pytest.mark.parametrize("sender", [PERSON, f"whatsapp:{PERSON}"], ids=["sms", "whatsapp"])
def test_a_registered_person_files_a_request_over_several_messages(
    app_of: Any, engine: Engine, sender: str
) -> None:
    channel = "whatsapp" if sender.startswith("whatsapp:") else "sms"
    registered_person(engine)
    with app_of() as twilio:
        first = twilio.message("我想报销药费，大概三百块，是上个月住院的", "SM0001", sender)
        assert is_empty_twiml(first), first.text
        assert twilio.message("1", "SM0002", sender).status_code == 200
        assert twilio.message("1", "SM0003", sender).status_code == 200

    items = outbox(engine)
    replies = [i for i in items if i.payload.get("kind") == "reply"]
    assert [(i.channel, i.address, i.priority) for i in replies] == [(channel, sender, 2)] * 3
    assert [i.payload for i in replies] == [
        {"kind": "reply", "text": ASK_RECEIPTS, "language": "zh"},
        {"kind": "reply", "text": READ_BACK, "language": "zh"},
        {"kind": "reply", "text": FILED, "language": "zh"},
    ]
    assert [i.idempotency_key for i in replies] == [
        f"reply:{channel}:SM0001:0",
        f"reply:{channel}:SM0002:0",
        f"reply:{channel}:SM0003:0",
    ]
    with transaction(engine) as session:
        case = session.scalars(select(Case)).one()
        assert (case.number, case.category, case.channel) == (
            "2026-000001",
            "medication_reimbursement",
            channel,
        )
        assert case.retiree.name == "王秀英"
        assert case.details["slots"]["receipts"] == "collect"
        inbound = session.scalars(
            select(Message).where(Message.direction == Direction.INBOUND).order_by(Message.id)
        ).all()
        assert [(m.channel, m.address, m.provider_id, m.text) for m in inbound] == [
            (channel, sender, "SM0001", "我想报销药费，大概三百块，是上个月住院的"),
            (channel, sender, "SM0002", "1"),
            (channel, sender, "SM0003", "1"),
        ]
        assert inbound[0].created_at == START


def test_choices_typed_the_way_phones_type_them(app_of: Any, engine: Engine) -> None:
    registered_person(engine)
    with app_of() as twilio:
        twilio.message("我想报销药费，大概三百块，是上个月住院的", "SM0011")
        twilio.message("①", "SM0012")  # a circled digit from a Chinese keyboard
        twilio.message("１", "SM0013")  # a full-width digit
    assert [i.payload["text"] for i in outbox(engine)] == [ASK_RECEIPTS, READ_BACK, FILED]
    assert [m.text for m in messages(engine) if m.direction == Direction.INBOUND][1:] == ["1", "1"]


def test_typed_number() -> None:
    for typed in ("1", "１", "①", "1️⃣", "⑴", "（1）", " 1. ", "1、"):
        assert typed_number(typed) == "1", typed
    assert typed_number("３００") == "300"
    for text in ("1.5", "1 2", "一", "1 上门来取", "我摔倒了", "", "  "):
        assert typed_number(text) == text


def test_a_redelivered_message_is_answered_once(app_of: Any, engine: Engine) -> None:
    registered_person(engine)
    with app_of() as twilio:
        twilio.message("我想报销药费，大概三百块，是上个月住院的", "SM0001")
        stored = (count(engine, Message), count(engine, OutboxItem))
        again = twilio.message("我想报销药费，大概三百块，是上个月住院的", "SM0001")
        assert is_empty_twiml(again)
        assert (count(engine, Message), count(engine, OutboxItem)) == stored

        # The reply's outbox item went missing after the turn (say, deleted by hand): a
        # redelivery of the same MessageSid queues it again, once.
        with transaction(engine) as session:
            session.execute(delete(OutboxItem))
        assert (
            twilio.message("我想报销药费，大概三百块，是上个月住院的", "SM0001").status_code == 200
        )
        assert (
            twilio.message("我想报销药费，大概三百块，是上个月住院的", "SM0001").status_code == 200
        )
    assert [i.payload["text"] for i in outbox(engine)] == [ASK_RECEIPTS]
    assert count(engine, Message) == stored[0]
    with transaction(engine) as session:
        state = session.scalars(select(ConversationState)).one()
        assert state.state["turns"] == 1  # the redeliveries ran no turn


@contextmanager
def outbox_refused(engine: Engine) -> Iterator[None]:
    """Every insert into the outbox fails in the database (a trigger), until the block ends."""
    if engine.dialect.name == "postgresql":
        create = [
            "CREATE FUNCTION refuse_outbox() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'outbox refused'; END $$",
            "CREATE TRIGGER refuse_outbox BEFORE INSERT ON outbox "
            "FOR EACH ROW EXECUTE FUNCTION refuse_outbox()",
        ]
        drop = ["DROP TRIGGER refuse_outbox ON outbox", "DROP FUNCTION refuse_outbox()"]
    else:
        create = [
            "CREATE TRIGGER refuse_outbox BEFORE INSERT ON outbox "
            "BEGIN SELECT RAISE(ABORT, 'outbox refused'); END"
        ]
        drop = ["DROP TRIGGER refuse_outbox"]
    with engine.begin() as conn:
        for statement in create:
            conn.execute(sql(statement))
    try:
        yield
    finally:
        with engine.begin() as conn:
            for statement in drop:
                conn.execute(sql(statement))


def test_the_reply_commits_with_its_turn_or_neither_does(app_of: Any, engine: Engine) -> None:
    registered_person(engine)
    said = "我想报销药费，大概三百块，是上个月住院的"
    with app_of() as twilio, outbox_refused(engine):
        assert twilio.message(said, "SM0001").status_code == 500
    # The reply could not be queued, so the turn is not recorded either: Twilio's redelivery
    # will run it afresh (no turn answered into the void).
    assert count(engine, Message) == 0
    assert count(engine, ConversationState) == 0
    with app_of() as twilio:
        assert is_empty_twiml(twilio.message(said, "SM0001"))  # Twilio delivers it again
    assert [i.payload["text"] for i in outbox(engine)] == [ASK_RECEIPTS]
    with transaction(engine) as session:
        assert session.scalars(select(ConversationState)).one().state["turns"] == 1
        inbound = session.scalars(select(Message).where(Message.direction == "inbound")).all()
        assert [m.provider_id for m in inbound] == ["SM0001"]


def test_an_emergency_reply_goes_first(app_of: Any, engine: Engine) -> None:
    registered_person(engine)
    with app_of() as twilio:
        twilio.message("我摔倒了，起不来", "SM0100")
    reply = [i for i in outbox(engine) if i.payload.get("kind") == "reply"]
    assert len(reply) == 1 and reply[0].priority == 1
    assert reply[0].payload["text"] == (
        "我们已经通知值班人员，马上联系您。\n如有危险，请立即拨打120。\n"
        "请告诉我，您现在在哪里，发生了什么事？"
    )


def test_an_english_speaker_reads_english(app_of: Any, engine: Engine) -> None:
    registered_person(engine, preferred_language="en")
    with app_of() as twilio:
        twilio.message("I want to claim back my medicine costs from the pharmacy", "SM0200")
    (item,) = outbox(engine)
    assert item.payload == {
        "kind": "reply",
        "text": "Roughly how much is it? It is fine if you do not know.",
        "language": "en",
    }


# -- what the bot cannot read ----------------------------------------------------------------


def test_a_picture_without_text_is_recorded_and_answered_without_a_turn(
    app_of: Any, engine: Engine
) -> None:
    registered_person(engine)
    media = {
        "NumMedia": "1",
        "MediaUrl0": f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT}/Messages/MM1/Media/ME1",
        "MediaContentType0": "image/jpeg",
    }
    with app_of() as twilio:
        assert is_empty_twiml(twilio.message("", "MM0001", **media))
        assert is_empty_twiml(twilio.message("", "MM0001", **media))  # redelivered
        twilio.message("这是我的发票，我要报销药费", "MM0002", **media)
    items = outbox(engine)
    assert [i.payload["text"] for i in items] == [
        "对不起，我只能看文字，看不到图片，也听不了语音。请您打字告诉我，或者打电话给我们。",
        "好的，帮您办药费报销。请问是哪方面的药费？比如住院、门诊，还是药店买的药？\n"
        "（您发的图片或语音我看不到，只看了文字。）",
    ]
    assert items[0].idempotency_key == "reply:sms:MM0001:0"
    with transaction(engine) as session:
        picture = session.scalars(select(Message).where(Message.provider_id == "MM0001")).one()
        assert picture.direction == Direction.INBOUND and picture.status == "unreadable"
        assert picture.payload["metadata"] == {
            "media": [{"url": media["MediaUrl0"], "type": "image/jpeg"}]
        }
        state = session.scalars(select(ConversationState)).one()
        assert state.state["turns"] == 1  # only the message with text was a turn
        with_text = session.scalars(select(Message).where(Message.provider_id == "MM0002")).one()
        assert with_text.payload["metadata"]["media"][0]["type"] == "image/jpeg"


def test_an_opt_out_is_recorded_and_not_answered(app_of: Any, engine: Engine) -> None:
    registered_person(engine)
    with app_of() as twilio:
        assert is_empty_twiml(twilio.message("STOP", "SM0300", OptOutType="STOP"))
    assert outbox(engine) == []
    (row,) = messages(engine)
    assert (row.text, row.status, row.direction) == ("STOP", "opted_out", Direction.INBOUND)


# -- signatures ----------------------------------------------------------------------------------


def test_a_bad_or_missing_signature_is_refused_and_nothing_stored(
    app_of: Any, engine: Engine
) -> None:
    registered_person(engine)
    params = {"MessageSid": "SM0400", "From": PERSON, "To": OUR_NUMBER, "Body": "我摔倒了"}
    with app_of() as twilio:
        other_token = RequestValidator("another-token").compute_signature(
            twilio.public_url + INBOUND_PATH, params
        )
        tampered = twilio.signature(INBOUND_PATH, {**params, "Body": "你好"})
        wrong_path = twilio.signature(STATUS_PATH, params)
        for response in (
            twilio.post(INBOUND_PATH, params, signed=False),
            twilio.post(INBOUND_PATH, params, signature=""),
            twilio.post(INBOUND_PATH, params, signature="bm90IGEgc2lnbmF0dXJl"),
            twilio.post(INBOUND_PATH, params, signature=other_token),
            twilio.post(INBOUND_PATH, params, signature=tampered),
            twilio.post(INBOUND_PATH, params, signature=wrong_path),
        ):
            assert response.status_code == 403
        status = {"MessageSid": "SM0401", "MessageStatus": "delivered", "To": PERSON}
        assert twilio.post(STATUS_PATH, status, signed=False).status_code == 403
        assert twilio.post(STATUS_PATH, status, signature=other_token).status_code == 403
    assert count(engine, Message) == 0
    assert count(engine, OutboxItem) == 0
    assert count(engine, ConversationState) == 0
    assert count(engine, Case) == 0


def test_a_body_twilio_never_sends_is_refused_before_anything_is_read(
    app_of: Any, engine: Engine
) -> None:
    """A multipart form with a file part (or JSON) on any Twilio route: 415, not a 500 from
    reading a file as a field; nothing stored."""
    registered_person(engine)
    params = {"MessageSid": "SM0450", "From": PERSON, "To": OUR_NUMBER, "Body": "你好"}
    with app_of() as twilio:
        for path in (INBOUND_PATH, STATUS_PATH, "/twilio/voice", "/twilio/voice/turn"):
            upload = twilio.http.post(
                twilio.url + path,
                data=params,
                files={"MediaUrl0": ("x.bin", b"\x00\x01", "application/octet-stream")},
                headers={"X-Twilio-Signature": twilio.signature(path, params)},
            )
            assert upload.status_code == 415, (path, upload.text)
            as_json = twilio.http.post(twilio.url + path, json=params)
            assert as_json.status_code == 415
    assert count(engine, Message) == 0


def test_a_nul_in_a_signed_message_is_taken_out_and_the_message_answered(
    app_of: Any, engine: Engine
) -> None:
    """PostgreSQL cannot store a NUL: the signature is checked on the form as Twilio sent it,
    then the text goes on without the NUL (a 500 would only be retried)."""
    registered_person(engine)
    with app_of() as twilio:
        assert is_empty_twiml(twilio.message("你\x00好", "SM0460"))
    [inbound] = [m for m in messages(engine) if m.direction == "inbound"]
    assert inbound.text == "你好"
    assert [i.payload["kind"] for i in outbox(engine)] == ["reply"]


def test_behind_a_proxy_the_public_url_is_what_is_signed(app_of: Any, engine: Engine) -> None:
    registered_person(engine)
    with app_of(public_url="https://hotline.example.org") as twilio:
        assert twilio.url.startswith("http://127.0.0.1:")
        params = {"MessageSid": "SM0500", "From": PERSON, "To": OUR_NUMBER, "Body": "你好"}
        # signed against the URL the app itself sees: not what Twilio called
        local = twilio.signature(INBOUND_PATH, params, base=twilio.url)
        assert twilio.post(INBOUND_PATH, params, signature=local).status_code == 403
        assert count(engine, Message) == 0
        assert is_empty_twiml(twilio.post(INBOUND_PATH, params))
        # a query string is part of what Twilio signs
        query = f"{INBOUND_PATH}?source=sms"
        params = {**params, "MessageSid": "SM0501"}
        assert twilio.post(query, params).status_code == 200
        unsigned_query = twilio.signature(INBOUND_PATH, params)
        assert twilio.post(query, params, signature=unsigned_query).status_code == 403
    assert [m.provider_id for m in messages(engine) if m.direction == Direction.INBOUND] == [
        "SM0500",
        "SM0501",
    ]


# -- switched off ----------------------------------------------------------------------------------


def test_without_a_whatsapp_sender_whatsapp_messages_are_ignored(
    app_of: Any, engine: Engine
) -> None:
    registered_person(engine)
    with app_of(twilio_whatsapp_from="") as twilio:
        assert is_empty_twiml(twilio.message("我摔倒了", "SM0600", f"whatsapp:{PERSON}"))
        assert is_empty_twiml(twilio.message("你好", "SM0601"))  # SMS still works
    assert {(m.channel, m.address) for m in messages(engine)} == {("sms", PERSON)}
    assert [i.channel for i in outbox(engine)] == ["sms"]
    assert count(engine, Case) == 0


@pytest.mark.parametrize(
    ("overrides", "why"),
    [
        ({"twilio_auth_token": ""}, "HOTLINE_TWILIO_AUTH_TOKEN"),
        ({"twilio_from_number": ""}, "HOTLINE_TWILIO_FROM_NUMBER"),
        ({"public_url": ""}, "HOTLINE_PUBLIC_URL"),
    ],
)
def test_off_without_its_settings(
    db_url: str, tmp_path: Path, overrides: dict[str, str], why: str
) -> None:
    values = {"public_url": "https://hotline.example.org", **overrides}
    settings = settings_for(db_url, tmp_path, **values)
    app = create_app(settings)
    status = {c.name: c for c in app.state.channels}["twilio_messaging"]
    assert not status.enabled and why in status.why
    with TestClient(app) as client:
        assert client.post(INBOUND_PATH, data={"From": PERSON}).status_code == 404


# -- delivery status -------------------------------------------------------------------------------


def sent_reply(engine: Engine, sid: str, address: str = PERSON, channel: str = "sms") -> int:
    """An outbox reply the worker has sent as Twilio message ``sid`` (what it records)."""
    with transaction(engine) as session:
        item_id = enqueue(
            session,
            channel=channel,
            address=address,
            payload={"kind": "reply", "text": "再见", "language": "zh"},
            idempotency_key=f"reply:{channel}:{sid}-in:0",
        )
        return record_sent(session, session.get_one(OutboxItem, item_id), sid).id


def test_status_callbacks_move_the_outbound_message_forward_only(
    app_of: Any, engine: Engine
) -> None:
    first = sent_reply(engine, "SM1001")
    second = sent_reply(engine, "SM1002", f"whatsapp:{PERSON}", "whatsapp")
    with app_of() as twilio:
        for status in ("sent", "delivered", "sent", "delivered", "queued"):  # late and repeated
            response = twilio.status("SM1001", status)
            assert response.status_code == 204 and response.content == b""
        for status in ("sent", "delivered", "read", "delivered"):
            twilio.status("SM1002", status, to=f"whatsapp:{PERSON}")
        twilio.status("SM1003", "sent")  # not ours yet (see below); does not fail
    with transaction(engine) as session:
        one, two = session.get(Message, first), session.get(Message, second)
        assert one is not None and two is not None
        assert (one.status, one.direction, one.text) == ("delivered", Direction.OUTBOUND, "再见")
        assert (two.status, two.channel) == ("read", "whatsapp")
        assert one.payload["kind"] == "reply" and "outbox_id" in one.payload


def test_a_failed_message_keeps_its_error_code(app_of: Any, engine: Engine) -> None:
    sid = sent_reply(engine, "SM1101")
    with app_of() as twilio:
        twilio.status("SM1101", "sent")
        twilio.status("SM1101", "undelivered", ErrorCode="30003")
        twilio.status("SM1101", "sent")
    with transaction(engine) as session:
        row = session.get(Message, sid)
        assert row is not None
        assert (row.status, row.payload["error_code"]) == ("undelivered", "30003")


def test_a_callback_before_the_worker_records_the_message(app_of: Any, engine: Engine) -> None:
    with app_of() as twilio:
        twilio.status("SM1201", "delivered", ErrorCode="")
    (early,) = messages(engine)
    assert (early.provider_id, early.status, early.address, early.text) == (
        "SM1201",
        "delivered",
        PERSON,
        "",
    )
    row_id = sent_reply(engine, "SM1201")  # the worker's record comes after
    assert row_id == early.id
    (row,) = messages(engine)
    assert (row.status, row.text, row.direction) == ("delivered", "再见", Direction.OUTBOUND)


def test_status_rank() -> None:
    order = ["accepted", "queued", "sending", "sent", "undelivered", "delivered", "read"]
    assert [status_rank(s) for s in order] == sorted(status_rank(s) for s in order)
    assert status_rank("replied") == status_rank("something new") == 0
    assert status_rank("failed") == status_rank("undelivered") < status_rank("delivered")


def test_record_status_is_idempotent(engine: Engine) -> None:
    row_id = sent_reply(engine, "SM1301")
    with transaction(engine) as session:
        assert record_status(session, provider_id="SM1301", status="sent")
        assert not record_status(session, provider_id="SM1301", status="sent")
        assert record_status(session, provider_id="SM1301", status="delivered")
        assert not record_status(session, provider_id="SM1301", status="failed")
    with transaction(engine) as session:
        row = session.get(Message, row_id)
        assert row is not None and row.status == "delivered"


def test_a_late_status_waits_for_a_concurrent_one_and_does_not_undo_it(engine: Engine) -> None:
    """Twilio may post "sent" and "delivered" at the same moment, to two servers: the later
    status, committed first, stays; the earlier one, held back by its lock, changes nothing."""
    row_id = sent_reply(engine, "SM1401")
    outcome: list[bool] = []
    with transaction(engine) as session:
        assert record_status(session, provider_id="SM1401", status="delivered")

        def late() -> None:
            with transaction(engine) as other:
                outcome.append(record_status(other, provider_id="SM1401", status="sent"))

        thread = threading.Thread(target=late)
        thread.start()
        thread.join(0.5)
        assert thread.is_alive(), "the late status did not wait for the row"
    thread.join(30)
    assert outcome == [False]
    with transaction(engine) as session:
        assert session.get_one(Message, row_id).status == "delivered"


def test_a_failure_status_keeps_its_error_code(engine: Engine) -> None:
    row_id = sent_reply(engine, "SM1402")
    with transaction(engine) as session:
        assert record_status(session, provider_id="SM1402", status="sent")
        assert record_status(
            session, provider_id="SM1402", status="undelivered", error_code="30003"
        )
    with transaction(engine) as session:
        row = session.get_one(Message, row_id)
        assert (row.status, row.payload["error_code"]) == ("undelivered", "30003")


# -- end to end: the worker sends the replies to a fake Twilio REST API ---------------------------


def wait_for(condition: Any, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def outbound_sent_as(engine: Engine, sid: str) -> Message | None:
    with transaction(engine) as session:
        return session.scalars(select(Message).where(Message.provider_id == sid)).first()


def test_the_worker_sends_the_replies_and_their_delivery_comes_back(
    app_of: Any, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The in-process worker also sweeps idle conversations by the real clock: messages dated
    # START would be days idle to it, and their conversation closed between two turns.
    monkeypatch.setattr(twilio_messaging, "utcnow", utcnow)
    registered_person(engine)
    with FakeTwilio() as fake, app_of(run_worker=True, twilio_api_url=fake.url) as twilio:
        twilio.message("我想报销药费，大概三百块，是上个月住院的", "SM2001")
        twilio.message("我想报销药费", "SM2002", f"whatsapp:{PERSON}")
        wait_for(lambda: len(fake.messages) == 2)
        by_channel = {m["from"]: m for m in fake.messages}
        sms, whatsapp = by_channel[OUR_NUMBER], by_channel[OUR_WHATSAPP]
        assert (sms["to"], sms["body"]) == (PERSON, ASK_RECEIPTS)
        assert (whatsapp["to"], whatsapp["body"]) == (
            f"whatsapp:{PERSON}",
            "好的，帮您办药费报销。请问是哪方面的药费？比如住院、门诊，还是药店买的药？",
        )
        assert {r.form["StatusCallback"] for r in fake.creates("Messages")} == {
            twilio.public_url + STATUS_PATH
        }
        # the worker records each message when Twilio accepts it; Twilio then reports on it
        wait_for(lambda: outbound_sent_as(engine, sms["sid"]) is not None)
        wait_for(lambda: outbound_sent_as(engine, whatsapp["sid"]) is not None)
        for status in ("sent", "delivered", "sent"):
            assert twilio.status(sms["sid"], status).status_code == 204
        twilio.status(whatsapp["sid"], "read", to=f"whatsapp:{PERSON}")
        twilio.message("1", "SM2003")
        wait_for(lambda: len(fake.messages) == 3)
        assert fake.messages[2]["body"] == READ_BACK
    recorded = outbound_sent_as(engine, sms["sid"])
    assert recorded is not None
    assert (recorded.channel, recorded.address, recorded.status, recorded.text) == (
        "sms",
        PERSON,
        "delivered",
        ASK_RECEIPTS,
    )
    assert recorded.retiree_id is not None and recorded.payload["kind"] == "reply"
    read = outbound_sent_as(engine, whatsapp["sid"])
    assert read is not None and (read.channel, read.status) == ("whatsapp", "read")
    assert {i.status for i in outbox(engine)} == {OutboxStatus.SENT}


# -- long replies ----------------------------------------------------------------------------------


def test_a_long_reply_is_cut_at_line_ends() -> None:
    assert split_body("short", MAX_BODY) == ["short"]
    assert split_body("", MAX_BODY) == [""]
    lines = ["甲" * 900, "乙" * 900, "丙" * 10]
    assert split_body("\n".join(lines), MAX_BODY) == [lines[0], f"{lines[1]}\n{lines[2]}"]
    assert split_body("x" * 3500, MAX_BODY) == ["x" * 1600, "x" * 1600, "x" * 300]
    assert all(len(part) <= 1600 for part in split_body("\n".join(["y" * 1599] * 5), MAX_BODY))
