"""The registry pages: search, profile, edit, visits, import and export — who may do what, what
is saved, and what goes to the audit log."""

from __future__ import annotations

import csv
import io
from datetime import date

import pytest
from fastapi import FastAPI
from openpyxl import load_workbook
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from console.routes.registry import local_today
from storage import actions
from storage.models import (
    AuditEntry,
    MessagingIdentity,
    Retiree,
    RetireePhone,
    RetireeStatus,
    Visit,
)
from storage.permissions import Actor
from storage.registry_format import COLUMNS
from tests.console.conftest import World
from tests.factories import make_retiree

# A Friday just after the National Day week (1–7 October 2026; Saturday 10 October is a
# make-up working day): due dates counted naively and by working days differ here.
TODAY = date(2026, 10, 9)
HEADER = [c.zh for c in COLUMNS]


@pytest.fixture(autouse=True)
def fixed_today(console_app: FastAPI) -> None:
    console_app.dependency_overrides[local_today] = lambda: TODAY


def _retiree(engine: Engine, retiree_id: int) -> Retiree:
    with Session(engine) as session:
        retiree = session.get(Retiree, retiree_id)
        assert retiree is not None
        _ = retiree.phones, retiree.emergency_contacts, retiree.visits
        return retiree


def _audit(engine: Engine, action: str) -> list[AuditEntry]:
    with Session(engine) as session:
        return list(
            session.scalars(
                select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)
            )
        )


def _add_retiree(engine: Engine, community_attr: str, world: World, **kw: object) -> int:
    with Session(engine, expire_on_commit=False) as session, session.begin():
        community = getattr(world.units, community_attr)
        retiree = make_retiree(session, session.merge(community), **kw)
        return retiree.id


def _profile_form(retiree: Retiree, version: str, **changes: object) -> dict[str, object]:
    """The edit form as the page fills it in, with ``changes``."""
    form: dict[str, object] = {
        "version": version,
        "name": retiree.name,
        "status": retiree.status.value,
        "community_id": str(retiree.community_id or ""),
        "birth_date": retiree.birth_date.isoformat() if retiree.birth_date else "",
        "address": retiree.address,
        "self_care": retiree.self_care.value,
        "hardship": retiree.hardship.value,
        "health_class": retiree.health_class,
        "preferred_language": retiree.preferred_language,
        "family_notes": retiree.family_notes,
        "health_notes": retiree.health_notes,
        "income_notes": retiree.income_notes,
        "wishes_notes": retiree.wishes_notes,
        "skills_notes": retiree.skills_notes,
        "service_needs_notes": retiree.service_needs_notes,
        "phone_number": [p.number for p in retiree.phones] + [""],
        "phone_label": [p.label for p in retiree.phones] + [""],
        "contact_name": [c.name for c in retiree.emergency_contacts] + [""],
        "contact_relation": [c.relation for c in retiree.emergency_contacts] + [""],
        "contact_phone": [c.phone for c in retiree.emergency_contacts] + [""],
    }
    if retiree.lives_alone:
        form["lives_alone"] = "1"
    if retiree.party_member:
        form["party_member"] = "1"
    form.update(changes)
    return form


def _row(row_id: str, page: str) -> str:
    """The table row with id ``row_id`` of ``page``."""
    return page[page.index(f'id="{row_id}"') :].split("</tr>")[0]


def _version(page: str) -> str:
    marker = 'name="version" value="'
    start = page.index(marker) + len(marker)
    return page[start : page.index('"', start)]


def _upload(b, rows: list[list[str]], name: str = "名册.csv") -> object:
    out = io.StringIO()
    csv.writer(out).writerows([HEADER, *rows])
    if not b.csrf:
        b.get("/retirees/import")
    return b.client.post(
        "/retirees/import",
        data={"csrf_token": b.csrf},
        files={"file": (name, out.getvalue().encode("utf-8-sig"), "text/csv")},
    )


# --------------------------------------------------------------------------- who may


