"""Cancelling a filed request: the assignee is told, the reason is kept, nothing is cancelled
without a clear yes, and somebody else's case is never touched. On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select

from bot.conversation.engine import ConversationEngine, TurnResult
from bot.conversation.messages import Inbound
from bot.conversation.turn import RETIREE
from handlers.cancel import reason_in
from storage import actions
from storage.db import transaction
from storage.models import Case, CaseEvent, CaseStatus, OutboxItem, Retiree, Role, Staff
from storage.notices import CLAIMED, RESOLVED
from storage.permissions import Actor
from tests.factories import make_retiree, make_staff, make_unit_tree

RETIREE_NOTICES = (CLAIMED, RESOLVED)

NOW = datetime.fromisoformat("2026-11-24T10:00:00+08:00")
PHONE = "+8613800000001"
OTHER_PHONE = "+8613800000002"


class World:
    """王秀英 (A1) and 李建国 (A1); staff 李娜 reachable on Telegram, 张伟 with no channel."""

    def __init__(self, engine: Engine, *, language: str = "zh") -> None:
        self.engine = engine
        with transaction(engine) as session:
            tree = make_unit_tree(session)
            me = make_retiree(
                session,
                tree.community_a1,
                phone=PHONE,
                name="王秀英",
                preferred_language=language,
            )
            other = make_retiree(session, tree.community_a1, phone=OTHER_PHONE, name="李建国")
            li = make_staff(
                session, Role.STAFF, [tree.community_a1], name="李娜", telegram_user_id=7001
            )
            zhang = make_staff(session, Role.STAFF, [tree.community_a1], name="张伟")
            self.me, self.other, self.li, self.zhang = me.id, other.id, li.id, zhang.id
        self.turns = 0

    def file(
        self,
        category: str = "medication_reimbursement",
        *,
        hours_ago: float = 1,
        retiree: int | None = None,
        claimed_by: int | None = None,
        resolve: bool = False,
    ) -> str:
        at = NOW - timedelta(hours=hours_ago)
        with transaction(self.engine) as session:
            case = actions.file_case(
                session,
                category=category,
                channel="sms",
                actor=RETIREE,
                retiree=session.get(Retiree, retiree or self.me),
                summary="测试",
                now=at,
            )
            if claimed_by is not None:
                staff = Actor.person(session.get(Staff, claimed_by))
                actions.claim(session, case, staff, now=at + timedelta(minutes=5))
                if resolve:
                    actions.resolve(session, case, staff, outcome="好了", now=at + timedelta(1))
            return case.number

    def turn(self, bot: ConversationEngine, text: str = "", **kw: str) -> TurnResult:
        self.turns += 1
        return bot.handle(
            Inbound(
                channel="sms",
                address=kw.pop("sender", PHONE),
                provider_id=f"t{self.turns}",
                received_at=NOW + timedelta(minutes=self.turns),
                text=text,
                **kw,  # type: ignore[arg-type]
            )
        )

    def say(self, bot: ConversationEngine, text: str = "", **kw: str) -> str:
        result = self.turn(bot, text, **kw)
        assert not result.cases, "cancelling files nothing"
        return "\n".join(reply.text for reply in result.replies)

    def case(self, number: str) -> Case:
        with transaction(self.engine) as session:
            case = session.scalars(select(Case).where(Case.number == number)).one()
            case.events  # noqa: B018 - loaded for the caller
            return case

    def outbox(self) -> list[OutboxItem]:
        """What the cancelling queued (not the retiree's own claim/resolve notices, which
        tests/storage/test_notices.py covers)."""
        with transaction(self.engine) as session:
            items = session.scalars(select(OutboxItem).order_by(OutboxItem.id)).all()
            return [i for i in items if i.payload.get("kind") not in RETIREE_NOTICES]


def test_a_claimed_case_is_cancelled_with_the_reason_and_its_assignee_told(
    engine: Engine, bot: ConversationEngine
) -> None:
    world = World(engine)
    number = world.file(claimed_by=world.li)

    said = world.say(bot, "不用了，我儿子已经帮我办好了")
    assert said == f"您要取消药费报销，编号{number}，对吗？"
    said = world.say(bot, "对")
    assert said == (
        f"好的，药费报销，编号{number}，已经取消了。\n我已经告诉李娜了。\n请问还有别的事吗？"
    )

    case = world.case(number)
    assert case.status == CaseStatus.CANCELLED
    cancel = [e for e in case.events if e.action == "cancel"]
    assert len(cancel) == 1
    assert cancel[0].actor_label == "retiree"
    assert cancel[0].reason == "我儿子已经帮我办好了"
    assert cancel[0].from_status == "claimed"
    [item] = world.outbox()
    assert (item.channel, item.address) == ("telegram", "7001")
    assert item.payload["kind"] == "case_cancelled"
    assert item.payload["text"] == (
        f"【已取消 {number}】王秀英取消了药费报销。原因：我儿子已经帮我办好了"
    )
    assert item.case_id == case.id


def test_an_assignee_with_no_channel_is_not_said_to_be_told(
    engine: Engine, bot: ConversationEngine
) -> None:
    world = World(engine)
    number = world.file(claimed_by=world.zhang)
    world.say(bot, f"取消{number}")
    world.say(bot, "对")
    said = world.say(bot, "不需要了")
    assert "已经取消了" in said
    assert "告诉" not in said
    assert world.outbox() == []
    assert world.case(number).status == CaseStatus.CANCELLED


def test_an_open_case_has_nobody_to_tell(engine: Engine, bot: ConversationEngine) -> None:
    world = World(engine)
    number = world.file()
    world.say(bot, "取消")
    said = world.say(bot, "对")
    assert said == "好的。请问是什么原因不用了？"
    world.say(bot, "我自己送过去了")
    assert world.case(number).status == CaseStatus.CANCELLED
    assert world.outbox() == []


def test_several_cases_by_key_by_ordinal_and_at_most_five_offered(
    engine: Engine, bot: ConversationEngine
) -> None:
    world = World(engine)
    numbers = [world.file(hours_ago=h) for h in (7, 6, 5, 4, 3, 2)]  # newest last
    world.file("emergency", hours_ago=1)  # never offered
    result = world.turn(bot, "我要取消")
    assert result.replies[-1].text == "您有6件事可以取消。您要取消哪一件？"
    labels = [c.label for c in result.replies[-1].choices]
    assert labels == [f"今天登记的药费报销，编号{n}" for n in reversed(numbers[1:])]
    said = world.say(bot, "第二个")
    assert said == f"您要取消药费报销，编号{numbers[4]}，对吗？"
    world.say(bot, "不对")
    world.say(bot, "没有了")  # goodbye: right after "anything else?" a cancel reads as "no"
    # The oldest one, not offered, can still be named by its number.
    assert world.say(bot, "我要取消").endswith("您要取消哪一件？")
    said = world.say(bot, f"编号是{numbers[0]}的那个")
    assert said == f"您要取消药费报销，编号{numbers[0]}，对吗？"
    world.say(bot, "对")
    world.say(bot, "不用了")
    assert world.case(numbers[0]).status == CaseStatus.CANCELLED
    assert all(world.case(n).status == CaseStatus.OPEN for n in numbers[1:])


def test_the_kind_said_picks_among_those_offered(engine: Engine, bot: ConversationEngine) -> None:
    world = World(engine)
    medicine = world.file(hours_ago=2)
    policy = world.file("policy_question", hours_ago=1)
    world.say(bot, "我要取消")
    assert world.say(bot, "政策那个") == f"您要取消政策咨询，编号{policy}，对吗？"
    world.say(bot, "对")
    world.say(bot, "已经问清楚了")
    assert world.case(policy).status == CaseStatus.CANCELLED
    assert world.case(medicine).status == CaseStatus.OPEN


def test_not_understood_twice_cancels_nothing(engine: Engine, bot: ConversationEngine) -> None:
    world = World(engine)
    numbers = [world.file(hours_ago=2), world.file(hours_ago=1)]
    world.say(bot, "我要取消")
    assert world.say(bot, "嗯嗯") == "对不起，我没听清楚。\n" + (
        "您有2件事可以取消。您要取消哪一件？"
    )
    said = world.say(bot, "嗯嗯")
    assert said == "我没听明白是哪一件，先不取消。\n请问还有别的事吗？"
    assert all(world.case(n).status == CaseStatus.OPEN for n in numbers)


def test_somebody_elses_case_is_never_cancelled(engine: Engine, bot: ConversationEngine) -> None:
    world = World(engine)
    theirs = world.file(retiree=world.other, claimed_by=world.li)
    mine = world.file()
    said = world.say(bot, f"帮我把{theirs}撤销了")
    assert said.startswith(f"没有找到编号{theirs}的事。\n您要取消药费报销，编号{mine}，对吗？")
    assert "李娜" not in said
    world.say(bot, "不对")
    assert world.case(theirs).status == CaseStatus.CLAIMED
    assert world.case(mine).status == CaseStatus.OPEN
    assert world.outbox() == []


def test_a_case_already_done_cannot_be_cancelled(engine: Engine, bot: ConversationEngine) -> None:
    world = World(engine)
    number = world.file(claimed_by=world.li, resolve=True)
    said = world.say(bot, f"取消{number}")
    assert said == f"药费报销，编号{number}，已经办好了，不用取消。\n请问还有别的事吗？"
    assert world.case(number).status == CaseStatus.RESOLVED


def test_staff_finishing_it_between_the_question_and_the_yes(
    engine: Engine, bot: ConversationEngine
) -> None:
    world = World(engine)
    number = world.file(claimed_by=world.li)
    world.say(bot, "不用了，门自己好使了")
    with transaction(engine) as session:
        case = session.scalars(select(Case).where(Case.number == number)).one()
        actions.resolve(session, case, Actor.person(session.get(Staff, world.li)), outcome="修好")
    said = world.say(bot, "对")
    assert said == f"药费报销，编号{number}，现在已经不能取消了。\n请问还有别的事吗？"
    assert world.case(number).status == CaseStatus.RESOLVED
    assert world.outbox() == []


def test_hanging_up_after_yes_cancels_and_before_yes_does_not(
    engine: Engine, bot: ConversationEngine
) -> None:
    world = World(engine)
    number = world.file(claimed_by=world.li)
    world.say(bot, "取消")
    bot.close_conversation("sms", PHONE, now=NOW + timedelta(minutes=30))
    assert world.case(number).status == CaseStatus.CLAIMED

    world.say(bot, "取消")
    world.say(bot, "对")  # then the reason is asked, and the person hangs up
    bot.close_conversation("sms", PHONE, now=NOW + timedelta(minutes=40))
    case = world.case(number)
    assert case.status == CaseStatus.CANCELLED
    assert [e.reason for e in case.events if e.action == "cancel"] == ["老人没有说原因"]
    [item] = world.outbox()
    assert item.payload["text"].endswith("原因：老人没有说原因")


def test_an_emergency_is_not_cancelled_but_what_was_said_is_noted(
    engine: Engine, bot: ConversationEngine
) -> None:
    world = World(engine)
    number = world.file("emergency", hours_ago=0.5)
    said = world.say(bot, "不用了，我自己起来了")
    assert said.startswith(f"紧急求助，编号{number}，不能在这里取消。工作人员还会跟您确认。")
    case = world.case(number)
    assert case.status == CaseStatus.OPEN
    assert [e.note for e in case.events if e.action == "note"] == ["不用了，我自己起来了"]
    with transaction(engine) as session:
        assert session.scalars(select(CaseEvent).where(CaseEvent.action == "cancel")).all() == []


def test_in_english(engine: Engine, bot: ConversationEngine) -> None:
    world = World(engine, language="en")
    first = world.file(hours_ago=2, claimed_by=world.li)
    second = world.file("policy_question", hours_ago=1)
    result = world.turn(bot, "cancel my request please")
    assert result.replies[-1].text == (
        "You have 2 requests that can be cancelled. Which one do you want to cancel?"
    )
    assert [c.label for c in result.replies[-1].choices] == [
        f"Policy question from today, number {second}",
        f"Medication-cost reimbursement from today, number {first}",
    ]
    said = world.say(bot, digits="2")
    assert said == f"Cancel Medication-cost reimbursement, number {first}. Is that right?"
    said = world.say(bot, "yes")
    assert said == "All right. May I ask why you no longer need it?"
    said = world.say(bot, "my son already did it")
    assert said == (
        f"All right. Medication-cost reimbursement, number {first}, is cancelled.\n"
        "I have told 李娜.\nIs there anything else?"
    )
    case = world.case(first)
    assert [e.reason for e in case.events if e.action == "cancel"] == ["my son already did it"]
    # The assignee is told in the staff's language.
    [item] = world.outbox()
    assert item.payload["language"] == "zh"
    assert item.payload["text"].startswith(f"【已取消 {first}】王秀英取消了药费报销。")


@pytest.mark.parametrize(
    ("said", "reason"),
    [
        ("不用了，我儿子已经帮我办好了", "我儿子已经帮我办好了"),
        ("哎呀，那个修灯的事不用了，我儿子给修好了", "我儿子给修好了"),
        ("那个陪我去医院的事取消吧，我闺女回来了", "我闺女回来了"),
        ("陪诊的别安排了 孩子请假回来了", "孩子请假回来了"),
        ("取消", ""),
        ("那个报销不办了", ""),
        ("取消2026-000001", ""),
        ("不用了，谢谢", ""),
        ("嗯，就是那个上门打扫的，不用来了", ""),
        ("那个修马桶的师傅别来了", ""),
        ("cancel my request please", ""),
        ("I want to cancel, my son did it", "my son did it"),
        ("cancel it because my son helped me", "because my son helped me"),
    ],
)
def test_the_reason_in_the_first_sentence(said: str, reason: str, deployment: Any) -> None:
    assert reason_in(said, deployment.words.of("cancel")) == reason
