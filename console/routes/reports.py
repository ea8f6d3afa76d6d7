"""The Reports page, its .xlsx and .csv exports and the printable quarterly summary.

Staff and admins only (volunteers get 403); a unit outside the person's scope is refused with
403. The page, the exports and the summary show the same figures (console/reports.py).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from openpyxl import Workbook
from openpyxl.utils import get_column_letter

from console.auth import signed_in
from console.reports import (
    RETIREES_PER_COMMUNITY_WORKER,
    RETIREES_PER_STAFF,
    Period,
    Report,
    UnitInfo,
    build_report,
    quarter_of,
    quarter_period,
    units,
)
from console.web import DB, Texts, console, duration, language, local_time, parse_day, render
from storage.cells import as_text
from storage.models import Role, Staff, UnitLevel
from storage.permissions import units_in_scope
from storage.types import utcnow

router = APIRouter(include_in_schema=False)
Me = Annotated[Staff, Depends(signed_in)]
Field = Annotated[str, Query(max_length=40)]
From = Annotated[str, Query(alias="from", max_length=40)]
YEARS = (2000, 2100)  # beyond these a date is a typo, not a report


class Refused(Exception):
    """The report cannot be made: ``key`` (with ``params``) says why, ``status`` how."""

    def __init__(self, status: int, key: str, **params: object) -> None:
        super().__init__(key)
        self.status, self.key, self.params = status, key, params


@dataclass(frozen=True)
class Labels:
    """The names a person reads for the report's keys, in the page language."""

    t: Texts
    lang: str
    category_names: dict[str, str]

    def category(self, name: str) -> str:
        return self.category_names.get(name, name)

    def status(self, name: str) -> str:
        return self.t(f"console.status.{name}")

    def channel(self, name: str) -> str:
        return self.t.maybe(f"console.channels.{name}", name)

    def follow_up(self, name: str) -> str:
        return self.t(f"console.reports.follow_ups.{name}")

    def check_in(self, name: str) -> str:
        return self.t(f"console.reports.check_ins.{name}")

    def campaign(self, name: str) -> str:
        return self.t(f"console.reports.campaigns.{name}")

    def section(self, name: str) -> str:
        return self.t(f"console.reports.sections.{name}")

    def item(self, name: str, **params: object) -> str:
        return self.t(f"console.reports.items.{name}", **params)


def _labels(request: Request) -> Labels:
    config = console(request)
    lang = language(request)
    names = {key: cat.name.get(lang) for key, cat in config.categories.categories.items()}
    return Labels(Texts(config.catalogs, lang), lang, names)


def _today(request: Request) -> date:
    return utcnow().astimezone(console(request).zone).date()


def _refused_page(request: Request, exc: Refused) -> Response:
    detail = _labels(request).t(exc.key, **exc.params)
    context = {"key": "console.reports.errors.refused", "detail": detail}
    return render(request, "error.html", context, status_code=exc.status)


def _answer(request: Request, make: Callable[[], Response]) -> Response:
    try:
        return make()
    except Refused as exc:
        return _refused_page(request, exc)


# ---- what was asked: the unit and the period -----------------------------------------------


def _unit(session: DB, me: Staff, raw: str) -> UnitInfo:
    """The unit asked for, or the person's top unit; refused for volunteers and other units."""
    if me.role == Role.VOLUNTEER:
        raise Refused(403, "console.reports.errors.staff_only")
    scope = units_in_scope(session, me)
    if raw.strip():
        if not raw.strip().isdecimal():
            raise Refused(400, "console.reports.errors.bad_unit", value=raw)
        unit_id = int(raw.strip())
        found = units(session, [unit_id])
        if not found:
            raise Refused(404, "console.reports.errors.no_such_unit", value=raw)
        if unit_id not in scope:
            raise Refused(403, "console.reports.errors.not_your_unit")
        return found[0]
    mine = units(session, sorted({u.id for u in me.units} if me.role != Role.ADMIN else scope))
    if not mine:
        raise Refused(403, "console.reports.errors.no_unit")
    return mine[0]  # sorted by level: the highest unit first


def _day(raw: str, field: str) -> date:
    """A day as people write it here, year first (console.web.parse_day)."""
    try:
        day = parse_day(raw)
    except ValueError:
        raise Refused(400, "console.reports.errors.bad_date", field=field, value=raw) from None
    if not YEARS[0] <= day.year <= YEARS[1]:
        raise Refused(
            400, "console.reports.errors.bad_year", value=raw, low=YEARS[0], high=YEARS[1]
        )
    return day


