"""Policy questions against a deployment's own FAQ (a config folder of the test's own): the
configured answer, then "still want a call back?"; no configured answer, a call-back case.
On SQLite and PostgreSQL."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from bot.conversation.engine import ConversationEngine, TurnResult
from bot.conversation.messages import Inbound
from bot.runtime.configure import load_deployment
from config.settings import CONFIG_DIR, Settings
from handlers.policy_question import names_topic
from nlu.embedded import EmbeddedParser
from storage.db import transaction
from storage.models import Case
from tests.factories import make_retiree, make_unit_tree

NOW = datetime.fromisoformat("2026-11-24T10:00:00+08:00")
PHONE = "+8613800000001"

FAQ = """\
version: 1
topics:
  pension_day:
    keywords: {zh: [养老金, 几号发, 啥时候发], en: [pension]}
    answer:
      zh: "测试答复：养老金每月15号发。"
      en: "Test answer: the pension is paid on the 15th."
  old_age_allowance:
    keywords: {zh: [高龄补贴], en: [old age allowance]}
    answer:
      zh: "测试答复：高龄补贴到社区办。"
      en: "Test answer: apply for the allowance at the community office."
  heating:
    keywords: {zh: [补贴, 取暖]}
    answer:
      zh: "测试答复：取暖补贴。"
      en: "Test answer: heating."
