"""The spool of webhooks kept while the database is down: files, taken once, in order."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from storage.spool import FAILED_BECAUSE, Spool


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


def test_a_failed_item_keeps_its_error_and_can_be_handed_back(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.put({"n": 1})
    spool.put({"n": 2})
    first, second = spool.take()
    first.failed("RuntimeError: /twilio/messaging answered 500")
    second.done()
    [failed] = spool.failed_items()
    assert not spool.waiting() and spool.count() == 0 and spool.counts() == (0, 1)
    assert json.loads(failed.read_text(encoding="utf-8")) == {
        "n": 1,
        FAILED_BECAUSE: "RuntimeError: /twilio/messaging answered 500",
    }
    assert sorted(p.name for p in tmp_path.iterdir()) == [failed.name]  # no temporary left

    back = spool.retry(failed)
    assert spool.failed_items() == [] and spool.waiting() and spool.counts() == (1, 0)
    [again] = spool.take()
    assert again.path == back.with_name(back.name + ".taken")
    assert again.item["n"] == 1


def test_only_a_failed_item_of_the_spool_can_be_handed_back(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    waiting = spool.put({"n": 1})
    elsewhere = tmp_path / "00000000000000000001-1-abc.failed"
    elsewhere.write_text("{}", encoding="utf-8")
    for wrong in (waiting, elsewhere):
        with pytest.raises(ValueError, match="not a failed item"):
            spool.retry(wrong)
    with pytest.raises(FileNotFoundError, match="handed back already"):
        spool.retry(spool.directory / "00000000000000000002-1-abc.failed")
    assert spool.count() == 1 and elsewhere.exists()