def test_a_volunteer_gets_403_on_every_registry_page(world: World, browser, engine) -> None:
    b = browser("vol_a1")
    rid = world.retiree_a1.id
    for url in (
        "/retirees",
        f"/retirees/{rid}",
        f"/retirees/{rid}/edit",
        "/visits",
        "/retirees/import",
        "/retirees/export.xlsx",
        "/retirees/export.csv",
    ):
        page = b.get(url)
        assert page.status_code == 403, url
        assert "老人名册只对工作人员和管理员开放" in page.text
        assert "王秀英" not in page.text
    before = _retiree(engine, rid)
    edit = b.post(f"/retirees/{rid}", {"name": "改名", "version": ""})
    visit = b.post(f"/retirees/{rid}/visits", {"visited_on": "2026-10-08", "notes": "x"})
    assert edit.status_code == visit.status_code == 403
    assert _upload(b, [["李四", "13900001111"]]).status_code == 403
    after = _retiree(engine, rid)
    assert after.name == before.name == "王秀英" and after.visits == []
    assert not _audit(engine, "view_retiree") and not _audit(engine, "export_retirees")


def test_staff_of_another_station_cannot_open_or_change_a_retiree(
    world: World, browser, engine
) -> None:
    b = browser("staff_b")
    rid = world.retiree_a1.id
    for url in (f"/retirees/{rid}", f"/retirees/{rid}/edit"):
        page = b.get(url)
        assert page.status_code == 403 and "王秀英" not in page.text
        assert "不在您负责的单位" in page.text
    assert b.post(f"/retirees/{rid}", {"name": "改名", "version": ""}).status_code == 403
    visit = b.post(f"/retirees/{rid}/visits", {"visited_on": "2026-10-08"})
    assert visit.status_code == 403
    assert _retiree(engine, rid).visits == []
    listing = b.get("/retirees").text
    assert "王秀英" not in listing and f"/retirees/{world.retiree_b1.id}" in listing
    assert "共 0 人" in b.get("/retirees?phone=13911112222").text
    assert b.get("/retirees/999999").status_code == 404


def test_staff_may_open_a_registration_without_community_through_a_case_of_theirs(
    world: World, browser, engine
) -> None:
    with Session(engine, expire_on_commit=False) as session, session.begin():
        newcomer = make_retiree(session, None, name="钱新来", status=RetireeStatus.PENDING)
        actions.file_case(
            session,
            category="help_request",
            channel="sms",
            actor=Actor.system("retiree"),
            retiree=newcomer,
            unit=session.merge(world.units.community_a1),
            summary="登记",
        )
    staff_a = browser("staff_a")
    assert staff_a.get(f"/retirees/{newcomer.id}").status_code == 200
    assert "钱新来" in staff_a.get("/retirees?status=pending").text
    assert browser("staff_b").get(f"/retirees/{newcomer.id}").status_code == 403
    # Staff must give the community: without one the person would drop out of their view.
    page = staff_a.get(f"/retirees/{newcomer.id}/edit").text
    form = _profile_form(_retiree(engine, newcomer.id), _version(page))
    refused = staff_a.post(f"/retirees/{newcomer.id}", form)
    assert refused.status_code == 422 and "请选择社区" in refused.text
    form["community_id"] = str(world.units.community_a2.id)
    assert staff_a.post(f"/retirees/{newcomer.id}", form).status_code == 303
    assert _retiree(engine, newcomer.id).community_id == world.units.community_a2.id


# --------------------------------------------------------------------------- search


@pytest.mark.parametrize(
    "typed", ["13911112222", "139 1111 2222", "+86 139-1111-2222", "008613911112222"]
)
def test_search_by_phone_in_any_format_finds_the_person(world: World, browser, typed: str) -> None:
    page = browser("staff_a").get("/retirees", params={"phone": typed}).text
    assert f'href="/retirees/{world.retiree_a1.id}"' in page and "王秀英" in page
    assert "共 1 人" in page
    assert "+8613911112222" not in page and "和平路" not in page  # contact details: profile only


def test_search_filters_and_markers(world: World, browser, engine) -> None:
    pending = _add_retiree(
        engine, "community_a2", world, name="孙待核", status=RetireeStatus.PENDING, age=70
    )
    b = browser("staff_a")
    everyone = b.get("/retirees").text
    assert everyone.index("孙待核") < everyone.index("王秀英")  # registrations to verify first
    row = _row(f"retiree-{world.retiree_a1.id}", everyone)
    assert "和平社区" in row and "80-89" in row and "80岁以上" in row and "独居" in row
    by_name = b.get("/retirees", params={"name": "秀英"}).text
    assert "王秀英" in by_name and "孙待核" not in by_name
    old = b.get("/retirees", params={"marker": ["age_80_plus", "lives_alone"]}).text
    assert "王秀英" in old and "孙待核" not in old
    assert "王秀英" not in b.get("/retirees", params={"marker": "age_90_plus"}).text
    a2 = b.get("/retirees", params={"community": world.units.community_a2.id}).text
    assert "孙待核" in a2 and "王秀英" not in a2
    only_pending = b.get("/retirees", params={"status": "pending"}).text
    assert f"/retirees/{pending}" in only_pending and "王秀英" not in only_pending
    wrong = b.get("/retirees", params={"phone": "12345"}).text
    assert "不是有效的电话号码" in wrong and 'aria-invalid="true"' in wrong


