"""The Reports page, its exports and the quarterly summary, on SQLite and PostgreSQL, checked
against a hand-built quarter of cases whose times, deadlines and follow-ups are known."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from openpyxl import load_workbook
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from storage import actions
from storage.models import (
    Case,
    FollowUp,
    FollowUpStatus,
    Retiree,
    RetireeStatus,
    Role,
    Staff,
    Unit,
)
from storage.permissions import Actor
from tests.console.conftest import PASSWORD_HASH, World
from tests.factories import make_retiree, make_staff

SHANGHAI = ZoneInfo("Asia/Shanghai")
# Tuesday 7 April 2026, 09:00 in Shanghai: the second quarter, after the Qingming holiday.
T0 = datetime(2026, 4, 7, 9, 0, tzinfo=SHANGHAI).astimezone(UTC)
Q2 = "from=2026-04-01&to=2026-06-30"
# Durations come back as floats (SQLite via julianday): a hundredth of a minute is 0.6 s.
TOLERANCE = 0.01


@dataclass
class Quarter:
    """The hand-built second quarter of station A (and one case of station B)."""

    station_a: Unit
    station_b: Unit
    community_a1: Unit
    community_a2: Unit


def _minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


def _callback(session: Session, world: World, day: int, channel: str) -> Case:
    """A call-back case (claim within 30 minutes, resolve within 4 hours) filed on day ``day``
    of the quarter's first week, at 09:00 local time."""
    return actions.file_case(
        session,
        category="callback",
        channel=channel,
        actor=Actor.system("retiree"),
        retiree=session.get(Retiree, world.retiree_a1.id),
        now=T0 + timedelta(days=day),
    )


def _follow_up(
    session: Session, case: Case, status: FollowUpStatus, done: bool | None, satisfied: bool | None
) -> None:
    """The follow-up round of the case's resolution (made here unless something already made it)."""
    round_ = session.scalars(
        select(FollowUp).where(FollowUp.case_id == case.id).order_by(FollowUp.round.desc())
    ).first()
    if round_ is None:
        round_ = FollowUp(case_id=case.id, round=1, channel=case.channel)
        session.add(round_)
    round_.status, round_.done, round_.satisfied = status, done, satisfied
    session.flush()


@pytest.fixture
def quarter(world: World, engine: Engine) -> Quarter:
    """Claimed after 10, 20, 30, 40 minutes (claim deadline 30): 3 in time, the 40-minute one
    and the never-claimed one late. Resolved after 60, 120, 300 minutes (deadline 240): 2 in time,
    the 300-minute one, the still-claimed and the never-claimed one late. A cancelled case counts
    in neither. Two cases just outside the quarter (local midnight) and one of station B."""
    with Session(engine, expire_on_commit=False) as session, session.begin():
        staff = Actor.person(session.get(Staff, world.staff_a.id))
        c1, c2, c3 = (
            _callback(session, world, d, ch) for d, ch in ((0, "phone"), (1, "phone"), (2, "sms"))
        )
        c4 = _callback(session, world, 3, "telegram")
        _callback(session, world, 4, "phone")  # never claimed
        for c, claim_after, resolve_after in ((c1, 10, 60), (c2, 20, 120), (c3, 30, 300)):
            actions.claim(session, c, staff, now=c.created_at + _minutes(claim_after))
            actions.resolve(
                session, c, staff, outcome="已回电", now=c.created_at + _minutes(resolve_after)
            )
        actions.close(session, c1, staff, now=c1.created_at + timedelta(days=1))
        actions.claim(session, c4, staff, now=c4.created_at + _minutes(40))
        c6 = actions.file_case(
            session,
            category="general",
            channel="web",
            actor=Actor.system("retiree"),
            unit=session.get(Unit, world.units.community_a2.id),
            now=T0 + timedelta(days=5),
        )
        actions.cancel(session, c6, staff, reason="老人说不用了", now=c6.created_at + _minutes(5))
        for moment in (
            datetime(2026, 3, 31, 23, 59, tzinfo=SHANGHAI),
            datetime(2026, 7, 1, 0, 0, tzinfo=SHANGHAI),
        ):
            actions.file_case(
                session,
                category="callback",
                channel="sms",
                actor=Actor.system("retiree"),
                retiree=session.get(Retiree, world.retiree_a1.id),
                now=moment.astimezone(UTC),
            )
        b_case = actions.file_case(
            session,
            category="help_request",
            channel="sms",
            actor=Actor.system("retiree"),
            retiree=session.get(Retiree, world.retiree_b1.id),
            now=T0,
        )
        staff_b = Actor.person(session.get(Staff, world.staff_b.id))
        actions.claim(session, b_case, staff_b, now=T0 + _minutes(5))
        actions.resolve(session, b_case, staff_b, outcome="修好了", now=T0 + _minutes(50))
        _follow_up(session, b_case, FollowUpStatus.ANSWERED, True, True)
        _follow_up(session, c1, FollowUpStatus.ANSWERED, True, True)
        _follow_up(session, c2, FollowUpStatus.ANSWERED, True, False)
        _follow_up(session, c3, FollowUpStatus.UNANSWERED, None, None)
        _people_and_retirees(session, world)
    return Quarter(
        world.units.station_a,
        world.units.station_b,
        world.units.community_a1,
        world.units.community_a2,
    )


