"""Embedded NLU: held-out accuracy, emergency recall, parse latency, training time and resident
memory of the loaded parser; optionally the same accuracy and latency for a Rasa server.
`--select` compares features and classifiers by cross-validation on the TRAINING data only
(and the fallback threshold on its out-of-fold predictions); it never reads the test set."""

# Run: .venv/bin/python benchmarks/nlu_bench.py [--passes 5] [--rasa-url http://127.0.0.1:5005]
#      .venv/bin/python benchmarks/nlu_bench.py --select [--folds 5]

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root

import numpy as np

from config.settings import Settings
from nlu.classifier import DEFAULT_MODEL, ModelConfig, compile_model, fit_estimator, vectorize
from nlu.embedded import EmbeddedParser
from nlu.evaluate import Report, evaluate, score
from nlu.features import (
    ConceptLexicon,
    FeatureConfig,
    Featurizer,
    build_jieba_dictionary,
    build_pinyin_table,
    make_tokenizer,
    text_units,
    unfamiliar_share,
)
from nlu.rules import EmergencyRules
from nlu.text import clean_text
from nlu.training_data import Example, held_out_files, load_training_data, training_files

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {
    "accuracy": 0.95,
    "emergency_recall": 1.0,
    "p99_ms": 2.0,
    "train_s": 10.0,
    "rss_mib": 150,
}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


# ---------------------------------------------------------------- the benchmark on the test set

_TRAIN_CHILD = """
import json, sys, time
started = time.perf_counter()
sys.path.insert(0, {root!r})
from pathlib import Path
from config.settings import Settings
from nlu.embedded import load_bundle
bundle, cached = load_bundle(Settings(data_dir=Path({data!r}), _env_file=None))
assert not cached
print(json.dumps({{"wall_s": time.perf_counter() - started, "train_s": bundle.train_seconds}}))
"""

_LOAD_CHILD = """
import json, sys, time
started = time.perf_counter()
sys.path.insert(0, {root!r})
from pathlib import Path
import psutil
from config.settings import Settings
from nlu.embedded import EmbeddedParser
imported = time.perf_counter()
parser = EmbeddedParser.load(Settings(data_dir=Path({data!r}), _env_file=None))
loaded = time.perf_counter() - started
load_only = time.perf_counter() - imported
assert parser.from_cache, "expected a cache hit"
for text in {texts!r}:
    parser.parse(text)
print(json.dumps({{"load_s": loaded, "load_only_s": load_only, "rss_mib": psutil.Process().memory_info().rss / 2**20,
                  "sklearn_loaded": "sklearn" in sys.modules, "pypinyin_loaded": "pypinyin" in sys.modules}}))
"""


