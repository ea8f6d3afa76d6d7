"""Complaints: the person's words are kept as they are, the case waits in the station's queue,
and whoever claims it first stays responsible for it (首问负责). On SQLite and PostgreSQL."""

from __future__ import annotations

import re
import shutil
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from bot.conversation.engine import ConversationEngine, TurnResult
from bot.conversation.messages import Inbound
from bot.runtime.configure import load_deployment
from config.loader import ConfigError
from config.settings import CONFIG_DIR, Settings
from handlers import HandlerError
from handlers.complaint import is_bare
from storage import actions
from storage.db import transaction
from storage.errors import NotPermitted
from storage.models import Case, CaseStatus, Role, Staff
from storage.permissions import Actor
from tests.factories import make_retiree, make_staff, make_unit_tree

NOW = datetime.fromisoformat("2026-11-24T10:00:00+08:00")
PHONE = "+8613800000001"
COMPLAINT = "你们社区那个工作人员态度太差了，上周三我去办事他骂人！"


@pytest.mark.parametrize(
    ("text", "bare"),
    [
        ("我要投诉", True),
        ("我要投诉！", True),
        ("我要反映个问题", True),
        ("给我登记个投诉", True),
        ("I want to make a complaint", True),
        ("我要投诉物业", False),
        ("楼道的灯坏了一个月物业都不修", False),
        ("The volunteer is rude", False),
        ("I'd like to lodge a complaint please", True),
    ],
)
def test_a_bare_request_to_complain_is_not_the_complaint(
    text: str, bare: bool, deployment: Any
) -> None:
    """With the shipped words (config/words/complaint.yml)."""
    assert is_bare(text, deployment.words.of("complaint").list_of("bare")) is bare


def test_a_deployment_adds_its_own_words(tmp_path: Path) -> None:
    """A word a deployment adds to config/words/complaint.yml makes a request bare."""
    shutil.copytree(CONFIG_DIR, tmp_path / "config")
    words = tmp_path / "config" / "words" / "complaint.yml"
    words.write_text(
        words.read_text(encoding="utf-8").replace("  bare: [", "  bare: [\n    咱们,"),
        encoding="utf-8",
    )
    local = load_deployment(Settings(config_dir=tmp_path / "config", _env_file=None))
    assert is_bare("咱们要投诉", local.words.of("complaint").list_of("bare"))
    shipped = load_deployment(Settings(_env_file=None))
    assert not is_bare("咱们要投诉", shipped.words.of("complaint").list_of("bare"))


def test_a_handler_without_its_words_stops_the_start(tmp_path: Path) -> None:
    shutil.copytree(CONFIG_DIR, tmp_path / "config")
    (tmp_path / "config" / "words" / "complaint.yml").write_text(
        "version: 1\nlists:\n  about: [投诉]\n", encoding="utf-8"
    )
    with pytest.raises(
        HandlerError, match=re.escape("words/complaint.yml: no list or group 'bare'")
    ):
        load_deployment(Settings(config_dir=tmp_path / "config", _env_file=None))


def test_an_empty_word_list_is_refused_with_its_file_and_key(tmp_path: Path) -> None:
    shutil.copytree(CONFIG_DIR, tmp_path / "config")
    (tmp_path / "config" / "words" / "complaint.yml").write_text(
        "version: 1\nlists:\n  about: [投诉]\n  bare: []\n", encoding="utf-8"
    )
    with pytest.raises(ConfigError, match=r"complaint.yml: lists.bare: .*at least 1"):
        load_deployment(Settings(config_dir=tmp_path / "config", _env_file=None))


def _say(bot: ConversationEngine, text: str, n: int) -> TurnResult:
    return bot.handle(
        Inbound(
            channel="sms",
            address=PHONE,
            provider_id=f"complaint-{n}",
            received_at=NOW + timedelta(minutes=n),
            text=text,
        )
    )


def test_whoever_claims_the_complaint_first_stays_responsible(
    engine: Engine, bot: ConversationEngine, session: Session
) -> None:
    with transaction(engine) as setup:
        tree = make_unit_tree(setup)
        make_retiree(setup, tree.community_a1, phone=PHONE, name="王秀英")
        first = make_staff(setup, Role.STAFF, [tree.station_a], name="赵敏")
        second = make_staff(setup, Role.STAFF, [tree.station_a], name="钱亮")
        volunteer = make_staff(setup, Role.VOLUNTEER, [tree.station_a], name="孙志愿")
        ids = first.id, second.id, volunteer.id

    read_back = _say(bot, COMPLAINT, 1)
    assert f"您反映的是：“{COMPLAINT}”" in read_back.replies[-1].text
    filed = _say(bot, "对", 2)
    said = "\n".join(r.text for r in filed.replies)
    assert "东街道的工作人员" in said
    assert "首问负责：第一位接手的工作人员会一直负责，直到这件事办完" in said
    assert [(c.category, c.unit_code) for c in filed.cases] == [("complaint", "SA")]

    case = session.scalars(select(Case)).one()
    assert case.details["slots"]["about"] == COMPLAINT
    assert case.first_contact_owner_id is None
    staff = {s.id: s for s in session.scalars(select(Staff))}
    with pytest.raises(NotPermitted):  # complaints are for staff only
        actions.claim(session, case, Actor.person(staff[ids[2]]), now=NOW)
    actions.claim(session, case, Actor.person(staff[ids[0]]), now=NOW)
    session.commit()
    assert case.status == CaseStatus.CLAIMED
    assert case.first_contact_owner_id == ids[0]
    # Handed on to a colleague, the first one still answers for it.
    actions.transfer(
        session,
        case,
        Actor.person(staff[ids[0]]),
        to_staff=staff[ids[1]],
        reason="请钱亮上门核实",
        now=NOW + timedelta(hours=1),
    )
    session.commit()
    assert case.assignee_id == ids[1]
    assert case.first_contact_owner_id == ids[0]
