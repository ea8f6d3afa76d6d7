"""The WeCom app for staff over real HTTP: cards of new cases sent through a worker round to a
fake WeCom API, a tap claims (first tap wins, scope and volunteer rules), every copy is updated,
cases taken elsewhere are caught up with, staff list and close by text, and forged, replayed or
broken callbacks are refused."""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, select
from wechatpy.enterprise.crypto import PrpCrypto, WeChatCrypto
from wechatpy.utils import WeChatSigner

from bot.channels import senders_for
from bot.channels.wecom import cards
from bot.runtime.app import create_app
from bot.runtime.configure import load_deployment
from bot.runtime.worker import OutboxWorker
from config.settings import Settings
from storage import actions
from storage.alert_chain import message_channel
from storage.db import transaction
from storage.models import (
    AuditEntry,
    Case,
    CaseStatus,
    Message,
    MessageStatus,
    Role,
    Staff,
    Unit,
)
from storage.permissions import Actor
from tests.bot.channels.serving import free_socket, served, with_trained_model
from tests.factories import make_retiree, make_staff, make_unit_tree
from tests.fakes.wecom_api import FakeWeComApi

CORP, SECRET, AGENT = "ww0123456789abcdef", "wecom-app-secret", 1000002
TOKEN, AES_KEY = "wecom-callback-token", "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopq"
STAFF_A, VOLUNTEER_A1, VOLUNTEER_B1 = "ZhangSan", "WangFang", "LiuQiang"
_ids = itertools.count(90000)


@dataclass
class World:
    case: str  # a help request of community A1, posted
    complaint: str  # staff only
    staff_id: int
    volunteer_id: int


def world(engine: Engine) -> World:
    with transaction(engine) as session:
        units = make_unit_tree(session)
        staff = make_staff(
            session, Role.STAFF, [units.station_a], name="张社工", wecom_user_id=STAFF_A
        )
        volunteer = make_staff(
            session, Role.VOLUNTEER, [units.community_a1], name="王芳", wecom_user_id=VOLUNTEER_A1
        )
        make_staff(
            session, Role.VOLUNTEER, [units.community_b1], name="刘强", wecom_user_id=VOLUNTEER_B1
        )
        retiree = make_retiree(
            session, units.community_a1, name="王秀英", phone="+8613800000001", address="和平路8号"
        )
        filed = [
            actions.file_case(
                session,
                category=category,
                channel="phone",
                actor=Actor.system("retiree"),
                retiree=retiree,
                summary=summary,
            )
            for category, summary in (("help_request", "帮忙买菜"), ("complaint", "楼道灯坏了"))
        ]
        return World(filed[0].number, filed[1].number, staff.id, volunteer.id)


@dataclass
class WeComSide:
    url: str
    http: httpx.Client
    crypto: WeChatCrypto

    def post(
        self, xml: str, *, timestamp: str | None = None, forged: bool = False
    ) -> httpx.Response:
        timestamp = timestamp or str(int(time.time()))
        nonce = f"n{next(_ids)}"
        sealed = self.crypto.encrypt_message(xml, nonce, timestamp)
        encrypted = re.search(r"<Encrypt><!\[CDATA\[(.*?)\]\]></Encrypt>", sealed)
        signed = re.search(r"<MsgSignature><!\[CDATA\[(.*?)\]\]></MsgSignature>", sealed)
        assert encrypted and signed
        body = f"<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><Encrypt><![CDATA[{encrypted.group(1)}]]></Encrypt><AgentID><![CDATA[{AGENT}]]></AgentID></xml>"
        signature = "0" * 40 if forged else signed.group(1)
        query = {"msg_signature": signature, "timestamp": timestamp, "nonce": nonce}
        return self.http.post(f"{self.url}/wecom", params=query, content=body.encode())

    def tap(self, user: str, number: str, task: str, code: str) -> httpx.Response:
        return self.post(
            f"<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><FromUserName><![CDATA[{user}]]></FromUserName>"
            f"<CreateTime>{int(time.time()) + next(_ids)}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
            f"<Event><![CDATA[template_card_event]]></Event><EventKey><![CDATA[claim:{number}]]></EventKey>"
            f"<TaskId><![CDATA[{task}]]></TaskId><CardType><![CDATA[button_interaction]]></CardType>"
            f"<ResponseCode><![CDATA[{code}]]></ResponseCode><AgentID>{AGENT}</AgentID></xml>"
        )

    def say(self, user: str, text: str, msg_id: int | None = None) -> httpx.Response:
        return self.post(
            f"<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><FromUserName><![CDATA[{user}]]></FromUserName>"
            f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
            f"<Content><![CDATA[{text}]]></Content><MsgId>{msg_id or next(_ids)}</MsgId>"
            f"<AgentID>{AGENT}</AgentID></xml>"
        )


