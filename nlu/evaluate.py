"""Measuring a parser on labelled examples: accuracy, per-intent precision/recall/F1, confusion
matrix, misclassified examples and emergency recall; and a plain-text report for the CLI."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from nlu.training_data import Example, TrainingData

if TYPE_CHECKING:
    from nlu.parser import NluParser

EMERGENCY = "emergency"


@dataclass(frozen=True)
class IntentScore:
    precision: float
    recall: float
    f1: float
    support: int  # examples with this expected intent


@dataclass(frozen=True)
class Miss:
    text: str
    expected: str
    predicted: str
    confidence: float


@dataclass
class Report:
    total: int
    correct: int
    per_intent: dict[str, IntentScore]
    confusion: dict[str, dict[str, int]]  # expected -> predicted -> count
    misclassified: list[Miss] = field(default_factory=list)
    emergency_total: int = 0
    emergency_found: int = 0

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0

    @property
    def emergency_recall(self) -> float | None:
        """Share of expected emergencies parsed as emergency (None: the data has none)."""
        return self.emergency_found / self.emergency_total if self.emergency_total else None

    @property
    def macro_f1(self) -> float:
        scores = [s.f1 for s in self.per_intent.values() if s.support]
        return sum(scores) / len(scores) if scores else 0.0


def _ratio(num: int, den: int) -> float:
    return num / den if den else 0.0


def score(pairs: Iterable[tuple[Example, str, float]]) -> Report:
    """A report from (example, predicted intent, confidence) triples."""
    confusion: dict[str, Counter[str]] = {}
    misses: list[Miss] = []
    for example, predicted, confidence in pairs:
        confusion.setdefault(example.intent, Counter())[predicted] += 1
        if predicted != example.intent:
            misses.append(Miss(example.text, example.intent, predicted, confidence))
    labels = sorted(set(confusion) | {p for row in confusion.values() for p in row})
    per_intent = {}
    for label in labels:
        true_pos = confusion.get(label, Counter())[label]
        support = sum(confusion.get(label, Counter()).values())
        predicted = sum(row[label] for row in confusion.values())
        precision, recall = _ratio(true_pos, predicted), _ratio(true_pos, support)
        f1 = _ratio(2 * true_pos, predicted + support)
        per_intent[label] = IntentScore(precision, recall, f1, support)
    total = sum(sum(row.values()) for row in confusion.values())
    emergencies = confusion.get(EMERGENCY, Counter())
    return Report(
        total=total,
        correct=sum(row[label] for label, row in confusion.items()),
        per_intent=per_intent,
        confusion={label: dict(row) for label, row in confusion.items()},
        misclassified=misses,
        emergency_total=sum(emergencies.values()),
        emergency_found=emergencies[EMERGENCY],
    )


def evaluate(parser: NluParser, data: TrainingData | Iterable[Example]) -> Report:
    """Parse every example and compare the intent with the expected one (nlu_fallback is a miss)."""
    examples = data.examples if isinstance(data, TrainingData) else list(data)

    def predictions() -> Iterable[tuple[Example, str, float]]:
        for example in examples:
            intent = parser.parse(example.text)["intent"]
            yield example, intent["name"], float(intent["confidence"])

    return score(predictions())


def format_report(report: Report, max_misses: int = 50) -> str:
    """Accuracy, per-intent table, confusion matrix (by row) and misclassified examples."""
    lines = [
        f"examples: {report.total}",
        f"accuracy: {report.accuracy:.2%} ({report.correct}/{report.total})",
    ]
    recall = report.emergency_recall
    if recall is not None:
        lines.append(
            f"emergency recall: {recall:.2%} ({report.emergency_found}/{report.emergency_total})"
        )
    lines.append(f"macro F1: {report.macro_f1:.3f}")
    width = max([len(name) for name in report.per_intent] + [6])
    lines += ["", f"{'intent':<{width}}  precision  recall     f1  support"]
    for name, s in report.per_intent.items():
        lines.append(
            f"{name:<{width}}  {s.precision:9.3f}  {s.recall:6.3f}  {s.f1:5.3f}  {s.support:7d}"
        )
    lines += ["", "confusion matrix (rows: expected, columns: predicted, by number)"]
    labels = list(report.per_intent)
    lines.append(" " * (width + 5) + "".join(f"{i:>4d}" for i in range(len(labels))))
    for i, expected in enumerate(labels):
        row = report.confusion.get(expected, {})
        cells = "".join(f"{row.get(p, 0) or '.':>4}" for p in labels)
        lines.append(f"{i:>3d}  {expected:<{width}}{cells}")
    if report.misclassified:
        lines += ["", f"misclassified ({len(report.misclassified)}):"]
        for miss in report.misclassified[:max_misses]:
            lines.append(
                f"  {miss.expected} -> {miss.predicted} ({miss.confidence:.2f}): {miss.text}"
            )
        if len(report.misclassified) > max_misses:
            lines.append(f"  ... and {len(report.misclassified) - max_misses} more")
    return "\n".join(lines)
