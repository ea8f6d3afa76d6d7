"""The Rasa backend through a real httpx client against a fake Rasa server on 127.0.0.1."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from structlog.testing import capture_logs

from nlu.intents import ENTITIES, INTENTS, rasa_domain
from nlu.rasa_backend import CircuitBreaker, RasaParser
from tests.nlu.fake_rasa import FakeRasa, rasa_reply

TEXT = "我老伴晕倒了 电话13812345678"
ROOT = Path(__file__).resolve().parents[2]
RASA_DIR = ROOT / "nlu" / "rasa"


class StandInParser:
    """The fallback boundary: records its calls and answers a fresh, recognisable dict."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, datetime | None]] = []
        self.results: list[dict[str, Any]] = []

    def parse(self, text: str, *, reference: datetime | None = None) -> dict[str, Any]:
        self.calls.append((text, reference))
        result = {
            "text": text,
            "intent": {"name": "nlu_fallback", "confidence": 0.0},
            "intent_ranking": [],
            "entities": [],
            "text_tokens": [],
        }
        self.results.append(result)
        return result


class ManualClock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def fallback() -> StandInParser:
    return StandInParser()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def make_parser(fallback: StandInParser, clock: ManualClock) -> Iterator[Callable[..., RasaParser]]:
    made: list[RasaParser] = []

    def make(url: str, timeout_s: float = 2.0) -> RasaParser:
        parser = RasaParser(url, timeout_s, fallback, clock=clock)
        made.append(parser)
        return parser

    yield make
    for parser in made:
        parser.close()


def unavailable(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["event"] == "rasa_unavailable"]


def assert_no_user_text(logs: list[dict[str, Any]], text: str) -> None:
    rendered = repr(logs)
    assert text not in rendered
    assert "13812345678" not in rendered


def test_good_reply_is_returned_with_ranking_sorted(
    fake_rasa: FakeRasa, make_parser: Callable[..., RasaParser], fallback: StandInParser
) -> None:
    ranking = [{"name": f"intent_{i}", "confidence": round(0.01 * i, 2)} for i in range(12)]
    entity = {
        "entity": "relation",
        "start": 1,
        "end": 3,
        "value": "spouse",
        "confidence_entity": 0.97,
        "extractor": "DIETClassifier",
        "processors": ["EntitySynonymMapper"],
    }
    reply = {
        "text": TEXT,
        "intent": {"name": "emergency", "confidence": 0.93},
        "entities": [entity],
        "text_tokens": [[0, 1], [1, 3], [3, 5], [5, 6]],
        "intent_ranking": [{"name": "emergency", "confidence": 0.93}, *ranking],
    }
    fake_rasa.replies[TEXT] = reply
    parser = make_parser(fake_rasa.url)

    with capture_logs() as logs:
        result = parser.parse(TEXT)

    assert fake_rasa.parse_texts == [TEXT]
    assert fake_rasa.requests[0].json == {"text": TEXT}
    assert fallback.calls == []
    assert logs == []
    assert result["text"] == TEXT
    assert result["intent"] == {"name": "emergency", "confidence": 0.93}
    assert result["entities"] == [entity]  # Rasa's keys kept, nothing added
    assert result["text_tokens"] == [[0, 1], [1, 3], [3, 5], [5, 6]]
    confidences = [item["confidence"] for item in result["intent_ranking"]]
    assert confidences == sorted(confidences, reverse=True)
    assert [item["name"] for item in result["intent_ranking"]] == [
        "emergency",
        *[f"intent_{i}" for i in range(11, 2, -1)],
    ]


def test_nlu_fallback_and_missing_tokens_pass_through(
    fake_rasa: FakeRasa, make_parser: Callable[..., RasaParser], fallback: StandInParser
) -> None:
    fake_rasa.replies["嗯嗯那个"] = {
        "text": "嗯嗯那个",
        "intent": {"name": "nlu_fallback", "confidence": 0.5},
        "entities": [],
        "intent_ranking": [
            {"name": "greet", "confidence": 0.31},
            {"name": "nlu_fallback", "confidence": 0.5},
        ],
    }
    result = make_parser(fake_rasa.url).parse("嗯嗯那个")

    assert fallback.calls == []
    assert result["intent"] == {"name": "nlu_fallback", "confidence": 0.5}
    assert result["intent_ranking"] == [
        {"name": "nlu_fallback", "confidence": 0.5},
        {"name": "greet", "confidence": 0.31},
    ]
    assert result["text_tokens"] == []


def test_timeout_falls_back_and_logs_without_text(
    fake_rasa: FakeRasa, make_parser: Callable[..., RasaParser], fallback: StandInParser
) -> None:
    fake_rasa.delay_s = 3.0
    parser = make_parser(fake_rasa.url, timeout_s=0.2)
    reference = datetime(2026, 3, 5, 9, 30, tzinfo=UTC)

    started = time.perf_counter()
    with capture_logs() as logs:
        result = parser.parse(TEXT, reference=reference)
    elapsed = time.perf_counter() - started

    assert elapsed < 2.0
    assert fake_rasa.parse_texts == [TEXT]
    assert fallback.calls == [(TEXT, reference)]
    assert result is fallback.results[0]
    [entry] = unavailable(logs)
    assert entry["log_level"] == "warning"
    assert entry["reason"] == "timeout"
    assert entry["error"] == "ReadTimeout"
    assert entry["url"] == fake_rasa.url
    assert entry["circuit_open"] is False
    assert_no_user_text(logs, TEXT)