"""


def config_dir(tmp_path: Path, faq: str) -> Path:
    folder = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, folder, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    (folder / "faq.yml").write_text(faq, encoding="utf-8")
    return folder


class Chat:
    def __init__(
        self, engine: Engine, parser: EmbeddedParser, folder: Path, language: str = "zh"
    ) -> None:
        self.engine = engine
        self.bot = ConversationEngine(
            engine, parser, load_deployment(Settings(config_dir=folder, _env_file=None))
        )
        with transaction(engine) as session:
            tree = make_unit_tree(session)
            make_retiree(
                session,
                tree.community_a1,
                phone=PHONE,
                name="王秀英",
                preferred_language=language,
            )
        self.turns = 0

    def turn(self, text: str = "", **kw: str) -> TurnResult:
        self.turns += 1
        return self.bot.handle(
            Inbound(
                channel="sms",
                address=PHONE,
                provider_id=f"t{self.turns}",
                received_at=NOW + timedelta(minutes=self.turns),
                text=text,
                **kw,  # type: ignore[arg-type]
            )
        )

    def say(self, text: str = "", **kw: str) -> str:
        return "\n".join(reply.text for reply in self.turn(text, **kw).replies)

    def cases(self) -> list[Case]:
        with transaction(self.engine) as session:
            return list(session.scalars(select(Case).order_by(Case.id)).all())


@pytest.fixture
def chat(engine: Engine, nlu_parser: EmbeddedParser, tmp_path: Path) -> Chat:
    return Chat(engine, nlu_parser, config_dir(tmp_path, FAQ))


def test_the_configured_answer_then_no_call_back_files_nothing(chat: Chat) -> None:
    result = chat.turn("养老金啥时候发")
    said = "\n".join(r.text for r in result.replies)
    assert said == "测试答复：养老金每月15号发。\n您还需要工作人员给您回电话吗？"
    assert [c.label for c in result.replies[-1].choices] == ["要回电话", "不用"]
    assert chat.say("不用") == "好的。\n请问还有别的事吗？"
    assert chat.cases() == []


def test_the_configured_answer_then_yes_files_a_call_back(chat: Chat) -> None:
    chat.say("高龄补贴咋申请")  # 高龄补贴 (4) beats 补贴 inside it
    result = chat.turn(digits="1")
    said = "\n".join(r.text for r in result.replies)
    assert said.startswith(
        "好的，我请工作人员给您回电话。\n已经为您登记了政策咨询，编号是2026-000001。"
    )
    [case] = chat.cases()
    assert case.category == "policy_question"
    assert case.summary == "高龄补贴咋申请"
    assert case.details["faq_topic"] == "old_age_allowance"
    assert case.details["slots"] == {"question": "高龄补贴咋申请"}


def test_no_topic_is_asked_once_then_answered(chat: Chat) -> None:
    assert chat.say("我想咨询一下政策") == "好的。请问您想了解哪方面的政策？"
    said = chat.say("就是养老金每个月几号发")
    assert said == "测试答复：养老金每月15号发。\n您还需要工作人员给您回电话吗？"
    assert chat.say("不用").startswith("好的。")
    assert chat.cases() == []


def test_no_need_said_as_a_cancel_files_nothing(chat: Chat) -> None:
    # "不用了" reads as "cancel": the dialogue asks whether to drop the request first.
    chat.say("养老金啥时候发")
    chat.say("不用了")
    chat.say("对")
    assert chat.cases() == []


def test_a_question_with_no_configured_answer_is_called_back(chat: Chat) -> None:
    said = chat.say("低保咋申请")
    assert said.startswith("这个问题我请工作人员给您回电话解答。\n已经为您登记了政策咨询")
    assert "测试答复" not in said
    [case] = chat.cases()
    assert case.summary == "低保咋申请"
    assert "faq_topic" not in case.details


def test_another_question_at_the_call_back_question_is_answered_too(chat: Chat) -> None:
    chat.say("养老金啥时候发")
    said = chat.say("那高龄补贴怎么申请呢")
    assert said == "测试答复：高龄补贴到社区办。\n您还需要工作人员给您回电话吗？"
    chat.say("不用")
    assert chat.cases() == []


def test_hanging_up_after_an_answer_files_nothing(chat: Chat) -> None:
    chat.say("养老金啥时候发")
    assert chat.bot.close_conversation("sms", PHONE, now=NOW + timedelta(minutes=40)) == []
    assert chat.cases() == []


def test_an_unclear_answer_twice_files_the_call_back(chat: Chat) -> None:
    chat.say("养老金啥时候发")
    assert chat.say("这个嘛").startswith("对不起，我没听清楚。")
    said = chat.say("这个嘛")
    assert "已经为您登记了政策咨询" in said
    [case] = chat.cases()
    assert case.details["unconfirmed"] is True


def test_in_english(engine: Engine, nlu_parser: EmbeddedParser, tmp_path: Path) -> None:
    chat = Chat(engine, nlu_parser, config_dir(tmp_path, FAQ), language="en")
    result = chat.turn("When is the pension paid?")
    assert [r.text for r in result.replies] == [
        "Test answer: the pension is paid on the 15th.",
        "Would you still like a member of staff to call you back?",
    ]
    assert [c.label for c in result.replies[-1].choices] == ["Yes, call me back", "No need"]
    said = chat.say("yes")
    assert said.startswith("All right, I will ask staff to call you back.")
    [case] = chat.cases()
    assert case.summary == "When is the pension paid?"


def test_a_broken_faq_file_means_staff_answer(
    engine: Engine, nlu_parser: EmbeddedParser, tmp_path: Path
) -> None:
    chat = Chat(engine, nlu_parser, config_dir(tmp_path, "version: 1\ntopics: [oops]\n"))
    said = chat.say("养老金啥时候发")
    assert said.startswith("这个问题我请工作人员给您回电话解答。")
    assert len(chat.cases()) == 1


@pytest.mark.parametrize(
    ("said", "topic"),
    [
        ("我想咨询一下政策", False),
        ("咨询政策", False),
        ("我有个问题想问", False),
        ("请问一下有关政策的问题", False),
        ("I want to ask about a policy", False),
        ("我想咨询养老金的政策", True),
        ("低保咋申请", True),
        ("When is the pension paid?", True),
    ],
)
def test_whether_the_first_sentence_names_a_topic(said: str, topic: bool, deployment: Any) -> None:
    assert names_topic(said, deployment.words.of("policy_question")) is topic
