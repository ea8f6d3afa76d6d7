"""Message catalogs: every text a retiree or volunteer reads or hears, in Chinese and English.

The texts live in config/messages/{zh,en}.yml (nested keys, `{name}` placeholders). Both
catalogs must have the same keys and the same placeholders per key; a mistake is reported at
start-up with the file and the key.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from config.loader import ConfigError
from config.settings import get_settings

LANGUAGES = ("zh", "en")
DEFAULT_LANGUAGE = "zh"


class MissingText(KeyError):
    """Code asked for a key or a placeholder value the catalogs do not have."""


def _flatten(data: Any, path: Path, prefix: str = "") -> dict[str, str]:
    if not isinstance(data, dict):
        raise ConfigError(path, [f"{prefix or '(top level)'}: expected a mapping of keys to texts"])
    flat: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            flat.update(_flatten(value, path, name))
        elif isinstance(value, str) and value.strip():
            flat[name] = value
        else:
            raise ConfigError(path, [f"{name}: expected a non-empty text, got {value!r}"])
    return flat


def placeholders(text: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(text) if field}


def _read(path: Path) -> dict[str, str]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(path, [f"cannot read the file: {exc.strerror or exc}"]) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(path, [f"{where}not valid YAML"]) from exc
    return _flatten(data or {}, path)


@dataclass(frozen=True)
class Catalogs:
    texts: dict[str, dict[str, str]]  # language -> key -> text

    def text(self, key: str, language: str | None = None, **params: Any) -> str:
        """The text for ``key`` in ``language`` (Chinese when unknown), filled with ``params``."""
        lang = language if language in self.texts else DEFAULT_LANGUAGE
        try:
            template = self.texts[lang][key]
        except KeyError:
            raise MissingText(f"no message {key!r} in the catalogs") from None
        missing = placeholders(template) - params.keys()
        if missing:
            raise MissingText(f"message {key!r} needs {', '.join(sorted(missing))}")
        return template.format(**params)


def load_catalogs(folder: Path) -> Catalogs:
    """Read and check config/messages/*.yml: same keys, same placeholders in every language."""
    texts = {lang: _read(folder / f"{lang}.yml") for lang in LANGUAGES}
    reference = texts[DEFAULT_LANGUAGE]
    for lang in LANGUAGES:
        if lang == DEFAULT_LANGUAGE:
            continue
        path = folder / f"{lang}.yml"
        problems = [
            f"{key}: missing (it is in {DEFAULT_LANGUAGE}.yml)"
            for key in reference.keys() - texts[lang].keys()
        ]
        problems += [
            f"{key}: not in {DEFAULT_LANGUAGE}.yml" for key in texts[lang].keys() - reference.keys()
        ]
        for key in reference.keys() & texts[lang].keys():
            ours, theirs = placeholders(texts[lang][key]), placeholders(reference[key])
            if ours != theirs:
                problems.append(
                    f"{key}: placeholders {sorted(ours)} differ from {DEFAULT_LANGUAGE}.yml's {sorted(theirs)}"
                )
        if problems:
            raise ConfigError(path, sorted(problems))
    return Catalogs(texts)


@lru_cache(maxsize=1)
def get_catalogs() -> Catalogs:
    return load_catalogs(get_settings().config_dir / "messages")
