"""Import and export of the registry of retirees as .xlsx or .csv files.

Every row is validated; the good rows are imported in the caller's transaction in bulk.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, TypeVar, cast
from xml.etree.ElementTree import ParseError

import phonenumbers
from openpyxl import Workbook, load_workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.utils.exceptions import InvalidFileException
from psycopg import sql as pg_sql
from sqlalchemy import Table, func, insert, select, update
from sqlalchemy import text as sql_text
from sqlalchemy.orm import Session

from storage.audit import record_access
from storage.models import (
    Base,
    EmergencyContact,
    Hardship,
    Retiree,
    RetireePhone,
    RetireeStatus,
    SelfCare,
    Staff,
    Unit,
    UnitLevel,
)
from storage.phones import InvalidPhoneNumber, normalize_phone
from storage.types import utcnow

ACCEPTED_EXTENSIONS = (".xlsx", ".csv")
CHUNK = 2000  # rows per INSERT/UPDATE batch and ids per IN (...) list
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


@dataclass(frozen=True, slots=True)
class RejectedRow:
    row: int  # as the spreadsheet shows it: the header is row 1
    reason: str


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[RejectedRow] = field(default_factory=list)


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
        yield from csv.reader(io.StringIO(text, newline=""))
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

    @classmethod
    def load(cls, session: Session) -> CommunityLookup:
        query = select(Unit.id, Unit.code, Unit.name_zh, Unit.name_en).where(
            Unit.level == UnitLevel.COMMUNITY
        )
        return cls(tuple(row) for row in session.execute(query))

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


# --------------------------------------------------------------------------- importing


@dataclass
class ImportPlan:
    """The good rows, split into new people and existing people (by retiree id)."""

    creates: list[ParsedRow] = field(default_factory=list)
    updates: list[tuple[int, ParsedRow]] = field(default_factory=list)


class RowMatcher:
    """Checks a row's phones against the earlier rows and the registry; decides create/update."""

    def __init__(self, owners: dict[str, int]) -> None:
        self.owners = owners  # every registered phone -> retiree id
        self.seen: dict[str, int] = {}  # phone -> first row of this file that has it
        self.claimed: dict[int, int] = {}  # retiree id -> the row that updates them

    @classmethod
    def load(cls, session: Session) -> RowMatcher:
        query = select(RetireePhone.number, RetireePhone.retiree_id)
        return cls({number: rid for number, rid in session.execute(query)})

    def check(self, row: ParsedRow) -> None:
        """Add to row.errors the phone problems: repeated in the file, or two people."""
        label = BY_KEY["phone"].label
        for phone in row.phones:
            first = self.seen.setdefault(phone, row.number)
            if first != row.number:
                row.errors.append(f"{label}: {phone} also on row {first}")
        if row.errors:
            return
        ids = sorted({self.owners[p] for p in row.phones if p in self.owners})
        if len(ids) > 1:
            people = ", ".join(f"#{i}" for i in ids)
            row.errors.append(
                f"{label}: {', '.join(row.phones)} match different registered retirees ({people})"
            )
        elif ids and ids[0] in self.claimed:
            row.errors.append(
                f"{label}: {', '.join(row.phones)} match the same registered retiree as row "
                f"{self.claimed[ids[0]]}"
            )
        elif ids:
            self.claimed[ids[0]] = row.number

    def owner(self, row: ParsedRow) -> int | None:
        return next((self.owners[p] for p in row.phones if p in self.owners), None)