def settings_for(db_url: str, data_dir: Path, api: str) -> Settings:
    return Settings(
        database_url=db_url,
        data_dir=data_dir,
        wecom_corp_id=CORP,
        wecom_agent_id=AGENT,
        wecom_secret=SECRET,
        wecom_token=TOKEN,
        wecom_aes_key=AES_KEY,
        wecom_api_url=api,
        run_worker=False,
        _env_file=None,
    )


@pytest.fixture
def fake() -> Iterator[FakeWeComApi]:
    with FakeWeComApi(CORP, SECRET, AGENT, {STAFF_A, VOLUNTEER_A1, VOLUNTEER_B1}) as api:
        yield api


@contextmanager
def wecom_app(
    db_url: str, engine: Engine, trained_nlu_dir: Path, data_dir: Path, api: str
) -> Iterator[WeComSide]:
    with_trained_model(trained_nlu_dir, data_dir)
    sock, url = free_socket()
    settings = settings_for(db_url, data_dir, api)
    with served(create_app(settings, engine), sock), httpx.Client(timeout=60) as http:
        yield WeComSide(url, http, WeChatCrypto(TOKEN, AES_KEY, CORP))


@pytest.fixture
def side(
    db_url: str, engine: Engine, trained_nlu_dir: Path, tmp_path: Path, fake: FakeWeComApi
) -> Iterator[WeComSide]:
    with wecom_app(db_url, engine, trained_nlu_dir, tmp_path, fake.url) as running:
        yield running


def worker_round(engine: Engine, db_url: str, tmp_path: Path, fake: FakeWeComApi) -> None:
    """One outbox round and one upkeep with the real WeCom sender."""
    senders = senders_for(settings_for(db_url, tmp_path, fake.url))

    async def run() -> None:
        worker = OutboxWorker(engine, senders)
        await worker.run_once()
        await worker.keep_up()
        await worker.run_once()
        for sender in senders.values():
            await sender.aclose()

    asyncio.run(run())


def post(engine: Engine, db_url: str, tmp_path: Path, *numbers: str) -> int:
    """The engine's hook for new cases (cards.announcer), as the app mounts it."""
    deployment = load_deployment(settings_for(db_url, tmp_path, "http://unused/"))
    announce = cards.announcer(deployment)
    with transaction(engine) as session:
        found = session.scalars(select(Case).where(Case.number.in_(numbers))).all()
        return int(announce(session, found))


def texts_to(fake: FakeWeComApi, user: str) -> list[str]:
    return [
        m["text"]["content"] for m in fake.sent if m["msgtype"] == "text" and m["touser"] == user
    ]


def test_a_new_case_is_a_card_to_those_who_may_take_it_and_the_first_tap_claims(
    side: WeComSide, engine: Engine, db_url: str, tmp_path: Path, fake: FakeWeComApi
) -> None:
    w = world(engine)
    assert post(engine, db_url, tmp_path, w.case, w.complaint) == 3  # people: 2 + 1
    worker_round(engine, db_url, tmp_path, fake)
    cards_sent = [m for m in fake.sent if m["msgtype"] == "template_card"]
    to = {m["template_card"]["task_id"]: set(m["touser"].split("|")) for m in cards_sent}
    assert to == {
        f"{w.case}-1": {STAFF_A, VOLUNTEER_A1},  # not the volunteer of another community
        f"{w.complaint}-1": {STAFF_A},  # complaints are staff-only
    }
    help_card = next(m for m in cards_sent if m["template_card"]["task_id"] == f"{w.case}-1")
    assert help_card["template_card"]["button_list"] == [
        {"text": "我来处理", "style": 1, "key": f"claim:{w.case}"}
    ]
    assert help_card["template_card"]["sub_title_text"] == "帮忙买菜"

    assert side.tap(VOLUNTEER_A1, w.case, f"{w.case}-1", fake.response_code_for_tap()).text == ""
    late = side.tap(STAFF_A, w.case, f"{w.case}-1", fake.response_code_for_tap())
    assert late.status_code == 200
    worker_round(engine, db_url, tmp_path, fake)
    with transaction(engine) as session:
        case = session.scalars(select(Case).where(Case.number == w.case)).one()
        assert (case.status, case.assignee_id) == (CaseStatus.CLAIMED, w.volunteer_id)
        viewed = session.scalars(select(AuditEntry).where(AuditEntry.actor_id == w.volunteer_id))
        assert [e.detail.get("via") for e in viewed] == ["wecom"]  # the contact details, audited
    [update] = fake.updates  # every copy of the card, once
    assert update["userids"] == [STAFF_A, VOLUNTEER_A1]
    assert update["button"] == {"replace_name": "王芳已认领"}
    [details] = texts_to(fake, VOLUNTEER_A1)
    assert details.startswith(f"✅ 您已认领案件{w.case}。")
    assert "王秀英｜+8613800000001" in details and "和平路8号" in details
    assert texts_to(fake, STAFF_A) == [f"案件{w.case}已由王芳认领。"]


