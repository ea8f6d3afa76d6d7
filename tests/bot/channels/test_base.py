"""Conversations.run: the channels' database work runs on at most ``turn_threads`` threads."""

from __future__ import annotations

import threading
import time

import anyio
import pytest
from sqlalchemy import create_engine

from bot.channels.base import Conversations
from bot.runtime.configure import load_deployment
from config.settings import Settings
from nlu.parser import NluParser


async def _no_parser() -> NluParser:
    raise AssertionError("run() needs no parser")


def _at_once(threads: int, calls: int) -> tuple[int, set[str]]:
    """How many of ``calls`` blocking calls ran at the same moment, and on which threads."""
    deployment = load_deployment(Settings(turn_threads=threads, _env_file=None))
    talk = Conversations(deployment, create_engine("sqlite://"), _no_parser)
    lock = threading.Lock()
    running = 0
    most = 0
    names: set[str] = set()

    def work(pause: float, *, tag: str) -> str:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
            names.add(threading.current_thread().name)
        time.sleep(pause)
        with lock:
            running -= 1
        return tag

    async def main() -> None:
        results: list[str] = []

        async def one(n: int) -> None:
            results.append(await talk.run(work, 0.05, tag=str(n)))

        async with anyio.create_task_group() as group:
            for n in range(calls):
                group.start_soon(one, n)
        assert sorted(results, key=int) == [str(n) for n in range(calls)]

    anyio.run(main)
    return most, names


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_no_more_calls_at_once_than_turn_threads(threads: int) -> None:
    most, names = _at_once(threads, calls=8)
    assert most == threads
    assert threading.current_thread().name not in names  # never on the event loop's thread


def test_turn_threads_is_checked() -> None:
    with pytest.raises(ValueError, match="turn_threads"):
        Settings(turn_threads=0)
