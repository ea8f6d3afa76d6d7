"""Tests of importing and exporting the registry of retirees (storage/registry_format.py, registry_io.py)."""

from __future__ import annotations

import csv
import random
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from openpyxl import Workbook
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from storage.models import (
    AuditEntry,
    EmergencyContact,
    Hardship,
    Retiree,
    RetireePhone,
    RetireeStatus,
    SelfCare,
)
from storage.phones import InvalidPhoneNumber, normalize_phone
from storage.registry_format import (
    COLUMNS,
    CellError,
    CommunityLookup,
    RegistryFileError,
    RowParser,
    cell_text,
    map_header,
    parse_birth_date,
    parse_phones,
    read_table,
    to_e164,
)
from storage.registry_io import ImportReport, RejectedRow, export_retirees, import_retirees
from tests.factories import UnitTree, make_retiree, make_unit_tree

TODAY = date(2026, 6, 1)
HEADER_ZH = [c.zh for c in COLUMNS]
HEADER_EN = [c.key for c in COLUMNS]


# --------------------------------------------------------------------------- helpers


def write_table(path: Path, rows: Sequence[Sequence[Any]], encoding: str = "utf-8-sig") -> Path:
    """Write ``rows`` (header first) as .csv or .xlsx, by the extension of ``path``."""
    if path.suffix == ".csv":
        with path.open("w", encoding=encoding, newline="") as out:
            csv.writer(out).writerows(rows)
    else:
        workbook = Workbook()
        for row in rows:
            workbook.active.append(list(row))
        workbook.save(path)
    return path


def good_row(phone: str = "13800000001", **changes: Any) -> list[Any]:
    """A valid row in the order of COLUMNS; keyword arguments replace cells by column key."""
    cells = {
        "name": "张桂兰",
        "phone": phone,
        "birth_date": "1941-03-05",
        "community": "和平社区",
        "address": "和平路12号3室",
        "lives_alone": "是",
        "self_care": "半自理",
        "hardship": "低保",
        "emergency_contact": "李明",
        "emergency_phone": "13900000001",
        "language": "中文",
    }
    cells.update(changes)
    return [cells[c.key] for c in COLUMNS]


def import_rows(session: Session, tmp_path: Path, rows: Sequence[Sequence[Any]]) -> ImportReport:
    path = write_table(tmp_path / "registry.csv", [HEADER_ZH, *rows])
    report = import_retirees(session, path, today=TODAY)
    session.commit()
    return report


def row_parser(columns: Sequence[str] = HEADER_EN) -> RowParser:
    lookup = CommunityLookup([(1, "A1", "和平社区", "Heping"), (2, "A2", "幸福社区", "Xingfu")])
    return RowParser(map_header(Path("x.csv"), list(columns)), lookup, TODAY)


def parse_errors(**changes: Any) -> list[str]:
    row = row_parser().parse(2, good_row(**changes))
    assert row is not None
    return row.errors


