"""The embedded parser (default NLU backend): intent model + emergency safety rules + entity
extractors, answering in Rasa's /model/parse JSON; the model is trained once and cached.

`nlu.parser.get_parser(settings)` gives the embedded parser or, with `HOTLINE_NLU_BACKEND=rasa`,
a Rasa server client whose fallback is the embedded parser. The embedded parser cleans the text
(control characters, full-width forms, 2,000-character cut), converts traditional characters to
simplified for its features only, and scores intents with a linear model over character n-grams,
toneless pinyin n-grams (homophones from speech recognition share features), jieba words and a
small domain word list (`nlu/concepts.yml`). Below `fallback_threshold` the answer is
`nlu_fallback`. The emergency rules run after the model and always win, except where an
exception phrase (negation, a past fall being claimed for) covers the match. The trained model is
cached in `data/nlu-cache/` under a hash of the data, word list and code; a change rebuilds it.
Data sets: `nlu/data/intents/` trains; `nlu/data/test/` is the held-out set (never tuned on);
`nlu/data/dev/` was the first held-out set, used up by error analysis.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import structlog
from pydantic import BaseModel, ConfigDict, Field

from config.loader import load_yaml_model
from config.settings import Settings
from nlu import classifier as classifier_module
from nlu import features as features_module
from nlu import text as text_module
from nlu.classifier import DEFAULT_MODEL, LinearIntentModel, ModelConfig, train
from nlu.features import (
    CONCEPTS_FILE,
    ConceptLexicon,
    Featurizer,
    build_jieba_dictionary,
    build_pinyin_table,
    make_tokenizer,
    text_units,
    unfamiliar_share,
)
from nlu.intents import FALLBACK as FALLBACK_INTENT
from nlu.rules import RULES_FILE, EmergencyRules
from nlu.text import clean_text
from nlu.training_data import load_training_data, training_files

log = structlog.get_logger(__name__)

EMERGENCY_INTENT = "emergency"

# Bump when a change to the features or the classifier code changes what a trained model means:
# cached models with another version are retrained.
CODE_VERSION = "nlu-embedded-1"
PARSER_CONFIG_FILE = "parser.yml"
HOSPITALS_FILE = "hospitals.yml"
CACHE_PREFIX = "intent-model-"


class ParserConfig(BaseModel):
    """config/nlu/parser.yml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1]
    fallback_threshold: float = Field(ge=0, le=1)
    emergency_threshold: float = Field(ge=0, le=1)
    unfamiliar_share: float = Field(default=1.0, ge=0, le=1)
    ranking_size: int = Field(default=10, ge=1, le=100)


@dataclass
class ModelBundle:
    """What the cache file holds: everything parsing needs, without scikit-learn or pypinyin."""

    key: str
    model: LinearIntentModel
    config: ModelConfig
    pinyin: dict[str, str]
    lexicon: ConceptLexicon
    jieba_freq: dict[str, int]
    jieba_total: int
    train_seconds: float
    examples: int
    known_units: frozenset[str]  # characters and Latin words of the training examples


@lru_cache(maxsize=1)
def _code_fingerprint() -> str:
    """CODE_VERSION, the source of the modules that turn text into a model, and the versions of
    the libraries they use: editing the features retrains without anyone bumping a constant."""
    from importlib.metadata import version

    digest = hashlib.sha256(CODE_VERSION.encode())
    for module in (text_module, features_module, classifier_module):
        digest.update(Path(str(module.__file__)).read_bytes())
    for package in ("jieba", "pypinyin", "opencc", "scikit-learn", "numpy"):
        try:
            digest.update(f"{package}={version(package)}".encode())
        except Exception:  # not installed as a distribution: the source hash still counts
            digest.update(package.encode())
    return digest.hexdigest()


