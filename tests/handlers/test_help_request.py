"""Help with daily life: the words that pick each kind of help, in Chinese and English."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from bot.conversation.turn import Heard
from config.categories import get_categories
from config.i18n import get_catalogs
from handlers import check_handlers, load_handlers
from handlers.help_request import HANDLER
from tests.factories import shipped_deployment

MINE = ("hospital_transfer", "complaint", "help_request", "bereavement")


def turn_for(text: str) -> Any:
    return SimpleNamespace(heard=Heard(text=text), deployment=shipped_deployment())


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("家里水龙头坏了，能来人修一下不", "repair"),
        ("卫生间漏水了", "repair"),
        ("灯不亮了", "repair"),
        ("马桶堵了咋整", "repair"),
        ("想找个人帮忙打扫一下屋子", "cleaning"),
        ("快过年了，想请人擦擦玻璃", "cleaning"),
        ("能帮我买点菜送来吗", "groceries"),
        ("帮我买袋米和一桶油", "groceries"),
        ("我一个人在家做不了饭，有没有送餐的", "meals"),
        ("老年食堂能送饭上门不", "meals"),
        ("有没有人能陪我唠唠嗑", "company"),
        ("一个人太孤单了，想找人说说话", "company"),
        ("明天要去市一院复查，有没有人能陪我去", "escort"),
        ("想找人陪我去银行取钱", "escort"),
        ("帮我交一下电费", "bills"),
        ("水费燃气费咋交", "bills"),
        ("交暖气费", "bills"),
        ("其他", "other"),
        ("My sink is leaking", "repair"),
        ("the light in the kitchen does not work", "repair"),
        ("I need help cleaning my flat", "cleaning"),
        ("could someone buy some groceries for me", "groceries"),
        ("I can't cook any more", "meals"),
        ("I am lonely, I would like someone to talk to", "company"),
        ("someone to take me to the doctor", "escort"),
        ("help me pay my electricity bill", "bills"),
        ("something else", "other"),
        ("my brother's flat", None),  # "other" in "brother" is not a word
        ("帮我念念信", None),
    ],
)
def test_words_pick_the_kind_of_help(text: str, kind: str | None) -> None:
    assert HANDLER.slot("kind").extract(turn_for(text), answering=True) == kind


def test_these_handlers_have_their_category_and_texts() -> None:
    handlers = load_handlers()
    problems = check_handlers(
        {name: handlers[name] for name in MINE}, get_catalogs(), get_categories()
    )
    assert problems == []
    catalogs = get_catalogs()
    for key in (
        "hospital_transfer.ask.destination_admission",
        "hospital_transfer.read_back_admission",
        "hospital_transfer.not_in_hospital",
        "hospital_transfer.patient_self",
        "complaint.first_contact",
        "help_request.kind_again",
        "help_request.read_back_other",
        "help_request.day_and_period",
        "bereavement.condolence",
        "bereavement.visit",
    ):
        for lang in ("zh", "en"):
            assert key in catalogs.texts[lang], (lang, key)
