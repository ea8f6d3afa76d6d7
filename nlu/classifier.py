"""The intent model: TF-IDF over the feature strings and a linear scikit-learn classifier, trained
here and compiled to plain numpy arrays so that parsing (and loading) needs no scikit-learn.

DEFAULT_MODEL was chosen by `benchmarks/nlu_bench.py --select`: 5-fold stratified cross-validation
repeated 3 times on the TRAINING data only (953 examples; the held-out set plays no part), on this
2-core machine. Accuracy and macro-F1 are out of fold (means of the repeats), "em.rec" the model's
emergency recall without the safety rules, "fit" the seconds to fit on all the data, "parse" the
microseconds to featurise and classify one text:

    features (sgd probe)                                   acc   macroF1 em.rec  fit s parse us
    char 1-3                                              77.0%  0.749  0.870   0.12     60
    + pinyin 1-2                                          77.1%  0.748  0.863   0.16     80
    + jieba words                                         77.9%  0.759  0.884   0.17    151
    + length bucket                                       78.5%  0.765  0.874   0.18    171
    + concept lexicon (nlu/concepts.yml)                  90.5%  0.913  0.965   0.19    207
    + concept and length features weighted x3             94.5%  0.946  0.986   0.28    205
      (x2: 94.4%, x4: 94.2%; without pinyin 94.3%, without words 94.0%; pinyin 1-3, initials,
      word bigrams, raw digits, char 1-4, jieba's whole or a 20k dictionary: 94.5-94.7%)

    classifier (default features)                          acc   macroF1 em.rec  fit s parse us
    LogisticRegression C=3 / 10 / 30 / 100      93.0 / 93.8 / 94.1 / 94.3%  0.931-0.944  1.6-2.7
    SGDClassifier(log_loss) alpha=1e-5 / 3e-5 / 1e-4   94.7 / 94.5 / 94.3%  0.944-0.948  0.20-0.22
    LinearSVC + sigmoid calibration C=0.3         94.6%  0.948  0.996   0.17    201
    LinearSVC + sigmoid calibration C=1 (chosen)  94.8%  0.949  0.996   0.18    228
    LinearSVC + sigmoid calibration C=3           95.0%  0.952  0.996   0.27    244
    (parse times 200-320 us for all; differences under ~0.5% are within the spread of the repeats)

The calibrated linear SVM is as accurate as the best, finds the most emergencies without the
rules and fits in a fifth of a second; C=1 rather than 3 for the same figures with less variance.
The concept lexicon carries most of the gain: with under a hundred examples an intent, the words
callers use are mostly unseen, and the lexicon maps them to concepts the examples did use.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from nlu.features import FeatureConfig

ClassifierName = Literal["logreg", "sgd", "svm"]


@dataclass(frozen=True)
class ModelConfig:
    features: FeatureConfig = field(default_factory=FeatureConfig)
    classifier: ClassifierName = "svm"  # LinearSVC + sigmoid calibration (see the docstring)
    c: float = 1.0  # inverse regularisation of logreg and svm
    alpha: float = 1e-4  # regularisation of sgd
    sublinear_tf: bool = True
    jieba_top_words: int = 60_000  # 0: jieba's whole dictionary
    # Feature groups (by prefix) weighted up or down before normalisation: the few concept and
    # length features would otherwise drown among a hundred character n-grams.
    group_weights: tuple[tuple[str, float], ...] = (("k:", 3.0), ("len:", 3.0))


DEFAULT_MODEL = ModelConfig()


@dataclass
class LinearIntentModel:
    """TF-IDF (l2-normalised) -> linear scores -> probabilities, in numpy only."""

    intents: tuple[str, ...]
    vocab: dict[str, int]
    idf: np.ndarray  # (n_features,)
    weights: np.ndarray  # (n_features, n_intents), float32
    bias: np.ndarray  # (n_intents,)
    method: Literal["softmax", "ovr", "sigmoid"]
    sublinear_tf: bool
    calibration: np.ndarray | None = None  # (2, n_intents): a, b of p = 1 / (1 + exp(a*d + b))

    def scores(self, features: Sequence[str]) -> np.ndarray:
        counts = Counter(features)
        columns = [(self.vocab.get(f), n) for f, n in counts.items()]
        pairs = [(j, n) for j, n in columns if j is not None]
        if not pairs:
            return self.bias.astype(np.float64)
        index = np.fromiter((j for j, _ in pairs), dtype=np.intp, count=len(pairs))
        tf = np.fromiter((n for _, n in pairs), dtype=np.float64, count=len(pairs))
        if self.sublinear_tf:
            tf = 1.0 + np.log(tf)
        values = tf * self.idf[index]
        values /= np.sqrt(values @ values)
        return values @ self.weights[index].astype(np.float64) + self.bias

    def predict_proba(self, features: Sequence[str]) -> np.ndarray:
        """Probabilities in the order of self.intents."""
        scores = self.scores(features)
        if self.method == "softmax":
            exp = np.exp(scores - scores.max())
            return exp / exp.sum()
        if self.method == "sigmoid" and self.calibration is not None:
            a, b = self.calibration
            prob = 1.0 / (1.0 + np.exp(a * scores + b))
        else:
            prob = 1.0 / (1.0 + np.exp(-scores))
        total = prob.sum()
        return prob / total if total > 0 else np.full(len(prob), 1.0 / len(prob))


def _estimator(config: ModelConfig) -> Any:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.linear_model import LogisticRegression, SGDClassifier
    from sklearn.svm import LinearSVC

    if config.classifier == "logreg":
        return LogisticRegression(C=config.c, max_iter=2000, solver="lbfgs")
    if config.classifier == "sgd":
        return SGDClassifier(
            loss="log_loss", alpha=config.alpha, max_iter=50, tol=None, random_state=0
        )
    return CalibratedClassifierCV(
        LinearSVC(C=config.c, max_iter=5000), method="sigmoid", cv=3, ensemble=False
    )


def vectorize(
    documents: Sequence[list[str]],
    sublinear_tf: bool,
    group_weights: Sequence[tuple[str, float]] = (),
) -> tuple[Any, dict[str, int], np.ndarray]:
    """Fit TF-IDF on feature lists: (sparse matrix, vocabulary, idf with the group weights
    folded in)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(analyzer=_identity, sublinear_tf=sublinear_tf, dtype=np.float64)
    matrix = vectorizer.fit_transform(documents)
    vocab = {str(k): int(v) for k, v in vectorizer.vocabulary_.items()}
    if group_weights:
        idf = vectorizer.idf_.copy()
        for feature, column in vocab.items():
            for prefix, weight in group_weights:
                if feature.startswith(prefix):
                    idf[column] *= weight
        vectorizer.idf_ = idf
        matrix = vectorizer.transform(documents)
    return matrix, vocab, vectorizer.idf_.astype(np.float64)


