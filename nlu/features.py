"""What the intent model reads: character n-grams, tone-less pinyin n-grams (so that homophones a
recogniser confuses share features), jieba words and concepts of a small domain lexicon
(nlu/concepts.yml), from the simplified, lower-cased text."""

from __future__ import annotations

import io
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import jieba

from nlu.text import normalize_for_model, to_simplified

jieba.setLogLevel(60)  # jieba logs every dictionary load at DEBUG/INFO on the root handler

CONCEPTS_FILE = Path(__file__).resolve().parent / "concepts.yml"

_CJK = re.compile(r"[\u3400-\u9fff]")
_CJK_RUN = re.compile(r"[\u3400-\u9fff0-9]+")
_NOT_WORD = re.compile(r"[^0-9a-z\u3400-\u9fff']+")
_DIGITS = re.compile(r"[0-9]+")
_CLAUSES = re.compile(r"[,.!?;:，。！？；：、\s]+")
_LENGTH_BUCKETS = (1, 2, 4, 8, 16, 32)
# A pinyin stream: one Chinese character, or a run of Latin letters/digits.
_PINYIN_UNITS = re.compile(r"[\u3400-\u9fff]|[0-9a-z']+")
_INITIALS = ("zh", "ch", "sh")
# Sounds that accents and recognisers mix up, for the lexicon's sound matching.
_FUZZY_INITIAL = re.compile(r"^(?:zh|ch|sh|n)")
_FUZZY_FINAL = re.compile(r"ng$")
_FUZZY_MAP = {"zh": "z", "ch": "c", "sh": "s", "n": "l"}
# Lexicon entries also matched by sound: with two characters too many ordinary texts sound
# alike (去市一院 would read as 去世), and cross-validation gained nothing from them.
_SOUND_MIN_CHARS = 3
# What counts when judging how familiar a text is: Chinese characters and Latin words.
_UNITS = re.compile(r"[\u3400-\u9fff]|[a-z]+")
# Left out when a whole utterance (or clause) is compared with the "=" entries of the lexicon.
_PARTICLES = re.compile(r"[啊呀吧呢嘛哦噢啦喽哈呗诶哎唉]+")
_REPEATS = re.compile(r"(.+?)\1+")


@dataclass(frozen=True)
class FeatureConfig:
    """Which features to extract (chosen by cross-validation; see benchmarks/nlu_bench.py)."""

    char_ngrams: tuple[int, int] = (1, 3)
    pinyin_ngrams: tuple[int, int] = (1, 2)  # (0, 0): none
    initials_ngrams: tuple[int, int] = (0, 0)  # pinyin initials (报销/保险 -> "b x"); (0, 0): none
    words: bool = True
    word_bigrams: bool = False
    digits_as_zero: bool = True  # 350 and 120 read alike, except in the safety rules
    concepts: bool = True  # "k:<concept>" from the concept lexicon (nlu/concepts.yml)
    length: bool = True  # "len:<bucket>": one word or a long story


def build_pinyin_table() -> dict[str, str]:
    """Tone-less pinyin (most common reading) of every BMP Chinese character pypinyin knows.

    Built when training and stored with the model, so that parsing needs no pypinyin (which
    costs about 60 MB of memory when imported)."""
    from pypinyin.pinyin_dict import pinyin_dict

    table: dict[str, str] = {}
    for code, readings in pinyin_dict.items():
        char = chr(code)
        if not _CJK.fullmatch(char):
            continue
        first = readings.split(",")[0].replace("ü", "v")
        plain = "".join(
            c for c in unicodedata.normalize("NFD", first) if not unicodedata.combining(c)
        )
        table[char] = plain
    return table


def build_jieba_dictionary(top_words: int) -> tuple[dict[str, int], int]:
    """jieba's prefix dictionary restricted to its `top_words` most frequent words (0: all).

    The full dictionary costs about 70 MB resident; a few tens of thousands of words segment
    callers' everyday speech the same way for a fraction of it."""
    source = Path(jieba.__file__).resolve().parent / "dict.txt"
    lines = source.read_bytes().splitlines()
    if top_words:
        lines.sort(key=lambda line: -int(line.split(b" ")[1]))
        lines = lines[:top_words]
    return jieba.Tokenizer.gen_pfdict(io.BytesIO(b"\n".join(lines)))


def make_tokenizer(freq: dict[str, int], total: int) -> jieba.Tokenizer:
    """A jieba tokenizer over a prefix dictionary built by build_jieba_dictionary."""
    tokenizer = jieba.Tokenizer()
    tokenizer.FREQ, tokenizer.total = freq, total
    tokenizer.initialized = True
    return tokenizer


