"""The Rasa backend: send each text to a Rasa server's POST /model/parse, with a timeout.

Any failure (server down, timeout, non-200, malformed reply) is logged without the user's text and
answered by the fallback parser; a small circuit breaker stops calling a dead server for a while.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import httpx
import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from nlu.text import clean_text

if TYPE_CHECKING:
    from nlu.parser import NluParser

log = structlog.get_logger(__name__)

PARSE_PATH = "/model/parse"
MAX_RANKING = 10
TRUNCATED_KEY = "truncated"  # set (True) when clean_text cut the text


class RasaIntent(BaseModel):
    """One intent with its confidence, as in Rasa's ``intent`` and ``intent_ranking``."""

    model_config = ConfigDict(extra="allow", strict=True)

    name: str
    confidence: float


class RasaEntity(BaseModel):
    """One extracted entity; keys beyond these (extractor, confidence_entity, role...) are kept."""

    model_config = ConfigDict(extra="allow", strict=True)

    entity: str
    start: int
    end: int
    value: Any


class RasaParseReply(BaseModel):
    """The JSON a Rasa 3 server answers to POST /model/parse."""

    model_config = ConfigDict(extra="allow", strict=True)

    text: str
    intent: RasaIntent
    entities: list[RasaEntity]
    intent_ranking: list[RasaIntent]
    text_tokens: list[tuple[int, int]] = Field(default_factory=list)


class CircuitBreaker:
    """After ``threshold`` consecutive failures, refuse calls for ``cooldown_s``; then let one try.

    A trial that fails reopens the breaker at once; a success closes it and resets the count.
    """

    def __init__(
        self,
        threshold: int = 3,
        cooldown_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if threshold < 1 or cooldown_s < 0:
            raise ValueError("threshold must be >= 1 and cooldown_s >= 0")
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._open_until: float | None = None

    @property
    def is_open(self) -> bool:
        """True while calls are being refused."""
        with self._lock:
            return self._open_until is not None and self._clock() < self._open_until

    def allow(self) -> bool:
        """Whether a call may go out now; after the pause, only one trial until it reports back."""
        with self._lock:
            if self._open_until is None:
                return True
            now = self._clock()
            if now < self._open_until:
                return False
            # Half-open: this caller is the trial; others wait another pause unless it succeeds.
            self._open_until = now + self.cooldown_s
            return True

    def record_success(self) -> None:
        with self._lock:
            self._failures = 0
            self._open_until = None

    def record_failure(self) -> bool:
        """Count a failure; True when this failure (re)opens the breaker."""
        with self._lock:
            self._failures += 1
            if self._failures >= self.threshold:
                self._open_until = self._clock() + self.cooldown_s
                return True
            return False


class RasaUnavailable(Exception):
    """Why a Rasa reply could not be used; ``reason`` is a short code, never user text."""

    def __init__(self, reason: str, **details: Any) -> None:
        super().__init__(reason)
        self.reason = reason
        self.details = details


class RasaParser:
    """An NluParser that asks a Rasa server and falls back to another parser when it cannot."""

    def __init__(
        self,
        base_url: str,
        timeout_s: float,
        fallback: NluParser,
        *,
        clock: Callable[[], float] = time.monotonic,
        failure_threshold: int = 3,
        cooldown_s: float = 30.0,
    ) -> None:
        url = httpx.URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"Rasa URL must be http(s)://host[:port], got {base_url!r}")
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self.base_url = base_url
        self.timeout_s = timeout_s
        self.fallback = fallback
        self.breaker = CircuitBreaker(failure_threshold, cooldown_s, clock)
        # trust_env=False: callers' words go straight to the configured server, never via a proxy
        # picked up from HTTP(S)_PROXY.
        self.client = httpx.Client(base_url=url, timeout=httpx.Timeout(timeout_s), trust_env=False)

    def parse(self, text: str, *, reference: datetime | None = None) -> dict[str, Any]:
        """Rasa's parse of ``text``, or the fallback's when the server cannot answer usefully.

        The server gets the cleaned text (nlu.text.clean_text), so its offsets refer to that;
        the fallback gets ``text`` as given and does its own cleaning.
        """
        cleaned, truncated = clean_text(text)
        if not cleaned:
            # Rasa answers 500 to a body without text; blank input is the fallback's to judge.
            return self.fallback.parse(text, reference=reference)
        if not self.breaker.allow():
            log.debug("rasa_skipped", reason="circuit_open", url=self.base_url)
            return self.fallback.parse(text, reference=reference)
        started = time.perf_counter()
        try:
            result = self._ask(cleaned)
        except RasaUnavailable as exc:
            opened = self.breaker.record_failure()
            log.warning(
                "rasa_unavailable",
                reason=exc.reason,
                url=self.base_url,
                elapsed_ms=round((time.perf_counter() - started) * 1000, 1),
                circuit_open=opened,
                **exc.details,
            )
            return self.fallback.parse(text, reference=reference)
        self.breaker.record_success()
        if truncated:
            result[TRUNCATED_KEY] = True
        return result

    def _ask(self, text: str) -> dict[str, Any]:
        """One request; raises RasaUnavailable with a reason code on any failure."""
        try:
            response = self.client.post(PARSE_PATH, json={"text": text})
        except httpx.TimeoutException as exc:
            raise RasaUnavailable("timeout", error=type(exc).__name__) from exc
        except httpx.HTTPError as exc:  # connection refused, reset, protocol errors
            raise RasaUnavailable("connection_error", error=type(exc).__name__) from exc
        if response.status_code != 200:
            raise RasaUnavailable("http_status", status=response.status_code)
        try:
            reply = RasaParseReply.model_validate_json(response.content)
        except ValidationError as exc:
            errors = exc.errors(include_input=False, include_url=False)
            if any(error["type"] == "json_invalid" for error in errors):
                raise RasaUnavailable("malformed_json") from exc
            # Field locations only: the messages may quote the reply, which echoes the user's text.
            fields = sorted({".".join(str(part) for part in error["loc"]) for error in errors})
            raise RasaUnavailable("invalid_reply", fields=fields[:5]) from exc
        return normalise(reply)

    def close(self) -> None:
        """Close the HTTP connections."""
        self.client.close()

    def __enter__(self) -> RasaParser:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def normalise(reply: RasaParseReply) -> dict[str, Any]:
    """The contract's parse dict: Rasa's keys as given, ranking highest first, at most ten."""
    result = reply.model_dump(mode="json")
    result["intent_ranking"] = sorted(
        result["intent_ranking"], key=lambda item: item["confidence"], reverse=True
    )[:MAX_RANKING]
    return result