# --------------------------------------------------------------------------- the profile


def test_the_profile_shows_the_whole_file_and_the_view_is_audited(
    world: World, browser, engine
) -> None:
    with Session(engine) as session, session.begin():
        session.add(
            MessagingIdentity(retiree_id=world.retiree_a1.id, channel="telegram", address="5551")
        )
    page = browser("staff_a").get(f"/retirees/{world.retiree_a1.id}").text
    for shown in ("王秀英", "+8613911112222", "和平路 8 号", "李明", "儿子", "+8613800009999"):
        assert shown in page
    assert "高血压" in page and "六清楚" in page and "5551" in page
    assert f'href="/cases/{world.help_a1.number}"' in page
    assert f'href="/cases/{world.complaint_a1.number}"' in page
    entry = _audit(engine, "view_retiree")[-1]
    assert (entry.actor_id, entry.subject_id) == (world.staff_a.id, world.retiree_a1.id)
    assert entry.detail == {"page": "profile"}


def test_an_edit_is_saved_and_audited_with_field_names_never_values(
    world: World, browser, engine
) -> None:
    b = browser("staff_a")
    rid = world.retiree_a1.id
    page = b.get(f"/retirees/{rid}/edit").text
    current = _retiree(engine, rid)
    form = _profile_form(
        current,
        _version(page),
        address="和平路 10 号 1 单元 101",
        wishes_notes="想参加书法班",
        phone_number=["+8613911112222", "138-0013-8000", ""],
        phone_label=["手机", "家里", ""],
        contact_name=["李明", "王芳", ""],
        contact_relation=["儿子", "女儿", ""],
        contact_phone=["+8613800009999", "13700137000", ""],
    )
    saved = b.post(f"/retirees/{rid}", form)
    assert saved.status_code == 303 and saved.headers["location"] == f"/retirees/{rid}"
    after = _retiree(engine, rid)
    assert after.address == "和平路 10 号 1 单元 101" and after.wishes_notes == "想参加书法班"
    assert [(p.number, p.label) for p in after.phones] == [
        ("+8613911112222", "手机"),
        ("+8613800138000", "家里"),
    ]
    assert [(c.name, c.phone) for c in after.emergency_contacts][1] == ("王芳", "+8613700137000")
    entry = _audit(engine, "update_retiree")[-1]
    assert entry.actor_id == world.staff_a.id and entry.subject_id == rid
    assert entry.detail == {"fields": ["address", "emergency_contacts", "phones", "wishes_notes"]}
    assert "书法" not in str(entry.detail) and "138" not in str(entry.detail)
    assert "档案已保存" in b.get(f"/retirees/{rid}").text
    # Removing the new phone again: an emptied number removes it.
    page = b.get(f"/retirees/{rid}/edit").text
    form = _profile_form(_retiree(engine, rid), _version(page))
    form["phone_number"] = ["+8613911112222", "", ""]
    assert b.post(f"/retirees/{rid}", form).status_code == 303
    assert [p.number for p in _retiree(engine, rid).phones] == ["+8613911112222"]


def test_a_form_with_mistakes_keeps_what_was_typed(world: World, browser, engine) -> None:
    b = browser("staff_a")
    rid = world.retiree_a1.id
    page = b.get(f"/retirees/{rid}/edit").text
    form = _profile_form(
        _retiree(engine, rid),
        _version(page),
        name="王秀英英",
        birth_date="2030-01-01",
        family_notes="女儿每周来两次",
        phone_number=["+8613911112222", "12345", "+8613933334444"],  # B1's number
        phone_label=["", "错号", ""],
        contact_name=["李明", "", ""],
        contact_relation=["儿子", "", ""],
        contact_phone=["+8613800009999", "13700137000", ""],
    )
    refused = b.post(f"/retirees/{rid}", form)
    assert refused.status_code == 422
    text = refused.text
    assert "日期不对" in text and "不是有效的电话号码" in text
    assert "这个号码已登记在另一位老人名下" in text and "同时填写姓名和电话" in text
    for typed in ("王秀英英", "2030-01-01", "女儿每周来两次", "12345", "错号", "13700137000"):
        assert typed in text
    assert _retiree(engine, rid).name == "王秀英" and not _audit(engine, "update_retiree")