def _people_and_retirees(session: Session, world: World) -> None:
    """Station A serves 5 retirees (A1: 4 with a pending one, A2: 1); an inactive retiree and
    one without a community do not count. Paid workers: staff_a (station), x (A1), y (A1 and
    the station: one person), and an inactive one in A2 who does not count."""
    a1 = session.get(Unit, world.units.community_a1.id)
    a2 = session.get(Unit, world.units.community_a2.id)
    station = session.get(Unit, world.units.station_a.id)
    for _ in range(2):
        make_retiree(session, a1)
    make_retiree(session, a1, status=RetireeStatus.PENDING)
    make_retiree(session, a1, status=RetireeStatus.INACTIVE)
    make_retiree(session, a2)
    make_retiree(session, None)
    make_staff(session, Role.STAFF, [a1], username="staff_x", password_hash=PASSWORD_HASH)
    make_staff(session, Role.STAFF, [a1, station], username="staff_y")
    make_staff(session, Role.STAFF, [a2], username="staff_gone", active=False)


def _rows(csv_body: bytes) -> list[list[str]]:
    text = csv_body.decode("utf-8")
    assert text.startswith("\ufeff")  # for Excel on a Chinese Windows
    return list(csv.reader(io.StringIO(text.removeprefix("\ufeff"))))


def _pick(f: dict[str, str], prefix: str, *keys: str) -> dict[str, str]:
    return {key: f[f"{prefix}.{key}"] for key in keys}


def _value(cell: object) -> object:
    """A cell as a number where it is one (a spreadsheet keeps 50.0 as 50), else its text."""
    try:
        return float(str(cell))
    except ValueError:
        return str(cell)


def _csv(b, url: str, column: int = 3) -> dict[str, str]:
    """The exported figures by code: their values (column 3) or shares in % (column 4)."""
    response = b.get(url)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    return {row[0]: row[column] for row in _rows(response.content)[1:]}


# ---- the figures ----------------------------------------------------------------------------