def test_server_error_falls_back(
    fake_rasa: FakeRasa, make_parser: Callable[..., RasaParser], fallback: StandInParser
) -> None:
    fake_rasa.status = 500
    with capture_logs() as logs:
        result = make_parser(fake_rasa.url).parse(TEXT)

    assert result is fallback.results[0]
    [entry] = unavailable(logs)
    assert (entry["reason"], entry["status"]) == ("http_status", 500)
    assert_no_user_text(logs, TEXT)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"text": "x", "intent": {"name": "gre', "malformed_json"),
        (b"<html>Bad Gateway</html>", "malformed_json"),
        (b"", "malformed_json"),
        (b'{"text": "x"}', "invalid_reply"),
        (b'[{"intent": "greet"}]', "invalid_reply"),
    ],
)
def test_malformed_reply_falls_back(
    fake_rasa: FakeRasa,
    make_parser: Callable[..., RasaParser],
    fallback: StandInParser,
    body: bytes,
    reason: str,
) -> None:
    fake_rasa.raw_body = body
    with capture_logs() as logs:
        result = make_parser(fake_rasa.url).parse(TEXT)

    assert fake_rasa.parse_texts == [TEXT]
    assert result is fallback.results[0]
    [entry] = unavailable(logs)
    assert entry["reason"] == reason


def test_reply_echoing_text_with_a_bad_field_logs_field_names_only(
    fake_rasa: FakeRasa, make_parser: Callable[..., RasaParser], fallback: StandInParser
) -> None:
    bad = rasa_reply(TEXT, "emergency")
    bad["entities"] = [{"entity": "phone_number", "start": "13812345678", "end": 5, "value": 1}]
    fake_rasa.replies[TEXT] = bad
    with capture_logs() as logs:
        result = make_parser(fake_rasa.url).parse(TEXT)

    assert result is fallback.results[0]
    [entry] = unavailable(logs)
    assert entry["reason"] == "invalid_reply"
    assert entry["fields"] == ["entities.0.start"]
    assert_no_user_text(logs, TEXT)


