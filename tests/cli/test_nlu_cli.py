"""`hotline nlu parse|train|evaluate` as a person at a terminal uses them."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from bot.cli import app


def run(data_dir: Path, *args: str, input: str | None = None, code: int = 0):
    result = CliRunner().invoke(
        app, list(args), env={"HOTLINE_DATA_DIR": str(data_dir)}, input=input
    )
    assert result.exit_code == code, (result.output, result.stderr)
    return result


def test_parse_one_text(trained_nlu_dir: Path) -> None:
    out = run(trained_nlu_dir, "nlu", "parse", "我想报销上个月的药费，三百五十块").stdout
    body = json.loads(out)
    assert body["intent"]["name"] == "medication_reimbursement"
    amounts = [e["value"] for e in body["entities"] if e["entity"] == "amount"]
    assert amounts == [350]


def test_parse_lines_from_stdin_in_order(trained_nlu_dir: Path) -> None:
    lines = ["你好", "救命啊我喘不上气", "", "再见"]
    out = run(trained_nlu_dir, "nlu", "parse", input="\n".join(lines) + "\n").stdout
    results = [json.loads(x) for x in out.splitlines()]
    assert [r["text"] for r in results] == lines
    assert results[1]["intent"]["name"] == "emergency"
    assert results[2]["intent"]["name"] == "nlu_fallback"


def test_train_reports_the_cache(tmp_path: Path) -> None:
    out = run(tmp_path, "nlu", "train").stdout
    assert out.startswith("trained on ") and str(tmp_path / "nlu-cache") in out
    assert any((tmp_path / "nlu-cache").iterdir())


def test_evaluate_with_a_minimum(trained_nlu_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "mini.yml"
    data.write_text(
        'version: "3.1"\nnlu:\n- intent: emergency\n  examples: |\n    - 救命啊\n    - 我摔倒了\n'
        "- intent: greet\n  examples: |\n    - 你好\n    - 卖保险的来了\n",
        encoding="utf-8",
    )
    ok = run(trained_nlu_dir, "nlu", "evaluate", "--data", str(data), "--min-accuracy", "0.5")
    assert "accuracy" in ok.stdout.lower()
    low = run(
        trained_nlu_dir, "nlu", "evaluate", "--data", str(data), "--min-accuracy", "1.0", code=1
    )
    assert "below the minimum 1.000" in low.stderr
    bad = tmp_path / "bad.yml"
    bad.write_text("nlu: [", encoding="utf-8")
    broken = run(trained_nlu_dir, "nlu", "evaluate", "--data", str(bad), code=1)
    assert "bad.yml" in broken.stderr