def test_a_case_taken_in_the_console_updates_its_card(
    side: WeComSide, engine: Engine, db_url: str, tmp_path: Path, fake: FakeWeComApi
) -> None:
    w = world(engine)
    post(engine, db_url, tmp_path, w.case)
    worker_round(engine, db_url, tmp_path, fake)
    with transaction(engine) as session:
        case = session.scalars(select(Case).where(Case.number == w.case)).one()
        staff = session.get_one(Staff, w.staff_id)
        actions.claim(session, case, Actor.person(staff))
    worker_round(engine, db_url, tmp_path, fake)
    [update] = fake.updates
    assert update["button"] == {"replace_name": "张社工已认领"}
    with transaction(engine) as session:
        [card] = session.scalars(select(Message).where(Message.provider_id.like("card:%")))
        assert card.status == MessageStatus.TAKEN
    # A tap on the stale card now claims nothing and says who has it.
    side.tap(VOLUNTEER_A1, w.case, f"{w.case}-1", fake.response_code_for_tap())
    worker_round(engine, db_url, tmp_path, fake)
    assert texts_to(fake, VOLUNTEER_A1) == [f"案件{w.case}已由张社工认领。"]


def test_a_case_moved_to_another_units_queue_updates_its_old_card(
    side: WeComSide, engine: Engine, db_url: str, tmp_path: Path, fake: FakeWeComApi
) -> None:
    """The old card says where the case went (its people get cards of their own from the
    transfer's announcer); a tap on the old card then claims nothing."""
    w = world(engine)
    post(engine, db_url, tmp_path, w.case)
    worker_round(engine, db_url, tmp_path, fake)
    with transaction(engine) as session:
        case = session.scalars(select(Case).where(Case.number == w.case)).one()
        staff = session.get_one(Staff, w.staff_id)
        xingfu = session.scalars(select(Unit).where(Unit.code == "A2")).one()
        actions.transfer(session, case, Actor.person(staff), reason="住在幸福社区", to_unit=xingfu)
    worker_round(engine, db_url, tmp_path, fake)
    [update] = fake.updates
    assert update["userids"] == [STAFF_A, VOLUNTEER_A1]
    assert update["button"] == {"replace_name": "已转到幸福社区"}
    with transaction(engine) as session:
        [card] = session.scalars(select(Message).where(Message.provider_id.like("card:%")))
        assert card.status == MessageStatus.SETTLED
        assert session.scalars(select(Case).where(Case.number == w.case)).one().status == (
            CaseStatus.OPEN
        )
    worker_round(engine, db_url, tmp_path, fake)
    assert len(fake.updates) == 1  # updated once


def test_a_volunteer_cannot_claim_outside_their_community(
    side: WeComSide, engine: Engine, db_url: str, tmp_path: Path, fake: FakeWeComApi
) -> None:
    w = world(engine)
    side.tap(VOLUNTEER_B1, w.case, f"{w.case}-1", "")
    side.tap("Stranger", w.case, f"{w.case}-1", "")
    worker_round(engine, db_url, tmp_path, fake)
    assert texts_to(fake, VOLUNTEER_B1) == [f"案件{w.case}不在您负责的范围内，不能认领。"]
    assert texts_to(fake, "Stranger") == ["这个功能只给工作人员和志愿者使用。"]
    with transaction(engine) as session:
        assert (
            session.scalars(select(Case.status).where(Case.number == w.case)).one()
            == CaseStatus.OPEN
        )


