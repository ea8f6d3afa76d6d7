"""A case the conversation files is posted, in the same transaction, to the volunteers and staff
on Telegram who may take it (through the outbox, so the worker sends and retries it)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine, select

from bot.channels.telegram import new_case_announcer
from bot.conversation.engine import ConversationEngine
from bot.conversation.messages import Inbound
from bot.runtime.configure import load_deployment
from config.settings import Settings
from nlu.embedded import EmbeddedParser
from storage.db import transaction
from storage.models import OutboxItem, Role
from tests.factories import make_retiree, make_staff, make_unit_tree

NOW = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)


def test_a_filed_case_is_posted_to_whoever_may_take_it(
    engine: Engine, nlu_parser: EmbeddedParser
) -> None:
    with transaction(engine) as session:
        tree = make_unit_tree(session)
        make_retiree(session, tree.community_a1, phone="+8613800000001", age=70)
        make_staff(session, Role.VOLUNTEER, [tree.community_a1], telegram_user_id=501)
        make_staff(session, Role.VOLUNTEER, [tree.community_b1], telegram_user_id=502)
        make_staff(session, Role.STAFF, [tree.station_a], telegram_user_id=503)
    settings = Settings(telegram_bot_token="123:ABC", _env_file=None)
    deployment = load_deployment(settings)
    bot = ConversationEngine(
        engine, nlu_parser, deployment, on_filed=[new_case_announcer(deployment)]
    )
    for n, text in enumerate(["家里灯坏了，能派人来修吗", "明天上午", "对"]):
        bot.handle(Inbound("sms", "+8613800000001", f"m{n}", NOW, text=text))
    with transaction(engine) as session:
        posts = session.scalars(select(OutboxItem).order_by(OutboxItem.address)).all()
        assert [(p.channel, p.address, p.payload["kind"]) for p in posts] == [
            ("telegram", "501", "new_case"),  # the community's volunteer: a help request
            ("telegram", "503", "new_case"),  # the station's staff
        ]
        assert all(p.payload.get("choices") for p in posts)  # the Claim button


def test_no_bot_no_posts(engine: Engine, nlu_parser: EmbeddedParser) -> None:
    with transaction(engine) as session:
        tree = make_unit_tree(session)
        make_retiree(session, tree.community_a1, phone="+8613800000001", age=70)
        make_staff(session, Role.VOLUNTEER, [tree.community_a1], telegram_user_id=501)
    settings = Settings(_env_file=None)
    deployment = load_deployment(settings)
    bot = ConversationEngine(
        engine, nlu_parser, deployment, on_filed=[new_case_announcer(deployment)]
    )
    for n, text in enumerate(["家里灯坏了，能派人来修吗", "明天上午", "对"]):
        bot.handle(Inbound("sms", "+8613800000001", f"m{n}", NOW, text=text))
    with transaction(engine) as session:
        assert session.scalars(select(OutboxItem)).all() == []
