"""Import and export of the registry of retirees as .xlsx or .csv files, with the database.

Every row is validated; the good rows are imported in the caller's transaction in bulk.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, TypeVar, cast

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from sqlalchemy import Table, select, update
from sqlalchemy.orm import Session

from storage.audit import record_access
from storage.bulk import allocate_ids, execute_many, insert_many
from storage.cells import as_text
from storage.models import (
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
from storage.registry_format import (
    ACCEPTED_EXTENSIONS,
    BY_KEY,
    COLUMNS,
    EXPORT_HARDSHIP,
    EXPORT_LANGUAGE,
    EXPORT_SELF_CARE,
    EXPORT_YES_NO,
    CellError,
    CommunityLookup,
    ParsedRow,
    RegistryFileError,
    RowParser,
    map_header,
    read_table,
)
from storage.types import utcnow

CHUNK = 2000  # rows per INSERT/UPDATE batch and ids per IN (...) list
T = TypeVar("T")
# Asked about each valid row with the id of the retiree it would update (None: a new one);
# returns why the row is refused, or None. The console keeps an import within a person's units.
RowCheck = Callable[[ParsedRow, int | None], str | None]


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
    check: RowCheck | None = None,
) -> ImportReport:
    """Validate every row of ``path`` and import the good ones (in the caller's transaction).

    A row whose phone is already registered updates that retiree; the others are created.
    Raises RegistryFileError (and imports nothing) when the file as a whole is unusable.
    """
    path = Path(path)
    today = today or date.today()
    rows = read_table(path)
    columns = map_header(path, next(rows, None))
    parser = RowParser(columns, CommunityLookup(_community_units(session)), today)
    matcher = RowMatcher.load(session)
    report, plan = ImportReport(), ImportPlan()
    for number, cells in enumerate(rows, start=2):
        row = parser.parse(number, cells)
        if row is None:
            continue
        matcher.check(row)
        if not row.errors and check is not None:
            refusal = check(row, matcher.owner(row))
            if refusal:
                row.errors.append(refusal)
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
        ids = allocate_ids(session, cast(Table, Retiree.__table__), len(chunk))
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
        execute_many(session, update(Retiree), retiree_params)
        insert_many(session, RetireePhone, new_phones)
        execute_many(session, update(EmergencyContact), contact_updates)
        insert_many(session, EmergencyContact, new_contacts)
    return updated, unchanged


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
    session: Session,
    path: str | Path,
    *,
    actor: Staff | None = None,
    actor_label: str = "",
    community_ids: Collection[int] | None = None,
) -> int:
    """Write every retiree (of ``community_ids`` if given) to ``path`` (.xlsx or .csv) in the
    import format; returns the count."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in ACCEPTED_EXTENSIONS:
        raise RegistryFileError(
            path,
            f"unsupported file type {path.suffix!r}; accepted: {', '.join(ACCEPTED_EXTENSIONS)}",
        )
    rows = export_rows(session, community_ids)
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
        detail={"file": path.name, "exported": len(rows)}
        | ({} if community_ids is None else {"communities": sorted(community_ids)}),
    )
    session.flush()
    return len(rows)


def export_rows(session: Session, community_ids: Collection[int] | None = None) -> list[list[str]]:
    """Every retiree (of ``community_ids`` if given) as a row of text cells, in COLUMNS order."""
    session.flush()
    scoped = (
        None
        if community_ids is None
        else select(Retiree.id).where(Retiree.community_id.in_(sorted(community_ids)))
    )
    phones: dict[int, list[str]] = {}
    phone_query = select(RetireePhone.retiree_id, RetireePhone.number).order_by(RetireePhone.id)
    if scoped is not None:
        phone_query = phone_query.where(RetireePhone.retiree_id.in_(scoped))
    for rid, number in session.execute(phone_query):
        phones.setdefault(rid, []).append(number)
    contacts: dict[int, tuple[str, str]] = {}
    contact_query = select(
        EmergencyContact.retiree_id, EmergencyContact.name, EmergencyContact.phone
    ).order_by(EmergencyContact.id.desc())
    if scoped is not None:
        contact_query = contact_query.where(EmergencyContact.retiree_id.in_(scoped))
    for rid, name, phone in session.execute(contact_query):
        contacts[rid] = (name, phone)
    communities = _community_labels(session)
    query = select(
        Retiree.id, Retiree.name, Retiree.birth_date, Retiree.community_id, Retiree.address,
        Retiree.lives_alone, Retiree.self_care, Retiree.hardship, Retiree.preferred_language,
    ).order_by(Retiree.id)  # fmt: skip
    if community_ids is not None:
        query = query.where(Retiree.community_id.in_(sorted(community_ids)))
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


def _community_units(session: Session) -> list[tuple[int, str, str, str]]:
    """Every community as (id, code, Chinese name, English name), as CommunityLookup takes them."""
    query = select(Unit.id, Unit.code, Unit.name_zh, Unit.name_en).where(
        Unit.level == UnitLevel.COMMUNITY
    )
    return [(unit_id, code, zh, en) for unit_id, code, zh, en in session.execute(query)]


def _community_labels(session: Session) -> dict[int, str]:
    """Community id -> its Chinese name, or its code where the importer could not tell by name."""
    units = _community_units(session)
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
        writer.writerows([as_text(cell) for cell in row] for row in rows)
