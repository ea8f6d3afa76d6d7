"""Cells of the spreadsheets we write and read (the registry files, the report exports): a text
a spreadsheet would run as a formula (it starts with =, +, -, @, a tab or a carriage return:
"=HYPERLINK(...)", and "+8613800000001" too) is written as text, with an apostrophe in front
that Excel and LibreOffice take as "this is text"; reading our own CSV back takes it off."""

from __future__ import annotations

from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def as_text(value: Any) -> Any:
    """``value``, a formula-looking text made harmless; anything else as it is."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def from_text(text: str) -> str:
    """A cell read from a CSV file: the apostrophe `as_text` put in front is taken off."""
    if text.startswith("'") and text[1:].startswith(FORMULA_STARTS):
        return text[1:]
    return text
