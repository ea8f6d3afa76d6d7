"""The engine's guarantees beyond single scripts: turns that race, redeliveries that race, state
that outlives the process, conversations closed half-way, and who gets an emergency alert."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from bot.conversation.engine import ConversationEngine, TurnResult
from bot.conversation.messages import Hint, Inbound
from bot.conversation.state import DialogueState, Task
from bot.conversation.turn import only_fillers
from bot.runtime.configure import load_deployment
from bot.runtime.worker import sweep_idle_conversations
from config.settings import Settings
from nlu.embedded import EmbeddedParser
from storage.alert_chain import on_duty_staff
from storage.db import transaction
from storage.models import Case, CaseStatus, ConversationState, Direction, Message, OutboxItem, Role
from tests.factories import make_retiree, make_staff, make_unit_tree

NOW = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)  # Tuesday 10:00 in Shanghai
MEDICATION = ("我想报销药费，门诊的，三百块", "上门来取", "对")


def message(
    address: str, text: str, n: int, *, provider_id: str | None = None, **kw: Any
) -> Inbound:
    return Inbound(
        channel=kw.pop("channel", "sms"),
        address=address,
        provider_id=provider_id if provider_id is not None else f"{address}-{n}",
        received_at=kw.pop("at", NOW + timedelta(seconds=n)),
        text=text,
        **kw,
    )


def people(engine: Engine, count: int) -> list[str]:
    phones = [f"+86138{n:08d}" for n in range(1, count + 1)]
    with transaction(engine) as session:
        tree = make_unit_tree(session)
        for phone in phones:
            make_retiree(session, tree.community_a1, phone=phone, age=70)
    return phones


def run_together(count: int, work: Callable[[int], Any]) -> list[Any]:
    """``count`` calls of ``work`` started at the same moment on their own threads."""
    barrier = threading.Barrier(count)

    def start(n: int) -> Any:
        barrier.wait()
        return work(n)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(start, range(count)))


def test_many_people_at_once_each_get_their_own_case(
    engine: Engine, bot: ConversationEngine
) -> None:
    phones = people(engine, 12)

    def converse(n: int) -> list[str]:
        filed = []
        for turn, text in enumerate(MEDICATION):
            filed += [c.number for c in bot.handle(message(phones[n], text, turn)).cases]
        return filed

    filed = run_together(len(phones), converse)
    assert all(len(numbers) == 1 for numbers in filed), filed
    with transaction(engine) as session:
        cases = session.scalars(select(Case)).all()
        assert len(cases) == len(phones)
        assert {c.retiree.phones[0].number for c in cases} == set(phones)
        assert len({c.number for c in cases}) == len(phones)


def test_two_messages_from_one_person_at_once_take_turns(
    engine: Engine, bot: ConversationEngine
) -> None:
    (phone,) = people(engine, 1)
    bot.handle(message(phone, "我想报销药费，门诊的，三百块", 0))
    # Two answers at once: the row lock makes them take turns; neither is lost.
    results = run_together(2, lambda n: bot.handle(message(phone, "上门来取", n + 1)))
    texts = sorted(r.replies[-1].text for r in results)
    assert any("对吗" in t for t in texts), texts
    with transaction(engine) as session:
        row = session.scalars(select(ConversationState)).one()
        state = DialogueState.load(row.state)
        assert state.turns == 3
        assert state.task is not None and state.task.slots["receipts"] == "collect"
        inbound = session.scalars(
            select(Message).where(Message.direction == Direction.INBOUND)
        ).all()
        assert len(inbound) == 3


def test_a_message_redelivered_many_times_at_once_is_answered_once(
    engine: Engine, bot: ConversationEngine
) -> None:
    (phone,) = people(engine, 1)
    bot.handle(message(phone, "我想报销药费，门诊的，三百块，上门来取", 0))
    results: list[TurnResult] = run_together(
        6, lambda n: bot.handle(message(phone, "对", 1, provider_id="SM-same"))
    )
    assert sum(not r.redelivered for r in results) == 1
    replies = {tuple(r.text for r in result.replies) for result in results}
    assert len(replies) == 1  # every delivery got the same answer
    with transaction(engine) as session:
        assert session.scalar(select(func.count()).select_from(Case)) == 1
        same = select(func.count()).select_from(Message).where(Message.provider_id == "SM-same")
        assert session.scalar(same) == 1


def test_the_state_outlives_the_engine(engine: Engine, nlu_parser: EmbeddedParser) -> None:
    (phone,) = people(engine, 1)
    first = ConversationEngine(engine, nlu_parser, load_deployment(Settings(_env_file=None)))
    first.handle(message(phone, "我想报销药费，门诊的，三百块", 0))
    restarted = ConversationEngine(engine, nlu_parser, load_deployment(Settings(_env_file=None)))
    reply = restarted.handle(message(phone, "上门来取", 1))
    assert "对吗" in reply.replies[-1].text
    assert restarted.handle(message(phone, "对", 2)).cases


def test_closing_a_conversation_files_the_unfinished_request(
    engine: Engine, bot: ConversationEngine
) -> None:
    (phone,) = people(engine, 1)
    bot.handle(message(phone, "我想报销住院的药费", 0))
    assert bot.idle_conversations(now=NOW + timedelta(minutes=5)) == []
    later = NOW + timedelta(minutes=31)
    assert bot.idle_conversations(now=later) == [("sms", phone)]
    numbers = bot.close_conversation("sms", phone, now=later)
    assert len(numbers) == 1
    assert bot.idle_conversations(now=later + timedelta(hours=1)) == []
    assert bot.close_conversation("sms", phone, now=later) == []  # nothing twice
    with transaction(engine) as session:
        case = session.scalars(select(Case)).one()
        assert case.details["incomplete"] is True
        assert case.original_text == "我想报销住院的药费"


def test_the_sweep_leaves_a_conversation_the_person_came_back_to(
    engine: Engine, bot: ConversationEngine
) -> None:
    (phone,) = people(engine, 1)
    bot.handle(message(phone, "我想报销住院的药费", 0))
    later = NOW + timedelta(minutes=31)
    assert bot.idle_conversations(now=later) == [("sms", phone)]  # the sweep lists it...
    # ...she writes again before the sweep closes it: the earlier request is filed (she was
    # idle) and a new one begins, which the sweep must not close under her.
    bot.handle(message(phone, "我想报销门诊的药费", 1, at=later))
    quiet_since = later - timedelta(minutes=30)
    assert bot.close_conversation("sms", phone, now=later, quiet_since=quiet_since) == []
    reply = bot.handle(message(phone, "三百块", 2, at=later + timedelta(minutes=1)))
    assert "票据" in reply.replies[-1].text  # still in the request she began at minute 31
    with transaction(engine) as session:
        (case,) = session.scalars(select(Case)).all()
        assert case.original_text == "我想报销住院的药费"


def test_english_profile_is_answered_in_english(engine: Engine, bot: ConversationEngine) -> None:
    with transaction(engine) as session:
        tree = make_unit_tree(session)
        make_retiree(
            session, tree.community_b1, phone="+8613800000009", name="Mary", preferred_language="en"
        )
    reply = bot.handle(message("+8613800000009", "hi", 0))
    assert reply.replies[0].text.startswith("Hello Mary")  # the profile, until she writes
    reply = bot.handle(message("+8613800000009", "我想报销药费", 1))
    assert "药费" in reply.replies[-1].text  # then the language she writes in


def test_emergency_replies_are_marked_urgent(engine: Engine, bot: ConversationEngine) -> None:
    (phone,) = people(engine, 1)
    result = bot.handle(message(phone, "我摔倒了", 0, channel="phone"))
    assert Hint.URGENT in result.hints
    assert result.cases[0].priority == 1


def test_on_duty_staff_nearest_first_and_never_nobody(session: Session) -> None:
    tree = make_unit_tree(session)
    station = make_staff(session, Role.STAFF, [tree.station_a], on_duty=True)
    community = make_staff(session, Role.STAFF, [tree.community_a1], on_duty=True)
    make_staff(session, Role.STAFF, [tree.community_a1], on_duty=False)
    make_staff(session, Role.VOLUNTEER, [tree.community_a1], on_duty=True)
    west = make_staff(session, Role.STAFF, [tree.station_b], on_duty=True)
    assert on_duty_staff(session, tree.community_a1) == [community, station]
    off = make_staff(session, Role.STAFF, [tree.community_b1], on_duty=False)
    assert on_duty_staff(session, tree.community_b1) == [west]  # on duty beats nearer
    west.on_duty = False
    session.flush()
    # Nobody on duty at all: everyone who serves the unit, nearest first, rather than nobody.
    assert on_duty_staff(session, tree.community_b1) == [off, west]


@pytest.mark.parametrize("text", ["", "   "])
def test_an_empty_message_is_silence_not_an_error(
    engine: Engine, bot: ConversationEngine, text: str
) -> None:
    (phone,) = people(engine, 1)
    result = bot.handle(message(phone, text, 0, channel="phone"))
    assert "您还在吗" in result.replies[0].text


def test_close_idle_files_what_quiet_conversations_left(
    engine: Engine, bot: ConversationEngine
) -> None:
    first, second = people(engine, 2)
    bot.handle(message(first, "我想报销住院的药费", 0))  # left half-way
    bot.handle(message(second, "我想报销药费，门诊的，三百块，上门来取", 0))
    bot.handle(message(second, "对", 1))  # finished: nothing left to file
    assert bot.close_idle(now=NOW + timedelta(minutes=10)) == []  # not idle yet
    filed = bot.close_idle(now=NOW + timedelta(minutes=45))
    assert len(filed) == 1
    assert bot.close_idle(now=NOW + timedelta(hours=2)) == []
    with transaction(engine) as session:
        case = session.scalars(select(Case).where(Case.number == filed[0])).one()
        assert case.retiree.phones[0].number == first and case.details["incomplete"] is True


@pytest.mark.asyncio
async def test_the_sweeper_closes_idle_conversations_until_stopped(
    engine: Engine, bot: ConversationEngine
) -> None:
    (phone,) = people(engine, 1)
    bot.handle(message(phone, "我想报销住院的药费", 0, at=datetime.now(UTC) - timedelta(hours=1)))
    stop = asyncio.Event()

    async def conversations() -> ConversationEngine:
        return bot

    sweeper = asyncio.create_task(sweep_idle_conversations(conversations, stop, every_s=0.05))
    for _ in range(100):
        await asyncio.sleep(0.05)
        with transaction(engine) as session:
            if session.scalars(select(Case)).first() is not None:
                break
    stop.set()
    await asyncio.wait_for(sweeper, timeout=5)
    with transaction(engine) as session:
        assert [c.details.get("incomplete") for c in session.scalars(select(Case))] == [True]


@pytest.mark.parametrize(
    ("state", "nothing"),
    [
        (None, True),
        ({}, True),
        (DialogueState(ended=True, turns=4, cases=["2026-000001"]), True),
        (DialogueState(ended=True, task=Task(handler="help_request", done=True)), True),
        (DialogueState(task=Task(handler="help_request")), False),  # half-way
        (DialogueState(ended=True, suspended=[Task(handler="complaint")]), False),  # put aside
        (DialogueState(turns=1), False),  # not ended: closing starts it afresh
    ],
)
def test_nothing_to_close(state: DialogueState | dict | None, nothing: bool) -> None:
    data = state.dump() if isinstance(state, DialogueState) else state
    assert DialogueState.nothing_to_close(data) is nothing


def test_only_fillers() -> None:
    fillers = load_deployment(Settings(_env_file=None)).dialogue.fillers
    for noise in ("那个", "啊啊 嗯 那个", "呃，那个，就是……", "um, uh", "嗯嗯"):
        assert only_fillers(noise, fillers), noise
    for said in ("那个人来了", "就是药费", "well I fell", "", "  "):
        assert not only_fillers(said, fillers), said


def test_what_is_added_to_a_claimed_case_reaches_its_worker(bot: Any, engine: Engine) -> None:
    """'我还要补充一下…' about a case someone works on: a note on it, and a message to them
    (each addition its own), no new case."""
    [phone] = people(engine, 1)
    for n, text in enumerate(MEDICATION):
        bot.handle(message(phone, text, n))
    with transaction(engine) as session:
        worker = make_staff(session, Role.VOLUNTEER, telegram_user_id=4242, name="李志愿")
        case = session.scalars(select(Case)).one()
        case.assignee_id, case.status = worker.id, CaseStatus.CLAIMED
    said = bot.handle(
        message(phone, "我还要补充一下，票据在我女儿那里", 10, at=NOW + timedelta(hours=1))
    )
    again = bot.handle(message(phone, "忘了说，票据一共有五张", 11, at=NOW + timedelta(hours=2)))
    assert "也已经告诉李志愿了" in " ".join(r.text for r in said.replies)
    assert "补充到" in " ".join(r.text for r in again.replies), [r.text for r in again.replies]
    assert said.cases == [] and again.cases == []
    with transaction(engine) as session:
        [case] = session.scalars(select(Case)).all()
        notes = [e.note for e in case.events if e.action == "note"]
        assert notes == ["票据在我女儿那里", "票据一共有五张"]
        told = session.scalars(
            select(OutboxItem).where(OutboxItem.channel == "telegram", OutboxItem.address == "4242")
        ).all()
        assert [t.payload["kind"] for t in told] == ["case_addition"] * 2
        assert "票据在我女儿那里" in told[0].payload["text"]