def import_retirees(
    session: Session,
    path: str | Path,
    *,
    actor: Staff | None = None,
    actor_label: str = "",
    today: date | None = None,
) -> ImportReport:
    """Validate every row of ``path`` and import the good ones (in the caller's transaction).

    A row whose phone is already registered updates that retiree; the others are created.
    Raises RegistryFileError (and imports nothing) when the file as a whole is unusable.
    """
    path = Path(path)
    today = today or date.today()
    rows = read_table(path)
    columns = map_header(path, next(rows, None))
    parser = RowParser(columns, CommunityLookup.load(session), today)
    matcher = RowMatcher.load(session)
    report, plan = ImportReport(), ImportPlan()
    for number, cells in enumerate(rows, start=2):
        row = parser.parse(number, cells)
        if row is None:
            continue
        matcher.check(row)
        if row.errors:
            report.rejected.append(RejectedRow(number, "; ".join(row.errors)))
            continue
        owner = matcher.owner(row)
        if owner is None:
            plan.creates.append(row)
        else:
            plan.updates.append((owner, row))
    report.created = _create(session, plan.creates, today)
    report.updated, report.unchanged = _update(session, plan.updates, matcher.owners)
    _expire_registry_objects(session)
    record_access(
        session,
        actor=actor,
        actor_label=actor_label,
        action="import_retirees",
        subject_type="retiree",
        subject_id=None,
        detail={
            "file": path.name,
            "created": report.created,
            "updated": report.updated,
            "unchanged": report.unchanged,
            "rejected": len(report.rejected),
        },
    )
    session.flush()
    return report


def _chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _create(session: Session, rows: list[ParsedRow], today: date) -> int:
    """Insert new retirees with their phones and emergency contacts, in batches."""
    now = utcnow()
    for chunk in _chunks(rows):
        ids = allocate_retiree_ids(session, len(chunk))
        people = [
            {
                "id": rid,
                **row.values,
                "status": RetireeStatus.ACTIVE,
                "registered_on": today,
                "consents": {},
                "created_at": now,
                "updated_at": now,
            }
            for rid, row in zip(ids, chunk, strict=True)
        ]
        phones = [
            {"retiree_id": rid, "number": p, "label": ""}
            for rid, row in zip(ids, chunk, strict=True)
            for p in row.phones
        ]
        contacts = [
            {"retiree_id": rid, "name": row.contact[0], "phone": row.contact[1], "relation": ""}
            for rid, row in zip(ids, chunk, strict=True)
            if row.contact is not None
        ]
        for model, params in (
            (Retiree, people),
            (RetireePhone, phones),
            (EmergencyContact, contacts),
        ):
            insert_many(session, model, params)
    return len(rows)


def allocate_retiree_ids(session: Session, count: int) -> list[int]:
    """Ids for ``count`` new retirees, so that one multi-row INSERT needs no ordered RETURNING.

    PostgreSQL: taken from the id sequence. SQLite: the next ones after the highest; safe
    because every transaction holds the write lock from its start (BEGIN IMMEDIATE).
    """
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        query = sql_text(
            "SELECT nextval(pg_get_serial_sequence('retirees', 'id')) FROM generate_series(1, :n)"
        )
        return list(session.scalars(query, {"n": count}))
    if dialect == "sqlite":
        highest = session.scalar(select(func.max(Retiree.id))) or 0
        return list(range(highest + 1, highest + 1 + count))
    raise NotImplementedError(f"importing retirees into {dialect} is not supported")


def _update(
    session: Session, updates: list[tuple[int, ParsedRow]], owners: dict[str, int]
) -> tuple[int, int]:
    """Apply the differences to existing retirees; returns (updated, unchanged)."""
    updated = unchanged = 0
    now = utcnow()
    for chunk in _chunks(updates):
        ids = [rid for rid, _ in chunk]
        current = _current_values(session, ids, chunk[0][1].values.keys())
        contacts = _first_contacts(session, ids)
        retiree_params: list[dict[str, Any]] = []
        contact_updates: list[dict[str, Any]] = []
        new_contacts: list[dict[str, Any]] = []
        new_phones: list[dict[str, Any]] = []
        for rid, row in chunk:
            changes = {k: v for k, v in row.values.items() if current[rid][k] != v}
            phones = [
                {"retiree_id": rid, "number": p, "label": ""} for p in row.phones if p not in owners
            ]
            contact = _contact_change(rid, row.contact, contacts.get(rid))
            if not (changes or phones or contact):
                unchanged += 1
                continue
            updated += 1
            retiree_params.append({"id": rid, **changes, "updated_at": now})
            new_phones.extend(phones)
            if contact is not None:
                (contact_updates if "id" in contact else new_contacts).append(contact)
        _execute_many(session, update(Retiree), retiree_params)
        insert_many(session, RetireePhone, new_phones)
        _execute_many(session, update(EmergencyContact), contact_updates)
        insert_many(session, EmergencyContact, new_contacts)
    return updated, unchanged


