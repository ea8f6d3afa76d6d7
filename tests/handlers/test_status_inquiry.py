"""The status inquiry against cases in every state: who has them and by when, the first three
only, somebody else's case never told, nothing audited. On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, func, select

from bot.conversation.engine import ConversationEngine
from bot.conversation.messages import Inbound
from bot.conversation.timefmt import spoken_time
from bot.conversation.turn import RETIREE
from config.i18n import get_catalogs
from storage import actions
from storage.db import transaction
from storage.models import AuditEntry, Case, Retiree, Role, Staff
from storage.permissions import Actor
from tests.factories import make_retiree, make_staff, make_unit_tree

NOW = datetime.fromisoformat("2026-11-24T10:00:00+08:00")  # a Tuesday
TZ = ZoneInfo("Asia/Shanghai")
PHONE = "+8613800000001"
OTHER_PHONE = "+8613800000002"


class World:
    """Two retirees, of communities A1 and A2; staff member 李娜 serving both; filing cases."""

    def __init__(self, engine: Engine, *, language: str = "zh") -> None:
        self.engine = engine
        with transaction(engine) as session:
            tree = make_unit_tree(session)
            me = make_retiree(
                session,
                tree.community_a1,
                phone=PHONE,
                name="王秀英",
                age=75,
                today=NOW.date(),
                preferred_language=language,
            )
            other = make_retiree(
                session, tree.community_a2, phone=OTHER_PHONE, name="李建国", age=80
            )
            staff = make_staff(
                session, Role.STAFF, [tree.community_a1, tree.community_a2], name="李娜"
            )
            self.me, self.other, self.staff = me.id, other.id, staff.id
        self.turns = 0

    def file(
        self,
        category: str = "medication_reimbursement",
        *,
        at: datetime,
        retiree: int | None = None,
        claim: bool = False,
        resolve: bool = False,
        close: bool = False,
        cancel: bool = False,
    ) -> str:
        with transaction(self.engine) as session:
            person = session.get(Retiree, retiree or self.me)
            case = actions.file_case(
                session,
                category=category,
                channel="sms",
                actor=RETIREE,
                retiree=person,
                summary="测试",
                now=at,
            )
            staff = Actor.person(session.get(Staff, self.staff))
            if claim or resolve or close:
                actions.claim(session, case, staff, now=at + timedelta(minutes=5))
            if resolve or close:
                actions.resolve(session, case, staff, outcome="办好了", now=at + timedelta(hours=1))
            if close:
                actions.close(session, case, staff, now=at + timedelta(hours=2))
            if cancel:
                actions.cancel(session, case, RETIREE, reason="不用了", now=at + timedelta(hours=1))
            return case.number

    def say(self, bot: ConversationEngine, text: str, *, sender: str = PHONE) -> str:
        self.turns += 1
        result = bot.handle(
            Inbound(
                channel="sms",
                address=sender,
                provider_id=f"t{self.turns}",
                received_at=NOW + timedelta(minutes=self.turns),
                text=text,
            )
        )
        assert not result.cases, "a status inquiry files nothing"
        return "\n".join(reply.text for reply in result.replies)

    def case(self, number: str) -> Case:
        with transaction(self.engine) as session:
            return session.scalars(select(Case).where(Case.number == number)).one()


def when(moment: datetime | None, lang: str = "zh") -> str:
    assert moment is not None
    return spoken_time(moment, NOW + timedelta(minutes=1), TZ, get_catalogs(), lang)


def test_open_claimed_and_resolved_are_read_with_who_and_by_when(
    engine: Engine, bot: ConversationEngine
) -> None:
    world = World(engine)
    waiting = world.file(at=NOW - timedelta(hours=1))
    claimed = world.file("help_request", at=NOW - timedelta(hours=2), claim=True)
    resolved = world.file("policy_question", at=NOW - timedelta(hours=3), resolve=True)
    world.file(at=NOW - timedelta(days=3), close=True)  # history: not read
    world.file(at=NOW - timedelta(hours=4), cancel=True)  # withdrawn: not read

    said = world.say(bot, "我的事办到哪了")

    claim_by = when(world.case(waiting).claim_deadline)
    done_by = when(world.case(claimed).resolve_deadline)
    assert said == (
        "您最近登记的事有3件。"
        f"药费报销，编号{waiting}，还在等工作人员接手。和平社区的工作人员会在{claim_by}前联系您。"
        f"生活帮扶，编号{claimed}，李娜正在办。争取在{done_by}前办好。"
        f"政策咨询，编号{resolved}，已经办好了。"
        "\n请问还有别的事吗？"
    )


def test_at_most_three_are_read_newest_first_and_the_rest_counted(
    engine: Engine, bot: ConversationEngine
) -> None:
    world = World(engine)
    numbers = [world.file(at=NOW - timedelta(hours=h)) for h in (6, 5, 4, 3, 2)]
    said = world.say(bot, "查一下我的单子")
    assert "您最近登记的事有5件。" in said
    for number in numbers[2:]:
        assert f"编号{number}" in said
    for number in numbers[:2]:
        assert number not in said
    assert said.index(numbers[4]) < said.index(numbers[3]) < said.index(numbers[2])
    assert "另外还有2件。" in said


def test_done_ones_come_after_those_still_being_worked_on(
    engine: Engine, bot: ConversationEngine
) -> None:
    world = World(engine)
    resolved = world.file(at=NOW - timedelta(hours=1), resolve=True)  # the newest, but done
    older = [world.file(at=NOW - timedelta(hours=h)) for h in (5, 4, 3)]
    said = world.say(bot, "我的事办到哪了")
    assert resolved not in said  # three still open come first; the done one is counted
    assert all(number in said for number in older)
    assert "另外还有1件。" in said


def test_past_the_promised_time_is_said_with_an_apology_not_a_time(
    engine: Engine, bot: ConversationEngine
) -> None:
    world = World(engine)
    # Claim within 8 office hours: filed two days ago, it is well past them.
    waiting = world.file(at=NOW - timedelta(days=2))
    said = world.say(bot, "我的事办到哪了")
    assert f"药费报销，编号{waiting}，还在等工作人员接手。已经过了约定的时间，对不起。" in said
    assert "前联系您" not in said


def test_a_case_number_reads_only_that_case_even_when_closed(
    engine: Engine, bot: ConversationEngine
) -> None:
    world = World(engine)
    closed = world.file(at=NOW - timedelta(days=3), close=True)
    world.file(at=NOW - timedelta(hours=1))
    said = world.say(bot, f"我的{closed}办到哪了")
    assert said == f"药费报销，编号{closed}，已经办完了。\n请问还有别的事吗？"


def test_somebody_elses_case_is_not_found_and_nothing_of_it_is_told(
    engine: Engine, bot: ConversationEngine
) -> None:
    world = World(engine)
    theirs = world.file("help_request", at=NOW - timedelta(hours=1), retiree=world.other)
    with transaction(engine) as session:  # claimed, so there is a name that must not be told
        case = session.scalars(select(Case).where(Case.number == theirs)).one()
        actions.claim(session, case, Actor.person(session.get(Staff, world.staff)))
    said = world.say(bot, f"案件号{theirs}到哪一步了")
    assert said == f"没有找到编号{theirs}的事。请您再核对一下编号。\n请问还有别的事吗？"
    # The owner asking the same gets the answer.
    said = world.say(bot, f"案件号{theirs}到哪一步了", sender=OTHER_PHONE)
    assert f"生活帮扶，编号{theirs}，李娜正在办。" in said


def test_reading_ones_own_cases_writes_no_audit_entry(
    engine: Engine, bot: ConversationEngine
) -> None:
    world = World(engine)
    number = world.file(at=NOW - timedelta(hours=1), claim=True)
    world.say(bot, "我的事办到哪了")
    world.say(bot, f"我的{number}办到哪了")
    with transaction(engine) as session:
        assert session.scalar(select(func.count()).select_from(AuditEntry)) == 0


def test_in_english(engine: Engine, bot: ConversationEngine) -> None:
    world = World(engine, language="en")
    claimed = world.file(at=NOW - timedelta(hours=1), claim=True)
    said = world.say(bot, "what is the status of my request")
    done_by = when(world.case(claimed).resolve_deadline, "en")
    assert said == (
        "Your recent requests: 1. "
        f"Medication-cost reimbursement, number {claimed}: 李娜 is working on it. "
        f"We aim to finish it by {done_by}."
        "\nIs there anything else?"
    )
    said = world.say(bot, "Is my case 2026-000099 done?")
    assert said.startswith("I cannot find a request numbered 2026-000099.")


def test_none_open_in_english(engine: Engine, bot: ConversationEngine) -> None:
    world = World(engine, language="en")
    world.file(at=NOW - timedelta(days=2), close=True)
    said = world.say(bot, "what is the status of my request")
    assert said == "You have no requests in progress.\nIs there anything else?"
