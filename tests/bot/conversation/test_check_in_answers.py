"""Answers to a check-in (storage/check_ins.py) on the channels, end to end on SQLite and
PostgreSQL: the periodic job plans the day and asks; the real worker places the check-in call
through the fake Twilio REST API and the fake caller picks up and presses a key; or the
question goes by SMS and the person texts 1 or 2 to the real app over real HTTP."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, select

from bot.runtime.configure import load_deployment
from bot.runtime.periodic import run_all_once
from config.settings import Settings
from storage.db import transaction
from storage.models import (
    CarePlan,
    CheckIn,
    CheckInStatus,
    ConversationState,
    Message,
    MessageStatus,
    OutboxItem,
)
from tests.bot.channels.twilio import test_voice as voice
from tests.bot.conversation.test_follow_up_answers import ANSWERED_AT, PERSON, Line
from tests.factories import make_retiree, make_unit_tree
from tests.fakes.caller import HangUp, Press, Silence

SHANGHAI = ZoneInfo("Asia/Shanghai")
DAY = ANSWERED_AT.astimezone(SHANGHAI).date()  # a Tuesday; the texts come in at 10:00
ASK_AT = datetime.combine(DAY, datetime.min.time(), tzinfo=SHANGHAI).replace(hour=9, minute=30)
WELL = "好的，祝您身体健康！有事随时找社区。"
HELP = "好的，请说说需要什么帮助。"


def ask(engine: Engine, channels: list[str]) -> tuple[int, OutboxItem]:
    """王阿姨 (91, so a daily check-in by default) with a plan of ``channels``: the day is
    planned, her check-in made due at 9:30 and asked by the periodic job."""
    deployment = load_deployment(Settings(_env_file=None))
    with transaction(engine) as session:
        tree = make_unit_tree(session)
        retiree = make_retiree(
            session, tree.community_a1, name="王阿姨", phone=PERSON, age=91, today=DAY
        )
        rule = {"cadence": "daily", "window": {"from": "09:00", "to": "11:00"}}
        session.add(CarePlan(retiree_id=retiree.id, rule=rule | {"channels": channels}))
    midnight = ASK_AT.replace(hour=0, minute=5).astimezone(UTC)
    assert run_all_once(engine, deployment, now=midnight)["check_ins"] == 0
    with transaction(engine) as session:
        check_in = session.scalars(select(CheckIn)).one()
        check_in.due_at = ASK_AT
        check_in_id = check_in.id
    assert run_all_once(engine, deployment, now=ASK_AT.astimezone(UTC))["check_ins"] == 1
    with transaction(engine) as session:
        question = session.scalars(
            select(OutboxItem).where(OutboxItem.payload["kind"].as_string() == "check_in")
        ).one()
        session.expunge(question)
    return check_in_id, question


def check_in_of(engine: Engine, check_in_id: int) -> CheckIn:
    with transaction(engine) as session:
        check_in = session.get(CheckIn, check_in_id)
        assert check_in is not None
        session.expunge(check_in)
        return check_in


# -- the check-in call ----------------------------------------------------------------------------


def place_the_call(line: Line, engine: Engine) -> tuple[int, dict[str, Any]]:
    check_in_id, question = ask(engine, ["voice", "sms"])
    assert (question.channel, question.address) == ("voice", PERSON)
    asyncio.run(line.worker.run_once())
    [placed] = [c for c in line.twilio.calls if c["to"] == PERSON]
    return check_in_id, placed


def test_pressing_1_on_the_call_is_well(line: Line, engine: Engine) -> None:
    check_in_id, placed = place_the_call(line, engine)
    assert f"{voice.PUBLIC_URL}/twilio/voice/check-in?ci={check_in_id}" in placed["twiml"]
    call = line.caller.pick_up(placed, [Press("1")])
    assert call.said[0] == call.said[1]  # asked twice
    assert "王阿姨您好" in call.said[0] and "需要帮助，请按2" in call.said[0]
    assert call.said[-1] == WELL and call.ended_by == "app"
    assert check_in_of(engine, check_in_id).status == CheckInStatus.WELL
    # Twilio repeats the webhook: the answer stands, and nothing is recorded twice.
    assert line.caller.replay(call.exchanges[-1]).status_code == 200
    assert check_in_of(engine, check_in_id).status == CheckInStatus.WELL


def test_pressing_2_goes_on_into_the_conversation_with_her(line: Line, engine: Engine) -> None:
    """2: the call is the start of a conversation, as if she had rung us: greeted by name,
    and what she says is a turn of a conversation at her own number (not ours)."""
    check_in_id, placed = place_the_call(line, engine)
    call = line.caller.pick_up(placed, [Press("2"), HangUp()])
    assert "王阿姨您好，这里是社区一键通。请问有什么可以帮您？" in call.said
    assert check_in_of(engine, check_in_id).status == CheckInStatus.NEEDS_HELP
    with transaction(engine) as session:
        arrivals = session.scalars(
            select(Message.address).where(Message.provider_id == f"{placed['sid']}:call")
        ).all()
        assert arrivals == [PERSON]


def test_another_key_asks_again_and_no_key_says_goodbye(line: Line, engine: Engine) -> None:
    check_in_id, placed = place_the_call(line, engine)
    call = line.caller.pick_up(placed, [Press("7"), Silence()])
    assert call.said[-1] == "没有收到您的按键。有事请随时找社区，再见。"
    assert call.said.count(call.said[0]) == 3  # twice at first, once more after the 7
    assert check_in_of(engine, check_in_id).status == CheckInStatus.ASKED  # the ladder goes on


def test_a_key_from_another_number_answers_nothing(line: Line, engine: Engine) -> None:
    check_in_id, placed = place_the_call(line, engine)
    forged = dict(placed, to="+8613800000077")
    call = line.caller.pick_up(forged, [Press("1")])
    assert WELL not in call.said
    assert check_in_of(engine, check_in_id).status == CheckInStatus.ASKED


# -- by SMS ---------------------------------------------------------------------------------------


def test_a_text_of_1_is_well_and_once_only(sms: Any, engine: Engine) -> None:
    check_in_id, question = ask(engine, ["sms"])
    assert (question.channel, question.address) == ("sms", PERSON)
    assert "好请回复1" in question.payload["text"]
    with sms() as twilio:
        assert twilio.message("1", "SM0901").status_code == 200
        assert twilio.message("1", "SM0901").status_code == 200  # delivered again
        assert twilio.message("2", "SM0902").status_code == 200  # too late: the day is done
    assert check_in_of(engine, check_in_id).status == CheckInStatus.WELL
    with transaction(engine) as session:
        replies = session.scalars(
            select(OutboxItem.payload).where(OutboxItem.payload["kind"].as_string() == "reply")
        ).all()
        answered = session.scalars(select(Message).where(Message.provider_id == "SM0901")).one()
        assert answered.status == MessageStatus.CHECK_IN and answered.retiree_id is not None
    # The 2 after the answer is no answer any more: it is a turn of a conversation.
    assert replies[0]["text"] == WELL and len(replies) == 2


def test_a_text_of_2_asks_what_is_needed_and_her_next_text_is_a_conversation(
    sms: Any, engine: Engine
) -> None:
    check_in_id, _ = ask(engine, ["sms"])
    with sms() as twilio:
        assert twilio.message("2", "SM0911").status_code == 200
        assert twilio.message("我想问问药费怎么报销", "SM0912").status_code == 200
    assert check_in_of(engine, check_in_id).status == CheckInStatus.NEEDS_HELP
    with transaction(engine) as session:
        texts = [
            p["text"]
            for p in session.scalars(
                select(OutboxItem.payload)
                .where(OutboxItem.payload["kind"].as_string() == "reply")
                .order_by(OutboxItem.id)
            )
        ]
        assert texts[0] == HELP and len(texts) >= 2
        state = session.scalars(select(ConversationState)).one()
        assert (state.address, state.state["turns"]) == (PERSON, 1)
    later = ANSWERED_AT + timedelta(minutes=31)
    deployment = load_deployment(Settings(_env_file=None))
    run_all_once(engine, deployment, now=later)
    assert check_in_of(engine, check_in_id).status in (
        CheckInStatus.HELPED,
        CheckInStatus.VISIT,
    )