def cache_key(files: Sequence[Path], config: ModelConfig = DEFAULT_MODEL) -> str:
    """A hash of every training file's name and bytes, the concept lexicon, the model options
    and the code fingerprint (CODE_VERSION, feature code, library versions)."""
    digest = hashlib.sha256(f"{_code_fingerprint()}\0{asdict(config)!r}\0".encode())
    for path in [CONCEPTS_FILE, *sorted(Path(p) for p in files)]:
        digest.update(f"{path.name}\0".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def build_bundle(files: Sequence[Path], config: ModelConfig = DEFAULT_MODEL) -> ModelBundle:
    """Train a model on the given training files."""
    started = time.perf_counter()
    data = load_training_data(files)
    if not data.examples:
        raise ValueError("no intent examples in " + ", ".join(str(p) for p in files))
    freq, total = build_jieba_dictionary(config.jieba_top_words)
    pinyin = build_pinyin_table()
    lexicon = ConceptLexicon.load(pinyin)
    featurizer = Featurizer(config.features, pinyin, make_tokenizer(freq, total), lexicon)
    texts = [clean_text(ex.text)[0] for ex in data.examples]
    documents = [featurizer.features(text) for text in texts]
    model = train(documents, [ex.intent for ex in data.examples], config)
    return ModelBundle(
        key=cache_key(files, config),
        model=model,
        config=config,
        pinyin=pinyin,
        lexicon=lexicon,
        jieba_freq=freq,
        jieba_total=total,
        train_seconds=time.perf_counter() - started,
        examples=len(data.examples),
        known_units=frozenset(unit for text in texts for unit in text_units(text)),
    )


def read_cache(path: Path, key: str) -> ModelBundle | None:
    """The cached bundle, or None when it is missing, unreadable or for other data/code."""
    try:
        with path.open("rb") as handle:
            bundle = pickle.load(handle)
    except FileNotFoundError:
        return None
    except Exception as exc:  # a truncated or foreign file: retrain rather than fail
        log.warning("nlu_cache_unreadable", path=str(path), error=type(exc).__name__)
        return None
    if not isinstance(bundle, ModelBundle) or bundle.key != key:
        log.warning("nlu_cache_stale", path=str(path))
        return None
    return bundle


def write_cache(path: Path, bundle: ModelBundle) -> None:
    """Write atomically (temp file + os.replace) and remove older models from the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".pkl")
    try:
        with os.fdopen(fd, "wb") as handle:
            pickle.dump(bundle, handle, protocol=pickle.HIGHEST_PROTOCOL)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    for old in path.parent.glob(f"{CACHE_PREFIX}*.pkl"):
        if old != path:
            old.unlink(missing_ok=True)


def cache_path(settings: Settings, key: str) -> Path:
    return Path(settings.nlu_cache_dir) / f"{CACHE_PREFIX}{key[:24]}.pkl"


def load_bundle(
    settings: Settings, files: Sequence[Path] | None = None
) -> tuple[ModelBundle, bool]:
    """(bundle, came from the cache): the cached model for these files, trained when missing."""
    files = list(training_files(settings) if files is None else files)
    key = cache_key(files)
    path = cache_path(settings, key)
    bundle = read_cache(path, key)
    if bundle is not None:
        return bundle, True
    bundle = build_bundle(files)
    try:
        write_cache(path, bundle)
    except OSError as exc:  # a read-only disk still gets a working parser
        log.warning("nlu_cache_not_written", path=str(path), error=str(exc))
    log.info("nlu_model_trained", examples=bundle.examples, seconds=round(bundle.train_seconds, 2))
    return bundle, False


def _entity_extraction(config_dir: Path) -> tuple[Any, Any]:
    """(extract_entities, tables), or (None, None) when the extractors are not installed."""
    try:
        from nlu.entities import (
            DEFAULT_RELATIONS,
            EntityTables,
            extract_entities,
            load_hospital_table,
        )
    except ImportError:  # the intent model works without them
        return None, None
    hospitals = config_dir / "nlu" / HOSPITALS_FILE
    table = load_hospital_table(hospitals) if hospitals.is_file() else {}
    return extract_entities, EntityTables(hospitals=table, relations=dict(DEFAULT_RELATIONS))


class EmbeddedParser:
    """Parses texts in-process; see NluParser in nlu/parser.py."""

    def __init__(
        self,
        bundle: ModelBundle,
        rules: EmergencyRules,
        config: ParserConfig,
        *,
        timezone: str = "Asia/Shanghai",
        entity_extraction: tuple[Any, Any] = (None, None),
    ) -> None:
        self.bundle = bundle
        self.model = bundle.model
        self.rules = rules
        self.config = config
        self.timezone = ZoneInfo(timezone)
        self._extract_entities, self.entity_tables = entity_extraction
        self.featurizer = Featurizer(
            bundle.config.features,
            bundle.pinyin,
            make_tokenizer(bundle.jieba_freq, bundle.jieba_total),
            bundle.lexicon,
        )
        self.from_cache = False

    @classmethod
    def load(cls, settings: Settings, files: Sequence[Path] | None = None) -> EmbeddedParser:
        """Rules and thresholds from settings.config_dir/nlu/, the model from the cache (trained
        and cached when the training files changed). files: other training files (tests)."""
        nlu_config = Path(settings.config_dir) / "nlu"
        rules = EmergencyRules.load(nlu_config / RULES_FILE)
        config = load_yaml_model(nlu_config / PARSER_CONFIG_FILE, ParserConfig)
        bundle, cached = load_bundle(settings, files)
        parser = cls(
            bundle,
            rules,
            config,
            timezone=settings.timezone,
            entity_extraction=_entity_extraction(Path(settings.config_dir)),
        )
        parser.from_cache = cached
        return parser

    @classmethod
    def train(cls, settings: Settings, files: Sequence[Path] | None = None) -> EmbeddedParser:
        """Retrain now (ignoring the cache), cache the model and return the parser."""
        files = list(training_files(settings) if files is None else files)
        bundle = build_bundle(files)
        write_cache(cache_path(settings, bundle.key), bundle)
        return cls.load(settings, files)

    @property
    def example_count(self) -> int:
        """How many training examples the model learnt from."""
        return self.bundle.examples

    def ranking(
        self, text: str, tokens: list[tuple[str, int, int]] | None = None
    ) -> list[tuple[str, float]]:
        """The model's intents for a cleaned text, most likely first."""
        return self._ranking(self.featurizer.features(text, tokens))

    def _ranking(self, features: list[str]) -> list[tuple[str, float]]:
        probs = self.model.predict_proba(features)
        order = probs.argsort()[::-1]
        return [(self.model.intents[i], float(probs[i])) for i in order]

    def unfamiliar(self, text: str, features: list[str]) -> bool:
        """Mostly characters and words no training example used, and no concept of the lexicon:
        noise, or another language; the model's guess would be arbitrary."""
        if any(feature.startswith("k:") for feature in features):
            return False
        return unfamiliar_share(text, self.bundle.known_units) > self.config.unfamiliar_share

    def parse(self, text: str, *, reference: datetime | None = None) -> dict[str, Any]:
        """Rasa /model/parse JSON for a text (see NluParser.parse in nlu/parser.py)."""
        cleaned, truncated = clean_text(text)
        size = self.config.ranking_size
        result: dict[str, Any]
        if not cleaned:
            fallback = {"name": FALLBACK_INTENT, "confidence": 0.0}
            result = {"text": cleaned, "intent": fallback, "intent_ranking": [dict(fallback)]}
            result.update(entities=[], text_tokens=[])
            return _with_flag(result, truncated)
        tokens = self.featurizer.tokens(cleaned)
        features = self.featurizer.features(cleaned, tokens)
        ranking = self._ranking(features)
        ruled = self.rules.match(cleaned) is not None
        if ruled:
            ranking = [(EMERGENCY_INTENT, 1.0)] + [r for r in ranking if r[0] != EMERGENCY_INTENT]
        top_name, top_confidence = ranking[0]
        threshold = (
            self.config.emergency_threshold
            if top_name == EMERGENCY_INTENT
            else self.config.fallback_threshold
        )
        listed = [{"name": name, "confidence": conf} for name, conf in ranking]
        if top_confidence < threshold or (not ruled and self.unfamiliar(cleaned, features)):
            intent = {"name": FALLBACK_INTENT, "confidence": max(threshold, top_confidence)}
            listed.insert(0, dict(intent))
        else:
            intent = dict(listed[0])
        result = {
            "text": cleaned,
            "intent": intent,
            "intent_ranking": listed[:size],
            "entities": self._entities(cleaned, reference),
            "text_tokens": [[start, end] for _, start, end in tokens],
        }
        return _with_flag(result, truncated)

    def _entities(self, text: str, reference: datetime | None) -> list[dict[str, Any]]:
        if self._extract_entities is None:
            return []
        when = reference or datetime.now(self.timezone)
        return self._extract_entities(text, when, self.entity_tables)


def _with_flag(result: dict[str, Any], truncated: bool) -> dict[str, Any]:
    if truncated:
        result["truncated"] = True
    return result