def test_a_profile_changed_meanwhile_is_not_overwritten_unknowingly(
    world: World, browser, engine
) -> None:
    rid = world.retiree_a1.id
    first, second = browser("staff_a"), browser("admin")
    first_page, second_page = (
        first.get(f"/retirees/{rid}/edit").text,
        second.get(f"/retirees/{rid}/edit").text,
    )
    current = _retiree(engine, rid)
    assert (
        first.post(
            f"/retirees/{rid}", _profile_form(current, _version(first_page), address="新地址 1")
        ).status_code
        == 303
    )
    late = second.post(
        f"/retirees/{rid}", _profile_form(current, _version(second_page), address="新地址 2")
    )
    assert late.status_code == 422 and "别人修改了这份档案" in late.text and "新地址 2" in late.text
    assert _retiree(engine, rid).address == "新地址 1"
    again = second.post(
        f"/retirees/{rid}", _profile_form(current, _version(late.text), address="新地址 2")
    )
    assert again.status_code == 303 and _retiree(engine, rid).address == "新地址 2"


def test_a_pending_registration_is_verified_after_the_first_visit(
    world: World, browser, engine
) -> None:
    rid = _add_retiree(
        engine,
        "community_a1",
        world,
        name="周待访",
        status=RetireeStatus.PENDING,
        registered_on=date(2026, 9, 29),
    )
    b = browser("staff_a")
    page = b.get(f"/retirees/{rid}").text
    assert "待核实的登记" in page and "2026-10-12" in page  # first visit due
    recorded = b.post(
        f"/retirees/{rid}/visits", {"visited_on": "2026-10-08", "notes": "已上门核实"}
    )
    assert recorded.status_code == 303
    visit = _retiree(engine, rid).visits[0]
    assert (visit.visited_on, visit.staff_id, visit.notes) == (
        date(2026, 10, 8),
        world.staff_a.id,
        "已上门核实",
    )
    assert _audit(engine, "record_visit")[-1].detail == {"visit": visit.id}
    page = b.get(f"/retirees/{rid}/edit").text
    form = _profile_form(_retiree(engine, rid), _version(page), status="active")
    assert b.post(f"/retirees/{rid}", form).status_code == 303
    assert _retiree(engine, rid).status == RetireeStatus.ACTIVE
    assert _audit(engine, "update_retiree")[-1].detail == {"fields": ["status"]}


def test_a_visit_in_the_future_is_refused_next_to_the_field(world: World, browser, engine) -> None:
    rid = world.retiree_a1.id
    refused = browser("staff_a").post(
        f"/retirees/{rid}/visits", {"visited_on": "2026-10-10", "notes": "明天去"}
    )
    assert (
        refused.status_code == 422 and "走访日期不对" in refused.text and "明天去" in refused.text
    )
    assert _retiree(engine, rid).visits == []


# --------------------------------------------------------------------------- visits due


