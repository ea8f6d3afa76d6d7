"""config/faq.yml: the shipped file answers nothing, mistakes name the file and the key, and a
question is matched to the topic its keywords say most about."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from config.faq import FaqConfig, get_faq, load_faq
from config.loader import ConfigError
from config.settings import CONFIG_DIR

SHIPPED = CONFIG_DIR / "faq.yml"

GOOD = {
    "version": 1,
    "topics": {
        "pension_day": {
            "keywords": {"zh": ["养老金", "啥时候发", "几号"], "en": ["pension"]},
            "answer": {"zh": "养老金答复", "en": "Pension answer"},
        },
        "pension_raise": {
            "keywords": {"zh": ["养老金", "涨"], "en": ["raise"]},
            "answer": {"zh": "调整答复", "en": "Raise answer"},
        },
        "old_age_allowance": {
            "keywords": {"zh": ["高龄补贴"]},
            "answer": {"zh": "高龄补贴答复", "en": "Allowance answer"},
        },
        "heating": {
            "keywords": {"zh": ["补贴", "取暖"], "en": ["heating"]},
            "answer": {"zh": "取暖答复", "en": "Heating answer"},
        },
        "bus_card": {
            "keywords": {"en": ["ID"], "zh": ["老年卡"]},
            "answer": {"zh": "老年卡答复", "en": "Card answer"},
        },
    },
}


def write(tmp_path: Path, data: object, name: str = "faq.yml") -> Path:
    path = tmp_path / name
    text = data if isinstance(data, str) else yaml.safe_dump(data, allow_unicode=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def faq(tmp_path: Path) -> FaqConfig:
    return load_faq(write(tmp_path, GOOD))


def test_the_shipped_file_is_valid_and_answers_nothing() -> None:
    shipped = load_faq(SHIPPED)
    assert shipped.topics == {}
    assert shipped.match("养老金啥时候发") is None
    # The example stays a comment: the product must not ship policy answers.
    assert "topics: {}" in SHIPPED.read_text(encoding="utf-8")


def test_a_good_file_loads(faq: FaqConfig) -> None:
    assert set(faq.topics) == set(GOOD["topics"])
    assert faq.answer("pension_day", "zh") == "养老金答复"
    assert faq.answer("pension_day", "en") == "Pension answer"
    assert faq.topics["old_age_allowance"].keywords.en == ()


@pytest.mark.parametrize(
    ("question", "topic"),
    [
        ("养老金啥时候发", "pension_day"),  # 养老金 + 啥时候发 beat 养老金 alone
        ("今年养老金涨多少", "pension_raise"),  # 养老金 + 涨 beat 养老金 alone
        ("高龄补贴咋申请", "old_age_allowance"),  # 补贴 inside 高龄补贴 does not count
        ("有没有取暖补贴", "heating"),
        ("When is my PENSION paid?", "pension_day"),  # either language, any case
        ("养老金的事", None),  # only a keyword two topics share: a tie, no answer
        ("低保咋申请", None),
        ("", None),
        ("I did it", None),  # "id" inside a word is not the keyword ID
        ("my ID card", "bus_card"),
    ],
)
def test_matching(faq: FaqConfig, question: str, topic: str | None) -> None:
    assert faq.match(question) == topic


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: d["topics"]["pension_day"].update(answr=d["topics"]["pension_day"]["answer"]),
            "topics.pension_day.answr: Extra inputs are not permitted",
        ),
        (
            lambda d: d["topics"]["pension_day"]["keywords"].update(fr=["retraite"]),
            "topics.pension_day.keywords.fr: Extra inputs are not permitted",
        ),
        (
            lambda d: d["topics"]["pension_day"]["answer"].pop("en"),
            "topics.pension_day.answer.en: Field required",
        ),
        (
            lambda d: d["topics"]["heating"]["answer"].update(zh=""),
            "topics.heating.answer.zh: String should have at least 1 character",
        ),
        (
            lambda d: d["topics"]["heating"].update(keywords={"zh": [], "en": []}),
            "topics.heating: Value error, a topic needs at least one keyword",
        ),
        (
            lambda d: d["topics"]["heating"]["keywords"].update(zh=["取暖", " "]),
            "topics.heating.keywords.zh: Value error, a keyword cannot be empty",
        ),
        (
            lambda d: d["topics"].update({"Bad Name": d["topics"]["heating"]}),
            "topics: Value error, topic names are lower-case letters, digits and _",
        ),
        (lambda d: d.update(version=2), "version: Input should be 1"),
        (lambda d: d.update(topic={}), "topic: Extra inputs are not permitted"),
    ],
)
def test_mistakes_name_the_file_and_the_key(tmp_path: Path, change, message: str) -> None:  # type: ignore[no-untyped-def]
    data = yaml.safe_load(yaml.safe_dump(GOOD, allow_unicode=True))
    change(data)
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as raised:
        load_faq(path)
    assert str(raised.value).startswith(f"{path}: ")
    assert message in str(raised.value)


def test_missing_empty_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"faq\.yml: cannot read the file"):
        load_faq(tmp_path / "faq.yml")
    with pytest.raises(ConfigError, match="the file is empty"):
        load_faq(write(tmp_path, ""))
    with pytest.raises(ConfigError, match=r"faq\.yml: line \d+, column \d+: not valid YAML"):
        load_faq(write(tmp_path, "topics: {a: [\n"))


def test_topics_left_empty_or_all_commented_out(tmp_path: Path) -> None:
    assert load_faq(write(tmp_path, "version: 1\ntopics:\n")).topics == {}
    assert load_faq(write(tmp_path, "version: 1\n")).topics == {}


def test_cached_by_path(tmp_path: Path) -> None:
    first = write(tmp_path, GOOD, "one.yml")
    second = write(tmp_path, {"version": 1, "topics": {}}, "two.yml")
    assert get_faq(first) is get_faq(first)
    assert get_faq(second).topics == {}
    assert get_faq(first).match("高龄补贴") == "old_age_allowance"