def _identity(features: list[str]) -> list[str]:
    return features


def fit_estimator(matrix: Any, labels: Sequence[str], config: ModelConfig) -> Any:
    estimator = _estimator(config)
    estimator.fit(matrix, list(labels))
    return estimator


def compile_model(
    estimator: Any, vocab: dict[str, int], idf: np.ndarray, config: ModelConfig
) -> LinearIntentModel:
    """Take the numbers out of a fitted scikit-learn estimator."""
    calibration = None
    if config.classifier == "svm":
        calibrated = estimator.calibrated_classifiers_[0]
        inner = calibrated.estimator
        calibration = np.array(
            [[c.a_ for c in calibrated.calibrators], [c.b_ for c in calibrated.calibrators]],
            dtype=np.float64,
        )
        method: Literal["softmax", "ovr", "sigmoid"] = "sigmoid"
    else:
        inner = estimator
        method = "softmax" if config.classifier == "logreg" else "ovr"
    classes = tuple(str(c) for c in estimator.classes_)
    coef = np.asarray(inner.coef_, dtype=np.float64)
    intercept = np.asarray(inner.intercept_, dtype=np.float64)
    if coef.shape[0] == 1:  # two intents: scikit-learn keeps one score d, for the second
        if method == "softmax":  # softmax([-d/2, d/2]) = [1 - sigmoid(d), sigmoid(d)]
            coef, intercept = np.vstack([-coef / 2, coef / 2]), np.array([-1, 1]) * intercept / 2
        elif method == "ovr":  # sigmoid(-d) + sigmoid(d) = 1
            coef, intercept = np.vstack([-coef, coef]), np.array([-1, 1]) * intercept
        else:  # both columns d; the first class's calibration mirrored: 1 - p
            coef, intercept = np.vstack([coef, coef]), np.repeat(intercept, 2)
            assert calibration is not None
            calibration = np.hstack([-calibration, calibration])
    return LinearIntentModel(
        intents=classes,
        vocab=vocab,
        idf=idf,
        weights=np.ascontiguousarray(coef.T, dtype=np.float32),
        bias=intercept,
        method=method,
        sublinear_tf=config.sublinear_tf,
        calibration=calibration,
    )


def train(
    documents: Sequence[list[str]], labels: Sequence[str], config: ModelConfig = DEFAULT_MODEL
) -> LinearIntentModel:
    """Fit and compile a model on feature lists and their intents."""
    if len(set(labels)) < 2:
        raise ValueError("training needs examples of at least two intents")
    matrix, vocab, idf = vectorize(documents, config.sublinear_tf, config.group_weights)
    estimator = fit_estimator(matrix, labels, config)
    return compile_model(estimator, vocab, idf, config)
