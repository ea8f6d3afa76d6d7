"""The spool of webhooks kept while the database is down: files, taken once, in order."""

from __future__ import annotations

import time
from pathlib import Path

from storage.spool import Spool


def test_the_spool_hands_each_item_out_once_in_order(tmp_path: Path) -> None:
    one, other = Spool(tmp_path), Spool(tmp_path)  # two processes on one folder
    for n in range(3):
        one.put({"n": n})
    taken = one.take()
    assert [t.item["n"] for t in taken] == [0, 1, 2]
    assert other.take() == [] and other.waiting()
    taken[0].done()
    for t in taken[1:]:
        t.put_back()
    assert [t.item["n"] for t in other.take()] == [1, 2]


def test_items_left_taken_by_a_process_that_died_are_taken_again(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.put({"n": 1})
    [held] = spool.take()
    assert spool.take() == []
    [again] = spool.take(now=time.time() + 3600)
    assert again.item == {"n": 1} and again.path == held.path
    again.done()
    assert not spool.waiting() and list(tmp_path.iterdir()) == []


def test_an_unreadable_item_is_set_aside(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.put({"n": 1})
    (tmp_path / "00000000000000000000-1-broken.json").write_text("{not json", encoding="utf-8")
    assert [t.item for t in spool.take()] == [{"n": 1}]
    assert [p.name for p in tmp_path.glob("*.failed")] == ["00000000000000000000-1-broken.failed"]
