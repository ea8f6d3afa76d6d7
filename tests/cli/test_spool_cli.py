"""`hotline spool list` and `hotline spool retry`: an operator reads what could not be handed
back (without anyone's personal data on screen) and hands it back once the cause is fixed."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import Result
from typer.testing import CliRunner

from bot.channels.twilio.outage import SPOOL_FOLDER
from bot.cli import app
from storage.spool import Spool

KEPT = {
    "kind": "webhook",
    "path": "/twilio/messaging",
    "query": "",
    "form": {"From": "+8613800000001", "Body": "我要报销药费", "MessageSid": "SM-1"},
    "received_at": "2026-12-06T02:00:00+00:00",
    "why": "OperationalError",
}


def hotline(data_dir: Path, *args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(
        app,
        ["spool", *args],
        env={"HOTLINE_DATA_DIR": str(data_dir)},
    )
    assert result.exit_code == code, (result.exit_code, result.output, result.stderr)
    return result


def spool_with_a_failed_item(data_dir: Path) -> tuple[Spool, Path]:
    spool = Spool(data_dir / SPOOL_FOLDER)
    spool.put(KEPT)
    spool.put({**KEPT, "form": {**KEPT["form"], "MessageSid": "SM-2"}})
    bad, other = spool.take()
    bad.failed("RuntimeError: a bug in the turn")
    other.put_back()
    [failed] = spool.failed_items()
    return spool, failed


def test_list_shows_what_failed_and_why_but_not_who_sent_what(tmp_path: Path) -> None:
    spool, failed = spool_with_a_failed_item(tmp_path)
    said = hotline(tmp_path, "list").output
    assert said.startswith(f"{spool.directory}: 1 waiting, 1 failed\n")
    assert f"\n{failed.name}\n" in said
    assert "  route: /twilio/messaging\n" in said
    assert "  failed_because: RuntimeError: a bug in the turn\n" in said
    assert "+8613800000001" not in said and "报销" not in said
    listed = json.loads(hotline(tmp_path, "list", "--json").output)
    assert (listed["waiting"], [f["file"] for f in listed["failed"]]) == (1, [failed.name])
    assert listed["failed"][0]["kept_because"] == "OperationalError"


def test_retry_hands_failed_items_back(tmp_path: Path) -> None:
    spool, failed = spool_with_a_failed_item(tmp_path)
    assert hotline(tmp_path, "retry").output == f"handed back: {failed.name}\n"
    assert spool.failed_items() == [] and spool.count() == 2
    assert [t.item["form"]["MessageSid"] for t in spool.take()] == ["SM-1", "SM-2"]
    assert hotline(tmp_path, "retry").output == f"{spool.directory}: no failed item\n"


def test_retry_of_a_file_that_is_not_a_failed_item_says_so_and_hands_back_the_others(
    tmp_path: Path,
) -> None:
    spool, failed = spool_with_a_failed_item(tmp_path)
    result = hotline(tmp_path, "retry", "nothing-here.failed", failed.name, code=1)
    assert result.stdout == f"handed back: {failed.name}\n"
    assert "nothing-here.failed: no such failed item" in result.stderr
    assert spool.count() == 2