def test_server_not_listening_falls_back(
    make_parser: Callable[..., RasaParser], fallback: StandInParser
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with capture_logs() as logs:
        result = make_parser(f"http://127.0.0.1:{port}").parse(TEXT)

    assert result is fallback.results[0]
    [entry] = unavailable(logs)
    assert (entry["reason"], entry["error"]) == ("connection_error", "ConnectError")
    assert_no_user_text(logs, TEXT)


@pytest.mark.parametrize("text", ["", "   ", "\u3000\n\t"])
def test_blank_text_is_never_sent(
    fake_rasa: FakeRasa,
    make_parser: Callable[..., RasaParser],
    fallback: StandInParser,
    text: str,
) -> None:
    with capture_logs() as logs:
        result = make_parser(fake_rasa.url).parse(text)

    assert fake_rasa.requests == []
    assert fallback.calls == [(text, None)]
    assert result is fallback.results[0]
    assert logs == []


@pytest.mark.parametrize("text", ["\x00\u200b", "\ud800 \x07"])
def test_text_blank_once_cleaned_is_never_sent(
    fake_rasa: FakeRasa,
    make_parser: Callable[..., RasaParser],
    fallback: StandInParser,
    text: str,
) -> None:
    result = make_parser(fake_rasa.url).parse(text)

    assert fake_rasa.requests == []
    assert fallback.calls == [(text, None)]
    assert result is fallback.results[0]


def test_server_gets_cleaned_text(
    fake_rasa: FakeRasa, make_parser: Callable[..., RasaParser], fallback: StandInParser
) -> None:
    parser = make_parser(fake_rasa.url)

    result = parser.parse("  我要\x00报销\udc80  ＡＢＣ\n")
    assert fake_rasa.parse_texts == ["我要报销 ABC"]
    assert result["text"] == "我要报销 ABC"
    assert "truncated" not in result

    long_text = "报销" * 1500
    result = parser.parse(long_text)
    assert fake_rasa.parse_texts[-1] == long_text[:2000]
    assert result["text"] == long_text[:2000]
    assert result["truncated"] is True
    assert fallback.calls == []


def test_circuit_opens_after_three_failures_and_closes_after_the_pause(
    fake_rasa: FakeRasa,
    make_parser: Callable[..., RasaParser],
    fallback: StandInParser,
    clock: ManualClock,
) -> None:
    fake_rasa.status = 500
    parser = make_parser(fake_rasa.url)

    with capture_logs() as logs:
        for _ in range(3):
            parser.parse(TEXT)
    assert len(fake_rasa.parse_texts) == 3
    assert [entry["circuit_open"] for entry in unavailable(logs)] == [False, False, True]
    assert parser.breaker.is_open

    with capture_logs() as logs:
        parser.parse(TEXT)
        clock.advance(29.9)
        parser.parse(TEXT)
    assert len(fake_rasa.parse_texts) == 3  # nothing sent while open
    assert len(fallback.calls) == 5
    assert unavailable(logs) == []
    assert [entry["event"] for entry in logs] == ["rasa_skipped", "rasa_skipped"]

    fake_rasa.status = 200
    clock.advance(0.1)
    result = parser.parse(TEXT)
    assert len(fake_rasa.parse_texts) == 4
    assert result["intent"]["name"] == "greet"
    assert not parser.breaker.is_open
    assert len(fallback.calls) == 5


def test_failed_trial_reopens_at_once(
    fake_rasa: FakeRasa,
    make_parser: Callable[..., RasaParser],
    fallback: StandInParser,
    clock: ManualClock,
) -> None:
    fake_rasa.status = 503
    parser = make_parser(fake_rasa.url)
    for _ in range(3):
        parser.parse(TEXT)
    clock.advance(30)

    with capture_logs() as logs:
        parser.parse(TEXT)  # the trial
        parser.parse(TEXT)  # refused again
    assert len(fake_rasa.parse_texts) == 4
    assert [entry["circuit_open"] for entry in unavailable(logs)] == [True]
    assert parser.breaker.is_open
    assert len(fallback.calls) == 5


def test_after_the_pause_only_one_trial_goes_out(clock: ManualClock) -> None:
    breaker = CircuitBreaker(threshold=3, cooldown_s=30.0, clock=clock)
    for _ in range(3):
        assert breaker.allow()
        breaker.record_failure()
    assert not breaker.allow()

    clock.advance(30)
    assert breaker.allow()  # the trial
    assert not breaker.allow()  # a concurrent caller while the trial is out
    breaker.record_success()
    assert breaker.allow()
    assert breaker.allow()


def test_a_success_resets_the_failure_count(
    fake_rasa: FakeRasa, make_parser: Callable[..., RasaParser], fallback: StandInParser
) -> None:
    parser = make_parser(fake_rasa.url)
    for status in (500, 500, 200, 500, 500):
        fake_rasa.status = status
        parser.parse(TEXT)
    assert not parser.breaker.is_open

    parser.parse(TEXT)  # third failure in a row
    assert parser.breaker.is_open
    assert len(fake_rasa.parse_texts) == 6
    assert len(fallback.calls) == 5


def test_base_url_with_trailing_slash_and_path(
    fake_rasa: FakeRasa, fallback: StandInParser
) -> None:
    with RasaParser(fake_rasa.url + "/", 2.0, fallback) as parser:
        assert parser.parse("你好")["intent"]["name"] == "greet"
    assert [r.path for r in fake_rasa.requests] == ["/model/parse"]

    with RasaParser(fake_rasa.url + "/rasa", 2.0, fallback) as parser:
        assert parser.parse("你好") is fallback.results[0]  # 404 from the fake at /rasa/...
    assert fake_rasa.requests[-1].path == "/rasa/model/parse"


@pytest.mark.parametrize("url", ["", "localhost:5005", "ftp://127.0.0.1:5005"])
def test_unusable_url_is_refused(url: str, fallback: StandInParser) -> None:
    with pytest.raises(ValueError, match="Rasa URL"):
        RasaParser(url, 2.0, fallback)


CONTRACT_INTENTS = set(INTENTS)
CONTRACT_ENTITIES = set(ENTITIES)


def test_rasa_project_files_follow_the_contract() -> None:
    """nlu/rasa/ trains on the same intents and entities as the embedded parser."""
    domain = yaml.safe_load(rasa_domain())
    assert set(domain["intents"]) == CONTRACT_INTENTS
    assert len(domain["intents"]) == len(CONTRACT_INTENTS)
    assert set(domain["entities"]) == CONTRACT_ENTITIES
    data_intents = {path.stem for path in (ROOT / "nlu" / "data" / "intents").glob("*.yml")}
    assert data_intents <= CONTRACT_INTENTS

    config = yaml.safe_load((RASA_DIR / "config.yml").read_text(encoding="utf-8"))
    assert config["language"] == "zh"
    assert config["recipe"] == "default.v1"
    assert config["assistant_id"]
    steps = {step["name"]: step for step in config["pipeline"]}
    assert config["pipeline"][0]["name"] == "JiebaTokenizer"
    assert {"RegexFeaturizer", "LexicalSyntacticFeaturizer", "EntitySynonymMapper"} <= set(steps)
    char_ngrams = [step for step in config["pipeline"] if step.get("analyzer") == "char_wb"]
    assert [(s["min_ngram"], s["max_ngram"]) for s in char_ngrams] == [(1, 3)]
    assert steps["DIETClassifier"]["epochs"] == 100
    assert steps["FallbackClassifier"]["threshold"] == 0.5
