"""Reading Rasa YAML NLU training data, and errors that name the file, the item and the example."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.settings import Settings
from nlu.intents import INTENTS as CONTRACT
from nlu.training_data import (
    NLU_DATA_DIR,
    EntitySpan,
    TrainingDataError,
    dev_files,
    held_out_files,
    load_training_data,
    parse_annotated,
    training_files,
)

INTENTS = set(CONTRACT)

GOOD = """\
version: "3.1"
nlu:
- intent: medication_reimbursement
  examples: |
    - 我想报销[三百五十块](amount)的药费
    - [老伴]{"entity": "relation", "value": "spouse"}的药费能报吗
    - 去[市一院](hospital:市第一人民医院)看病的钱
    # a comment line
- intent: greet
  examples: |
    - 你好
- lookup: hospital
  examples: |
    - 市第一人民医院
- synonym: 市第一人民医院
  examples: |
    - 市一院
- regex: case_number
  examples: |
    - \\d{4}-\\d{6}
"""


def _write(tmp_path: Path, text: str, name: str = "data.yml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_parses_intents_entities_lookups_synonyms_regexes(tmp_path: Path) -> None:
    data = load_training_data([_write(tmp_path, GOOD)])
    texts = [(ex.intent, ex.text) for ex in data.examples]
    assert texts == [
        ("medication_reimbursement", "我想报销三百五十块的药费"),
        ("medication_reimbursement", "老伴的药费能报吗"),
        ("medication_reimbursement", "去市一院看病的钱"),
        ("greet", "你好"),
    ]
    first, second, third = (ex.entities for ex in data.examples[:3])
    assert first == (EntitySpan("amount", "三百五十块", 4, 9, "三百五十块"),)
    assert second == (EntitySpan("relation", "spouse", 0, 2, "老伴"),)
    assert third == (EntitySpan("hospital", "市第一人民医院", 1, 4, "市一院"),)
    assert data.lookups == {"hospital": ["市第一人民医院"]}
    assert data.synonyms == {"市第一人民医院": ["市一院"]}
    assert data.regexes == {"case_number": [r"\d{4}-\d{6}"]}
    assert data.intents == ["greet", "medication_reimbursement"]


def test_annotation_spans_point_into_the_plain_text() -> None:
    text, spans = parse_annotated('[明天](date)带[老伴]{"entity": "relation", "value": "spouse"}去')
    assert text == "明天带老伴去"
    assert [(s.entity, text[s.start : s.end], s.value) for s in spans] == [
        ("date", "明天", "明天"),
        ("relation", "老伴", "spouse"),
    ]


def test_examples_as_a_list_are_accepted(tmp_path: Path) -> None:
    path = _write(tmp_path, "nlu:\n- intent: greet\n  examples:\n  - 你好\n  - text: 您好\n")
    assert [ex.text for ex in load_training_data([path]).examples] == ["你好", "您好"]


def test_files_are_merged(tmp_path: Path) -> None:
    one = _write(tmp_path, "nlu:\n- intent: greet\n  examples: |\n    - 你好\n", "a.yml")
    two = _write(tmp_path, "nlu:\n- intent: deny\n  examples: |\n    - 不是\n", "b.yml")
    assert load_training_data([one, two]).intents == ["deny", "greet"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("nlu: [\n", "not valid YAML"),
        ("- a list\n", "top level must be a mapping"),
        ("version: 3.1\nnlu: []\n", "version must be a quoted string"),
        ("nlu: {intent: greet}\n", "'nlu' must be a list"),
        ("nlu:\n- intent: greet\n", "nlu item 1 (intent: greet): has no 'examples'"),
        ("nlu:\n- intent: greet\n  examples: |\n    你好\n", "example '你好' must start with '- '"),
        ("nlu:\n- intent: greet\n  regex: x\n  examples: |\n    - 你好\n", "exactly one of"),
        ("nlu:\n- intent: greet\n  exampels: |\n    - 你好\n", "unknown key(s) exampels"),
        ("nlu:\n- intent: \n  examples: |\n    - 你好\n", "'intent' needs a name"),
        ("nlu:\n- intent: greet\n  examples: ''\n", "'examples' is empty"),
        (
            'nlu:\n- intent: greet\n  examples: |\n    - 你好\n    - [老伴]{"entity": relation}好\n',
            "example '[老伴]{\"entity\": relation}好': entity annotation",
        ),
        (
            "nlu:\n- intent: greet\n  examples: |\n    - 你好\n- regex: x\n  examples: |\n    - a(b\n",
            "nlu item 2 (regex: x): pattern 'a(b' is not a valid regex",
        ),
    ],
)
def test_errors_name_the_file_the_item_and_the_example(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = _write(tmp_path, text, "broken.yml")
    with pytest.raises(TrainingDataError) as caught:
        load_training_data([path])
    message = str(caught.value)
    assert str(path) in message
    assert expected in message


def test_missing_file_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(TrainingDataError, match=r"missing\.yml: cannot read"):
        load_training_data([tmp_path / "missing.yml"])


def test_not_utf8_is_an_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yml"
    path.write_bytes("nlu:\n- intent: greet\n  examples: |\n    - caf\xe9\n".encode("latin-1"))
    with pytest.raises(TrainingDataError, match=r"latin1\.yml: not UTF-8"):
        load_training_data([path])


def test_training_files_never_include_the_test_set() -> None:
    files = training_files(Settings(_env_file=None))
    assert files, "no training files"
    assert not any(path.is_relative_to(NLU_DATA_DIR / "test") for path in files)
    assert {path.name for path in files} >= {f"{name}.yml" for name in INTENTS}
    assert any(path.name == "hospitals.yml" for path in files)


def test_real_training_data_loads_with_all_intents() -> None:
    data = load_training_data(training_files(Settings(_env_file=None)))
    assert set(data.intents) == INTENTS
    assert "hospital" in data.lookups


def test_held_out_set_has_every_intent_and_the_dev_set_no_other() -> None:
    assert set(load_training_data(held_out_files()).intents) == INTENTS
    # The dev set was used up by error analysis: a kind of request added since needs none.
    assert set(load_training_data(dev_files()).intents) <= INTENTS
