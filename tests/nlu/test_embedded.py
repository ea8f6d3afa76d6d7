"""The embedded parser on the real training data: the exact Rasa /model/parse JSON, bad input,
the safety rules on top of the model, and the choice of backend."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from config.settings import Settings
from nlu.embedded import EmbeddedParser
from nlu.parser import NluParser, get_parser
from nlu.text import MAX_CHARS

KEYS = {"text", "intent", "intent_ranking", "entities", "text_tokens"}
SHANGHAI = ZoneInfo("Asia/Shanghai")


def _has_entities() -> bool:
    try:
        import nlu.entities  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    # one folder for the whole session: the other NLU test modules reuse the cached model
    data_dir = tmp_path_factory.getbasetemp() / "nlu-real-data"
    return Settings(data_dir=data_dir, _env_file=None)


@pytest.fixture(scope="module")
def parser(settings: Settings) -> EmbeddedParser:
    return EmbeddedParser.load(settings)


def check_shape(result: dict, *, truncated: bool = False) -> None:
    """Exactly Rasa's /model/parse JSON (plus "truncated" when the text was cut)."""
    assert set(result) == KEYS | ({"truncated"} if truncated else set())
    if truncated:
        assert result["truncated"] is True
    json.dumps(result)  # plain JSON types only
    text = result["text"]
    assert isinstance(text, str)
    intent = result["intent"]
    assert set(intent) == {"name", "confidence"}
    assert isinstance(intent["name"], str) and type(intent["confidence"]) is float
    assert 0.0 <= intent["confidence"] <= 1.0
    ranking = result["intent_ranking"]
    assert 1 <= len(ranking) <= 10
    assert all(set(r) == {"name", "confidence"} and type(r["confidence"]) is float for r in ranking)
    confidences = [r["confidence"] for r in ranking]
    assert confidences == sorted(confidences, reverse=True)
    assert len({r["name"] for r in ranking}) == len(ranking)
    assert ranking[0] == intent
    previous_end = 0
    for token in result["text_tokens"]:
        assert isinstance(token, list) and len(token) == 2
        start, end = token
        assert previous_end <= start < end <= len(text)
        assert text[start:end].strip()
        previous_end = end
    for entity in result["entities"]:
        assert {"entity", "value", "start", "end", "extractor"} <= set(entity)
        assert 0 <= entity["start"] < entity["end"] <= len(text)


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("我老伴上个月住院花了三百五十块药费，能报销吗", "medication_reimbursement"),
        ("我想投诉物业，太不像话了", "complaint"),
        ("我要转院到市一院", "hospital_transfer"),
        ("你好", "greet"),
        ("再见", "goodbye"),
        ("醫藥費報銷", "medication_reimbursement"),  # traditional
        ("ＨＥＬＬＯ", "greet"),  # full-width
        ("救命😭", "emergency"),  # emoji
    ],
)
def test_parse_gives_the_rasa_json(parser: EmbeddedParser, text: str, intent: str) -> None:
    result = parser.parse(text)
    check_shape(result)
    assert result["intent"]["name"] == intent, result["intent_ranking"][:3]


def test_returned_text_is_cleaned_but_not_simplified(parser: EmbeddedParser) -> None:
    result = parser.parse("  醫藥費\x00報銷，ＯＫ？ ")
    assert result["text"] == "醫藥費報銷,OK?"
    assert result["text_tokens"][0] == [0, 3]  # 醫藥費, segmented via its simplified form


def test_tokens_cover_the_words(parser: EmbeddedParser) -> None:
    result = parser.parse("我想报销药费 please")
    words = [result["text"][s:e] for s, e in result["text_tokens"]]
    assert "".join(words) == "我想报销药费please"
    assert "报销" in words and "please" in words


@pytest.mark.parametrize("text", ["", "   ", "\n\t", "\x00\x1b", "\u200b\ufeff"])
def test_blank_input_falls_back_with_zero_confidence(parser: EmbeddedParser, text: str) -> None:
    result = parser.parse(text)
    check_shape(result)
    assert result["text"] == ""
    assert result["intent"] == {"name": "nlu_fallback", "confidence": 0.0}
    assert result["entities"] == [] and result["text_tokens"] == []