class ConceptLexicon:
    """Finds the concepts of nlu/concepts.yml in a normalised text: Chinese entries by their
    characters or, for three characters or more, by their (fuzzy, tone-less) pinyin when at
    least one character is the same (不知到 reads as 不知道; 就明天 is not 救命)."""

    def __init__(self, concepts: dict[str, list[str]], pinyin: dict[str, str]) -> None:
        self.concepts = concepts
        self._anywhere: dict[str, list[str]] = {}
        self._sounds: dict[str, list[tuple[str, str]]] = {}
        self._whole: dict[str, list[str]] = {}
        self._patterns: list[tuple[re.Pattern[str], str]] = []
        self._latin: dict[str, list[str]] = {}
        for name, entries in concepts.items():
            for raw in entries:
                if str(raw).startswith("~"):  # a regex, over the normalised text
                    self._patterns.append((re.compile(str(raw)[1:]), name))
                    continue
                entry = normalize_for_model(str(raw)).strip()
                if entry.startswith("="):
                    self._whole.setdefault(_whole_form(entry[1:]), []).append(name)
                elif re.search("[a-z]", entry):
                    self._latin.setdefault(entry, []).append(name)
                elif entry:
                    self._anywhere.setdefault(entry, []).append(name)
                    if len(entry) >= _SOUND_MIN_CHARS and all(ch in pinyin for ch in entry):
                        sound = " ".join(_fuzzy(pinyin[ch]) for ch in entry)
                        self._sounds.setdefault(sound, []).append((entry, name))
        self._char_prefixes = {e[:n] for e in self._anywhere for n in range(1, len(e) + 1)}
        self._sound_prefixes = {
            " ".join(key.split(" ")[:n])
            for key in self._sounds
            for n in range(1, key.count(" ") + 2)
        }
        phrases = sorted(self._latin, key=len, reverse=True)
        body = "|".join(re.escape(p).replace(r"\ ", r"\s+") for p in phrases)
        self._latin_regex = re.compile(rf"(?<![a-z'])(?=({body})(?![a-z']))") if phrases else None

    @classmethod
    def load(cls, pinyin: dict[str, str], path: Path = CONCEPTS_FILE) -> ConceptLexicon:
        import yaml

        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        concepts = raw.get("concepts") if isinstance(raw, dict) else None
        if not isinstance(concepts, dict) or not all(
            isinstance(v, list) for v in concepts.values()
        ):
            raise ValueError(f"{path}: expected 'concepts:' mapping names to lists of phrases")
        for name, entries in concepts.items():
            for entry in entries:
                if not isinstance(entry, str | int) or isinstance(entry, bool):
                    raise ValueError(f"{path}: concepts.{name}: {entry!r} is not text (quote it)")
                if isinstance(entry, str) and entry.startswith("~"):
                    try:
                        re.compile(entry[1:])
                    except re.error as exc:
                        raise ValueError(f"{path}: concepts.{name}: {entry!r}: {exc}") from exc
        return cls({str(k): [str(e) for e in v] for k, v in concepts.items()}, pinyin)

    def find(self, norm: str, pinyin: dict[str, str]) -> list[str]:
        """Concept names found in a text from normalize_for_model (repeats kept)."""
        found: list[str] = []
        anywhere, sounds = self._anywhere, self._sounds
        char_prefixes, sound_prefixes = self._char_prefixes, self._sound_prefixes
        for run in _CJK_RUN.findall(norm):
            syllables = [_fuzzy(pinyin.get(ch, ch)) for ch in run]
            size = len(run)
            for i in range(size):
                sound = syllables[i]
                for j in range(i + 1, size + 1):
                    if j - i >= 2:
                        sound = f"{sound} {syllables[j - 1]}"
                    heard = run[i:j]
                    in_chars, in_sounds = heard in char_prefixes, sound in sound_prefixes
                    if not (in_chars or in_sounds):
                        break
                    names = anywhere.get(heard) if in_chars else None
                    if names:
                        found.extend(names)
                    elif in_sounds and (alike := sounds.get(sound)):
                        # a recogniser's slip changes a character or two, not all of them
                        found.extend(
                            name
                            for entry, name in alike
                            if any(a == b for a, b in zip(entry, heard, strict=True))
                        )
        if self._latin_regex is not None and re.search("[a-z]", norm):
            for match in self._latin_regex.finditer(norm):
                found.extend(self._latin[" ".join(match[1].split())])
        whole = self._whole.get(_whole_form(norm))
        if whole:
            found.extend(whole)
        else:  # "不，不要那个": each clause on its own
            for clause in _CLAUSES.split(norm):
                found.extend(self._whole.get(_whole_form(clause), ()))
        found.extend(name for pattern, name in self._patterns if pattern.search(norm))
        return found


