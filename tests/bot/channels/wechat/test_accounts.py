"""Following, the menu, and linking a WeChat account to a registered retiree by a code sent to
her phone; a follow-up question and a check-in answered with a bare digit."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from sqlalchemy import Engine, select

from bot.runtime.configure import load_deployment
from bot.runtime.periodic import run_all_once
from config.settings import Settings
from storage.db import transaction
from storage.identities import MAX_TRIES
from storage.models import (
    AuditEntry,
    CarePlan,
    CaseStatus,
    CheckIn,
    CheckInStatus,
    LinkCode,
    Message,
)
from tests.bot.channels.wechat.conftest import (
    OPENID,
    PHONE,
    event_xml,
    linked_to,
    outbox,
    registered,
    text_xml,
)
from tests.bot.conversation.test_check_in_answers import ASK_AT, WELL
from tests.bot.conversation.test_follow_up_answers import (
    ANSWERED_AT,
    THANKS_SATISFIED,
    case_of,
    resolve_and_ask,
    round_of,
)

WELCOME = "您好，这里是社区一键通。"
LINK_PROMPT = "为了知道您是谁，请发送您在社区登记的手机号码"


def test_following_welcomes_and_asks_to_link_or_greets_by_name(wechat: Any, engine: Engine) -> None:
    registered(engine, linked=False)
    with wechat() as side:
        unlinked = side.reply_text(side.post(event_xml("subscribe", at=1765000000 + 10**6)))
        assert unlinked.startswith(WELCOME) and LINK_PROMPT in unlinked
        other = "oOTHER-linked-000000000001"
        with transaction(engine) as session:
            from storage.models import MessagingIdentity, Retiree

            retiree = session.scalars(select(Retiree)).one()
            session.add(MessagingIdentity(retiree=retiree, channel="wechat", address=other))
        linked = side.reply_text(side.post(event_xml("subscribe", openid=other)))
        assert linked.startswith("王秀英您好")
        assert side.post(event_xml("unsubscribe", openid=other)).text == "success"
    with transaction(engine) as session:
        events = session.scalars(select(Message.payload).order_by(Message.id)).all()
    assert [e["event"] for e in events] == [
        "event:subscribe",
        "event:subscribe",
        "event:unsubscribe",
    ]


def test_a_menu_button_means_its_words(wechat: Any, engine: Engine) -> None:
    registered(engine)
    with wechat() as side:
        medicine = side.reply_text(side.post(event_xml("CLICK", key="MEDICINE")))
        assert "药费报销" in medicine
        link = side.reply_text(side.post(event_xml("CLICK", key="LINK", at=1765000001 + 10**6)))
        assert link.startswith(LINK_PROMPT)
        unknown = side.post(event_xml("CLICK", key="NO-SUCH-KEY", at=1765000002 + 10**6))
        assert unknown.text == "success"


def code_sent(engine: Engine) -> str:
    [item] = [i for i in outbox(engine, "sms") if i.payload["kind"] == "link_code"]
    assert item.address == PHONE
    assert item.payload["code"] in item.payload["text"]
    return str(item.payload["code"])


def test_an_account_is_linked_by_the_code_sent_to_the_registered_phone(
    wechat: Any, engine: Engine
) -> None:
    retiree_id = registered(engine, linked=False)
    with wechat() as side:
        asked = side.reply_text(side.say("绑定 138 0000 0001", msg_id=301))
        assert "尾号0001" in asked
        code = code_sent(engine)
        wrong = "000000" if code != "000000" else "111111"
        assert side.reply_text(side.say(wrong, msg_id=302)).startswith("验证码不对")
        assert linked_to(engine) is None
        again = side.say(code, msg_id=303)
        assert side.reply_text(again).startswith("绑定好了，王秀英您好")
        assert side.reply_text(side.say(code, msg_id=303)) == side.reply_text(again)  # retry
        # Now she is known: her next message is a turn, not a code.
        assert "药费报销" in side.reply_text(side.say("我想报销药费", msg_id=304))
    linked = linked_to(engine)
    assert linked is not None and linked.id == retiree_id
    with transaction(engine) as session:
        audit = session.scalars(select(AuditEntry).where(AuditEntry.action == "link_messaging"))
        assert [(a.subject_id, a.detail["by"]) for a in audit] == [(retiree_id, "sms_code")]
        assert session.scalars(select(LinkCode)).all() == []
        texts = session.scalars(select(Message.text).where(Message.provider_id == "301")).all()
        assert texts == ["[phone]"]  # the number is not kept in the message


def test_a_bare_number_asks_for_a_code_and_an_unknown_number_is_not_told_apart(
    wechat: Any, engine: Engine
) -> None:
    registered(engine, linked=False)
    with wechat() as side:
        known = side.reply_text(side.say("13800000001", msg_id=401))
        unknown = side.reply_text(side.say("13900000999", msg_id=402, openid="oSTRANGER-0001"))
    assert known.replace("0001", "0999") == unknown  # the same answer: nobody learns whose it is
    assert len([i for i in outbox(engine, "sms") if i.payload["kind"] == "link_code"]) == 1


def test_too_many_wrong_codes_end_the_code(wechat: Any, engine: Engine) -> None:
    registered(engine, linked=False)
    with wechat() as side:
        side.say("绑定13800000001", msg_id=501)
        code = code_sent(engine)
        wrong = "000000" if code != "000000" else "111111"
        answers = [side.reply_text(side.say(wrong, msg_id=510 + n)) for n in range(MAX_TRIES)]
        assert answers[-1].startswith("验证码已经失效")
        assert "药费" not in side.reply_text(side.say(code, msg_id=520))  # not linked by it now
    assert linked_to(engine) is None


def test_a_follow_up_question_is_answered_with_a_bare_digit(wechat: Any, engine: Engine) -> None:
    asked = resolve_and_ask(engine, channel="wechat", address=OPENID)
    assert asked.question is not None
    assert (asked.question.channel, asked.question.address) == ("wechat", OPENID)
    assert "请回复" in asked.question.payload["text"]  # numbers to type: no buttons here
    at = int(ANSWERED_AT.timestamp())
    with wechat() as side:
        answer = side.reply_text(side.post(text_xml("１", 601, at=at)))  # a Chinese keyboard's 1
    assert answer == THANKS_SATISFIED
    assert case_of(engine, asked.case).status == CaseStatus.RESOLVED
    assert round_of(engine, asked.follow_up).satisfied is True


def test_a_case_filed_over_wechat_is_told_there_when_staff_take_it(
    wechat: Any, engine: Engine
) -> None:
    from storage import actions
    from storage.models import Case, Role, Unit
    from storage.permissions import Actor
    from tests.factories import make_staff

    registered(engine)
    with wechat() as side:
        for n, line in enumerate(["我想报销药费，大概三百块，是上个月住院的", "上门来取", "对"]):
            side.say(line, msg_id=700 + n)
    with transaction(engine) as session:
        case = session.scalars(select(Case)).one()
        station = session.scalars(select(Unit).where(Unit.id == case.unit_id)).one()
        staff = make_staff(session, Role.STAFF, [station], name="钱社工")
        actions.claim(session, case, Actor.person(staff))
        number = case.number
    [notice] = [i for i in outbox(engine, "wechat") if i.payload["kind"] == "case_claimed"]
    assert notice.address == OPENID
    assert number in notice.payload["text"] and "钱" in notice.payload["text"]


def test_the_link_code_goes_as_an_approved_aliyun_template(
    wechat: Any, engine: Engine, tmp_path: Any
) -> None:
    import asyncio

    from bot.channels import senders_for
    from bot.runtime.worker import OutboxWorker
    from tests.bot.channels.aliyun_sms.test_aliyun_sms import KEY_ID, SIGN, TAKES
    from tests.bot.channels.aliyun_sms.test_aliyun_sms import settings_for as aliyun_settings
    from tests.fakes.aliyun_sms import FakeAliyunSms

    registered(engine, linked=False)
    with wechat() as side:
        side.say("绑定13800000001", msg_id=801)
        code = code_sent(engine)
        with FakeAliyunSms(KEY_ID, SIGN, TAKES) as aliyun:
            senders = senders_for(aliyun_settings(aliyun))
            asyncio.run(OutboxWorker(engine, senders).run_once())
            [sent] = aliyun.sent
        assert sent["TemplateCode"] == "SMS_000000001" and sent["Params"] == {"code": code}
        assert sent["PhoneNum"] == "13800000001"
        assert side.reply_text(side.say(code, msg_id=802)).startswith("绑定好了")


def test_a_check_in_is_answered_with_a_bare_digit(wechat: Any, engine: Engine) -> None:
    """Her plan checks in by WeChat: the periodic job sends the question to her account, and
    her "1" is answered at once (the passive reply) with the thanks; the check-in is well."""
    retiree_id = registered(engine)
    rule = {"cadence": "daily", "window": {"from": "09:00", "to": "11:00"}, "channels": ["wechat"]}
    with transaction(engine) as session:
        session.add(CarePlan(retiree_id=retiree_id, rule=rule))
    deployment = load_deployment(Settings(_env_file=None))
    run_all_once(engine, deployment, now=ASK_AT.replace(hour=0, minute=5).astimezone(UTC))
    with transaction(engine) as session:
        check_in = session.scalars(select(CheckIn)).one()
        check_in.due_at = ASK_AT
    assert run_all_once(engine, deployment, now=ASK_AT.astimezone(UTC))["check_ins"] == 1
    [question] = [i for i in outbox(engine, "wechat") if i.payload["kind"] == "check_in"]
    assert question.address == OPENID and "回复1" in question.payload["text"]
    with wechat() as side:
        at = int(ANSWERED_AT.timestamp())
        assert side.reply_text(side.post(text_xml("1", 801, at=at))) == WELL
    with transaction(engine) as session:
        assert session.scalars(select(CheckIn)).one().status == CheckInStatus.WELL
