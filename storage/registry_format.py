"""The registry file format: columns, vocabularies, reading .xlsx/.csv, parsing cells and rows."""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, TypeVar
from xml.etree.ElementTree import ParseError

import phonenumbers
from openpyxl import load_workbook
from openpyxl.utils.exceptions import InvalidFileException

from storage.cells import from_text
from storage.models import Hardship, SelfCare
from storage.phones import InvalidPhoneNumber, normalize_phone

ACCEPTED_EXTENSIONS = (".xlsx", ".csv")
EARLIEST_BIRTH_DATE = date(1900, 1, 1)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Column:
    """One column of the registry file: its key (the English header) and its Chinese header."""

    key: str
    zh: str

    @property
    def label(self) -> str:
        return f"{self.zh}/{self.key}"


COLUMNS = (
    Column("name", "姓名"),
    Column("phone", "电话"),
    Column("birth_date", "出生日期"),
    Column("community", "社区"),
    Column("address", "住址"),
    Column("lives_alone", "独居"),
    Column("self_care", "自理能力"),
    Column("hardship", "困难类别"),
    Column("emergency_contact", "紧急联系人"),
    Column("emergency_phone", "紧急联系电话"),
    Column("language", "语言"),
)
BY_KEY = {c.key: c for c in COLUMNS}
REQUIRED = ("name", "phone")
# Columns that are stored on the Retiree row itself: file key -> model attribute.
ATTRIBUTES = {
    "name": "name",
    "birth_date": "birth_date",
    "community": "community_id",
    "address": "address",
    "lives_alone": "lives_alone",
    "self_care": "self_care",
    "hardship": "hardship",
    "language": "preferred_language",
}
MAX_LENGTH = {"name": 100, "address": 300, "emergency_contact": 100}

YES_NO = {
    **dict.fromkeys(("是", "yes", "y", "true", "1", "√"), True),
    **dict.fromkeys(("否", "no", "n", "false", "0"), False),
}
SELF_CARE = {
    "自理": SelfCare.INDEPENDENT,
    "independent": SelfCare.INDEPENDENT,
    "半自理": SelfCare.PARTLY_DEPENDENT,
    "partly_dependent": SelfCare.PARTLY_DEPENDENT,
    "partly dependent": SelfCare.PARTLY_DEPENDENT,
    "不能自理": SelfCare.DEPENDENT,
    "失能": SelfCare.DEPENDENT,
    "dependent": SelfCare.DEPENDENT,
}
HARDSHIP = {
    **dict.fromkeys(("无", "一般", "普通", "none"), Hardship.NONE),
    "困难": Hardship.HARDSHIP,
    "hardship": Hardship.HARDSHIP,
    "低保": Hardship.DIBAO,
    "dibao": Hardship.DIBAO,
}
LANGUAGE = {
    **dict.fromkeys(("中文", "汉语", "zh", "普通话"), "zh"),
    **dict.fromkeys(("英文", "英语", "en", "english"), "en"),
}
# The words the exporter writes (each one is accepted by the importer).
EXPORT_YES_NO = {True: "是", False: "否"}
EXPORT_SELF_CARE = {
    SelfCare.INDEPENDENT: "自理",
    SelfCare.PARTLY_DEPENDENT: "半自理",
    SelfCare.DEPENDENT: "不能自理",
}
EXPORT_HARDSHIP = {Hardship.NONE: "无", Hardship.HARDSHIP: "困难", Hardship.DIBAO: "低保"}
EXPORT_LANGUAGE = {"zh": "中文", "en": "英文"}

PHONE_SEPARATORS = re.compile(r"[,，;；、/]")
# 11 digits from 13 to 19, except 179 (a carrier prefix the parser may strip): parsed as is.
PLAIN_CN_MOBILE = re.compile(r"1[3-9]\d{9}")
DATE_PATTERNS = (
    re.compile(r"(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?:[ T]0?0:00(?::00)?)?"),
    re.compile(r"(\d{4})\s*年\s*(\d{1,2})\s*月\s*(\d{1,2})\s*日?"),
    re.compile(r"(\d{4})(\d{2})(\d{2})"),
)


class RegistryFileError(Exception):
    """The file as a whole cannot be imported (unreadable, wrong type, bad header)."""

    def __init__(self, path: str | Path, message: str) -> None:
        self.path = Path(path)
        self.message = message
        super().__init__(f"{path}: {message}")


class CellError(ValueError):
    """One bad value; the message names the column and the value."""


# --------------------------------------------------------------------------- reading files


def read_table(path: Path) -> Iterator[Sequence[Any]]:
    """The rows of the first sheet of an .xlsx file or of a .csv file, header first."""
    suffix = path.suffix.lower()
    if suffix not in ACCEPTED_EXTENSIONS:
        raise RegistryFileError(
            path,
            f"unsupported file type {path.suffix!r}; accepted: {', '.join(ACCEPTED_EXTENSIONS)}",
        )
    if not path.is_file():
        raise RegistryFileError(path, "no such file")
    return _read_xlsx(path) if suffix == ".xlsx" else _read_csv(path)


