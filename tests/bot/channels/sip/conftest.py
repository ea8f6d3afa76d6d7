from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.bot.channels.sip.support import Line, running_line


@pytest.fixture
def sip(tmp_path: Path, trained_nlu_dir: Path) -> Iterator[Line]:
    """`hotline sip` on Kamailio (tests/bot/channels/sip/support.py)."""
    with running_line(tmp_path, trained_nlu_dir) as line:
        yield line