def test_staff_list_their_cases_and_close_one_that_is_done(
    side: WeComSide, engine: Engine, db_url: str, tmp_path: Path, fake: FakeWeComApi
) -> None:
    w = world(engine)
    with transaction(engine) as session:
        staff = session.get_one(Staff, w.staff_id)
        case = session.scalars(select(Case).where(Case.number == w.case)).one()
        actions.claim(session, case, Actor.person(staff))
    side.say(STAFF_A, "我的", msg_id=1)
    side.say(STAFF_A, "关闭 " + w.case, msg_id=2)  # not done yet
    with transaction(engine) as session:
        staff = session.get_one(Staff, w.staff_id)
        case = session.scalars(select(Case).where(Case.number == w.case)).one()
        actions.resolve(session, case, Actor.person(staff), outcome="菜已送到")
    side.say(STAFF_A, f"关闭 {w.case} 老人满意", msg_id=3)
    side.say(STAFF_A, f"关闭 {w.case} 老人满意", msg_id=3)  # WeCom's retry: nothing twice
    side.say(VOLUNTEER_A1, f"关闭 {w.complaint}", msg_id=4)
    side.say(STAFF_A, "你好", msg_id=5)
    worker_round(engine, db_url, tmp_path, fake)
    answers = texts_to(fake, STAFF_A)  # the worker sends them side by side: in any order
    assert len(answers) == 4
    assert f"您在办的案件（1件）：\n{w.case}｜生活帮扶｜一般｜帮忙买菜" in answers
    assert f"案件{w.case}现在是已认领，要先办结才能关闭。" in answers
    assert f"案件{w.case}已关闭。" in answers
    assert any(a.startswith("新求助会以卡片发给您") for a in answers)
    assert texts_to(fake, VOLUNTEER_A1) == ["只有工作人员可以关闭案件。"]
    with transaction(engine) as session:
        assert (
            session.scalars(select(Case.status).where(Case.number == w.case)).one()
            == CaseStatus.CLOSED
        )


def test_forged_replayed_and_broken_callbacks_are_refused(
    side: WeComSide, engine: Engine, fake: FakeWeComApi
) -> None:
    w = world(engine)
    forged = side.post(f"<xml><FromUserName>{STAFF_A}</FromUserName></xml>", forged=True)
    assert forged.status_code == 403 and "msg_signature" in forged.json()["detail"]
    old = side.tap(STAFF_A, w.case, f"{w.case}-1", "")
    assert old.status_code == 200
    replay = side.post(
        "<xml><FromUserName>x</FromUserName></xml>", timestamp=str(int(time.time()) - 3600)
    )
    assert replay.status_code == 403 and "replay" in replay.json()["detail"]
    broken = side.post("<xml><Content>hi</Content></xml>")
    assert broken.status_code == 400 and "FromUserName" in broken.json()["detail"]
    garbage = side.http.post(
        f"{side.url}/wecom",
        params={"msg_signature": "x", "timestamp": str(int(time.time())), "nonce": "n"},
        content=b"not xml",
    )
    assert garbage.status_code in (400, 403)


def test_wecom_checks_the_url_with_the_encrypted_echostr(side: WeComSide) -> None:
    timestamp, nonce = str(int(time.time())), "n1"
    echostr = PrpCrypto(side.crypto.key).encrypt("echo-42", CORP).decode()
    signer = WeChatSigner()
    signer.add_data(TOKEN, timestamp, nonce, echostr)
    query = {
        "msg_signature": signer.signature,
        "timestamp": timestamp,
        "nonce": nonce,
        "echostr": echostr,
    }
    assert side.http.get(f"{side.url}/wecom", params=query).text == "echo-42"
    assert (
        side.http.get(f"{side.url}/wecom", params={**query, "msg_signature": "0" * 40}).status_code
        == 403
    )


def test_messages_for_staff_go_to_wecom_when_they_have_it() -> None:
    assert message_channel(Staff(name="a", wecom_user_id="A", phone="+8613700000000")) == (
        "wecom",
        "A",
    )
    assert message_channel(Staff(name="b", phone="+8613700000000")) == ("sms", "+8613700000000")
