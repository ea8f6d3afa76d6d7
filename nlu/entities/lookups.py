"""Words from tables: hospitals (the deployment's lookup table with synonyms) and relations."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from nlu.entities.common import make_entity

_RELATION_WORDS: dict[str, tuple[str, ...]] = {
    "spouse": (
        *("老伴", "老伴儿", "老伴兒", "爱人", "愛人", "老头子", "老頭子", "老太婆", "老婆", "老公"),
        *("老婆子", "那口子", "丈夫", "妻子", "my wife", "my husband", "my spouse"),
    ),
    "son": ("儿子", "兒子", "大儿子", "二儿子", "小儿子", "my son", "our son"),
    "daughter": (
        *("女儿", "女兒", "闺女", "閨女", "大女儿", "二女儿", "小女儿", "大闺女", "小闺女"),
        *("my daughter", "our daughter"),
    ),
    "grandchild": (
        *("孙子", "孫子", "孙女", "孫女", "孙女儿", "孫女兒", "外孙", "外孫", "外孙女", "外孫女"),
        *("外孙子", "外孫子", "外孙女儿", "外孫女兒", "孙儿", "孫兒", "大孙子"),
        *("my grandson", "my granddaughter", "my grandchild", "my grandchildren"),
    ),
    "daughter_in_law": (
        *("儿媳", "兒媳", "儿媳妇", "兒媳婦", "儿媳妇儿", "媳妇", "媳婦", "媳妇儿", "媳婦兒"),
        *("my daughter-in-law", "my daughter in law"),
    ),
    "son_in_law": ("女婿", "姑爷", "姑爺", "my son-in-law", "my son in law"),
    "sibling": (
        *("哥哥", "弟弟", "姐姐", "妹妹", "兄弟", "姐妹", "二哥", "二姐"),
        *("my brother", "my sister"),
    ),
    "neighbour": (
        *("邻居", "鄰居", "老邻居", "隔壁", "对门", "對門", "街坊"),
        *("neighbour", "neighbor", "neighbours", "neighbors"),
    ),
}
# The contract's relation words (a deployment does not edit them), with traditional forms and a
# few safe regional ones. Not included: 我/自己/本人, and words that as often mean someone else
# (老头儿 an old man, 姑娘 a girl, 大姐/大哥 how one addresses a stranger). English family words
# need "my"/"our" in front; the entity's span is the noun alone, like 老伴 in 我老伴.
DEFAULT_RELATIONS: dict[str, str] = {
    word: value for value, words in _RELATION_WORDS.items() for word in words
}
# Words that a following character turns into something else: 老公园 (old park), 老婆婆
# (an old woman), 爱人民 (to love the people), 孙子兵法.
NOT_FOLLOWED_BY: dict[str, str] = {
    "老公": "公园寓司",
    "老婆": "婆",
    "爱人": "民",
    "愛人": "民",
    "孙子": "兵",
    "孫子": "兵",
}

_POSSESSIVE = re.compile(r"(?:my|our)\s+", re.IGNORECASE)
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _is_word_char(ch: str) -> bool:
    return ch.isascii() and (ch.isalnum() or ch == "_")


class PhraseTable:
    """Longest phrase at each position, by a dict look-up per start character.

    Phrases are matched case-insensitively for ASCII letters; a phrase that starts or ends with
    an ASCII letter or digit must sit on a word boundary there (so "son" is not found in "person").
    """

    def __init__(
        self, table: Mapping[str, str], not_followed_by: Mapping[str, str] | None = None
    ) -> None:
        self._values: dict[str, str] = {}
        lengths: dict[str, set[int]] = {}
        for phrase, value in table.items():
            key = " ".join(phrase.split()).translate(_ASCII_LOWER)
            if key:
                self._values[key] = value
                lengths.setdefault(key[0], set()).add(len(key))
        self._lengths = {ch: sorted(ls, reverse=True) for ch, ls in lengths.items()}
        self._not_followed_by = {k: set(v) for k, v in (not_followed_by or {}).items()}

    def __len__(self) -> int:
        return len(self._values)

    def find(self, text: str) -> list[tuple[int, int, str]]:
        """(start, end, value) of the longest phrase starting at each position (they may overlap)."""
        if not self._values:
            return []
        lowered = text.translate(_ASCII_LOWER)
        found: list[tuple[int, int, str]] = []
        size = len(lowered)
        for start, ch in enumerate(lowered):
            lengths = self._lengths.get(ch)
            if lengths is None:
                continue
            if _is_word_char(ch) and start > 0 and _is_word_char(lowered[start - 1]):
                continue
            for length in lengths:
                end = start + length
                if end > size:
                    continue
                phrase = lowered[start:end]
                value = self._values.get(phrase)
                if value is None or not self._fits(phrase, lowered, end):
                    continue
                found.append((start, end, value))
                break
        return found

    def _fits(self, phrase: str, text: str, end: int) -> bool:
        if end < len(text):
            following = text[end]
            if _is_word_char(phrase[-1]) and _is_word_char(following):
                return False
            if following in self._not_followed_by.get(phrase, ()):
                return False
        return True


class LookupEntityExtractor:
    """Hospitals (value: the canonical name) and relation words (value: spouse, son, ...)."""

    name = "LookupEntityExtractor"

    def extract(
        self, text: str, hospitals: PhraseTable, relations: PhraseTable
    ) -> list[dict[str, Any]]:
        found = [
            make_entity("hospital", value, start, end, self.name)
            for start, end, value in hospitals.find(text)
        ]
        for start, end, value in relations.find(text):
            possessive = _POSSESSIVE.match(text, start, end)
            if possessive is not None:
                start = possessive.end()
            found.append(make_entity("relation", value, start, end, self.name))
        return found


def load_hospital_table(path: Path) -> dict[str, str]:
    """Read config/nlu/hospitals.yml (Rasa YAML: `- lookup: hospital` examples and
    `- synonym: CANONICAL` examples) into spoken form -> canonical.

    Every canonical name also maps to itself. Raises FileNotFoundError for a missing file and
    ValueError for a file that is not Rasa NLU YAML.
    """
    try:
        document = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("nlu", []), list):
        raise ValueError(f"{path}: expected a mapping with an `nlu:` list")
    table: dict[str, str] = {}
    synonyms: list[tuple[str, list[str]]] = []
    for item in document.get("nlu") or []:
        if not isinstance(item, dict):
            raise ValueError(f"{path}: every `nlu:` item must be a mapping, got {item!r}")
        if item.get("lookup") == "hospital":
            for name in _examples(item.get("examples"), path):
                table.setdefault(name, name)
        elif "synonym" in item:
            canonical = str(item["synonym"]).strip()
            synonyms.append((canonical, _examples(item.get("examples"), path)))
    for canonical, spoken_forms in synonyms:  # a synonym wins over a lookup entry
        table[canonical] = canonical
        for spoken in spoken_forms:
            table[spoken] = canonical
    return table


def _examples(raw: Any, path: Path) -> list[str]:
    """The `- item` lines of a Rasa `examples: |` block (or a YAML list)."""
    if raw is None:
        return []
    if isinstance(raw, list):
        lines = [str(entry) for entry in raw]
    elif isinstance(raw, str):
        lines = [line.strip() for line in raw.splitlines()]
        lines = [line[1:] for line in lines if line.startswith("-")]
    else:
        raise ValueError(f"{path}: `examples` must be a `|` block or a list, got {raw!r}")
    return [" ".join(line.split()) for line in lines if line.strip()]