def _child(code: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def _latencies(parser: Any, texts: list[str], passes: int) -> list[float]:
    for text in texts:  # warm-up
        parser.parse(text)
    timings = []
    for _ in range(passes):
        for text in texts:
            started = time.perf_counter()
            parser.parse(text)
            timings.append((time.perf_counter() - started) * 1000)
    return timings


def _report_lines(name: str, report: Report, timings: list[float]) -> list[str]:
    recall = report.emergency_recall
    return [
        f"{name} accuracy (held-out): {report.accuracy:.2%} ({report.correct}/{report.total})"
        f"   target >= {TARGETS['accuracy']:.0%}",
        f"{name} emergency recall: "
        + (
            f"{recall:.2%} ({report.emergency_found}/{report.emergency_total})"
            if recall is not None
            else "n/a"
        )
        + "   target 100%",
        f"{name} macro F1: {report.macro_f1:.3f}",
        f"{name} parse latency over {len(timings)} parses: p50 {percentile(timings, 50):.3f} ms, "
        f"p99 {percentile(timings, 99):.3f} ms, max {max(timings):.3f} ms   target p99 < {TARGETS['p99_ms']} ms",
    ]


def _rasa_parser(url: str, timeout_s: float) -> Any:
    import httpx

    class RasaDirect:  # no fallback: measure the server itself
        def __init__(self) -> None:
            self.client = httpx.Client(base_url=url, timeout=timeout_s, trust_env=False)

        def parse(self, text: str, **_: Any) -> dict[str, Any]:
            reply = self.client.post("/model/parse", json={"text": text})
            reply.raise_for_status()
            return reply.json()

    return RasaDirect()


def bench(args: argparse.Namespace) -> None:
    settings = Settings(_env_file=None)
    files = training_files(settings)
    test = load_training_data(held_out_files())
    train_count = len(load_training_data(files).examples)
    texts = [ex.text for ex in test.examples]
    print(
        f"NLU benchmark: {platform.python_version()}, {os.cpu_count()} CPUs, {platform.machine()}"
    )
    print(
        f"training data: {train_count} examples in {len(files)} files; held-out: {len(texts)} examples"
    )
    with tempfile.TemporaryDirectory(prefix="nlu-bench-") as tmp:
        runs = [
            _child(_TRAIN_CHILD.format(root=str(ROOT), data=f"{tmp}/run{i}"))
            for i in range(args.train_runs)
        ]
        train_s = statistics.median(r["train_s"] for r in runs)
        wall_s = statistics.median(r["wall_s"] for r in runs)
        print(
            f"training time: {train_s:.2f} s (median of {len(runs)} fresh processes; "
            f"{wall_s:.2f} s with Python start-up and imports)   target < {TARGETS['train_s']:.0f} s"
        )
        data_dir = Path(tmp) / "run0"
        load = _child(_LOAD_CHILD.format(root=str(ROOT), data=str(data_dir), texts=texts[:5]))
        print(
            f"start-up from the cache: {load['load_s'] * 1000:.0f} ms in a fresh process, of which "
            f"{load['load_only_s'] * 1000:.0f} ms EmbeddedParser.load after the imports"
        )
        print(
            f"resident memory of the loaded parser: {load['rss_mib']:.1f} MiB (fresh process, "
            f"5 parses; scikit-learn loaded: {load['sklearn_loaded']}, pypinyin loaded: "
            f"{load['pypinyin_loaded']})   target < {TARGETS['rss_mib']} MiB"
        )
        parser = EmbeddedParser.load(Settings(data_dir=data_dir, _env_file=None))
        report = evaluate(parser, test)
        timings = _latencies(parser, texts, args.passes)
        for line in _report_lines("embedded", report, timings):
            print(line)
        if report.misclassified:
            print(f"misclassified ({len(report.misclassified)}):")
            for miss in report.misclassified:
                print(f"  {miss.expected} -> {miss.predicted} ({miss.confidence:.2f}): {miss.text}")
    if args.rasa_url:
        rasa = _rasa_parser(args.rasa_url, args.rasa_timeout)
        rasa_report = evaluate(rasa, test)
        for line in _report_lines("rasa", rasa_report, _latencies(rasa, texts, 1)):
            print(line)


# ------------------------------------------------------- model selection on the training data


def _featurize(
    examples: list[Example], features: FeatureConfig, top_words: int, cache: dict
) -> list[list[str]]:
    key = (features, top_words)
    if key not in cache:
        if top_words not in cache:
            cache[top_words] = make_tokenizer(*build_jieba_dictionary(top_words))
        featurizer = Featurizer(features, cache["pinyin"], cache[top_words], cache["lexicon"])
        cache[key] = [featurizer.features(clean_text(ex.text)[0]) for ex in examples]
    return cache[key]


def cross_validate(
    examples: list[Example], config: ModelConfig, folds: int, cache: dict, repeats: int = 1
) -> dict[str, Any]:
    """Out-of-fold probabilities (each repeat shuffles the folds anew) and timings of one
    configuration; "oof" and "examples" list every example once per repeat."""
    from sklearn.model_selection import StratifiedKFold

    labels = np.array([ex.intent for ex in examples])
    docs = _featurize(examples, config.features, config.jieba_top_words, cache)
    intents = sorted(set(labels))
    oof = np.zeros((repeats * len(examples), len(intents)))
    texts = [clean_text(ex.text)[0] for ex in examples]
    # share of each text's characters/words unseen in its training folds (0 when a concept
    # of the lexicon is found): what the parser's unfamiliar-text gate reads
    unseen = np.zeros(repeats * len(examples))
    for repeat in range(repeats):
        splitter = StratifiedKFold(folds, shuffle=True, random_state=repeat)
        for train_idx, val_idx in splitter.split(docs, labels):
            matrix, vocab, idf = vectorize(
                [docs[i] for i in train_idx], config.sublinear_tf, config.group_weights
            )
            estimator = fit_estimator(matrix, labels[train_idx], config)
            model = compile_model(estimator, vocab, idf, config)
            order = [model.intents.index(name) for name in intents]
            known = {unit for i in train_idx for unit in text_units(texts[i])}
            for i in val_idx:
                oof[repeat * len(examples) + i] = model.predict_proba(docs[i])[order]
                if not any(f.startswith("k:") for f in docs[i]):
                    unseen[repeat * len(examples) + i] = unfamiliar_share(texts[i], known)
    started = time.perf_counter()
    matrix, vocab, idf = vectorize(docs, config.sublinear_tf, config.group_weights)
    model = compile_model(fit_estimator(matrix, labels, config), vocab, idf, config)
    fit_s = time.perf_counter() - started
    featurizer = Featurizer(
        config.features, cache["pinyin"], cache[config.jieba_top_words], cache["lexicon"]
    )
    sample = [clean_text(ex.text)[0] for ex in examples[:: max(1, len(examples) // 300)]]
    started = time.perf_counter()
    for text in sample:
        model.predict_proba(featurizer.features(text))
    parse_us = (time.perf_counter() - started) / len(sample) * 1e6
    predicted = [intents[i] for i in oof.argmax(axis=1)]
    repeated = examples * repeats
    report = score((ex, p, 0.0) for ex, p in zip(repeated, predicted, strict=True))
    return {
        "report": report,
        "oof": oof,
        "unseen": unseen,
        "known": {unit for text in texts for unit in text_units(text)},
        "examples": repeated,
        "intents": intents,
        "fit_s": fit_s,
        "parse_us": parse_us,
        "features": len(vocab),
        "model": model,
        "featurizer": featurizer,
    }


def _describe(config: ModelConfig) -> str:
    f = config.features
    parts = [f"char{f.char_ngrams[0]}-{f.char_ngrams[1]}" if f.char_ngrams[1] else ""]
    if f.pinyin_ngrams[1]:
        parts.append(f"pinyin{f.pinyin_ngrams[0]}-{f.pinyin_ngrams[1]}")
    if f.initials_ngrams[1]:
        parts.append(f"initials{f.initials_ngrams[0]}-{f.initials_ngrams[1]}")
    if f.words:
        parts.append("words" + ("+bigrams" if f.word_bigrams else ""))
    if f.concepts:
        parts.append("concepts")
    if f.length:
        parts.append("len")
    if config.group_weights:
        parts.append("x" + "/".join(f"{w:g}" for _, w in config.group_weights))
    if not f.digits_as_zero:
        parts.append("digits")
    if config.jieba_top_words != DEFAULT_MODEL.jieba_top_words:
        parts.append(f"jieba{config.jieba_top_words or 'all'}")
    if not config.sublinear_tf:
        parts.append("rawtf")
    clf = {
        "logreg": f"logreg C={config.c:g}",
        "sgd": f"sgd a={config.alpha:g}",
        "svm": f"svm+sigmoid C={config.c:g}",
    }
    return "+".join(p for p in parts if p) + " | " + clf[config.classifier]


def _row(config: ModelConfig, result: dict[str, Any]) -> str:
    report = result["report"]
    emergency = report.per_intent.get("emergency")
    return (
        f"{_describe(config):<58} {report.accuracy:6.2%} {report.macro_f1:6.3f} "
        f"{emergency.recall if emergency else float('nan'):6.3f} {result['features']:7d} "
        f"{result['fit_s']:6.2f} {result['parse_us']:7.0f}"
    )


def _garbage(pinyin: dict[str, str], count: int = 300) -> list[str]:
    """Random texts no caller would say: random common characters, random letters."""
    import random

    rng = random.Random(0)
    chars = sorted(ch for ch in pinyin if "\u4e00" <= ch <= "\u9fa5")
    texts = []
    for i in range(count):
        size = rng.randint(2, 12)
        if i % 3:
            texts.append("".join(rng.choice(chars) for _ in range(size)))
        else:
            words = [
                "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 7)))
                for _ in range(size // 3 + 1)
            ]
            texts.append(" ".join(words))
    return texts


def _thresholds(
    examples: list[Example],
    result: dict[str, Any],
    rules: EmergencyRules,
    emergency_threshold: float,
    garbage: list[str],
) -> None:
    oof, intents, examples = result["oof"], result["intents"], result["examples"]
    repeats = len(examples) // len({id(ex) for ex in examples})
    expected = [ex.intent for ex in examples]
    ruled = [rules.match(clean_text(ex.text)[0]) is not None for ex in examples]
    model, featurizer = result["model"], result["featurizer"]
    junk = []
    for text in garbage:
        probs = model.predict_proba(featurizer.features(text))
        top = int(probs.argmax())
        junk.append((model.intents[top], float(probs[top]), rules.match(text) is not None))
    print(
        "\nfallback threshold on out-of-fold predictions (rules applied; fallback counts as wrong;"
    )
    print(
        "cost = fallbacks + 2 x wrong answers, per pass over the examples: a wrong route costs"
        " more than a 'please say again')"
    )
    print(
        f"garbage fallback: share of {len(garbage)} random texts (random characters or letters)"
        " that fall back"
    )
    print(
        " thresh  accuracy  answered  right-when-answered  wrong  fallbacks  emergency-recall  cost"
        "  garbage-fallback"
    )
    for threshold in [0.0, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7]:
        right = wrong = fallback = em_found = 0
        for i, probs in enumerate(oof):
            top = int(probs.argmax())
            name, conf = intents[top], float(probs[top])
            if ruled[i]:
                name, conf = "emergency", 1.0
            limit = emergency_threshold if name == "emergency" else threshold
            if conf < limit:
                fallback += 1
            elif name == expected[i]:
                right += 1
            else:
                wrong += 1
            em_found += expected[i] == "emergency" and name == "emergency" and conf >= limit
        answered = right + wrong
        em_total = expected.count("emergency")
        junk_fallback = sum(
            not ruled_junk and conf < (emergency_threshold if name == "emergency" else threshold)
            for name, conf, ruled_junk in junk
        )
        print(
            f"  {threshold:4.2f}   {right / len(expected):7.2%}  {answered / len(expected):7.2%}"
            f"   {right / max(answered, 1):17.2%}  {wrong / repeats:5.1f}  {fallback / repeats:9.1f}"
            f"  {em_found / max(em_total, 1):15.2%}"
            f"  {(fallback + 2 * wrong) / repeats:6.1f}  {junk_fallback / max(len(junk), 1):15.2%}"
        )


def _gate(result: dict[str, Any], threshold: float, garbage: list[str]) -> None:
    """What the unfamiliar-text gate (parser.yml unfamiliar_share) costs and catches."""
    oof, intents, examples = result["oof"], result["intents"], result["examples"]
    repeats = len(examples) // len({id(ex) for ex in examples})
    featurizer, known = result["featurizer"], result["known"]
    junk = []
    for text in garbage:
        concept = any(f.startswith("k:") for f in featurizer.features(text))
        junk.append(0.0 if concept else unfamiliar_share(text, known))
    print(
        f"\nunfamiliar-text gate (fallback threshold {threshold}): a text whose share of characters"
        " and words never seen in training is above the cut, with no concept of the lexicon,"
        " falls back"
    )
    print("  cut   right answers lost per pass  wrong answers caught per pass  garbage caught")
    for cut in [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0]:
        lost = caught = 0
        for i, probs in enumerate(oof):
            top = int(probs.argmax())
            if probs[top] < threshold or result["unseen"][i] <= cut:
                continue
            if intents[top] == examples[i].intent:
                lost += 1
            else:
                caught += 1
        gated = sum(share > cut for share in junk)
        print(
            f"  {cut:4.2f}  {lost / repeats:27.1f}  {caught / repeats:29.1f}"
            f"  {gated / max(len(junk), 1):14.2%}"
        )


def select(args: argparse.Namespace) -> None:
    settings = Settings(_env_file=None)
    examples = load_training_data(training_files(settings)).examples
    print(
        f"model selection: {len(examples)} training examples, {args.folds}-fold stratified CV "
        f"repeated {args.repeats} times with new folds (training data only; figures are means "
        f"over the repeats), {os.cpu_count()} CPUs"
    )
    pinyin = build_pinyin_table()
    cache: dict[Any, Any] = {"pinyin": pinyin, "lexicon": ConceptLexicon.load(pinyin)}
    base = DEFAULT_MODEL
    full = base.features
    char = FeatureConfig(pinyin_ngrams=(0, 0), words=False, concepts=False, length=False)
    unweighted = replace(base, group_weights=())
    probe = replace(base, classifier="sgd", alpha=3e-5)
    variants = [
        replace(unweighted, features=char),
        replace(unweighted, features=replace(char, pinyin_ngrams=(1, 2))),
        replace(unweighted, features=replace(char, pinyin_ngrams=(1, 2), words=True)),
        replace(unweighted, features=replace(full, concepts=False)),
        replace(unweighted, features=full),
        replace(base, group_weights=(("k:", 2.0), ("len:", 2.0))),
        base,
        replace(base, group_weights=(("k:", 4.0), ("len:", 4.0))),
        replace(base, features=replace(full, pinyin_ngrams=(0, 0))),
        replace(base, features=replace(full, words=False)),
        replace(base, features=replace(full, pinyin_ngrams=(1, 3))),
        replace(base, features=replace(full, initials_ngrams=(2, 3))),
        replace(base, features=replace(full, word_bigrams=True)),
        replace(base, features=replace(full, digits_as_zero=False)),
        replace(base, features=replace(full, char_ngrams=(1, 4))),
        replace(base, jieba_top_words=0),
        replace(base, jieba_top_words=20_000),
    ]
    if args.thresholds_only:
        variants = []
    header = (
        f"{'features | classifier':<58} {'acc':>6} {'macroF1':>6} {'em.rec':>6} "
        f"{'n.feat':>7} {'fit s':>6} {'parse us':>7}"
    )
    print("\nfeatures (all with the sgd probe, alpha 3e-5)\n" + header)
    for variant in variants:
        config = replace(variant, classifier=probe.classifier, alpha=probe.alpha)
        print(
            _row(config, cross_validate(examples, config, args.folds, cache, args.repeats)),
            flush=True,
        )
    print("\nclassifiers (default features)\n" + header)
    classifiers = [
        replace(base, classifier="logreg", c=3.0),
        replace(base, classifier="logreg", c=10.0),
        replace(base, classifier="logreg", c=30.0),
        replace(base, classifier="logreg", c=100.0),
        replace(base, classifier="sgd", alpha=1e-5),
        replace(base, classifier="sgd", alpha=3e-5),
        replace(base, classifier="sgd", alpha=1e-4),
        replace(base, classifier="svm", c=0.3),
        replace(base, classifier="svm", c=1.0),
        replace(base, classifier="svm", c=3.0),
        replace(base, sublinear_tf=False),
    ]
    if args.thresholds_only:
        classifiers = []
    results = {}
    for config in classifiers:
        results[config] = cross_validate(examples, config, args.folds, cache, args.repeats)
        print(_row(config, results[config]), flush=True)
    chosen = results.get(base) or cross_validate(examples, base, args.folds, cache, args.repeats)
    print(f"\nchosen (DEFAULT_MODEL): {_describe(base)}")
    rules = EmergencyRules.load(settings.config_dir / "nlu" / "emergency_rules.yml")
    from config.loader import load_yaml_model
    from nlu.embedded import ParserConfig

    parser_config = load_yaml_model(settings.config_dir / "nlu" / "parser.yml", ParserConfig)
    _thresholds(examples, chosen, rules, parser_config.emergency_threshold, _garbage(pinyin))
    _gate(chosen, parser_config.fallback_threshold, _garbage(pinyin))
    print("\nout-of-fold misses of the chosen model (first repeat):")
    oof, intents = chosen["oof"], chosen["intents"]
    for ex, probs in zip(examples, oof[: len(examples)], strict=True):
        top = int(probs.argmax())
        if intents[top] != ex.intent:
            print(f"  {ex.intent} -> {intents[top]} ({probs[top]:.2f}): {ex.text}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--select", action="store_true", help="model selection by CV on the training data"
    )
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3, help="CV repeats (new folds each)")
    parser.add_argument(
        "--thresholds-only", action="store_true", help="with --select: only the default model"
    )
    parser.add_argument("--passes", type=int, default=5, help="timed passes over the test set")
    parser.add_argument("--train-runs", type=int, default=3)
    parser.add_argument("--rasa-url", default="", help="also measure this Rasa server")
    parser.add_argument("--rasa-timeout", type=float, default=10.0)
    args = parser.parse_args()
    if args.select:
        select(args)
    else:
        bench(args)


if __name__ == "__main__":
    main()