def insert_many(session: Session, model: type[Base], params: list[dict[str, Any]]) -> None:
    """Insert many rows at once: COPY on PostgreSQL, one executemany INSERT elsewhere."""
    if not params:
        return
    table = cast(Table, model.__table__)
    if session.get_bind().dialect.name == "postgresql":
        copy_rows(session, table, params)
    else:
        session.execute(insert(table), params)


def copy_rows(session: Session, table: Table, params: list[dict[str, Any]]) -> None:
    """PostgreSQL COPY ... FROM STDIN, in the session's transaction.

    Columns missing from ``params`` get the models' (Python-side) defaults, and every value goes
    through its column type's bind processing, as an INSERT through SQLAlchemy would.
    """
    connection = session.connection()
    dialect = connection.dialect
    columns = [c for c in table.columns if c.name in params[0] or c.default is not None]
    defaults = {c.name: _default_value(c) for c in columns if c.name not in params[0]}
    converters = [(c.name, c.type.dialect_impl(dialect).bind_processor(dialect)) for c in columns]
    statement = pg_sql.SQL("COPY {} ({}) FROM STDIN").format(
        pg_sql.Identifier(table.name),
        pg_sql.SQL(", ").join(pg_sql.Identifier(c.name) for c in columns),
    )
    driver = connection.connection.driver_connection
    with driver.cursor() as cursor, cursor.copy(statement) as copy:
        for row in params:
            copy.write_row([_db_value(row.get(n, defaults.get(n)), f) for n, f in converters])


def _db_value(value: Any, process: Callable[[Any], Any] | None) -> Any:
    return value if process is None or value is None else process(value)


def _default_value(column: Any) -> Any:
    default = column.default
    return default.arg(None) if default.is_callable else default.arg


def _execute_many(session: Session, statement: Any, params: list[dict[str, Any]]) -> None:
    if params:
        session.execute(statement, params)


def _current_values(
    session: Session, ids: Sequence[int], attributes: Iterable[str]
) -> dict[int, dict[str, Any]]:
    names = list(attributes)
    query = select(Retiree.id, *(getattr(Retiree, n) for n in names)).where(Retiree.id.in_(ids))
    return {rid: dict(zip(names, values, strict=True)) for rid, *values in session.execute(query)}


def _first_contacts(session: Session, ids: Sequence[int]) -> dict[int, tuple[int, str, str]]:
    """Each retiree's first emergency contact (lowest id): retiree id -> (id, name, phone)."""
    query = (
        select(EmergencyContact.retiree_id, EmergencyContact.id, EmergencyContact.name,
               EmergencyContact.phone)
        .where(EmergencyContact.retiree_id.in_(ids))
        .order_by(EmergencyContact.id.desc())
    )  # fmt: skip
    return {rid: (cid, name, phone) for rid, cid, name, phone in session.execute(query)}


def _contact_change(
    rid: int, given: tuple[str, str] | None, first: tuple[int, str, str] | None
) -> dict[str, Any] | None:
    """The file's contact replaces the retiree's first one; None when nothing changes."""
    if given is None:
        return None
    name, phone = given
    if first is None:
        return {"retiree_id": rid, "name": name, "phone": phone, "relation": ""}
    cid, old_name, old_phone = first
    if (old_name, old_phone) == given:
        return None
    change: dict[str, Any] = {"id": cid, "name": name, "phone": phone}
    if old_phone != phone:
        change["relation"] = ""  # a different person; the old relation no longer holds
    return change


def _expire_registry_objects(session: Session) -> None:
    """Bulk statements bypass the identity map: make loaded retirees reload on next access."""
    for obj in list(session.identity_map.values()):
        if isinstance(obj, Retiree | RetireePhone | EmergencyContact):
            session.expire(obj)