def test_the_visit_lists_count_working_days_over_the_national_day_holiday(
    world: World, browser, engine
) -> None:
    def add(
        name: str, registered: date | None, *visits: date, community: str = "community_a1"
    ) -> int:
        rid = _add_retiree(engine, community, world, name=name, registered_on=registered)
        with Session(engine) as session, session.begin():
            session.add_all(Visit(retiree_id=rid, visited_on=day) for day in visits)
        return rid

    # Registered Tue 29 Sep: 30 Sep, (1–7 Oct off), 8, 9, Sat 10 (make-up), 12 Oct.
    due_12th = add("甲新登记", date(2026, 9, 29))
    # Tue 22 Sep: 23, 24, (Mid-Autumn 25–27), 28, 29, 30 Sep: overdue on 9 Oct.
    overdue = add("乙已超期", date(2026, 9, 22))
    due_today = add("丙今天到期", date(2026, 9, 25))  # 28, 29, 30 Sep, 8, 9 Oct
    visited_this_quarter = add("丁本季已访", date(2025, 1, 6), date(2026, 10, 8))
    visited_last_quarter = add("戊上季已访", date(2025, 1, 6), date(2026, 8, 15))
    missed_a_quarter = add("己上上季", date(2025, 1, 6), date(2026, 5, 1))
    add("庚别站", date(2026, 9, 22), community="community_b1")

    b = browser("staff_a")
    summary = b.get("/visits").text
    assert "和平社区" in summary and "幸福社区" in summary and "光明社区" not in summary
    page = b.get(f"/visits?community={world.units.community_a1.id}").text
    first = page[page.index('id="first-visit-rows"') : page.index('id="quarterly-visits"')]
    assert [name in first for name in ("乙已超期", "丙今天到期", "甲新登记")] == [True] * 3
    assert first.index("乙已超期") < first.index("丙今天到期") < first.index("甲新登记")
    assert "2026-10-12" in _row(f"first-{due_12th}", first)
    assert "overdue" not in _row(f"first-{due_12th}", first)
    assert "2026-10-09" in _row(f"first-{due_today}", first)
    assert "overdue" not in _row(f"first-{due_today}", first)
    late = _row(f"first-{overdue}", first)
    assert 'class="overdue"' in late and "2026-09-30" in late
    assert "庚别站" not in page

    quarterly = page[page.index('id="quarterly-visit-rows"') :]
    assert "丁本季已访" not in quarterly and f"quarterly-{visited_this_quarter}" not in quarterly
    assert "2026-12-31" in _row(f"quarterly-{visited_last_quarter}", quarterly)
    assert 'class="overdue"' in _row(f"quarterly-{missed_a_quarter}", quarterly)
    # 王秀英 was registered before dates were kept and never visited: overdue too.
    assert 'class="overdue"' in _row(f"quarterly-{world.retiree_a1.id}", quarterly)
    assert "待首次走访（3 人）" in page and "本季度待走访（3 人）" in page
    counts = summary[summary.index("和平社区") :].split("</tr>")[0]
    assert "其中 1 人超期" in counts and "其中 2 人超期" in counts


def test_beyond_the_holiday_calendar_due_dates_are_estimated_and_lateness_still_shows(
    world: World, browser, engine, console_app: FastAPI
) -> None:
    # 2031 is in neither chinesecalendar nor config/working_days.yml: Monday to Friday counts.
    console_app.dependency_overrides[local_today] = lambda: date(2031, 3, 10)  # a Monday
    late = _add_retiree(
        engine, "community_a1", world, name="甲晚了", registered_on=date(2031, 2, 24)
    )
    today = _add_retiree(
        engine, "community_a1", world, name="乙今天", registered_on=date(2031, 3, 3)
    )

    b = browser("staff_a")
    page = b.get(f"/visits?community={world.units.community_a1.id}").text
    assert "标“估算”的期限是按周一至周五推算的" in page  # and what to do about it
    first = page[page.index('id="first-visit-rows"') : page.index('id="quarterly-visits"')]
    overdue = _row(f"first-{late}", first)
    assert 'class="overdue"' in overdue and "2031-03-03" in overdue and "（估算）" in overdue
    due_today = _row(f"first-{today}", first)
    assert "2031-03-10" in due_today and "overdue" not in due_today and "（估算）" in due_today
    summary = b.get("/visits").text
    counts = summary[summary.index("和平社区") :].split("</tr>")[0]
    first_cell = counts[counts.index('data-label="待首次走访">') :].split("</td>")[0]
    assert first_cell.endswith('>2 · <span class="overdue">其中 1 人超期</span>')
    profile = b.get(f"/retirees/{today}").text
    visit_due = profile[profile.index('id="visit-due"') :].split("</p>")[0]
    assert "2031-03-10" in visit_due and "（估算）" in visit_due


# --------------------------------------------------------------------------- import, export


