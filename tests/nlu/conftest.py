"""Fixtures for the NLU tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.nlu.fake_rasa import FakeRasa


@pytest.fixture
def fake_rasa() -> Iterator[FakeRasa]:
    """A fake Rasa server on 127.0.0.1 (a free port), stopped after the test."""
    server = FakeRasa()
    try:
        yield server
    finally:
        server.stop()