def _period(raw_from: str, raw_to: str, today: date) -> Period:
    """From/to as given; a missing end is this quarter's (default: this quarter)."""
    this_quarter = quarter_period(*quarter_of(today))
    first = _day(raw_from, "from") if raw_from.strip() else this_quarter.first
    last = _day(raw_to, "to") if raw_to.strip() else max(this_quarter.last, first)
    if last < first:
        raise Refused(400, "console.reports.errors.backwards", first=first, last=last)
    return Period(first, last)


def _quarter(raw_year: str, raw_quarter: str, today: date) -> Period:
    year, quarter = quarter_of(today)
    if raw_year.strip():
        if not raw_year.strip().isdecimal() or not YEARS[0] <= int(raw_year) <= YEARS[1]:
            raise Refused(
                400, "console.reports.errors.bad_year", value=raw_year, low=YEARS[0], high=YEARS[1]
            )
        year = int(raw_year)
    if raw_quarter.strip():
        if raw_quarter.strip() not in ("1", "2", "3", "4"):
            raise Refused(400, "console.reports.errors.bad_quarter", value=raw_quarter)
        quarter = int(raw_quarter)
    return quarter_period(year, quarter)


def _report(request: Request, session: DB, unit: UnitInfo, period: Period) -> Report:
    return build_report(session, unit, period, console(request).zone, utcnow())


# ---- pages ----------------------------------------------------------------------------------


@router.get("/reports")
def report_page(
    request: Request, me: Me, session: DB, unit: Field = "", from_: From = "", to: Field = ""
) -> Response:
    def make() -> Response:
        chosen = _unit(session, me, unit)
        period = _period(from_, to, _today(request))
        report = _report(request, session, chosen, period)
        return render(request, "report.html", _context(request, session, me, report))

    return _answer(request, make)


@router.get("/reports/quarterly")
def quarterly_page(
    request: Request,
    me: Me,
    session: DB,
    unit: Field = "",
    year: Field = "",
    quarter: Field = "",
) -> Response:
    def make() -> Response:
        chosen = _unit(session, me, unit)
        period = _quarter(year, quarter, _today(request))
        report = _report(request, session, chosen, period)
        context = _context(request, session, me, report)
        context["year"], context["quarter"] = quarter_of(period.first)
        return render(request, "report_quarterly.html", context)

    return _answer(request, make)


def _context(request: Request, session: DB, me: Staff, report: Report) -> dict[str, Any]:
    labels = _labels(request)
    scope = sorted(units_in_scope(session, me))
    year, quarter = quarter_of(report.period.first)
    this_quarter = quarter_period(*quarter_of(_today(request)))
    last_quarter = quarter_period(*quarter_of(this_quarter.first - timedelta(days=1)))
    return {
        "report": report,
        "labels": labels,
        "named": _named(report, labels),
        "unit_name": report.unit.name(labels.lang),
        "unit_choices": [(u.id, u.name(labels.lang), u.level) for u in units(session, scope)],
        "levels": list(UnitLevel),
        "query": _query(report.unit.id, report.period),
        "this_quarter": _query(report.unit.id, this_quarter),
        "last_quarter": _query(report.unit.id, last_quarter),
        "quarterly": f"unit={report.unit.id}&year={year}&quarter={quarter}",
        "pct": percent,
        "num": number,
        "standards": {
            "per_staff": RETIREES_PER_STAFF,
            "per_community": RETIREES_PER_COMMUNITY_WORKER,
        },
        "minutes": lambda value: _minutes(labels.t, value),
        "generated": local_time(report.now, console(request).zone),
    }


def _named(report: Report, labels: Labels) -> dict[str, list[tuple[str, int]]]:
    """The breakdowns with the names a person reads, for the charts."""
    return {
        "category": [(labels.category(k), n) for k, n in report.by_category],
        "status": [(labels.status(k), n) for k, n in report.by_status],
        "channel": [(labels.channel(k), n) for k, n in report.by_channel],
        "follow_up": [(labels.follow_up(k), n) for k, n in report.follow_ups],
        "check_in": [(labels.check_in(k), n) for k, n in report.check_ins.results],
    }


