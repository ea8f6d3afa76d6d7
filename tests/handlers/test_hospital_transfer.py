"""Hospital admission and transfer: which hospital is which, the car-and-escort answer, and the
priority raised for a day today or tomorrow (recorded on the case's file event)."""

from __future__ import annotations

from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from bot.conversation.engine import ConversationEngine
from bot.conversation.messages import Inbound
from bot.conversation.turn import Heard
from bot.runtime.configure import load_deployment
from config.settings import Settings
from handlers.hospital_transfer import HANDLER, NOT_IN_HOSPITAL, place_hospitals
from nlu.embedded import EmbeddedParser
from storage.db import transaction
from storage.models import Case, CaseEvent
from tests.factories import make_retiree, make_unit_tree, shipped_deployment

NOW = datetime.fromisoformat("2026-11-24T10:00:00+08:00")
PHONE = "+8613800000001"


def heard(parser: EmbeddedParser, text: str, choice: str | None = None) -> Heard:
    parse = parser.parse(text, reference=NOW)
    return Heard(text=parse["text"], entities=parse["entities"], choice=choice)


def turn_for(h: Heard) -> Any:
    return SimpleNamespace(heard=h, deployment=shipped_deployment())


@pytest.mark.parametrize(
    ("text", "current", "destination"),
    [
        ("我老伴明天要从市一院转到省人民医院", "市第一人民医院", "省人民医院"),
        ("要转到省医院，现在在市一院", "市第一人民医院", "省人民医院"),
        ("市二院的病人转到肿瘤医院", "市第二人民医院", "市肿瘤医院"),
        ("转到省医院，市一院那边同意了", "市第一人民医院", "省人民医院"),
        ("我老伴儿在中医院住着呢，大夫说得转到油田总医院", "市中医院", "油田总医院"),
        ("我老伴在市一院住着", "市第一人民医院", None),
        ("不对，是转到市中心医院", None, "市中心医院"),
    ],
)
def test_the_words_around_a_hospital_tell_which_one_it_is(
    nlu_parser: EmbeddedParser, text: str, current: str | None, destination: str | None
) -> None:
    words = shipped_deployment().words.of("hospital_transfer")
    placed, _ = place_hospitals(heard(nlu_parser, text), words)
    assert placed.get("current") == current
    assert placed.get("destination") == destination


@pytest.mark.parametrize(
    ("text", "slots"),
    [
        ("市一院住院手续咋办", {"current": NOT_IN_HOSPITAL, "destination": "市第一人民医院"}),
        ("市一院让我们转院", {"current": "市第一人民医院"}),
        ("我要办住院手续", {"current": NOT_IN_HOSPITAL}),
        ("我老伴在家摔了一跤，要住院", {"patient": "spouse", "current": NOT_IN_HOSPITAL}),
        ("转院需要哪些材料", {}),
        ("出院手续怎么办", {}),
    ],
)
def test_the_first_sentence_fills_what_it_says(
    nlu_parser: EmbeddedParser, text: str, slots: dict[str, Any]
) -> None:
    from bot.conversation.state import Task

    task = Task(handler=HANDLER.name)
    HANDLER.prefill(turn_for(heard(nlu_parser, text)), task)
    assert {k: v for k, v in task.slots.items() if k != "when"} == slots


@pytest.mark.parametrize(
    ("text", "answering", "value"),
    [
        ("要派车", True, "car"),
        ("要车也要人陪", True, "both"),
        ("车和人都要", True, "both"),
        ("不用车，要人陪", True, "escort"),
        ("车要的，人不用陪", True, "car"),
        ("都不用，儿子开车送", True, "none"),
        ("不用，家里人送", True, "none"),
        ("都要", True, "both"),
        ("都不用", True, "none"),
        ("I don't need a car, but someone to go with us", True, "escort"),
        ("a car please", True, "car"),
        ("neither", True, "none"),
        ("好的", True, None),
        # A first sentence is not an answer: "要不要" and "都要" there say nothing about a car.
        ("转院得原医院同意吗，要不要开证明", False, None),
        ("转院手续都要带啥", False, None),
        ("我老伴要转院，需要派车", False, "car"),
    ],
)
def test_car_and_escort(nlu_parser: EmbeddedParser, text: str, answering: bool, value: str) -> None:
    slot = HANDLER.slot("transport")
    assert slot.extract(turn_for(heard(nlu_parser, text)), answering=answering) == value


def test_a_buttons_label_is_not_an_answer(nlu_parser: EmbeddedParser) -> None:
    # "派车和陪同" picked by key when asked which part is wrong: no new value for any slot.
    label = heard(nlu_parser, "派车和陪同", choice="transport")
    for slot in HANDLER.slots:
        assert slot.extract(turn_for(label), answering=False) is None, slot.name


@pytest.mark.parametrize(
    ("first", "raised"),
    [
        ("我老伴今天要从市一院转到省人民医院，需要派车", ["needed_within_a_day"]),
        ("我老伴明天要从市一院转到省人民医院，需要派车", ["needed_within_a_day"]),
        ("我老伴后天要从市一院转到省人民医院，需要派车", None),
        ("我老伴下周一要从市一院转到省人民医院，需要派车", None),
    ],
)
def test_a_day_today_or_tomorrow_raises_the_priority(
    engine: Engine,
    session: Session,
    nlu_parser: EmbeddedParser,
    first: str,
    raised: list[str] | None,
) -> None:
    with transaction(engine) as setup:
        tree = make_unit_tree(setup)
        make_retiree(setup, tree.community_a1, phone=PHONE, name="王秀英", age=70, today=NOW.date())
    bot = ConversationEngine(engine, nlu_parser, load_deployment(Settings(_env_file=None)))
    for n, text in enumerate((first, "对")):
        bot.handle(
            Inbound(
                channel="sms",
                address=PHONE,
                provider_id=f"transfer-{n}",
                received_at=NOW + timedelta(minutes=n),
                text=text,
            )
        )
    case = session.scalars(select(Case)).one()
    event = session.scalars(select(CaseEvent).where(CaseEvent.action == "file")).one()
    assert case.category == "hospital_transfer"
    assert case.priority == 2
    assert event.data.get("priority_raised_by") == raised