@lru_cache(maxsize=4096)
def _fuzzy(syllable: str) -> str:
    """Sounds that accents and recognisers mix up read alike: zh/z, ch/c, sh/s, n/l, -ng/-n."""
    return _FUZZY_FINAL.sub("n", _FUZZY_INITIAL.sub(lambda m: _FUZZY_MAP[m[0]], syllable))


def _whole_form(text: str) -> str:
    return _REPEATS.sub(r"\1", _PARTICLES.sub("", _NOT_WORD.sub("", text)))


def text_units(text: str) -> list[str]:
    """The Chinese characters and Latin words of a cleaned text (simplified, lower case)."""
    return _UNITS.findall(normalize_for_model(text))


def unfamiliar_share(text: str, known: frozenset[str] | set[str]) -> float:
    """Share of a text's characters and words that are not in `known` (0.0 for none at all)."""
    units = text_units(text)
    return sum(unit not in known for unit in units) / len(units) if units else 0.0


def _ngrams(units: list[str], low: int, high: int, prefix: str, out: list[str]) -> None:
    count = len(units)
    for n in range(max(low, 1), high + 1):
        for i in range(count - n + 1):
            out.append(prefix + " ".join(units[i : i + n]))


def _initial(syllable: str) -> str:
    return syllable[:2] if syllable.startswith(_INITIALS) else syllable[:1]


class Featurizer:
    """Turns a cleaned text into jieba token spans and the model's feature strings."""

    def __init__(
        self,
        config: FeatureConfig,
        pinyin: dict[str, str],
        tokenizer: jieba.Tokenizer,
        lexicon: ConceptLexicon | None = None,
    ) -> None:
        self.config = config
        self.pinyin = pinyin
        self.tokenizer = tokenizer
        self.lexicon = lexicon

    def tokens(self, text: str) -> list[tuple[str, int, int]]:
        """jieba tokens (word, start, end) of a cleaned text, offsets into that text; segmented
        on the simplified form when converting keeps the length (nearly always)."""
        simplified = to_simplified(text)
        source = simplified if len(simplified) == len(text) else text
        return [
            (word, start, end)
            for word, start, end in self.tokenizer.tokenize(source, HMM=True)
            if not word.isspace()
        ]

    def features(
        self, text: str, tokens: Iterable[tuple[str, int, int]] | None = None
    ) -> list[str]:
        """Feature strings of a cleaned text (tokens: from .tokens(text), to save segmenting twice)."""
        cfg = self.config
        norm = normalize_for_model(text)
        out: list[str] = []
        if cfg.concepts and self.lexicon is not None:
            out.extend("k:" + name for name in self.lexicon.find(norm, self.pinyin))
        if cfg.digits_as_zero:
            norm = _DIGITS.sub("0", norm)
        stream = _NOT_WORD.sub(" ", norm).strip()
        if cfg.length:
            size = len(stream.replace(" ", ""))
            out.append(f"len:{sum(size > bucket for bucket in _LENGTH_BUCKETS)}")
        low, high = cfg.char_ngrams
        if high:
            compact = stream.replace(" ", "_")
            for n in range(max(low, 1), high + 1):
                out.extend(compact[i : i + n] for i in range(len(compact) - n + 1))
            if low <= 1:
                out = [gram for gram in out if gram != "_"]
        if cfg.pinyin_ngrams[1] or cfg.initials_ngrams[1]:
            units = [self.pinyin.get(u, u) for u in _PINYIN_UNITS.findall(stream)]
            if cfg.pinyin_ngrams[1]:
                _ngrams(units, *cfg.pinyin_ngrams, "p:", out)
            if cfg.initials_ngrams[1]:
                _ngrams([_initial(u) for u in units], *cfg.initials_ngrams, "i:", out)
        if cfg.words:
            if tokens is None:
                tokens = self.tokens(text)
            words = []
            for word, _, _ in tokens:
                word = _NOT_WORD.sub("", word.lower())
                if word:
                    words.append("0" if cfg.digits_as_zero and word.isdigit() else word)
            out.extend("w:" + word for word in words)
            if cfg.word_bigrams:
                _ngrams(words, 2, 2, "w:", out)
        return out
