"""Bereavement: who passed away, from a relation, a family word or the person's own words."""

from __future__ import annotations

from datetime import datetime
from types import SimpleNamespace
from typing import Any

import pytest

from bot.conversation.turn import Heard
from handlers.bereavement import HANDLER
from nlu.embedded import EmbeddedParser

NOW = datetime.fromisoformat("2026-11-24T10:00:00+08:00")


def turn_for(parser: EmbeddedParser, text: str, deployment: Any) -> Any:
    """What the slot reads of a turn: what was heard, and the shipped configuration."""
    parse = parser.parse(text, reference=NOW)
    heard = Heard(text=parse["text"], entities=parse["entities"])
    return SimpleNamespace(heard=heard, deployment=deployment)


@pytest.mark.parametrize(
    ("text", "answering", "who"),
    [
        ("我老伴昨天去世了", False, "spouse"),
        ("我爸前天走了", False, "父亲"),
        ("我是他儿子，我爸走了", False, "父亲"),
        ("母亲刚走，啥都不懂，得办哪些事", False, "母亲"),
        ("我来报丧的，我们家老太太走了", False, "老太太"),
        ("my husband passed away yesterday", False, "spouse"),
        ("my father died last week", False, "father"),
        ("老人去世了要办啥手续", False, None),
        # An answer to "who passed away": never "self", and a name is kept in the words.
        ("是我老伴", True, "spouse"),
        ("我", True, "我"),
        ("隔壁的张大爷", True, "隔壁的张大爷"),
        ("老王", True, "老王"),
        ("我妈妈", True, "母亲"),
    ],
)
def test_who_passed_away(
    nlu_parser: EmbeddedParser, deployment: Any, text: str, answering: bool, who: str
) -> None:
    slot = HANDLER.slot("who")
    assert slot.extract(turn_for(nlu_parser, text, deployment), answering=answering) == who
