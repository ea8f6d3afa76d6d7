"""The intent model on a small fixture dataset: training, prediction, fallback, and the cache."""

from __future__ import annotations

import os
import pickle
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from config.settings import CONFIG_DIR, Settings
from nlu import embedded
from nlu.classifier import DEFAULT_MODEL, compile_model, fit_estimator, vectorize
from nlu.embedded import (
    CACHE_PREFIX,
    EmbeddedParser,
    ParserConfig,
    build_bundle,
    cache_key,
    load_bundle,
)
from nlu.features import ConceptLexicon, build_pinyin_table
from nlu.rules import EmergencyRules
from nlu.text import normalize_for_model

FIXTURE = """\
version: "3.1"
nlu:
- intent: reimburse
  examples: |
    - 我想报销药费
    - 药费怎么报销
    - 医药费能报吗
    - 买药的钱能报销不
    - 报销要带什么单据
    - 住院的费用咋报销
    - 发票丢了还能报销吗
    - 药费报销多久到账
- intent: repair
  examples: |
    - 水管漏水了
    - 马桶堵了
    - 灯泡坏了找人来修
    - 暖气不热了
    - 门锁坏了
    - 水龙头一直滴水
    - 电视打不开了
    - 窗户关不上
- intent: chat
  examples: |
    - 今天天气怎么样
    - 给我讲个笑话
    - 你会唱歌吗
    - 明天下雨吗
    - 推荐个电视剧
    - 你叫什么名字
    - 彩票开奖了吗
    - 现在几点了
"""
EXTRA = """\
- intent: thanks
  examples: |
    - 谢谢你
    - 太感谢了
    - 多谢多谢
    - 谢谢啊
    - 非常感谢
    - 感谢你们
"""


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    path = tmp_path / "train" / "intents.yml"
    path.parent.mkdir()
    path.write_text(FIXTURE, encoding="utf-8")
    return path


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", _env_file=None)


def _parser(settings: Settings, files: list[Path], threshold: float) -> EmbeddedParser:
    bundle, _ = load_bundle(settings, files)
    rules = EmergencyRules.load(CONFIG_DIR / "nlu" / "emergency_rules.yml")
    config = ParserConfig(version=1, fallback_threshold=threshold, emergency_threshold=threshold)
    return EmbeddedParser(bundle, rules, config)


def test_trains_and_predicts(settings: Settings, data_file: Path) -> None:
    parser = EmbeddedParser.load(settings, [data_file])
    assert parser.example_count == 24
    assert set(parser.model.intents) == {"reimburse", "repair", "chat"}
    for text, intent in [
        ("我的药费想报销一下", "reimburse"),
        ("厨房水管坏了漏水", "repair"),
        ("讲个笑话吧", "chat"),
        ("醫藥費報銷", "reimburse"),  # traditional characters
        ("我想保销药费", "reimburse"),  # a recogniser's homophone of 报销
    ]:
        result = parser.parse(text)
        assert result["intent_ranking"][0]["name"] == intent, (text, result["intent_ranking"])


def test_falls_back_below_the_threshold_and_keeps_the_ranking(
    settings: Settings, data_file: Path
) -> None:
    strict = _parser(settings, [data_file], threshold=0.99)
    result = strict.parse("我想报销药费")
    assert result["intent"] == {"name": "nlu_fallback", "confidence": 0.99}
    names = [r["name"] for r in result["intent_ranking"]]
    assert names[0] == "nlu_fallback"
    assert names[1] == "reimburse"
    assert set(names[1:]) == {"reimburse", "repair", "chat"}
    lenient = _parser(settings, [data_file], threshold=0.0)
    assert lenient.parse("我想报销药费")["intent"]["name"] == "reimburse"


def test_unknown_words_fall_back_with_the_configured_threshold(
    settings: Settings, data_file: Path
) -> None:
    parser = _parser(settings, [data_file], threshold=0.5)
    result = parser.parse("qwzx plokm")
    assert result["intent"]["name"] == "nlu_fallback"
    assert max(r["confidence"] for r in result["intent_ranking"][1:]) < 0.5