def _query(unit_id: int, period: Period) -> str:
    return f"unit={unit_id}&from={period.first.isoformat()}&to={period.last.isoformat()}"


def percent(part: float | None, whole: float | None = 1) -> str:
    """85%, 37.5%: a share as people write it; a dash when there is nothing to divide."""
    if part is None or not whole:
        return "–"
    return f"{number(100 * part / whole)}%"


def number(value: float | None) -> str:
    """12, 12.5: one decimal at most; a dash for nothing."""
    if value is None:
        return "–"
    return f"{value:.1f}".removesuffix(".0")


def _minutes(t: Texts, value: float | None) -> str:
    """A median or p90 as people say it (25分钟, 4小时24分钟); under a minute said so."""
    if value is None:
        return "–"
    if value < 1:
        return t("console.reports.under_a_minute")
    return duration(t, round(value))


# ---- exports --------------------------------------------------------------------------------

Row = tuple[str, str, str, Any, Any]  # code, section, item, value, share (percent or "")


def export_rows(report: Report, labels: Labels, generated: str) -> list[Row]:
    """The report as rows of (code, section, item, value, share %): the same in both files; the
    code column is stable across languages for anyone who reads the file by program."""
    section, item = labels.section, labels.item
    head, cases = section("report"), section("cases")
    rows: list[Row] = [
        ("report.unit", head, item("unit"), report.unit.name(labels.lang), ""),
        ("report.from", head, item("from"), report.period.first.isoformat(), ""),
        ("report.to", head, item("to"), report.period.last.isoformat(), ""),
        ("report.generated", head, item("generated"), generated, ""),
        ("cases.total", cases, item("total"), report.total, ""),
    ]
    breakdowns = (
        ("category", report.by_category, labels.category),
        ("status", report.by_status, labels.status),
        ("channel", report.by_channel, labels.channel),
    )
    for kind, counts, name in breakdowns:
        for key, n in counts:
            share = _share(n, report.total)
            rows.append((f"cases.{kind}.{key}", section(f"by_{kind}"), name(key), n, share))
    for kind, timing in (("claim_time", report.claim_time), ("resolve_time", report.resolve_time)):
        rows += [
            (f"{kind}.count", section(kind), item("counted"), timing.count, ""),
            (f"{kind}.median_minutes", section(kind), item("median"), _round(timing.median), ""),
            (f"{kind}.p90_minutes", section(kind), item("p90"), _round(timing.p90), ""),
        ]
    for kind, d in (
        ("claim_deadline", report.claim_deadlines),
        ("resolve_deadline", report.resolve_deadlines),
    ):
        rows += [
            (f"{kind}.met", section(kind), item("met"), d.met, _share(d.met, d.due)),
            (f"{kind}.missed", section(kind), item("missed"), d.missed, _share(d.missed, d.due)),
            (f"{kind}.pending", section(kind), item("pending"), d.pending, ""),
        ]
    for key, n in report.follow_ups:
        share = _share(n, report.follow_ups_total)
        rows.append((f"follow_ups.{key}", section("follow_ups"), labels.follow_up(key), n, share))
    return (
        rows
        + _check_in_rows(report, labels)
        + _campaign_rows(report, labels)
        + _load_rows(report, labels)
    )


def _check_in_rows(report: Report, labels: Labels) -> list[Row]:
    c, name, label = report.check_ins, labels.section("check_ins"), labels.check_in
    return [
        *((f"check_ins.{k}", name, label(k), n, _share(n, c.total)) for k, n in c.results),
        ("check_ins.planned", name, label("planned"), c.planned, ""),
        ("check_ins.covered", name, label("covered"), c.covered, _share(c.covered, c.planned)),
        ("check_ins.asked", name, label("asked"), c.asked, ""),
        ("check_ins.answered", name, label("answered"), c.answered, _share(c.answered, c.asked)),
    ]


def _campaign_rows(report: Report, labels: Labels) -> list[Row]:
    c, name, label = report.campaigns, labels.section("campaigns"), labels.campaign
    rows: list[Row] = [("campaigns.started", name, label("started"), c.started, "")]
    for kind, n in c.by_kind:
        kind_name = labels.t(f"console.campaigns.kinds.{kind}")
        figures = [("people", n.people, "")]
        if kind == "visits":
            figures.append(("visited", n.visited, _share(n.visited, n.people)))
        else:
            figures += [
                ("sent", n.sent, _share(n.sent, n.people)),
                ("delivered", n.delivered, _share(n.delivered, n.sent)),
                ("failed", n.failed, _share(n.failed, n.sent)),
                ("answered", n.answered, _share(n.answered, n.sent)),
            ]
        rows += [
            (f"campaigns.{kind}.{key}", name, f"{kind_name} · {label(key)}", value, share)
            for key, value, share in figures
        ]
    return rows