def test_counts_times_deadlines_and_follow_ups_of_the_quarter(quarter: Quarter, browser) -> None:
    f = _csv(browser("staff_a"), f"/reports/export.csv?unit={quarter.station_a.id}&{Q2}")
    assert f["cases.total"] == "6"
    assert (f["cases.category.callback"], f["cases.category.general"]) == ("5", "1")
    assert "cases.category.help_request" not in f  # station B's case
    statuses = _pick(f, "cases.status", "open", "claimed", "resolved", "closed", "cancelled")
    assert statuses == {
        "open": "1",
        "claimed": "1",
        "resolved": "2",
        "closed": "1",
        "cancelled": "1",
    }
    channels = {k: f[f"cases.channel.{k}"] for k in ("phone", "sms", "telegram", "web")}
    assert channels == {"phone": "3", "sms": "1", "telegram": "1", "web": "1"}
    assert f["claim_time.count"] == "4"
    assert float(f["claim_time.median_minutes"]) == pytest.approx(25, abs=TOLERANCE)
    assert float(f["claim_time.p90_minutes"]) == pytest.approx(37, abs=TOLERANCE)
    assert f["resolve_time.count"] == "3"
    assert float(f["resolve_time.median_minutes"]) == pytest.approx(120, abs=TOLERANCE)
    assert float(f["resolve_time.p90_minutes"]) == pytest.approx(264, abs=TOLERANCE)
    # Claimed at exactly the deadline (30 minutes) is in time.
    claims = _pick(f, "claim_deadline", "met", "missed", "pending")
    assert claims == {"met": "3", "missed": "2", "pending": "0"}
    resolutions = _pick(f, "resolve_deadline", "met", "missed", "pending")
    assert resolutions == {"met": "2", "missed": "3", "pending": "0"}
    shares = _csv(browser("staff_a"), f"/reports/export.csv?unit={quarter.station_a.id}&{Q2}", 4)
    assert (shares["claim_deadline.met"], shares["resolve_deadline.met"]) == ("60.0", "40.0")
    follow_ups = {
        k.removeprefix("follow_ups."): v for k, v in f.items() if k.startswith("follow_ups.")
    }
    assert follow_ups == {
        "done_satisfied": "1",
        "done_not_satisfied": "1",
        "not_done": "0",
        "answered_incomplete": "0",
        "unanswered": "1",
        "waiting": "0",
    }


def test_a_community_report_covers_only_that_community(quarter: Quarter, browser) -> None:
    f = _csv(browser("staff_a"), f"/reports/export.csv?unit={quarter.community_a2.id}&{Q2}")
    assert f["cases.total"] == "1" and f["cases.status.cancelled"] == "1"
    assert f["claim_time.count"] == "0" and f["claim_time.median_minutes"] == ""
    assert f["load.retirees"] == "1" and f["load.staff"] == "0"


def test_staff_load_against_the_two_standards(quarter: Quarter, browser) -> None:
    f = _csv(browser("staff_a"), f"/reports/export.csv?unit={quarter.station_a.id}&{Q2}")
    assert (f["load.retirees"], f["load.staff"], f["load.volunteers"]) == ("5", "3", "2")
    assert f["load.retirees_per_staff"] == "1.7"
    assert f["load.staff_needed"] == "1"  # 5 retirees at 1:50
    a1 = _pick(f, "load.unit.A1", "retirees", "staff", "volunteers", "needed")
    assert a1 == {"retirees": "4", "staff": "2", "volunteers": "2", "needed": "1"}
    a2 = _pick(f, "load.unit.A2", "retirees", "staff", "volunteers", "needed")
    assert a2 == {"retirees": "1", "staff": "0", "volunteers": "0", "needed": "1"}
    assert (f["load.communities"], f["load.communities_meeting"]) == ("2", "1")


def test_the_centre_report_adds_up_both_stations(quarter: Quarter, browser) -> None:
    f = _csv(browser("admin"), f"/reports/export.csv?{Q2}")  # the admin's top unit: the centre
    assert f["report.unit"] == "退管中心"
    assert f["cases.total"] == "7" and f["cases.category.help_request"] == "1"
    assert f["follow_ups.done_satisfied"] == "2"
    assert (f["load.retirees"], f["load.staff"]) == ("6", "5")  # the admin is paid staff too


def test_this_quarters_open_cases_are_pending_not_missed(world: World, browser) -> None:
    """The default report: the person's top unit, this quarter. The world's cases were just
    filed, so their deadlines are still running."""
    f = _csv(browser("staff_a"), "/reports/export.csv")
    assert f["report.unit"] == "东街道"
    assert f["cases.total"] == "2"  # help_a1 and complaint_a1; help_b1 is station B's
    claims = _pick(f, "claim_deadline", "met", "missed", "pending")
    assert claims == {"met": "0", "missed": "0", "pending": "2"}
    resolutions = _pick(f, "resolve_deadline", "met", "missed", "pending")
    assert resolutions == {"met": "0", "missed": "0", "pending": "2"}


# ---- who may see what -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/reports", "/reports/export.csv", "/reports/export.xlsx", "/reports/quarterly"]
)
def test_volunteers_get_no_reports(world: World, browser, path: str) -> None:
    response = browser("vol_a1").get(path)
    assert response.status_code == 403
    assert "统计报表只对工作人员和管理员开放" in response.text