def test_compiled_model_matches_scikit_learn(settings: Settings, data_file: Path) -> None:
    bundle, _ = load_bundle(settings, [data_file])
    parser = EmbeddedParser(
        bundle,
        EmergencyRules.load(CONFIG_DIR / "nlu" / "emergency_rules.yml"),
        ParserConfig(version=1, fallback_threshold=0, emergency_threshold=0),
    )
    texts = [line[6:] for line in FIXTURE.splitlines() if line.startswith("    - ")]
    labels = [name for name in ("reimburse", "repair", "chat") for _ in range(8)]
    docs = [parser.featurizer.features(text) for text in texts]
    for config in (
        DEFAULT_MODEL,
        replace(DEFAULT_MODEL, classifier="sgd"),
        replace(DEFAULT_MODEL, classifier="svm", c=1.0),
    ):
        matrix, vocab, idf = vectorize(docs, config.sublinear_tf, config.group_weights)
        estimator = fit_estimator(matrix, labels, config)
        model = compile_model(estimator, vocab, idf, config)
        expected = estimator.predict_proba(matrix)
        got = np.array([model.predict_proba(doc) for doc in docs])
        assert list(model.intents) == list(estimator.classes_)
        np.testing.assert_allclose(got, expected, atol=1e-4)


def test_two_intents_are_enough(settings: Settings, data_file: Path) -> None:
    bundle, _ = load_bundle(settings, [data_file])
    featurizer = EmbeddedParser(
        bundle,
        EmergencyRules.load(CONFIG_DIR / "nlu" / "emergency_rules.yml"),
        ParserConfig(version=1, fallback_threshold=0, emergency_threshold=0),
    ).featurizer
    texts = [line[6:] for line in FIXTURE.splitlines() if line.startswith("    - ")][:16]
    docs = [featurizer.features(text) for text in texts]
    labels = ["reimburse"] * 8 + ["repair"] * 8
    for config in (
        DEFAULT_MODEL,
        replace(DEFAULT_MODEL, classifier="logreg"),
        replace(DEFAULT_MODEL, classifier="sgd"),
    ):
        matrix, vocab, idf = vectorize(docs, config.sublinear_tf, config.group_weights)
        estimator = fit_estimator(matrix, labels, config)
        model = compile_model(estimator, vocab, idf, config)
        got = np.array([model.predict_proba(doc) for doc in docs])
        np.testing.assert_allclose(got, estimator.predict_proba(matrix), atol=1e-4)


def test_cache_hit_miss_and_rebuild_on_data_change(settings: Settings, data_file: Path) -> None:
    first = EmbeddedParser.load(settings, [data_file])
    assert first.from_cache is False
    cached = list(settings.nlu_cache_dir.glob(f"{CACHE_PREFIX}*.pkl"))
    assert len(cached) == 1
    second = EmbeddedParser.load(settings, [data_file])
    assert second.from_cache is True
    assert second.model.intents == first.model.intents
    data_file.write_text(FIXTURE + EXTRA, encoding="utf-8")
    third = EmbeddedParser.load(settings, [data_file])
    assert third.from_cache is False
    assert "thanks" in third.model.intents
    assert third.parse("太谢谢你了")["intent_ranking"][0]["name"] == "thanks"
    files = list(settings.nlu_cache_dir.iterdir())
    assert len(files) == 1, "the old model is removed and no temporary file is left"
    assert files[0] != cached[0]


def test_corrupt_cache_is_ignored_and_rebuilt(settings: Settings, data_file: Path) -> None:
    EmbeddedParser.load(settings, [data_file])
    (path,) = settings.nlu_cache_dir.glob(f"{CACHE_PREFIX}*.pkl")
    path.write_bytes(b"not a pickle at all")
    parser = EmbeddedParser.load(settings, [data_file])
    assert parser.from_cache is False
    assert parser.parse("马桶堵了")["intent_ranking"][0]["name"] == "repair"
    assert EmbeddedParser.load(settings, [data_file]).from_cache is True
    # a truncated file (a crash half-way through a write by some other tool) as well
    path.write_bytes(path.read_bytes()[:100])
    assert EmbeddedParser.load(settings, [data_file]).from_cache is False


def test_cache_for_other_data_is_not_used(settings: Settings, data_file: Path) -> None:
    bundle, _ = load_bundle(settings, [data_file])
    (path,) = settings.nlu_cache_dir.glob(f"{CACHE_PREFIX}*.pkl")
    with path.open("wb") as handle:
        pickle.dump(replace(bundle, key="something else"), handle)
    _, cached = load_bundle(settings, [data_file])
    assert cached is False


def test_cache_key_depends_on_bytes_not_on_order_or_mtime(tmp_path: Path, data_file: Path) -> None:
    other = tmp_path / "other.yml"
    other.write_text(EXTRA.join(["nlu:\n", ""]), encoding="utf-8")
    key = cache_key([data_file, other])
    assert cache_key([other, data_file]) == key
    os.utime(data_file, (1, 1))
    assert cache_key([data_file, other]) == key
    data_file.write_text(FIXTURE.replace("马桶堵了", "马桶堵住了"), encoding="utf-8")
    assert cache_key([data_file, other]) != key