def snapshot(session: Session) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the registry tables, to check that an import changed nothing."""
    session.expire_all()
    tables = {"retirees": Retiree, "phones": RetireePhone, "contacts": EmergencyContact}
    return {
        name: [tuple(row) for row in session.execute(select(model.__table__).order_by(model.id))]
        for name, model in tables.items()
    }


def count(session: Session, model: type[Any]) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


@pytest.fixture
def units(session: Session) -> UnitTree:
    tree = make_unit_tree(session)
    session.commit()
    return tree


# --------------------------------------------------------------------------- cell values


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, ""),
        ("   ", ""),
        ("\u3000张三 ", "张三"),
        (13812345678.0, "13812345678"),
        (13812345678, "13812345678"),
        (1.5, "1.5"),
        (True, "true"),
        (date(1941, 3, 5), "1941-03-05"),
    ],
)
def test_cell_text(value: Any, text: str) -> None:
    assert cell_text(value) == text


@pytest.mark.parametrize(
    "raw",
    [
        "1941-03-05",
        "1941/3/5",
        "1941.03.05",
        "1941年3月5日",
        "1941年03月05日",
        "19410305",
        19410305,
        " 1941-03-05 ",
        "1941-03-05 00:00:00",
        date(1941, 3, 5),
        datetime(1941, 3, 5),
    ],
)
def test_birth_date_formats(raw: Any) -> None:
    assert parse_birth_date(raw, TODAY) == date(1941, 3, 5)


def test_birth_date_empty_is_none() -> None:
    assert parse_birth_date("  ", TODAY) is None
    assert parse_birth_date(None, TODAY) is None


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("1941-13-05", "出生日期/birth_date: '1941-13-05' is not a date (use YYYY-MM-DD)"),
        ("5/3/1941", "出生日期/birth_date: '5/3/1941' is not a date (use YYYY-MM-DD)"),
        ("昨天", "出生日期/birth_date: '昨天' is not a date (use YYYY-MM-DD)"),
        ("2026-06-02", "出生日期/birth_date: '2026-06-02' is in the future"),
        (date(2030, 1, 1), "出生日期/birth_date: '2030-01-01' is in the future"),
        ("1899-12-31", "出生日期/birth_date: '1899-12-31' is before 1900"),
    ],
)
def test_bad_birth_dates(raw: Any, reason: str) -> None:
    with pytest.raises(CellError) as caught:
        parse_birth_date(raw, TODAY)
    assert str(caught.value) == reason


def test_birth_date_today_and_1900_are_accepted() -> None:
    assert parse_birth_date("2026-06-01", TODAY) == TODAY
    assert parse_birth_date("1900-01-01", TODAY) == date(1900, 1, 1)


@pytest.mark.parametrize("separator", [",", "，", ";", "、", "/", " / "])
def test_several_phones_with_any_separator(separator: str) -> None:
    text = f"13812345678{separator}+86 139-1234-5678"
    assert parse_phones("phone", text) == ["+8613812345678", "+8613912345678"]


def test_phones_are_normalised_and_repeats_dropped() -> None:
    assert parse_phones("phone", "008613812345678, 138 1234 5678,021-62345678") == [
        "+8613812345678",
        "+862162345678",
    ]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("12345", "电话/phone: '12345' is not a valid phone number"),
        ("13812345678/123", "电话/phone: '123' is not a valid phone number"),
        ("", "电话/phone: missing"),
        (" , ", "电话/phone: missing"),
    ],
)
def test_bad_phones(text: str, reason: str) -> None:
    with pytest.raises(CellError) as caught:
        parse_phones("phone", text)
    assert str(caught.value) == reason


def test_fast_phone_path_agrees_with_normalize_phone() -> None:
    rng = random.Random(7)
    samples = [f"1{rng.randint(0, 9_999_999_999):010d}" for _ in range(3000)]
    samples += [f"179{rng.randint(0, 99_999_999):08d}" for _ in range(200)]
    for raw in samples:
        try:
            expected: str | None = normalize_phone(raw)
        except InvalidPhoneNumber:
            expected = None
        try:
            got: str | None = to_e164(raw)
        except InvalidPhoneNumber:
            got = None
        assert got == expected, raw


# --------------------------------------------------------------------------- rows


@pytest.mark.parametrize(
    ("column", "text", "value"),
    [
        ("lives_alone", "是", True),
        ("lives_alone", "否", False),
        ("lives_alone", "YES", True),
        ("lives_alone", "no", False),
        ("lives_alone", "Y", True),
        ("lives_alone", "n", False),
        ("lives_alone", "True", True),
        ("lives_alone", "false", False),
        ("lives_alone", 1, True),
        ("lives_alone", 0.0, False),
        ("lives_alone", "√", True),
        ("lives_alone", " ", False),
        ("self_care", "自理", SelfCare.INDEPENDENT),
        ("self_care", "Independent", SelfCare.INDEPENDENT),
        ("self_care", "半自理", SelfCare.PARTLY_DEPENDENT),
        ("self_care", "partly_dependent", SelfCare.PARTLY_DEPENDENT),
        ("self_care", "Partly Dependent", SelfCare.PARTLY_DEPENDENT),
        ("self_care", "不能自理", SelfCare.DEPENDENT),
        ("self_care", "失能", SelfCare.DEPENDENT),
        ("self_care", "dependent", SelfCare.DEPENDENT),
        ("self_care", "", SelfCare.INDEPENDENT),
        ("hardship", "无", Hardship.NONE),
        ("hardship", "一般", Hardship.NONE),
        ("hardship", "普通", Hardship.NONE),
        ("hardship", "None", Hardship.NONE),
        ("hardship", "困难", Hardship.HARDSHIP),
        ("hardship", "hardship", Hardship.HARDSHIP),
        ("hardship", "低保", Hardship.DIBAO),
        ("hardship", "DIBAO", Hardship.DIBAO),
        ("hardship", "", Hardship.NONE),
        ("language", "中文", "zh"),
        ("language", "汉语", "zh"),
        ("language", "普通话", "zh"),
        ("language", "ZH", "zh"),
        ("language", "英文", "en"),
        ("language", "英语", "en"),
        ("language", "en", "en"),
        ("language", "English", "en"),
        ("language", "", "zh"),
        ("community", "和平社区", 1),
        ("community", "A2", 2),
        ("community", "a2", 2),
        ("community", "heping", 1),
        ("community", "", None),
        ("address", "  和平路1号  ", "和平路1号"),
        ("address", "", ""),
    ],
)
def test_column_values(column: str, text: Any, value: Any) -> None:
    row = row_parser().parse(2, good_row(**{column: text}))
    assert row is not None and row.errors == []
    attribute = {"community": "community_id", "language": "preferred_language"}.get(column, column)
    assert row.values[attribute] == value


def test_parsed_row() -> None:
    row = row_parser().parse(9, good_row(phone=13812345678.0, emergency_phone=13912345678))
    assert row is not None
    assert row.number == 9
    assert row.phones == ["+8613812345678"]
    assert row.contact == ("李明", "+8613912345678")
    assert row.values == {
        "name": "张桂兰",
        "birth_date": date(1941, 3, 5),
        "community_id": 1,
        "address": "和平路12号3室",
        "lives_alone": True,
        "self_care": SelfCare.PARTLY_DEPENDENT,
        "hardship": Hardship.DIBAO,
        "preferred_language": "zh",
    }


def test_empty_row_is_none() -> None:
    assert row_parser().parse(5, [None, "  ", "", None]) is None
    assert row_parser().parse(5, []) is None


def test_short_row_is_padded() -> None:
    row = row_parser().parse(3, ["王芳", "13812345678"])
    assert row is not None and row.errors == []
    assert row.contact is None


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"name": ""}, "姓名/name: missing"),
        ({"name": "  "}, "姓名/name: missing"),
        ({"name": "张" * 101}, "姓名/name: too long (101 characters, at most 100)"),
        ({"phone": "12345"}, "电话/phone: '12345' is not a valid phone number"),
        ({"phone": ""}, "电话/phone: missing"),
        (
            {"birth_date": "1941-02-30"},
            "出生日期/birth_date: '1941-02-30' is not a date (use YYYY-MM-DD)",
        ),
        ({"birth_date": "2099-01-01"}, "出生日期/birth_date: '2099-01-01' is in the future"),
        ({"birth_date": "1850-01-01"}, "出生日期/birth_date: '1850-01-01' is before 1900"),
        ({"community": "不存在社区"}, "社区/community: '不存在社区' is not a known community"),
        ({"address": "路" * 301}, "住址/address: too long (301 characters, at most 300)"),
        ({"lives_alone": "maybe"}, "独居/lives_alone: 'maybe' is not one of 是/否 (yes/no)"),
        (
            {"self_care": "很好"},
            "自理能力/self_care: '很好' is not one of 自理/半自理/不能自理 "
            "(independent/partly_dependent/dependent)",
        ),
        (
            {"hardship": "富裕"},
            "困难类别/hardship: '富裕' is not one of 无/困难/低保 (none/hardship/dibao)",
        ),
        ({"language": "法语"}, "语言/language: '法语' is not one of 中文/英文 (zh/en)"),
        (
            {"emergency_phone": ""},
            "紧急联系电话/emergency_phone: missing (紧急联系人/emergency_contact is given)",
        ),
        (
            {"emergency_contact": " "},
            "紧急联系人/emergency_contact: missing (紧急联系电话/emergency_phone is given)",
        ),
        (
            {"emergency_phone": "999"},
            "紧急联系电话/emergency_phone: '999' is not a valid phone number",
        ),
        (
            {"emergency_contact": "李" * 101},
            "紧急联系人/emergency_contact: too long (101 characters, at most 100)",
        ),
    ],
)
def test_bad_values(changes: dict[str, Any], reason: str) -> None:
    assert parse_errors(**changes) == [reason]


def test_contact_may_be_left_out() -> None:
    row = row_parser().parse(2, good_row(emergency_contact="", emergency_phone=""))
    assert row is not None and row.errors == [] and row.contact is None


def test_every_bad_value_of_a_row_is_reported_in_column_order() -> None:
    assert parse_errors(name="", lives_alone="x", phone="1") == [
        "姓名/name: missing",
        "电话/phone: '1' is not a valid phone number",
        "独居/lives_alone: 'x' is not one of 是/否 (yes/no)",
    ]


def test_community_names_shared_by_two_communities_need_the_code() -> None:
    lookup = CommunityLookup([(1, "A1", "和平社区", "Heping"), (2, "B7", "和平社区", "Heping 2")])
    assert lookup.find("B7") == 2
    with pytest.raises(CellError, match="names more than one community; use its code"):
        lookup.find("和平社区")


# --------------------------------------------------------------------------- header, files


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (HEADER_ZH, {c.key: n for n, c in enumerate(COLUMNS)}),
        (HEADER_EN, {c.key: n for n, c in enumerate(COLUMNS)}),
        (
            [" NAME ", "Phone", "Birth Date", "COMMUNITY", "self-care"],
            {"name": 0, "phone": 1, "birth_date": 2, "community": 3, "self_care": 4},
        ),
        (["电话", " 姓名 "], {"phone": 0, "name": 1}),
        (["phone", "语言", "name", None, ""], {"phone": 0, "language": 1, "name": 2}),
    ],
)
def test_headers_in_chinese_or_english_in_any_order(
    header: list[Any], expected: dict[str, int]
) -> None:
    assert map_header(Path("f.csv"), header) == expected


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (["姓名", "住址"], "missing required column(s) 电话/phone; found: '姓名', '住址'; expected: 姓名/name"),
        (["住址"], "missing required column(s) 姓名/name, 电话/phone; found: '住址'"),
        (["姓名", "电话", "性别"], "unknown column '性别'; found: '姓名', '电话', '性别'; expected: 姓名/name, 电话/phone, 出生日期/birth_date"),
        (["姓名", "电话", "phone"], "column 电话/phone appears twice"),
        (["姓名", "电话", "紧急联系人"], "columns 紧急联系人/emergency_contact and 紧急联系电话/emergency_phone go together"),
        (None, "the file is empty (no header row)"),
    ],
)  # fmt: skip
def test_bad_headers(header: list[str] | None, message: str) -> None:
    with pytest.raises(RegistryFileError) as caught:
        map_header(Path("名单.xlsx"), header)
    assert message in str(caught.value)
    assert str(caught.value).startswith("名单.xlsx: ")


def test_unsupported_file_type(tmp_path: Path) -> None:
    path = tmp_path / "registry.xls"
    path.write_bytes(b"old excel")
    with pytest.raises(RegistryFileError) as caught:
        read_table(path)
    assert str(caught.value) == f"{path}: unsupported file type '.xls'; accepted: .xlsx, .csv"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(RegistryFileError, match="no such file"):
        read_table(tmp_path / "nowhere.csv")


def test_broken_xlsx(tmp_path: Path) -> None:
    path = tmp_path / "broken.xlsx"
    path.write_bytes(b"this is not a zip file")
    with pytest.raises(RegistryFileError, match=r"not a readable \.xlsx file"):
        list(read_table(path))


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-8", "gb18030"])
def test_csv_encodings(tmp_path: Path, encoding: str) -> None:
    path = write_table(tmp_path / "r.csv", [HEADER_ZH, good_row()], encoding=encoding)
    rows = list(read_table(path))
    assert rows[0] == HEADER_ZH
    assert rows[1][0] == "张桂兰"


def test_csv_that_is_neither_utf8_nor_gb18030(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_bytes("姓名,电话\n".encode("utf-16"))
    with pytest.raises(RegistryFileError, match="neither UTF-8 nor GB18030"):
        list(read_table(path))


def test_xlsx_keeps_cell_types_and_row_numbers(tmp_path: Path) -> None:
    path = write_table(
        tmp_path / "r.xlsx", [["姓名", "电话"], ["王芳", 13812345678], [], ["李", 1.5]]
    )
    assert list(read_table(path)) == [
        ("姓名", "电话"),
        ("王芳", 13812345678),
        (None, None),
        ("李", 1.5),
    ]


# --------------------------------------------------------------------------- importing


def test_import_creates_retirees(session: Session, units: UnitTree, tmp_path: Path) -> None:
    report = import_rows(
        session,
        tmp_path,
        [good_row(phone="13800000001, 021-62345678"), good_row("13800000002", name="王建国")],
    )
    assert report == ImportReport(created=2, updated=0, unchanged=0, rejected=[])
    person = session.scalars(select(Retiree).where(Retiree.name == "张桂兰")).one()
    assert person.birth_date == date(1941, 3, 5)
    assert person.community_id == units.community_a1.id
    assert person.address == "和平路12号3室"
    assert person.lives_alone is True
    assert person.self_care == SelfCare.PARTLY_DEPENDENT
    assert person.hardship == Hardship.DIBAO
    assert person.preferred_language == "zh"
    assert person.status == RetireeStatus.ACTIVE
    assert person.registered_on == TODAY
    assert [p.number for p in person.phones] == ["+8613800000001", "+862162345678"]
    assert [(c.name, c.phone) for c in person.emergency_contacts] == [("李明", "+8613900000001")]


def test_import_with_only_the_required_columns(
    session: Session, units: UnitTree, tmp_path: Path
) -> None:
    path = write_table(tmp_path / "r.csv", [["电话", "姓名"], ["13800000001", "王芳"]])
    assert import_retirees(session, path, today=TODAY).created == 1
    person = session.scalars(select(Retiree)).one()
    assert (person.name, person.lives_alone, person.self_care, person.hardship) == (
        "王芳", False, SelfCare.INDEPENDENT, Hardship.NONE,
    )  # fmt: skip
    assert (person.community_id, person.birth_date, person.preferred_language) == (None, None, "zh")


def test_import_xlsx_with_english_headers_and_typed_cells(
    session: Session, units: UnitTree, tmp_path: Path
) -> None:
    rows = [
        ["Phone", "NAME", "birth_date", "community", "lives_alone", "language"],
        [13800000001.0, "Wang Fang", datetime(1941, 3, 5), "A2", True, "English"],
        [13800000002, "Li Hua", 19400101, "xingfu", 0, "zh"],
    ]
    report = import_retirees(session, write_table(tmp_path / "r.xlsx", rows), today=TODAY)
    assert (report.created, report.rejected) == (2, [])
    people = session.scalars(select(Retiree).order_by(Retiree.id)).all()
    assert [(p.name, p.birth_date, p.lives_alone, p.preferred_language) for p in people] == [
        ("Wang Fang", date(1941, 3, 5), True, "en"),
        ("Li Hua", date(1940, 1, 1), False, "zh"),
    ]
    assert {p.community_id for p in people} == {units.community_a2.id}
    assert [p.phones[0].number for p in people] == ["+8613800000001", "+8613800000002"]


def test_empty_rows_are_skipped_and_row_numbers_are_the_sheets(
    session: Session, units: UnitTree, tmp_path: Path
) -> None:
    rows = [HEADER_ZH, good_row("13800000001"), [""] * 11, ["  "], good_row("12345")]
    report = import_retirees(session, write_table(tmp_path / "r.xlsx", rows), today=TODAY)
    assert report.created == 1
    assert report.rejected == [RejectedRow(5, "电话/phone: '12345' is not a valid phone number")]


def test_duplicate_phone_within_the_file(session: Session, units: UnitTree, tmp_path: Path) -> None:
    report = import_rows(
        session,
        tmp_path,
        [
            good_row("13800000001"),
            good_row("13800000002"),
            good_row("138 0000 0001", name="重复"),
            good_row("13800000003, +8613800000002"),
        ],
    )
    assert report.created == 2
    assert report.rejected == [
        RejectedRow(4, "电话/phone: +8613800000001 also on row 2"),
        RejectedRow(5, "电话/phone: +8613800000002 also on row 3"),
    ]


def test_a_phone_of_a_rejected_row_still_counts_as_seen(
    session: Session, units: UnitTree, tmp_path: Path
) -> None:
    report = import_rows(
        session, tmp_path, [good_row("13800000001", birth_date="x"), good_row("13800000001")]
    )
    assert report.created == 0
    assert [r.row for r in report.rejected] == [2, 3]
    assert report.rejected[1].reason == "电话/phone: +8613800000001 also on row 2"


def test_phones_of_two_registered_retirees(
    session: Session, units: UnitTree, tmp_path: Path
) -> None:
    first = make_retiree(session, phone="+8613800000001")
    second = make_retiree(session, phone="+8613800000002")
    session.commit()
    report = import_rows(session, tmp_path, [good_row("13800000001/13800000002")])
    assert report.rejected == [
        RejectedRow(
            2,
            "电话/phone: +8613800000001, +8613800000002 match different registered retirees "
            f"(#{first.id}, #{second.id})",
        )
    ]
    assert count(session, Retiree) == 2


def test_two_rows_for_the_same_registered_retiree(
    session: Session, units: UnitTree, tmp_path: Path
) -> None:
    person = make_retiree(session, phone="+8613800000001")
    person.phones.append(RetireePhone(number="+8613800000002"))
    session.commit()
    report = import_rows(session, tmp_path, [good_row("13800000001"), good_row("13800000002")])
    assert report.updated == 1
    assert report.rejected == [
        RejectedRow(3, "电话/phone: +8613800000002 match the same registered retiree as row 2")
    ]


def test_update_by_phone(session: Session, units: UnitTree, tmp_path: Path) -> None:
    person = make_retiree(
        session,
        units.community_b1,
        phone="+8613800000001",
        name="张老",
        address="旧地址",
        health_notes="高血压",
    )
    person.emergency_contacts.append(
        EmergencyContact(name="旧联系人", relation="儿子", phone="+8613900000009")
    )
    person.emergency_contacts.append(EmergencyContact(name="第二联系人", phone="+8613900000008"))
    session.commit()
    before = person.updated_at
    path = write_table(
        tmp_path / "r.csv",
        [
            ["姓名", "电话", "社区", "独居", "紧急联系人", "紧急联系电话"],
            ["张桂兰", "13800000001,13800000005", "A1", "是", "李明", "13900000001"],
        ],
    )
    report = import_retirees(session, path, today=TODAY)
    session.commit()
    assert (report.created, report.updated, report.unchanged) == (0, 1, 0)
    session.refresh(person)
    assert count(session, Retiree) == 1
    assert person.name == "张桂兰"
    assert person.community_id == units.community_a1.id
    assert person.lives_alone is True
    assert person.address == "旧地址"  # no such column in the file: left alone
    assert person.health_notes == "高血压"
    assert [p.number for p in person.phones] == ["+8613800000001", "+8613800000005"]
    assert [(c.name, c.relation, c.phone) for c in person.emergency_contacts] == [
        ("李明", "", "+8613900000001"),  # the first contact is replaced
        ("第二联系人", "", "+8613900000008"),
    ]
    assert person.updated_at > before


def test_update_keeps_contact_when_the_file_gives_none(
    session: Session, units: UnitTree, tmp_path: Path
) -> None:
    person = make_retiree(session, phone="+8613800000001", name="张桂兰")
    person.emergency_contacts.append(EmergencyContact(name="旧联系人", phone="+8613900000009"))
    session.commit()
    report = import_rows(
        session, tmp_path, [good_row(emergency_contact="", emergency_phone="", community="A1")]
    )
    assert report.updated == 1
    contacts = session.scalars(select(EmergencyContact)).all()
    assert [(c.name, c.phone) for c in contacts] == [("旧联系人", "+8613900000009")]


def test_contact_name_change_keeps_relation(
    session: Session, units: UnitTree, tmp_path: Path
) -> None:
    person = make_retiree(session, phone="+8613800000001")
    person.emergency_contacts.append(
        EmergencyContact(name="李", relation="女儿", phone="+8613900000001")
    )
    session.commit()
    import_rows(session, tmp_path, [good_row()])
    contact = session.scalars(select(EmergencyContact)).one()
    assert (contact.name, contact.relation) == ("李明", "女儿")


def test_second_import_changes_nothing(session: Session, units: UnitTree, tmp_path: Path) -> None:
    rows = [
        good_row("13800000001"),
        good_row("13800000002, 13800000003", name="王建国"),
        good_row("1"),
    ]
    first = import_rows(session, tmp_path, rows)
    assert (first.created, first.updated, len(first.rejected)) == (2, 0, 1)
    before = snapshot(session)
    again = import_rows(session, tmp_path, rows)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 2)
    assert again.rejected == first.rejected
    assert snapshot(session) == before


def test_several_retirees_changed_differently_in_one_import(
    session: Session, units: UnitTree, tmp_path: Path
) -> None:
    phones = ["13800000001", "13800000002", "13800000003"]
    import_rows(session, tmp_path, [good_row(p, emergency_phone=f"1390000000{n}") for n, p in
                                    enumerate(phones)])  # fmt: skip
    before = snapshot(session)
    report = import_rows(
        session,
        tmp_path,
        [
            good_row(phones[0], hardship="无", emergency_phone="13900000000"),
            good_row(phones[1], name="王建国", emergency_phone="13900000009"),
            good_row(phones[2], emergency_contact="李红", emergency_phone="13900000002"),
        ],
    )
    assert (report.created, report.updated, report.unchanged) == (0, 3, 0)
    after = snapshot(session)
    people = [(r.name, r.hardship) for r in session.scalars(select(Retiree).order_by(Retiree.id))]
    assert people == [
        ("张桂兰", Hardship.NONE),
        ("王建国", Hardship.DIBAO),
        ("张桂兰", Hardship.DIBAO),
    ]
    contacts = session.scalars(select(EmergencyContact).order_by(EmergencyContact.id)).all()
    assert [(c.name, c.phone) for c in contacts] == [
        ("李明", "+8613900000000"),
        ("李明", "+8613900000009"),
        ("李红", "+8613900000002"),
    ]
    assert len(after["retirees"]) == len(before["retirees"]) == 3


def test_unchanged_rows_keep_updated_at(session: Session, units: UnitTree, tmp_path: Path) -> None:
    import_rows(session, tmp_path, [good_row("13800000001"), good_row("13800000002")])
    before = snapshot(session)
    report = import_rows(
        session, tmp_path, [good_row("13800000001", lives_alone="否"), good_row("13800000002")]
    )
    assert (report.updated, report.unchanged) == (1, 1)
    after = snapshot(session)
    assert after["retirees"][1] == before["retirees"][1]
    assert after["retirees"][0] != before["retirees"][0]


def test_import_writes_one_audit_entry_without_personal_data(
    session: Session, units: UnitTree, tmp_path: Path
) -> None:
    import_rows(session, tmp_path, [good_row("13800000001"), good_row("1")])
    entry = session.scalars(select(AuditEntry)).one()
    assert (entry.action, entry.subject_type, entry.subject_id) == (
        "import_retirees",
        "retiree",
        None,
    )
    assert entry.detail == {
        "file": "registry.csv",
        "created": 1,
        "updated": 0,
        "unchanged": 0,
        "rejected": 1,
    }


def test_file_error_imports_nothing(session: Session, units: UnitTree, tmp_path: Path) -> None:
    path = write_table(tmp_path / "r.csv", [["姓名", "手机"], ["王芳", "13800000001"]])
    with pytest.raises(RegistryFileError, match="unknown column '手机'"):
        import_retirees(session, path, today=TODAY)
    assert count(session, Retiree) == 0
    assert count(session, AuditEntry) == 0


def test_import_does_not_commit(session: Session, units: UnitTree, tmp_path: Path) -> None:
    path = write_table(tmp_path / "r.csv", [HEADER_ZH, good_row()])
    assert import_retirees(session, path, today=TODAY).created == 1
    session.rollback()
    assert count(session, Retiree) == 0


# --------------------------------------------------------------------------- exporting


def _varied_registry(session: Session, units: UnitTree) -> None:
    person = make_retiree(
        session,
        units.community_a1,
        phone="+8613800000001",
        name="张桂兰",
        birth_date=date(1941, 3, 5),
        address="和平路12号",
        lives_alone=True,
        self_care=SelfCare.DEPENDENT,
        hardship=Hardship.DIBAO,
    )
    person.phones.append(RetireePhone(number="+862162345678"))
    person.emergency_contacts.append(
        EmergencyContact(name="李明", relation="儿子", phone="+8613900000001")
    )
    person.emergency_contacts.append(EmergencyContact(name="李红", phone="+8613900000002"))
    make_retiree(session, None, phone="+8613800000002", name="Mary", preferred_language="en")
    make_retiree(
        session,
        units.community_b1,
        phone="+8613800000003",
        name="=王建国",
        self_care=SelfCare.PARTLY_DEPENDENT,
        hardship=Hardship.HARDSHIP,
        status=RetireeStatus.INACTIVE,
    )
    session.commit()


@pytest.mark.parametrize("suffix", [".xlsx", ".csv"])
def test_export_then_import_changes_nothing(
    session: Session, units: UnitTree, tmp_path: Path, suffix: str
) -> None:
    _varied_registry(session, units)
    path = tmp_path / f"export{suffix}"
    assert export_retirees(session, path) == 3
    session.commit()
    before = snapshot(session)
    report = import_retirees(session, path, today=TODAY)
    session.commit()
    assert report == ImportReport(created=0, updated=0, unchanged=3, rejected=[])
    assert snapshot(session) == before


def test_exported_csv(session: Session, units: UnitTree, tmp_path: Path) -> None:
    _varied_registry(session, units)
    path = tmp_path / "export.csv"
    export_retirees(session, path)
    rows = list(read_table(path))
    assert rows[0] == HEADER_ZH
    assert rows[1:] == [
        ["张桂兰", "+8613800000001,+862162345678", "1941-03-05", "和平社区", "和平路12号",
         "是", "不能自理", "低保", "李明", "+8613900000001", "中文"],
        ["Mary", "+8613800000002", "", "", "", "否", "自理", "无", "", "", "英文"],
        ["=王建国", "+8613800000003", "", "光明社区", "", "否", "半自理", "困难", "", "", "中文"],
    ]  # fmt: skip


def test_exported_csv_cells_cannot_run_as_formulas(
    session: Session, units: UnitTree, tmp_path: Path
) -> None:
    """A spreadsheet opening the CSV would run "=...", "+...", "-..." and "@..." as formulas: each
    such cell gets an apostrophe in front (as the report exports do), which our import takes off
    again (test_export_then_import_changes_nothing)."""
    _varied_registry(session, units)
    make_retiree(session, units.community_a1, phone="+8613800000009", name="@SUM(A1)")
    session.commit()
    path = tmp_path / "export.csv"
    export_retirees(session, path)
    with path.open(encoding="utf-8-sig", newline="") as raw:
        cells = [cell for row in csv.reader(raw) for cell in row]
    assert "'=王建国" in cells and "'@SUM(A1)" in cells and "'+8613800000003" in cells
    assert not [c for c in cells if c.startswith(("=", "+", "-", "@", "\t", "\r"))]
    assert [row[0] for row in read_table(path)][-2:] == ["=王建国", "@SUM(A1)"]


def test_exported_xlsx_keeps_text_that_looks_like_a_formula(
    session: Session, units: UnitTree, tmp_path: Path
) -> None:
    _varied_registry(session, units)
    path = tmp_path / "export.xlsx"
    export_retirees(session, path)
    names = [row[0] for row in read_table(path)]
    assert names == ["姓名", "张桂兰", "Mary", "=王建国"]


def test_export_writes_an_audit_entry(session: Session, units: UnitTree, tmp_path: Path) -> None:
    _varied_registry(session, units)
    export_retirees(session, tmp_path / "export.xlsx")
    entry = session.scalars(select(AuditEntry)).one()
    assert (entry.action, entry.subject_type, entry.subject_id) == (
        "export_retirees",
        "retiree",
        None,
    )
    assert entry.detail == {"file": "export.xlsx", "exported": 3}


def test_export_to_an_unsupported_type(session: Session, tmp_path: Path) -> None:
    with pytest.raises(RegistryFileError, match=r"accepted: \.xlsx, \.csv"):
        export_retirees(session, tmp_path / "out.txt")


# --------------------------------------------------------------------------- acceptance


def _acceptance_rows() -> tuple[list[list[Any]], dict[int, str]]:
    """5,000 rows, 20 of them bad in different ways; returns (rows, sheet row -> reason start)."""
    rows = []
    for i in range(5000):
        phone: Any = f"138{i:08d}" if i % 3 else 13800000000 + i  # some as numbers
        born: Any = (
            date(1930 + i % 40, 1 + i % 12, 1 + i % 28)
            if i % 2
            else f"19{30 + i % 40}/{1 + i % 12}/5"
        )
        rows.append(good_row(phone, name=f"老人{i}", birth_date=born, emergency_phone=f"139{i:08d}",
                             community=["和平社区", "A2", "Guangming"][i % 3]))  # fmt: skip
    bad = {
        "phone": ("12345", "电话/phone: '12345' is not a valid phone number"),
        "birth_date": ("1941-13-01", "出生日期/birth_date: '1941-13-01' is not a date"),
        "community": ("火星社区", "社区/community: '火星社区' is not a known community"),
        "name": ("", "姓名/name: missing"),
        "lives_alone": ("有时", "独居/lives_alone: '有时' is not one of"),
        "self_care": ("还行", "自理能力/self_care: '还行' is not one of"),
        "hardship": ("特困", "困难类别/hardship: '特困' is not one of"),
        "language": ("日语", "语言/language: '日语' is not one of"),
        "emergency_phone": ("", "紧急联系电话/emergency_phone: missing"),
        "emergency_contact": ("", "紧急联系人/emergency_contact: missing"),
        "address": ("号" * 301, "住址/address: too long"),
    }
    expected: dict[int, str] = {}
    index = {c.key: n for n, c in enumerate(COLUMNS)}
    for n, (key, (value, reason)) in enumerate(bad.items()):
        i = 100 + n * 400
        rows[i][index[key]] = value
        expected[i + 2] = reason
    extra = [
        (4501, "phone", "13800000007", "电话/phone: +8613800000007 also on row 9"),
        (4502, "phone", f"138{4502:08d};13800000010", "电话/phone: +8613800000010 also on row 12"),
        (
            4503,
            "birth_date",
            date(2099, 1, 1),
            "出生日期/birth_date: '2099-01-01' is in the future",
        ),
        (4504, "birth_date", "1899-1-1", "出生日期/birth_date: '1899-1-1' is before 1900"),
        (4505, "emergency_phone", "110", "紧急联系电话/emergency_phone: '110' is not a valid"),
        (4506, "phone", "", "电话/phone: missing"),
        (4507, "name", "名" * 101, "姓名/name: too long"),
        (4508, "phone", "1380000", "电话/phone: '1380000' is not a valid phone number"),
        (4509, "birth_date", "生日", "出生日期/birth_date: '生日' is not a date"),
    ]
    for i, key, value, reason in extra:
        rows[i][index[key]] = value
        expected[i + 2] = reason
    assert len(expected) == 20
    return rows, expected


def _write_only_xlsx(path: Path, rows: list[list[Any]]) -> Path:
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet()
    sheet.append(HEADER_ZH)
    for row in rows:
        sheet.append(row)
    workbook.save(path)
    return path


@pytest.mark.slow
def test_acceptance_5000_rows_with_20_bad(
    session: Session, units: UnitTree, tmp_path: Path
) -> None:
    rows, expected = _acceptance_rows()
    path = _write_only_xlsx(tmp_path / "registry.xlsx", rows)

    report = import_retirees(session, path, today=TODAY)
    session.commit()
    assert (report.created, report.updated, report.unchanged) == (4980, 0, 0)
    assert [r.row for r in report.rejected] == sorted(expected)
    for rejected in report.rejected:
        assert rejected.reason.startswith(expected[rejected.row]), rejected
    assert count(session, Retiree) == 4980
    counts = {m: count(session, m) for m in (Retiree, RetireePhone, EmergencyContact)}

    again = import_retirees(session, path, today=TODAY)
    session.commit()
    assert (again.created, again.updated, again.unchanged) == (0, 0, 4980)
    assert again.rejected == report.rejected
    assert {m: count(session, m) for m in counts} == counts