def test_station_b_staff_cannot_see_station_a(quarter: Quarter, browser) -> None:
    b = browser("staff_b")
    for path in ("/reports", "/reports/export.csv", "/reports/export.xlsx", "/reports/quarterly"):
        for unit in (quarter.station_a.id, quarter.community_a1.id):
            response = b.get(f"{path}?unit={unit}")
            assert response.status_code == 403, path
            assert "不在您负责的范围内" in response.text
    own = _csv(b, f"/reports/export.csv?{Q2}")
    assert own["report.unit"] == "西街道" and own["cases.total"] == "1"
    page = b.get(f"/reports?{Q2}").text
    assert "东街道" not in page and "和平社区" not in page  # not even in the unit choices


def test_signed_out_goes_to_sign_in(world: World, browser) -> None:
    response = browser(None).get("/reports", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].startswith("/login")


@pytest.mark.parametrize(
    ("query", "status", "says"),
    [
        ("from=2026-13-01", 400, "参数 from 应为日期"),
        ("to=yesterday", 400, "参数 to 应为日期"),
        ("from=06/01/2026", 400, "参数 from 应为日期"),  # never the American month first
        ("from=2026-06-30&to=2026-04-01", 400, "早于开始日期"),
        ("from=1900-01-01", 400, "年份应在 2000 到 2100 之间"),
        ("unit=east", 400, "单位应为编号"),
        ("unit=99999", 404, "找不到编号为 99999 的单位"),
    ],
)
def test_bad_input_says_what_is_wrong(
    world: World, browser, query: str, status: int, says: str
) -> None:
    response = browser("staff_a").get(f"/reports?{query}")
    assert response.status_code == status
    assert says in response.text


def test_dates_are_year_first_whatever_the_browser(world: World, browser) -> None:
    """The period is typed and shown year first (a date input follows the browser's locale:
    an English browser showed 06/30/2026); 2026/4/1 and 2026年6月30日 are understood."""
    b = browser("staff_a")
    page = b.get("/reports?from=2026/4/1&to=2026年6月30日").text
    assert 'type="date"' not in page
    assert 'name="from" value="2026-04-01"' in page and 'name="to" value="2026-06-30"' in page
    assert "年-月-日" in page


def test_bad_quarter_says_what_is_wrong(world: World, browser) -> None:
    response = browser("staff_a").get("/reports/quarterly?quarter=5")
    assert response.status_code == 400 and "季度应为 1、2、3 或 4" in response.text


# ---- what a person sees ---------------------------------------------------------------------


def _bar(page: str, label: str) -> str:
    """The number written on the bar of ``label``."""
    found = re.search(
        rf"<th scope=\"row\">{re.escape(label)}</th>.*?class=\"bar-num\">([^<]+)<", page, re.S
    )
    assert found, label
    return found.group(1).strip()


def test_the_page_draws_bars_with_their_numbers(quarter: Quarter, browser) -> None:
    page = browser("staff_a").get(f"/reports?unit={quarter.station_a.id}&{Q2}").text
    assert '<span class="big" id="total">6</span>' in page
    assert _bar(page, "回电") == "5 · 83.3%"
    assert _bar(page, "其他事项") == "1 · 16.7%"
    assert _bar(page, "电话") == "3 · 50%"
    assert _bar(page, "已取消") == "1 · 16.7%"
    assert _bar(page, "办成了，满意") == "1 · 33.3%"
    assert "60%（3 / 5 件）" in page and "40%（2 / 5 件）" in page
    assert "25分钟" in page and "37分钟" in page and "2小时0分钟" in page and "4小时24分钟" in page
    assert "<script" not in page.split("</head>", 1)[1]  # no chart library, no script
    for link in ("/reports/export.xlsx?", "/reports/export.csv?", "/reports/quarterly?"):
        assert link + f"unit={quarter.station_a.id}" in page
    assert "王秀英" not in page and "+8613911112222" not in page  # counts only