def _load_rows(report: Report, labels: Labels) -> list[Row]:
    load, item = report.load, labels.item
    name = labels.section("load")
    rows: list[Row] = [
        ("load.retirees", name, item("retirees"), load.retirees, ""),
        ("load.staff", name, item("staff"), load.staff, ""),
        ("load.volunteers", name, item("volunteers"), load.volunteers, ""),
        ("load.retirees_per_staff", name, item("per_staff"), _round(load.per_staff), ""),
        ("load.staff_needed", name, item("staff_needed"), load.needed, ""),
        ("load.communities", name, item("communities"), len(load.communities), ""),
        (
            "load.communities_meeting",
            name,
            item("communities_meeting"),
            load.communities_meeting,
            "",
        ),
    ]
    for c in load.communities:
        unit = c.unit.name(labels.lang)
        code = f"load.unit.{c.unit.code}"
        rows += [
            (f"{code}.retirees", name, item("unit_retirees", unit=unit), c.retirees, ""),
            (f"{code}.staff", name, item("unit_staff", unit=unit), c.staff, ""),
            (f"{code}.volunteers", name, item("unit_volunteers", unit=unit), c.volunteers, ""),
            (f"{code}.needed", name, item("unit_needed", unit=unit), c.needed, ""),
        ]
    return rows


def _share(part: int, whole: int) -> float | str:
    return round(100 * part / whole, 1) if whole else ""


def _round(value: float | None) -> float | str:
    return "" if value is None else round(value, 1)


def _headers(labels: Labels) -> list[str]:
    return [
        labels.t(f"console.reports.export.{c}")
        for c in ("code", "section", "item", "value", "share")
    ]


def _filename(report: Report, ext: str) -> str:
    code = re.sub(r"[^A-Za-z0-9_-]", "_", report.unit.code) or str(report.unit.id)
    return f"report-{code}-{report.period.first.isoformat()}-{report.period.last.isoformat()}.{ext}"


def _download(body: bytes, media_type: str, filename: str) -> Response:
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    return Response(body, media_type=media_type, headers=headers)


def csv_bytes(rows: list[Row], headers: list[str]) -> bytes:
    """UTF-8 with a byte-order mark: Excel on a Chinese Windows reads the characters right."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(headers)
    writer.writerows([[as_text(v) for v in row] for row in rows])
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def xlsx_bytes(rows: list[Row], headers: list[str], title: str) -> bytes:
    book = Workbook()
    sheet = book.active
    sheet.title = title[:31]
    sheet.append(headers)
    for row in rows:
        sheet.append([as_text(v) for v in row])
    for column, width in enumerate((28, 16, 36, 24, 10), start=1):
        sheet.column_dimensions[get_column_letter(column)].width = width
    sheet.freeze_panes = "A2"
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _export(
    request: Request, me: Staff, session: DB, unit: str, from_: str, to: str, ext: str
) -> Response:
    def make() -> Response:
        chosen = _unit(session, me, unit)
        report = _report(request, session, chosen, _period(from_, to, _today(request)))
        labels = _labels(request)
        rows = export_rows(report, labels, local_time(report.now, console(request).zone))
        if ext == "csv":
            body, media = csv_bytes(rows, _headers(labels)), "text/csv; charset=utf-8"
        else:
            title = labels.t("console.reports.export.sheet")
            body = xlsx_bytes(rows, _headers(labels), title)
            media = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        return _download(body, media, _filename(report, ext))

    return _answer(request, make)


@router.get("/reports/export.csv")
def export_csv(
    request: Request, me: Me, session: DB, unit: Field = "", from_: From = "", to: Field = ""
) -> Response:
    return _export(request, me, session, unit, from_, to, "csv")


@router.get("/reports/export.xlsx")
def export_xlsx(
    request: Request, me: Me, session: DB, unit: Field = "", from_: From = "", to: Field = ""
) -> Response:
    return _export(request, me, session, unit, from_, to, "xlsx")
