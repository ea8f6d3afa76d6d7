"""Emergency safety rules: every trigger fires, every exception cancels, bad files are refused."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from config.loader import ConfigError
from config.settings import CONFIG_DIR
from nlu.rules import EmergencyRules

RULES_PATH = CONFIG_DIR / "nlu" / "emergency_rules.yml"
RULES = EmergencyRules.load(RULES_PATH)
SPEC = RULES.spec
LATIN = re.compile("[a-zA-Z]")


@pytest.mark.parametrize("phrase", SPEC.triggers.phrases)
def test_every_trigger_phrase_fires(phrase: str) -> None:
    assert RULES.match(phrase) is not None
    sentence = f"喂，{phrase}，快来" if not LATIN.search(phrase) else f"please, {phrase}, quick"
    assert RULES.match(sentence) is not None, sentence


@pytest.mark.parametrize(
    "text",
    [
        "救命啊",
        "我老伴摔倒了，起不来",
        "俺家老头子在厕所跌倒了",
        "我妈晕倒了叫不醒",
        "喘不上气，胸口疼",
        "厨房着火了",
        "著火了，快來人",  # traditional
        "家裡煤氣洩漏了",  # traditional
        "他嘴歪了，说不出话",
        "好像中风了",
        "手割破了流了好多血",
        "有人撬门",
        "救 命",  # spaced out by the recogniser
        "Help me!",
        "help",
        "My husband fell down in the bathroom",
        "I can't breathe",
        "I can’t breathe",  # curly apostrophe
        "chest pain",
        "FIRE in the kitchen",
        "there is a gas leak",
        "I think she is having a stroke",
        "他是不是中风了",  # a question about a stroke is still an emergency
        "有没有可能是中风",
        "我上次摔倒了，现在又摔倒了",  # the second fall counts
        "来人啊",
        "喂，来人呀，我起不来",
        "Somebody help!",
    ],
)
def test_emergencies_fire(text: str) -> None:
    assert RULES.match(text) is not None


@pytest.mark.parametrize(
    "text",
    [
        "不是急事",
        "不是急事，就是问问",
        "我没摔",
        "我没摔倒，就是腿疼",
        "上次摔倒的医药费报销",
        "摔倒那次的住院报销怎么办",
        "前几天摔倒了，医药费能报吗",
        "去年中风住院的钱能报销吗",
        "我老伴中风好几年了，有什么补贴",
        "我想交煤气费",
        "煤气灶打不着火了",
        "手机摔了",
        "我怕摔倒，想装个扶手",
        "防止摔倒的扶手谁给装",
        "万一摔倒了怎么办",
        "There is no fire",
        "We had a fire drill",
        "Can you help me with my pension?",
        "my wife had a stroke last year, is there a subsidy?",
        "我想问问养老金",
        "上回说的修水管，啥时候来人啊",
        "Can someone help my father with groceries",
        "could you help me.",
    ],
)
def test_exceptions_and_ordinary_texts_do_not_fire(text: str) -> None:
    assert RULES.match(text) is None, RULES.hits(text)


@pytest.mark.parametrize("phrase", SPEC.exceptions.phrases)
def test_every_exception_phrase_cancels_the_trigger_inside_it(phrase: str) -> None:
    hits = RULES.hits(phrase)
    assert all(not hit.counted for hit in hits), hits
    assert RULES.match(phrase) is None


@pytest.mark.parametrize("word", SPEC.exceptions.not_after)
def test_every_negation_cancels_a_trigger_right_after_it(word: str) -> None:
    trigger = "fire" if LATIN.search(word) else "摔倒"
    text = f"{word} {trigger}" if LATIN.search(word) else f"{word}{trigger}"
    assert RULES.match(text) is None, RULES.hits(text)
    # ...but not a trigger further away
    later = f"{text}. help me!" if LATIN.search(word) else f"{text}，现在晕倒了"
    assert RULES.match(later) is not None


@pytest.mark.parametrize("question", SPEC.exceptions.questions)
def test_questions_are_not_negations(question: str) -> None:
    assert RULES.match(f"他{question}中风了") == "中风"


def _past_claim_cases() -> list[tuple[str, str]]:
    assert SPEC.exceptions.past_claim is not None
    claim = SPEC.exceptions.past_claim
    return [(past, claim.claims[0]) for past in claim.past]


@pytest.mark.parametrize(("past", "claim"), _past_claim_cases())
def test_every_past_word_with_a_claim_cancels(past: str, claim: str) -> None:
    if LATIN.search(past):
        assert RULES.match(f"i fell down {past}, how do i {claim}") is None
        assert RULES.match(f"i fell down {past}") is not None  # no claim: still counts
    else:
        assert RULES.match(f"{past}摔倒的{claim}怎么办") is None
        assert RULES.match(f"{past}摔倒了") is not None  # no claim: still counts


@pytest.mark.parametrize(
    "claim", SPEC.exceptions.past_claim.claims if SPEC.exceptions.past_claim else []
)
def test_every_claim_word_with_a_past_word_cancels(claim: str) -> None:
    if LATIN.search(claim):
        assert RULES.match(f"she fell down last year, {claim}") is None
    else:
        assert RULES.match(f"上次摔倒，{claim}") is None


def test_hits_explain_why() -> None:
    hits = RULES.hits("我没摔倒，可是老伴晕倒了")
    assert [(h.phrase, h.counted) for h in hits] == [("摔倒", False), ("晕倒", True)]
    assert "没摔" in hits[0].reason


BASE = """\
version: 1
triggers:
  phrases: [救命]
"""


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (BASE + "  patterns: ['(unclosed']\n", "triggers.patterns"),
        (BASE + "  extra: [x]\n", "triggers.extra"),
        ("version: 1\ntriggers:\n  phrases: []\n", "triggers.phrases"),
        ("version: 1\ntriggers:\n  phrases: [救命, 救命]\n", "triggers.phrases"),
        ("version: 2\ntriggers:\n  phrases: [救命]\n", "version"),
        (
            BASE + "exceptions:\n  not_after: [no]\n",
            "exceptions.not_after.0",
        ),  # YAML reads no as false
        (BASE + "exceptions:\n  phrases: ['  ']\n", "exceptions.phrases"),
        (BASE + "exceptions:\n  past_claim:\n    past: [上次]\n", "exceptions.past_claim.claims"),
    ],
)
def test_invalid_rules_are_refused_naming_file_and_key(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "emergency_rules.yml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        EmergencyRules.load(path)
    assert str(path) in str(caught.value)
    assert key in str(caught.value)


def test_missing_rules_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        EmergencyRules.load(tmp_path / "nope.yml")