def test_the_page_in_english(quarter: Quarter, browser) -> None:
    b = browser("staff_a")
    b.get("/language/en")
    page = b.get(f"/reports?unit={quarter.station_a.id}&{Q2}").text
    assert _bar(page, "Call back") == "5 · 83.3%"
    assert "25 min" in page and "37 min" in page and "Claimed in time" in page
    assert "回电" not in page


def test_the_exports_hold_the_same_figures(quarter: Quarter, browser) -> None:
    b = browser("staff_a")
    query = f"unit={quarter.station_a.id}&{Q2}"
    as_csv = b.get(f"/reports/export.csv?{query}")
    as_xlsx = b.get(f"/reports/export.xlsx?{query}")
    assert as_xlsx.status_code == 200
    assert (
        'filename="report-SA-2026-04-01-2026-06-30.xlsx"' in as_xlsx.headers["content-disposition"]
    )
    sheet = load_workbook(io.BytesIO(as_xlsx.content)).active
    xlsx_rows = [["" if v is None else v for v in row] for row in sheet.iter_rows(values_only=True)]
    text = as_csv.content.decode("utf-8").removeprefix("\ufeff")
    csv_rows = list(csv.reader(io.StringIO(text)))
    assert xlsx_rows[0] == csv_rows[0] == ["代码", "栏目", "项目", "数值", "占比（%）"]
    assert len(xlsx_rows) == len(csv_rows) > 40
    for from_xlsx, from_csv in zip(xlsx_rows[1:], csv_rows[1:], strict=True):
        assert [_value(v) for v in from_xlsx] == [_value(v) for v in from_csv]
    numbers = {row[0]: row[3] for row in xlsx_rows[1:]}
    assert numbers["cases.total"] == 6 and numbers["claim_deadline.met"] == 3
    assert numbers["claim_time.median_minutes"] == pytest.approx(25, abs=TOLERANCE)


def test_text_that_looks_like_a_formula_is_written_as_text(
    quarter: Quarter, browser, engine: Engine
) -> None:
    with Session(engine) as session, session.begin():
        session.get(Unit, quarter.station_a.id).name_zh = '=HYPERLINK("http://x")'
    b = browser("staff_a")
    f = _csv(b, f"/reports/export.csv?unit={quarter.station_a.id}&{Q2}")
    assert f["report.unit"] == '\'=HYPERLINK("http://x")'
    sheet = load_workbook(
        io.BytesIO(b.get(f"/reports/export.xlsx?unit={quarter.station_a.id}").content)
    ).active
    assert sheet["D2"].value == '\'=HYPERLINK("http://x")' and sheet["D2"].data_type == "s"


@pytest.mark.parametrize(
    ("lang", "sentences"),
    [
        (
            "zh",
            [
                "本季度共登记个案 6 件：待领取 1 件，处理中 1 件，已办结待结案 2 件，已结案 1 件，已取消 1 件。",
                "已领取的 4 件个案，一半在登记后 25分钟 以内被领取，九成在 37分钟 以内。",
                "按时领取 60%（3 / 5 件），按时办结 40%（2 / 5 件）。",
                "回访 3 次，其中办成并且满意 1 次（33.3%）。",
                "东街道 2026 年第 2 季度工作小结",
            ],
        ),
        (
            "en",
            [
                "Cases filed this quarter: 6. Waiting to be claimed: 1; in progress: 1; resolved, to be closed: 2; closed: 1; cancelled: 1.",
                "Of the 4 cases claimed, half were claimed within 25 min of filing and nine in ten within 37 min.",
                "Claimed in time: 60% (3 of 5). Resolved in time: 40% (2 of 5).",
                "East: summary of quarter 2, 2026",
            ],
        ),
    ],
)
def test_the_quarterly_summary_prints_in_both_languages(
    quarter: Quarter, browser, lang: str, sentences: list[str]
) -> None:
    b = browser("staff_a")
    b.get(f"/language/{lang}")
    response = b.get(f"/reports/quarterly?unit={quarter.station_a.id}&year=2026&quarter=2")
    assert response.status_code == 200
    page = response.text
    for sentence in sentences:
        assert sentence in page
    assert "@media print" in page and "no-print" in page
    assert re.search(r'<table class="figures" id="categories">.*?>5<.*?83.3%', page, re.S)