def test_unwritable_cache_still_gives_a_parser(tmp_path: Path, data_file: Path) -> None:
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("x")
    settings = Settings(data_dir=blocker, _env_file=None)  # nlu-cache cannot be created in a file
    parser = EmbeddedParser.load(settings, [data_file])
    assert parser.parse("马桶堵了")["intent_ranking"][0]["name"] == "repair"


def test_training_needs_two_intents(tmp_path: Path) -> None:
    path = tmp_path / "one.yml"
    path.write_text("nlu:\n- intent: a\n  examples: |\n    - 你好\n", encoding="utf-8")
    with pytest.raises(ValueError, match="at least two intents"):
        build_bundle([path])


def test_cache_key_depends_on_the_code_version(
    monkeypatch: pytest.MonkeyPatch, data_file: Path
) -> None:
    key = cache_key([data_file])
    monkeypatch.setattr(embedded, "CODE_VERSION", "something newer")
    embedded._code_fingerprint.cache_clear()
    try:
        assert cache_key([data_file]) != key
    finally:
        embedded._code_fingerprint.cache_clear()


@pytest.fixture(scope="module")
def pinyin() -> dict[str, str]:
    return build_pinyin_table()


def test_concept_lexicon_matching(pinyin: dict[str, str]) -> None:
    lexicon = ConceptLexicon(
        {
            "death": ["去世", "殡仪馆"],
            "affirm": ["=对", "=好的"],
            "status": ["~(办|批)(好|下来)?了?没"],
            "greet": ["hello", "good morning"],
        },
        pinyin,
    )

    def find(text: str) -> list[str]:
        return sorted(lexicon.find(normalize_for_model(text), pinyin))

    assert find("我老伴昨天去世了") == ["death"]
    assert find("殡仪官在哪") == ["death"]  # three characters: matched by sound too
    assert find("我去市一院") == []  # two characters: by their characters only
    assert find("对对对") == ["affirm"]  # the whole utterance, repeats folded
    assert find("好的吧，对") == ["affirm", "affirm"]  # clause by clause
    assert find("我对这个不满意") == []
    assert find("手续办好了没") == ["status"]
    assert find("Hello, good  morning!") == ["greet", "greet"]
    assert find("othello") == []


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("concepts:\n  affirm: [yes, ok]\n", "concepts.affirm: True is not text (quote it)"),
        ("concepts:\n  status: ['~(unclosed']\n", "concepts.status: '~(unclosed'"),
        ("concepts: [a, b]\n", "expected 'concepts:'"),
    ],
)
def test_concept_lexicon_errors_name_the_file(
    tmp_path: Path, pinyin: dict[str, str], text: str, problem: str
) -> None:
    path = tmp_path / "concepts.yml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError) as caught:
        ConceptLexicon.load(pinyin, path)
    assert str(path) in str(caught.value)
    assert problem in str(caught.value)


def test_real_concept_lexicon_loads(pinyin: dict[str, str]) -> None:
    lexicon = ConceptLexicon.load(pinyin)
    assert "death" in lexicon.find(normalize_for_model("我老伴昨天去世了"), pinyin)


def test_unfamiliar_text_falls_back_but_keeps_the_ranking(
    settings: Settings, data_file: Path
) -> None:
    bundle, _ = load_bundle(settings, [data_file])
    rules = EmergencyRules.load(CONFIG_DIR / "nlu" / "emergency_rules.yml")
    config = ParserConfig(
        version=1, fallback_threshold=0.0, emergency_threshold=0.0, unfamiliar_share=0.5
    )
    parser = EmbeddedParser(bundle, rules, config)
    result = parser.parse("鈵鬕惒媧坳")  # characters no example used
    assert result["intent"]["name"] == "nlu_fallback"
    ranking = result["intent_ranking"]
    assert ranking[0]["name"] == "nlu_fallback"
    assert ranking[0]["confidence"] >= ranking[1]["confidence"]
    assert {r["name"] for r in ranking[1:]} == {"reimburse", "repair", "chat"}
    assert parser.parse("鈵鬕惒媧坳好")["intent"]["name"] == "nlu_fallback"  # 1 of 6 known
    assert parser.parse("鈵鬕报销药费")["intent"]["name"] == "reimburse"  # a concept: not gated
    assert parser.parse("鈵鬕惒媧坳救命")["intent"]["name"] == "emergency"  # rules first
    lenient = EmbeddedParser(bundle, rules, config.model_copy(update={"unfamiliar_share": 1.0}))
    assert lenient.parse("鈵鬕惒媧坳")["intent"]["name"] != "nlu_fallback"
