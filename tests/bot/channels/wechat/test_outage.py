"""WeChat messages while the database is down: a real PostgreSQL refuses connections under the
app; each message is kept in the spool and WeChat is answered (so it does not give up on us);
when the database is back they are handled in order and answered through the outbox."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, make_url, select

from bot.channels.twilio.outage import SPOOL_FOLDER
from storage.db import make_engine, transaction
from storage.models import Direction, Message, OutboxItem
from storage.spool import Spool
from tests.bot.channels.twilio.test_outage import eventually
from tests.bot.channels.wechat.conftest import WeChatSide, registered, wechat_app
from tests.pg_server import PostgresServer

pytestmark = pytest.mark.postgres
KEPT = "您的消息收到了。系统正在处理，稍后回复您。有紧急情况请直接拨打120。"


@pytest.fixture
def down_and_back(
    postgres_url: str, pg_server: PostgresServer, trained_nlu_dir: Path, tmp_path: Path
) -> Iterator[tuple[WeChatSide, Engine, Callable[[bool], None]]]:
    engine = make_engine(postgres_url)
    registered(engine)
    database = str(make_url(postgres_url).database)

    def up(on: bool) -> None:
        if on:
            pg_server.allow_connections(database)
        else:
            pg_server.refuse_connections(database)

    try:
        with wechat_app(postgres_url, engine, trained_nlu_dir, tmp_path) as side:
            yield side, engine, up
    finally:
        pg_server.allow_connections(database)
        engine.dispose()


def inbound_ids(engine: Engine) -> list[str]:
    with transaction(engine) as session:
        return [
            p
            for p in session.scalars(
                select(Message.provider_id)
                .where(Message.direction == Direction.INBOUND)
                .order_by(Message.id)
            )
            if p
        ]


def test_messages_while_the_database_is_down_are_kept_and_answered_when_it_is_back(
    down_and_back: Any, tmp_path: Path
) -> None:
    side, engine, up = down_and_back
    up(False)
    first = side.say("我想报销药费", msg_id=7101)
    second = side.say("门诊的", msg_id=7102)
    assert side.reply_text(first) == KEPT and side.reply_text(second) == KEPT
    spool = Spool(tmp_path / SPOOL_FOLDER)
    assert spool.count() == 2
    up(True)
    ids = eventually(lambda: inbound_ids(engine), lambda found: len(found) >= 2)
    assert ids == ["7101", "7102"]
    eventually(spool.count, lambda n: n == 0)
    with transaction(engine) as session:
        replies = session.scalars(
            select(OutboxItem).where(OutboxItem.channel == "wechat").order_by(OutboxItem.id)
        ).all()
    assert [r.idempotency_key for r in replies] == ["reply:wechat:7101:0", "reply:wechat:7102:0"]
    assert "药费" in replies[0].payload["text"]
    assert replies[0].next_attempt_at <= replies[0].created_at  # due at once: nobody waits
    # WeChat asks again for 7102 now: recognised, nothing twice.
    assert side.say("门诊的", msg_id=7102).status_code == 200
    assert inbound_ids(engine) == ["7101", "7102"]
