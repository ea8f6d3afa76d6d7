"""Times importing a 100,000-row registry .xlsx into a fresh SQLite (and optionally PostgreSQL) db.

Usage: python -m benchmarks.import_bench [--rows N] [--postgres-url URL | --start-postgres]
A --postgres-url database must be empty; its schema is created with the migrations.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from openpyxl import Workbook
from sqlalchemy import Engine, delete, func, select
from sqlalchemy.orm import Session

from storage.db import make_engine
from storage.migrate import upgrade
from storage.models import EmergencyContact, Retiree, RetireePhone, Unit, UnitLevel
from storage.registry_format import COLUMNS, read_table
from storage.registry_io import import_retirees

COMMUNITIES = [("BA1", "和平社区"), ("BA2", "幸福社区"), ("BB1", "光明社区"), ("BB2", "团结社区")]
SELF_CARE = ["自理", "半自理", "不能自理"]
HARDSHIP = ["无", "困难", "低保"]


def bench_file(rows: int) -> Path:
    """The generated registry file, cached in the temp folder between runs."""
    path = Path(tempfile.gettempdir()) / f"hotline_import_bench_{rows}.xlsx"
    if not path.exists():
        started = time.perf_counter()
        partial = path.with_suffix(".partial.xlsx")
        _write_registry(partial, rows)
        partial.rename(path)
        print(f"generated {path} in {time.perf_counter() - started:.1f} s")
    return path


def _write_registry(path: Path, rows: int) -> None:
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet()
    sheet.append([c.zh for c in COLUMNS])
    for i in range(rows):
        sheet.append(
            [
                f"测试老人{i}",
                f"138{i:08d}" if i % 10 else f"138{i:08d},021-6{i % 10_000_000:07d}",
                f"19{30 + i % 40}-{1 + i % 12:02d}-{1 + i % 28:02d}",
                COMMUNITIES[i % len(COMMUNITIES)][1],
                f"和平路{i % 500}号{i % 30}室",
                "是" if i % 3 == 0 else "否",
                SELF_CARE[i % 3],
                HARDSHIP[i % 3],
                f"家属{i}",
                f"139{i:08d}",
                "中文" if i % 20 else "英文",
            ]
        )
    workbook.save(path)


SHEET_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
INLINE_CELL = re.compile(r'<c r="([A-Z]+[0-9]+)" t="inlineStr"><is><t>([^<]*)</t></is></c>')


def excel_style_copy(path: Path, rows: int) -> Path:
    """The same sheet as Excel or WPS would save it: a shared-string table and a dimension.

    openpyxl writes every string inline and no dimension, which openpyxl reads about twice as
    slowly as the files that people will actually upload.
    """
    target = path.with_name(path.stem + "_excel_style.xlsx")
    if target.exists():
        return target
    strings: dict[str, int] = {}

    def shared(match: re.Match[str]) -> str:
        index = strings.setdefault(match.group(2), len(strings))
        return f'<c r="{match.group(1)}" t="s"><v>{index}</v></c>'

    partial = target.with_suffix(".partial.xlsx")
    with (
        zipfile.ZipFile(path) as source,
        zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as out,
    ):
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename.startswith("xl/worksheets/sheet"):
                sheet = INLINE_CELL.sub(shared, data.decode())
                sheet = sheet.replace(
                    "<sheetViews>", f'<dimension ref="A1:K{rows + 1}"/><sheetViews>', 1
                )
                data = sheet.encode()
            elif item.filename == "[Content_Types].xml":
                data = data.replace(b"</Types>", _SST_CONTENT_TYPE + b"</Types>")
            elif item.filename == "xl/_rels/workbook.xml.rels":
                data = data.replace(b"</Relationships>", _SST_RELATIONSHIP + b"</Relationships>")
            out.writestr(item, data)
        items = "".join(f"<si><t>{text}</t></si>" for text in strings)
        out.writestr(
            "xl/sharedStrings.xml",
            f'<sst xmlns="{SHEET_NS}" uniqueCount="{len(strings)}">{items}</sst>',
        )
    partial.rename(target)
    return target


_SST_CONTENT_TYPE = (
    b'<Override PartName="/xl/sharedStrings.xml" ContentType="application/'
    b'vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/>'
)
_SST_RELATIONSHIP = (
    b'<Relationship Id="rIdSharedStrings" Type="http://schemas.openxmlformats.org/'
    b'officeDocument/2006/relationships/sharedStrings" Target="sharedStrings.xml"/>'
)


def fresh_sqlite(folder: Path) -> Engine:
    return make_engine(f"sqlite:///{folder / 'bench.db'}")


def prepare(engine: Engine) -> None:
    """Schema and a center, a station and its communities."""
    upgrade(engine)
    with Session(engine) as session:
        center = Unit(code="BC", level=UnitLevel.CENTER, name_zh="退管中心", name_en="Center")
        station = Unit(
            code="BS", level=UnitLevel.STATION, parent=center, name_zh="街道", name_en="S"
        )
        session.add_all([center, station])
        for code, name in COMMUNITIES:
            session.add(
                Unit(
                    code=code, level=UnitLevel.COMMUNITY, parent=station, name_zh=name, name_en=code
                )
            )
        session.commit()


def time_reading(path: Path) -> float:
    started = time.perf_counter()
    for _ in read_table(path):
        pass
    return time.perf_counter() - started


def time_import(engine: Engine, path: Path, label: str) -> None:
    for attempt in ("first", "again"):
        started = time.perf_counter()
        with Session(engine) as session:
            report = import_retirees(session, path, actor_label="bench")
            session.commit()
        seconds = time.perf_counter() - started
        rows = report.created + report.updated + report.unchanged + len(report.rejected)
        print(
            f"{label:17} {attempt:5}  rows {rows:>7}  {seconds:6.1f} s  {rows / seconds:8.0f} rows/s"
            f"  (created {report.created}, updated {report.updated},"
            f" unchanged {report.unchanged}, rejected {len(report.rejected)})"
        )
    with Session(engine) as session:
        print(
            f"{label:17} retirees in the database: {session.scalar(select(func.count(Retiree.id)))}"
        )


def clear(engine: Engine) -> None:
    """Remove the imported retirees, so that the next file is imported into an empty registry."""
    with Session(engine) as session:
        for model in (EmergencyContact, RetireePhone, Retiree):
            session.execute(delete(model))
        session.commit()


def run_backend(engine: Engine, files: dict[str, Path], backend: str) -> None:
    prepare(engine)
    for kind, path in files.items():
        time_import(engine, path, f"{backend}/{kind}")
        clear(engine)
    engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--postgres-url", help="an empty PostgreSQL database to import into too")
    parser.add_argument(
        "--start-postgres",
        action="store_true",
        help="start a throwaway PostgreSQL server (as the test suite does) and use it too",
    )
    args = parser.parse_args(argv)
    files = {"openpyxl": bench_file(args.rows)}
    files["excel"] = excel_style_copy(files["openpyxl"], args.rows)
    for kind, path in files.items():
        print(f"reading only ({kind}-written file): {time_reading(path):.1f} s, {args.rows} rows")
    with tempfile.TemporaryDirectory() as folder:
        run_backend(fresh_sqlite(Path(folder)), files, "sqlite")
    if args.postgres_url:
        run_backend(make_engine(args.postgres_url), files, "postgresql")
    if args.start_postgres:
        run_on_throwaway_postgres(files)
    return 0


def run_on_throwaway_postgres(files: dict[str, Path]) -> None:
    from tests.pg_server import start_postgres

    server, reason = start_postgres()
    if server is None:
        print(f"postgresql skipped: {reason}")
        return
    try:
        run_backend(make_engine(server.create_database("import_bench")), files, "postgresql")
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