def _read_xlsx(path: Path) -> Iterator[Sequence[Any]]:
    try:
        workbook = load_workbook(path, read_only=True, data_only=True)
    except (InvalidFileException, zipfile.BadZipFile, KeyError, OSError) as exc:
        raise _unreadable_xlsx(path, exc) from exc
    try:
        yield from workbook.worksheets[0].iter_rows(values_only=True)
    except (ParseError, zipfile.BadZipFile, IndexError, KeyError, ValueError) as exc:
        raise _unreadable_xlsx(path, exc) from exc
    finally:
        workbook.close()


def _unreadable_xlsx(path: Path, exc: Exception) -> RegistryFileError:
    why = exc.__class__.__name__
    return RegistryFileError(
        path, f"not a readable .xlsx file ({why}; an old .xls or a password-protected file?)"
    )


def _read_csv(path: Path) -> Iterator[Sequence[Any]]:
    data = path.read_bytes()
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise RegistryFileError(path, "the text is neither UTF-8 nor GB18030")
    try:
        for row in csv.reader(io.StringIO(text, newline="")):
            yield [from_text(cell) for cell in row]
    except csv.Error as exc:
        raise RegistryFileError(path, f"not a readable .csv file ({exc})") from exc


def cell_text(value: Any) -> str:
    """A cell as trimmed text; numbers Excel stored as floats (13812345678.0) lose the ``.0``."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == time() else value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    return str(value).strip()


def _header_key(text: str) -> str | None:
    wanted = text.strip().casefold().replace(" ", "_").replace("-", "_")
    for column in COLUMNS:
        if wanted in (column.key, column.zh):
            return column.key
    return None


def map_header(path: Path, header: Sequence[Any] | None) -> dict[str, int]:
    """Column key -> index in the row; raises RegistryFileError on a missing or unknown column."""
    if header is None:
        raise RegistryFileError(path, "the file is empty (no header row)")
    expected = ", ".join(c.label for c in COLUMNS)
    found = [cell_text(v) for v in header]
    columns: dict[str, int] = {}
    for index, text in enumerate(found):
        if not text:
            continue
        key = _header_key(text)
        if key is None:
            raise RegistryFileError(
                path, f"unknown column {text!r}; found: {_listing(found)}; expected: {expected}"
            )
        if key in columns:
            raise RegistryFileError(path, f"column {BY_KEY[key].label} appears twice")
        columns[key] = index
    missing = [BY_KEY[k].label for k in REQUIRED if k not in columns]
    if missing:
        raise RegistryFileError(
            path,
            f"missing required column(s) {', '.join(missing)}; "
            f"found: {_listing(found)}; expected: {expected}",
        )
    if ("emergency_contact" in columns) != ("emergency_phone" in columns):
        raise RegistryFileError(
            path,
            f"columns {BY_KEY['emergency_contact'].label} and "
            f"{BY_KEY['emergency_phone'].label} go together",
        )
    return columns


def _listing(found: list[str]) -> str:
    return ", ".join(repr(t) for t in found if t) or "nothing"


# --------------------------------------------------------------------------- parsing values


def _bad(key: str, text: str, why: str) -> CellError:
    return CellError(f"{BY_KEY[key].label}: {text!r} {why}")


def _choice(key: str, text: str, choices: dict[str, T], default: T, accepted: str) -> T:
    if not text:
        return default
    try:
        return choices[text.casefold()]
    except KeyError:
        raise _bad(key, text, f"is not one of {accepted}") from None


def to_e164(text: str) -> str:
    """normalize_phone, with a shortcut for the common case of a bare Chinese mobile number."""
    if PLAIN_CN_MOBILE.fullmatch(text) and not text.startswith("179"):
        number = phonenumbers.PhoneNumber(country_code=86, national_number=int(text))
        if not phonenumbers.is_valid_number(number):
            raise InvalidPhoneNumber(text)
        return f"+86{text}"
    return normalize_phone(text)


def parse_phones(key: str, text: str) -> list[str]:
    """All the phone numbers of a cell, in E.164, without repeats."""
    parts = [p.strip() for p in PHONE_SEPARATORS.split(text)]
    numbers: list[str] = []
    for part in filter(None, parts):
        try:
            number = to_e164(part)
        except InvalidPhoneNumber as exc:
            raise CellError(f"{BY_KEY[key].label}: {exc}") from None
        if number not in numbers:
            numbers.append(number)
    if not numbers:
        raise CellError(f"{BY_KEY[key].label}: missing")
    return numbers


def parse_birth_date(raw: Any, today: date) -> date | None:
    """A date cell or 1941-03-05, 1941/3/5, 1941年3月5日, 19410305; not future, not before 1900."""
    if isinstance(raw, datetime):
        value, text = raw.date(), cell_text(raw)
    elif isinstance(raw, date):
        value, text = raw, raw.isoformat()
    else:
        text = cell_text(raw)
        if not text:
            return None
        value = _date_from_text(text)
    if value > today:
        raise _bad("birth_date", text, "is in the future")
    if value < EARLIEST_BIRTH_DATE:
        raise _bad("birth_date", text, "is before 1900")
    return value


def _date_from_text(text: str) -> date:
    for pattern in DATE_PATTERNS:
        match = pattern.fullmatch(text)
        if match:
            try:
                return date(*(int(g) for g in match.groups()))
            except ValueError:
                break
    raise _bad("birth_date", text, "is not a date (use YYYY-MM-DD)")


class CommunityLookup:
    """Communities by code, Chinese or English name (case-insensitive)."""

    def __init__(self, units: Iterable[tuple[int, str, str, str]]) -> None:
        self._ids: dict[str, set[int]] = {}
        for unit_id, *names in units:
            for name in names:
                self._ids.setdefault(name.strip().casefold(), set()).add(unit_id)

    def find(self, text: str) -> int | None:
        if not text:
            return None
        ids = self._ids.get(text.casefold(), set())
        if not ids:
            raise _bad("community", text, "is not a known community")
        if len(ids) > 1:
            raise _bad("community", text, "names more than one community; use its code")
        return next(iter(ids))


@dataclass(slots=True)
class ParsedRow:
    """One data row: the Retiree attributes of the columns present, phones, emergency contact."""

    number: int
    values: dict[str, Any] = field(default_factory=dict)
    phones: list[str] = field(default_factory=list)
    contact: tuple[str, str] | None = None
    errors: list[str] = field(default_factory=list)


class RowParser:
    """Turns the cells of one row into a ParsedRow, collecting every bad value."""

    def __init__(self, columns: dict[str, int], communities: CommunityLookup, today: date) -> None:
        self.columns = columns
        self.communities = communities
        self.today = today

    def parse(self, number: int, cells: Sequence[Any]) -> ParsedRow | None:
        """None for a row with nothing in it."""
        raw = {key: (cells[i] if i < len(cells) else None) for key, i in self.columns.items()}
        text = {key: cell_text(value) for key, value in raw.items()}
        if not any(text.values()):
            return None
        row = ParsedRow(number)
        for column in COLUMNS:
            if column.key in self.columns and column.key != "emergency_phone":
                self._parse_column(row, column.key, raw, text)
        return row

    def _parse_column(
        self, row: ParsedRow, key: str, raw: dict[str, Any], text: dict[str, str]
    ) -> None:
        if key == "emergency_contact":
            self._contact(row, text["emergency_contact"], text["emergency_phone"])
            return
        try:
            if key == "phone":
                row.phones = parse_phones(key, text[key])
            else:
                row.values[ATTRIBUTES[key]] = self._value(key, raw[key], text[key])
        except CellError as exc:
            row.errors.append(str(exc))

    def _value(self, key: str, raw: Any, text: str) -> Any:
        if key in MAX_LENGTH and len(text) > MAX_LENGTH[key]:
            raise CellError(
                f"{BY_KEY[key].label}: too long ({len(text)} characters, at most {MAX_LENGTH[key]})"
            )
        if key == "name" and not text:
            raise CellError(f"{BY_KEY[key].label}: missing")
        if key in ("name", "address"):
            return text
        if key == "birth_date":
            return parse_birth_date(raw, self.today)
        if key == "community":
            return self.communities.find(text)
        if key == "lives_alone":
            return _choice(key, text, YES_NO, False, "是/否 (yes/no)")
        if key == "self_care":
            return _choice(
                key, text, SELF_CARE, SelfCare.INDEPENDENT,
                "自理/半自理/不能自理 (independent/partly_dependent/dependent)",
            )  # fmt: skip
        if key == "hardship":
            return _choice(key, text, HARDSHIP, Hardship.NONE, "无/困难/低保 (none/hardship/dibao)")
        return _choice(key, text, LANGUAGE, "zh", "中文/英文 (zh/en)")

    def _contact(self, row: ParsedRow, name: str, phone: str) -> None:
        contact_label = BY_KEY["emergency_contact"].label
        phone_label = BY_KEY["emergency_phone"].label
        if not name and not phone:
            return
        if not phone:
            row.errors.append(f"{phone_label}: missing ({contact_label} is given)")
            return
        if not name:
            row.errors.append(f"{contact_label}: missing ({phone_label} is given)")
            return
        if len(name) > MAX_LENGTH["emergency_contact"]:
            limit = MAX_LENGTH["emergency_contact"]
            row.errors.append(
                f"{contact_label}: too long ({len(name)} characters, at most {limit})"
            )
            return
        try:
            number = to_e164(phone)
        except InvalidPhoneNumber as exc:
            row.errors.append(f"{phone_label}: {exc}")
            return
        row.contact = (name, number)
