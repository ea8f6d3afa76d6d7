"""Message catalogs: every text a retiree or volunteer reads or hears, in Chinese and English.

The texts live in config/messages/<lang>/*.yml (nested keys, `{name}` placeholders): one file for
the common texts and one per handler. Both languages have the same files, keys and placeholders;
a mistake is reported at start-up with the file and the key.
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
        if not isinstance(key, str):
            where = f"{prefix}.{key}" if prefix else str(key)
            raise ConfigError(
                path,
                [
                    f"{where}: quote this key (YAML reads yes/no/on/off as true/false, 1 as a number)"
                ],
            )
        name = f"{prefix}.{key}" if prefix else key
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


def _language_files(folder: Path, lang: str) -> dict[str, Path]:
    """The catalog files of one language: folder/<lang>/*.yml by file name."""
    lang_dir = folder / lang
    if not lang_dir.is_dir():
        raise ConfigError(lang_dir, ["the folder of message catalogs is missing"])
    return {path.name: path for path in sorted(lang_dir.glob("*.yml"))}


def _compare(
    path: Path, ours: dict[str, str], reference: dict[str, str], ref_name: str
) -> list[str]:
    problems = [f"{key}: missing (it is in {ref_name})" for key in reference.keys() - ours.keys()]
    problems += [f"{key}: not in {ref_name}" for key in ours.keys() - reference.keys()]
    for key in reference.keys() & ours.keys():
        mine, theirs = placeholders(ours[key]), placeholders(reference[key])
        if mine != theirs:
            problems.append(
                f"{key}: placeholders {sorted(mine)} differ from {ref_name}'s {sorted(theirs)}"
            )
    return sorted(problems)


def load_catalogs(folder: Path) -> Catalogs:
    """Read and check config/messages/<lang>/*.yml.

    Each language has the same files; a file has the same keys and placeholders in every
    language. The files of one language are merged (a key may be in only one of them), so a
    handler keeps its texts in a file of its own.
    """
    files = {lang: _language_files(folder, lang) for lang in LANGUAGES}
    texts: dict[str, dict[str, str]] = {}
    per_file: dict[str, dict[str, dict[str, str]]] = {}
    for lang in LANGUAGES:
        merged: dict[str, str] = {}
        where: dict[str, Path] = {}
        per_file[lang] = {}
        for name, path in files[lang].items():
            flat = _read(path)
            per_file[lang][name] = flat
            clashes = sorted(flat.keys() & merged.keys())
            if clashes:
                raise ConfigError(
                    path,
                    [
                        f"{key}: also in {where[key].name}; a key belongs to one file"
                        for key in clashes
                    ],
                )
            merged.update(flat)
            where.update(dict.fromkeys(flat, path))
        texts[lang] = merged
    reference = files[DEFAULT_LANGUAGE]
    for lang in LANGUAGES:
        if lang == DEFAULT_LANGUAGE:
            continue
        for name in sorted(reference.keys() - files[lang].keys()):
            raise ConfigError(
                folder / lang / name, [f"missing (there is {DEFAULT_LANGUAGE}/{name})"]
            )
        for name in sorted(files[lang].keys() - reference.keys()):
            raise ConfigError(files[lang][name], [f"no {DEFAULT_LANGUAGE}/{name} to match"])
        for name, path in files[lang].items():
            problems = _compare(
                path,
                per_file[lang][name],
                per_file[DEFAULT_LANGUAGE][name],
                f"{DEFAULT_LANGUAGE}/{name}",
            )
            if problems:
                raise ConfigError(path, problems)
    return Catalogs(texts)


@lru_cache(maxsize=1)
def get_catalogs() -> Catalogs:
    return load_catalogs(get_settings().config_dir / "messages")
