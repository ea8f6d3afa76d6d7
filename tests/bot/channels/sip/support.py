"""The SIP line as its end-to-end tests run it: `hotline sip` registered with a throwaway Kamailio,
on an SQLite database with 王秀英 registered and a staff member on duty (`running_line`), and what
the tests read back from the database."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from config.settings import CONFIG_DIR
from storage.db import make_engine, transaction
from storage.migrate import upgrade
from storage.models import Attachment, Case, Staff
from tests.bot.channels.serving import with_trained_model
from tests.factories import make_retiree, make_staff, make_unit_tree
from tests.sip_peers import Kamailio, SipLine, missing_tools

STAFF_PHONE = "+8613700000001"  # answers (137... on the proxy)
CALLER = "+8613800000001"


def skip_without_peers() -> None:
    """Skip the module when Kamailio, SIPp, espeak-ng or sox is missing (unless CI requires them)."""
    if missing_tools() and not os.environ.get("HOTLINE_REQUIRE_SIP"):
        pytest.skip(
            f"no {', '.join(missing_tools())} (apt-get install kamailio sip-tester espeak-ng sox)",
            allow_module_level=True,
        )


@dataclass
class Line:
    proxy: Kamailio
    line: SipLine
    engine: Engine
    folder: Path


@contextmanager
def running_line(
    tmp_path: Path, trained_nlu_dir: Path, env: dict[str, str] | None = None
) -> Iterator[Line]:
    """The line on an SQLite database with 王秀英 registered (her phone calls), a staff member
    on duty, and a faster voice (the same sentences, said twice as fast); ``env``: settings."""
    with_trained_model(trained_nlu_dir, tmp_path)
    config = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, config, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    sip_yml = config / "sip.yml"
    fast = sip_yml.read_text().replace("speed: 130", "speed: 260")
    sip_yml.write_text(fast.replace("ring_seconds: 20", "ring_seconds: 5"))
    url = f"sqlite:///{tmp_path / 'hotline.db'}"
    engine = make_engine(url)
    upgrade(engine)
    with transaction(engine) as session:
        units = make_unit_tree(session)
        make_retiree(session, units.community_a1, name="王秀英", phone=CALLER)
        make_staff(session, units=[units.community_a1], phone=STAFF_PHONE, on_duty=True)
    settings = {
        "HOTLINE_DATABASE_URL": url,
        "HOTLINE_DATA_DIR": str(tmp_path),
        "HOTLINE_CONFIG_DIR": str(config),
        **(env or {}),
    }
    try:
        with Kamailio(tmp_path) as proxy, SipLine(proxy, tmp_path, settings) as line:
            yield Line(proxy, line, engine, tmp_path)
    finally:
        engine.dispose()


def cases(engine: Engine) -> list[Case]:
    with transaction(engine) as session:
        return list(session.scalars(select(Case).order_by(Case.id)))


def attachments(engine: Engine) -> list[Attachment]:
    with transaction(engine) as session:
        return list(session.scalars(select(Attachment).order_by(Attachment.id)))


def phone_on_duty(sip: Line, phone: str) -> None:
    """The staff member on duty has ``phone`` now (139...: one that rings and rings)."""
    with transaction(sip.engine) as session:
        session.scalars(select(Staff)).one().phone = phone