# --------------------------------------------------------------------------- exporting


def export_retirees(
    session: Session, path: str | Path, *, actor: Staff | None = None, actor_label: str = ""
) -> int:
    """Write every retiree to ``path`` (.xlsx or .csv) in the import format; returns the count."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in ACCEPTED_EXTENSIONS:
        raise RegistryFileError(
            path,
            f"unsupported file type {path.suffix!r}; accepted: {', '.join(ACCEPTED_EXTENSIONS)}",
        )
    rows = export_rows(session)
    header = [c.zh for c in COLUMNS]
    try:
        if suffix == ".xlsx":
            _write_xlsx(path, header, rows)
        else:
            _write_csv(path, header, rows)
    except OSError as exc:
        raise RegistryFileError(path, f"cannot write the file ({exc.strerror})") from exc
    record_access(
        session,
        actor=actor,
        actor_label=actor_label,
        action="export_retirees",
        subject_type="retiree",
        subject_id=None,
        detail={"file": path.name, "exported": len(rows)},
    )
    session.flush()
    return len(rows)


def export_rows(session: Session) -> list[list[str]]:
    """Every retiree as a row of text cells, in the order of COLUMNS."""
    session.flush()
    phones: dict[int, list[str]] = {}
    for rid, number in session.execute(
        select(RetireePhone.retiree_id, RetireePhone.number).order_by(RetireePhone.id)
    ):
        phones.setdefault(rid, []).append(number)
    contacts: dict[int, tuple[str, str]] = {}
    for rid, name, phone in session.execute(
        select(EmergencyContact.retiree_id, EmergencyContact.name, EmergencyContact.phone)
        .order_by(EmergencyContact.id.desc())
    ):  # fmt: skip
        contacts[rid] = (name, phone)
    communities = _community_labels(session)
    query = select(
        Retiree.id, Retiree.name, Retiree.birth_date, Retiree.community_id, Retiree.address,
        Retiree.lives_alone, Retiree.self_care, Retiree.hardship, Retiree.preferred_language,
    ).order_by(Retiree.id)  # fmt: skip
    rows = []
    for rid, name, born, community_id, address, alone, care, hardship, lang in session.execute(
        query
    ):
        contact_name, contact_phone = contacts.get(rid, ("", ""))
        rows.append(
            [
                name,
                ",".join(phones.get(rid, [])),
                born.isoformat() if born else "",
                communities.get(community_id, "") if community_id else "",
                address,
                EXPORT_YES_NO[bool(alone)],
                EXPORT_SELF_CARE[SelfCare(care)],
                EXPORT_HARDSHIP[Hardship(hardship)],
                contact_name,
                contact_phone,
                EXPORT_LANGUAGE.get(lang, lang),
            ]
        )
    return rows


def _community_labels(session: Session) -> dict[int, str]:
    """Community id -> its Chinese name, or its code where the importer could not tell by name."""
    query = select(Unit.id, Unit.code, Unit.name_zh, Unit.name_en).where(
        Unit.level == UnitLevel.COMMUNITY
    )
    units = [tuple(row) for row in session.execute(query)]
    lookup = CommunityLookup(units)
    labels = {}
    for unit_id, code, name_zh, _ in units:
        try:
            labels[unit_id] = name_zh if lookup.find(name_zh) == unit_id else code
        except CellError:
            labels[unit_id] = code
    return labels


def _write_xlsx(path: Path, header: list[str], rows: list[list[str]]) -> None:
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("retirees")
    sheet.append(header)
    for row in rows:
        sheet.append([_text_cell(sheet, value) for value in row])
    workbook.save(path)


def _text_cell(sheet: Any, value: str) -> Any:
    """A plain string; a value starting with '=' is kept as text, not turned into a formula."""
    if not value.startswith("="):
        return value
    cell = WriteOnlyCell(sheet, value=value)
    cell.data_type = "s"
    return cell


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with path.open("w", encoding="utf-8-sig", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(header)
        writer.writerows(rows)
