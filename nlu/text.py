"""Cleaning what a caller said (or a recogniser heard) before it is understood: control characters,
broken surrogates, full-width forms and over-long input; and the normalised form the model reads."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

MAX_CHARS = 2000

_WHITESPACE_RUN = re.compile(r"\s+")
# Two CJK characters with only spaces between them: recognisers often space out every character.
_SPACE_BETWEEN_CJK = re.compile(r"(?<=[\u3400-\u9fff])\s+(?=[\u3400-\u9fff])")
_CURLY_QUOTES = str.maketrans({"‘": "'", "’": "'", "“": '"', "”": '"'})


def _fix_surrogates(text: str) -> str:
    """Join surrogate pairs into the characters they encode and drop lone surrogates."""
    if not any("\ud800" <= ch <= "\udfff" for ch in text):
        return text
    joined = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return joined.replace("\ufffd", "")


def _drop_controls(text: str) -> str:
    """Whitespace-like controls become spaces; other control and format characters go."""
    out: list[str] = []
    for ch in text:
        if ch.isprintable():
            out.append(ch)
        elif ch.isspace():
            out.append(" ")
        elif unicodedata.category(ch) in ("Cc", "Cf", "Cs"):
            continue
        else:  # private use or unassigned (say, an emoji newer than this Python): keep
            out.append(ch)
    return "".join(out)


def clean_text(raw: str | bytes) -> tuple[str, bool]:
    """Return (cleaned text, truncated): NFKC (full-width ASCII to ASCII), control and format
    characters removed, whitespace runs collapsed, trimmed, cut at MAX_CHARS characters."""
    if isinstance(raw, bytes | bytearray):
        raw = bytes(raw).decode("utf-8", "replace")
    text = _fix_surrogates(raw).replace("\ufffd", "")
    text = unicodedata.normalize("NFKC", text)
    if not text.isprintable():
        text = _drop_controls(text)
    text = _WHITESPACE_RUN.sub(" ", text).strip()
    if len(text) <= MAX_CHARS:
        return text, False
    return text[:MAX_CHARS].rstrip(), True


@lru_cache(maxsize=1)
def _t2s():  # type: ignore[no-untyped-def]
    import opencc

    return opencc.OpenCC("t2s")


def to_simplified(text: str) -> str:
    """Traditional to simplified characters (OpenCC t2s); the length is kept for almost every text."""
    return _t2s().convert(text)


def normalize_for_model(text: str) -> str:
    """The form the features and the safety rules read: simplified, lower-case, straight quotes,
    no spaces between Chinese characters. Expects text that clean_text has already cleaned."""
    simplified = to_simplified(text).lower().translate(_CURLY_QUOTES)
    return _SPACE_BETWEEN_CJK.sub("", simplified)