def test_a_broken_import_row_is_reported_and_the_good_rows_are_saved(
    world: World, browser, engine
) -> None:
    b = browser("staff_a")
    result = _upload(
        b,
        [
            ["赵一", "13900001111", "1940-05-06", "和平社区", "", "是", "", "", "", "", ""],
            ["钱二", "12345", "1941-02-03", "和平社区", "", "", "", "", "", "", ""],
            ["孙三", "139 0000 3333", "1942年3月4日", "幸福社区", "", "", "", "低保", "", "", ""],
        ],
    )
    assert result.status_code == 200
    text = result.text
    assert "新建 2 人" in text and "1 行未导入" in text
    rejected = text[text.index('id="rejected-rows"') :]
    assert "<td" in rejected and ">3<" in rejected and "12345" in rejected and "电话" in rejected
    with Session(engine) as session:
        names = set(session.scalars(select(Retiree.name)))
        phone = session.scalars(
            select(RetireePhone.number).join(Retiree).where(Retiree.name == "孙三")
        ).one()
    assert {"赵一", "孙三"} <= names and "钱二" not in names and phone == "+8613900003333"
    entry = _audit(engine, "import_retirees")[-1]
    assert entry.actor_id == world.staff_a.id
    assert entry.detail == {
        "file": "名册.csv",
        "created": 2,
        "updated": 0,
        "unchanged": 0,
        "rejected": 1,
    }


def test_staff_import_only_into_their_own_units(world: World, browser, engine) -> None:
    rows = [
        ["周四", "13900004444", "", "光明社区", "", "", "", "", "", "", ""],  # station B's
        ["改B1", "+8613933334444", "", "和平社区", "", "", "", "", "", "", ""],  # B1's person
        ["吴五", "13900005555", "", "", "", "", "", "", "", "", ""],  # no community
        ["郑六", "13900006666", "", "A2", "", "", "", "", "", "", ""],  # by code: fine
    ]
    text = _upload(browser("staff_a"), rows, "r.csv").text
    assert "新建 1 人" in text and "3 行未导入" in text
    assert "社区不是您负责的社区" in text and "不能由您修改" in text and "请填写社区" in text
    with Session(engine) as session:
        names = set(session.scalars(select(Retiree.name)))
    assert "郑六" in names and not names & {"周四", "改B1", "吴五"}
    assert _retiree(engine, world.retiree_b1.id).community_id == world.units.community_b1.id
    # An admin imports as the command line does.
    assert "新建 2 人" in _upload(browser("admin"), rows[:1] + rows[2:3], "r.csv").text


def test_an_unusable_file_is_refused_next_to_the_field(world: World, browser, engine) -> None:
    b = browser("staff_a")
    b.get("/retirees/import")
    wrong = b.client.post(
        "/retirees/import",
        data={"csrf_token": b.csrf},
        files={"file": ("名册.xls", b"\xd0\xcf\x11\xe0", "application/vnd.ms-excel")},
    )
    assert wrong.status_code == 422 and "只能导入 .xlsx 或 .csv 文件" in wrong.text
    header = b.client.post(
        "/retirees/import",
        data={"csrf_token": b.csrf},
        files={"file": ("r.csv", "姓名,年龄\n张三,80\n".encode(), "text/csv")},
    )
    assert header.status_code == 422 and "无法导入" in header.text and "电话/phone" in header.text
    no_csrf = b.client.post("/retirees/import", files={"file": ("r.csv", b"x", "text/csv")})
    assert no_csrf.status_code == 403
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Retiree)) == 2


def test_an_export_holds_only_the_persons_scope(world: World, browser, engine) -> None:
    staff_csv = browser("staff_a").get("/retirees/export.csv")
    assert staff_csv.status_code == 200
    assert (
        staff_csv.headers["content-disposition"] == 'attachment; filename="retirees-2026-10-09.csv"'
    )
    rows = list(csv.reader(io.StringIO(staff_csv.content.decode("utf-8-sig"))))
    assert rows[0] == HEADER
    # "+86..." would be a formula to a spreadsheet: written as text (the import takes it back).
    assert [(r[0], r[1], r[3]) for r in rows[1:]] == [("王秀英", "'+8613911112222", "和平社区")]
    admin_xlsx = browser("admin").get("/retirees/export.xlsx")
    sheet = load_workbook(io.BytesIO(admin_xlsx.content), read_only=True).worksheets[0]
    phones = {row[1] for row in sheet.iter_rows(min_row=2, values_only=True)}
    assert phones == {"+8613911112222", "+8613933334444"}
    staff_entry, admin_entry = _audit(engine, "export_retirees")
    assert staff_entry.actor_id == world.staff_a.id and staff_entry.detail["exported"] == 1
    assert admin_entry.detail == {"file": "retirees-2026-10-09.xlsx", "exported": 2}
