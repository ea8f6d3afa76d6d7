"""Reading Rasa YAML NLU training data (version "3.1"): intent examples with inline entity
annotations, lookup tables, synonyms and regexes; errors name the file, the item and the example."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from config.settings import Settings

NLU_DATA_DIR = Path(__file__).resolve().parent / "data"
ITEM_KINDS = ("intent", "lookup", "synonym", "regex")
_ITEM_KEYS = {*ITEM_KINDS, "examples", "metadata"}
# [text](entity) or [text](entity:value) or [text]{"entity": ..., "value": ...}
_ANNOTATION = re.compile(r"\[(?P<text>[^\[\]]+)\](?:\((?P<short>[^()]+)\)|(?P<json>\{[^{}]*\}))")


class TrainingDataError(Exception):
    """A training data file is unreadable or malformed; the message names file, item and example."""


@dataclass(frozen=True)
class EntitySpan:
    entity: str
    value: Any
    start: int
    end: int
    text: str
    role: str | None = None
    group: str | None = None


@dataclass(frozen=True)
class Example:
    text: str
    intent: str
    entities: tuple[EntitySpan, ...] = ()
    source: str = ""


@dataclass
class TrainingData:
    examples: list[Example] = field(default_factory=list)
    lookups: dict[str, list[str]] = field(default_factory=dict)
    synonyms: dict[str, list[str]] = field(default_factory=dict)  # canonical value -> variants
    regexes: dict[str, list[str]] = field(default_factory=dict)

    @property
    def intents(self) -> list[str]:
        return sorted({ex.intent for ex in self.examples})

    def merge(self, other: TrainingData) -> None:
        self.examples.extend(other.examples)
        for target, source in (
            (self.lookups, other.lookups),
            (self.synonyms, other.synonyms),
            (self.regexes, other.regexes),
        ):
            for name, values in source.items():
                target.setdefault(name, []).extend(values)


def parse_annotated(text: str) -> tuple[str, tuple[EntitySpan, ...]]:
    """Strip inline annotations from one example: ("[老伴]{...}住院了" -> "老伴住院了", spans)."""
    plain: list[str] = []
    spans: list[EntitySpan] = []
    pos = 0
    for match in _ANNOTATION.finditer(text):
        plain.append(text[pos : match.start()])
        start = sum(len(part) for part in plain)
        surface = match["text"]
        role = group = None
        if match["short"] is not None:
            entity, _, value = match["short"].partition(":")
            entity, value = entity.strip(), value.strip() or surface
        else:
            try:
                spec = json.loads(match["json"])
            except json.JSONDecodeError as exc:
                raise ValueError(
                    f"entity annotation {match[0]!r} is not valid JSON: {exc.msg}"
                ) from exc
            if not isinstance(spec, dict) or not isinstance(spec.get("entity"), str):
                raise ValueError(f'entity annotation {match[0]!r} needs an "entity" name')
            entity, value = spec["entity"].strip(), spec.get("value", surface)
            role, group = spec.get("role"), spec.get("group")
        if not entity:
            raise ValueError(f"entity annotation {match[0]!r} has no entity name")
        spans.append(EntitySpan(entity, value, start, start + len(surface), surface, role, group))
        plain.append(surface)
        pos = match.end()
    plain.append(text[pos:])
    result = "".join(plain)
    leftover = re.search(r"\]\(|\]\{", result)
    if leftover:
        raise ValueError("an entity annotation is malformed (unbalanced brackets?)")
    return result, tuple(spans)


def _example_lines(raw: Any, where: str) -> list[str]:
    """The `examples` of an item: a block of "- text" lines, or a list of strings / {text: ...}."""
    if isinstance(raw, str):
        lines = []
        for line in raw.splitlines():
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            if not stripped.startswith("-"):
                raise TrainingDataError(f"{where}: example {stripped!r} must start with '- '")
            lines.append(stripped[1:].strip())
        return lines
    if isinstance(raw, list):
        lines = []
        for entry in raw:
            if isinstance(entry, dict) and isinstance(entry.get("text"), str):
                lines.append(entry["text"].strip())
            elif isinstance(entry, str):
                lines.append(entry.strip())
            else:
                raise TrainingDataError(
                    f"{where}: example {entry!r} is neither text nor {{text: ...}}"
                )
        return lines
    raise TrainingDataError(f"{where}: 'examples' must be a block of '- text' lines")


def _parse_item(item: Any, index: int, path: Path, data: TrainingData) -> None:
    where = f"{path}: nlu item {index + 1}"
    if not isinstance(item, dict):
        raise TrainingDataError(f"{where}: expected a mapping like '- intent: NAME', got {item!r}")
    kinds = [kind for kind in ITEM_KINDS if kind in item]
    if len(kinds) != 1:
        raise TrainingDataError(f"{where}: needs exactly one of {', '.join(ITEM_KINDS)}")
    kind = kinds[0]
    unknown = sorted(set(item) - _ITEM_KEYS)
    if unknown:
        raise TrainingDataError(f"{where} ({kind}): unknown key(s) {', '.join(unknown)}")
    name = item[kind]
    if not isinstance(name, str) or not name.strip():
        raise TrainingDataError(f"{where}: '{kind}' needs a name")
    name = name.strip()
    where = f"{where} ({kind}: {name})"
    if "examples" not in item:
        raise TrainingDataError(f"{where}: has no 'examples'")
    lines = _example_lines(item["examples"], where)
    if not lines:
        raise TrainingDataError(f"{where}: 'examples' is empty")
    for line in lines:
        if not line:
            raise TrainingDataError(f"{where}: an example is empty")
        if kind == "intent":
            try:
                text, spans = parse_annotated(line)
            except ValueError as exc:
                raise TrainingDataError(f"{where}: example {line!r}: {exc}") from exc
            if not text.strip():
                raise TrainingDataError(f"{where}: example {line!r} has no text")
            data.examples.append(Example(text.strip(), name, spans, str(path)))
        elif kind == "regex":
            try:
                re.compile(line)
            except re.error as exc:
                raise TrainingDataError(
                    f"{where}: pattern {line!r} is not a valid regex: {exc}"
                ) from exc
            data.regexes.setdefault(name, []).append(line)
        elif kind == "lookup":
            data.lookups.setdefault(name, []).append(line)
        else:
            data.synonyms.setdefault(name, []).append(line)


def load_file(path: Path) -> TrainingData:
    """Parse one Rasa YAML NLU file."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TrainingDataError(f"{path}: cannot read the file: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise TrainingDataError(f"{path}: not UTF-8 text ({exc.reason})") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise TrainingDataError(f"{path}: {where}not valid YAML ({problem})") from exc
    data = TrainingData()
    if raw is None:
        return data
    if not isinstance(raw, dict):
        raise TrainingDataError(f"{path}: the top level must be a mapping with 'nlu:'")
    version = raw.get("version")
    if version is not None and not isinstance(version, str):
        raise TrainingDataError(f'{path}: version must be a quoted string like "3.1"')
    items = raw.get("nlu", [])
    if items is None:
        return data
    if not isinstance(items, list):
        raise TrainingDataError(f"{path}: 'nlu' must be a list of items")
    for index, item in enumerate(items):
        _parse_item(item, index, path, data)
    return data


def load_training_data(paths: Iterable[Path]) -> TrainingData:
    """Parse and merge the given files (Rasa YAML NLU)."""
    data = TrainingData()
    for path in paths:
        data.merge(load_file(Path(path)))
    return data


def training_files(settings: Settings) -> list[Path]:
    """nlu/data/intents/*.yml, nlu/data/entities.yml and the deployment's config/nlu/hospitals.yml
    (those that exist); never nlu/data/test/ or nlu/data/dev/."""
    files = sorted((NLU_DATA_DIR / "intents").glob("*.yml"))
    files += [NLU_DATA_DIR / "entities.yml", Path(settings.config_dir) / "nlu" / "hospitals.yml"]
    return [path for path in files if path.is_file()]


def held_out_files(settings: Settings | None = None) -> list[Path]:
    """The held-out test set, nlu/data/test/*.yml: for evaluation only, never for training."""
    return sorted((NLU_DATA_DIR / "test").glob("*.yml"))


def dev_files() -> list[Path]:
    """The development set, nlu/data/dev/*.yml: its errors were studied while building the
    parser, so it measures nothing honestly any more; never for training either."""
    return sorted((NLU_DATA_DIR / "dev").glob("*.yml"))