def test_long_input_is_cut_and_flagged(parser: EmbeddedParser) -> None:
    result = parser.parse("我想报销药费。" * 500)
    check_shape(result, truncated=True)
    assert len(result["text"]) == MAX_CHARS
    assert result["intent"]["name"] == "medication_reimbursement"
    assert "truncated" not in parser.parse("我想报销药费")


@pytest.mark.parametrize(
    "text",
    ["@@@###!!!", "😀😀😀", "asdkjh qweoiu zxcmn", "1234567", "\ud800\udc00\ud800", "ｶﾀｶﾅ", "۞۞"],
)
def test_garbage_gives_a_valid_answer(parser: EmbeddedParser, text: str) -> None:
    check_shape(parser.parse(text))


@pytest.mark.parametrize("text", ["鈵鬕惒媧坳", "asdkjh qweoiu zxcmn", "ﾀｶﾅ薜皃鰻"])
def test_noise_falls_back(parser: EmbeddedParser, text: str) -> None:
    result = parser.parse(text)
    check_shape(result)
    assert result["intent"]["name"] == "nlu_fallback"
    assert len(result["intent_ranking"]) == 10  # the model's ranking is still there


def test_rule_match_gives_emergency_with_certainty_and_keeps_the_ranking(
    parser: EmbeddedParser,
) -> None:
    text = "煤气灶旁边有股煤气味，我头晕"
    model = parser.ranking(text)
    result = parser.parse(text)
    check_shape(result)
    assert result["intent"] == {"name": "emergency", "confidence": 1.0}
    others = [(r["name"], r["confidence"]) for r in result["intent_ranking"][1:]]
    assert others == [r for r in model if r[0] != "emergency"][:9]


def test_rules_beat_a_confident_model(parser: EmbeddedParser) -> None:
    text = "我想问下养老金的事，哎呀我老伴突然晕倒了"
    assert parser.parse(text)["intent"] == {"name": "emergency", "confidence": 1.0}


def test_exceptions_leave_it_to_the_model(parser: EmbeddedParser) -> None:
    result = parser.parse("上次摔倒的医药费报销")
    assert result["intent"]["name"] == "medication_reimbursement"


@pytest.mark.skipif(not _has_entities(), reason="nlu.entities is not there yet")
def test_entities_resolve_against_the_reference(parser: EmbeddedParser) -> None:
    reference = datetime(2026, 3, 4, 10, 0, tzinfo=SHANGHAI)
    result = parser.parse("我老伴明天去市一院，花了三百五十块", reference=reference)
    check_shape(result)
    found = {e["entity"]: e["value"] for e in result["entities"]}
    assert found["date"] == "2026-03-05"
    assert found["amount"] == 350
    assert found["relation"] == "spouse"
    assert found["hospital"] == "市第一人民医院"
    for entity in result["entities"]:
        assert result["text"][entity["start"] : entity["end"]]


def test_get_parser_gives_the_embedded_parser(settings: Settings, parser: EmbeddedParser) -> None:
    chosen = get_parser(settings)
    assert isinstance(chosen, EmbeddedParser)
    assert isinstance(chosen, NluParser)
    assert chosen.from_cache is True  # the module's parser cached it


def test_get_parser_gives_rasa_with_the_embedded_fallback(
    settings: Settings, parser: EmbeddedParser
) -> None:
    rasa_backend = pytest.importorskip("nlu.rasa_backend")
    rasa_settings = settings.model_copy(
        update={"nlu_backend": "rasa", "rasa_url": "http://127.0.0.1:9", "rasa_timeout_s": 0.5}
    )
    chosen = get_parser(rasa_settings)
    assert isinstance(chosen, rasa_backend.RasaParser)
    assert isinstance(chosen.fallback, EmbeddedParser)
    result = chosen.parse("我想报销药费")  # nothing listens on port 9: the fallback answers
    assert result["intent"]["name"] == "medication_reimbursement"


def test_cache_folder_is_the_settings_one(settings: Settings, parser: EmbeddedParser) -> None:
    assert list(Path(settings.nlu_cache_dir).glob("intent-model-*.pkl"))
