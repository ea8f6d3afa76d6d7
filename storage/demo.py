"""Demo data: a center, 2 stations, 4 communities, staff, volunteers, ~30 retirees, a few cases
and this quarter's round of home visits in the east (given to 陈静 and 孙志愿, nothing sent).

Safe to run twice: everything is matched by unit code, username or phone and created only once.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from storage import actions, campaigns
from storage.models import (
    Campaign,
    CampaignKind,
    Case,
    EmergencyContact,
    Hardship,
    Retiree,
    RetireePhone,
    Role,
    SelfCare,
    Staff,
    Unit,
    UnitLevel,
    Visit,
)
from storage.passwords import hash_password
from storage.permissions import Actor
from storage.types import utcnow

DEMO_PASSWORD = "demo-pass-2026"

UNITS = [
    # code, level, parent, Chinese name, English name
    ("CTR", UnitLevel.CENTER, None, "油田退休职工服务中心", "Oil-field Retiree Service Center"),
    ("ST-E", UnitLevel.STATION, "CTR", "东区服务总站", "East District Station"),
    ("ST-W", UnitLevel.STATION, "CTR", "西区服务总站", "West District Station"),
    ("C-HP", UnitLevel.COMMUNITY, "ST-E", "和平社区退管站", "Heping Community"),
    ("C-XF", UnitLevel.COMMUNITY, "ST-E", "幸福社区退管站", "Xingfu Community"),
    ("C-GM", UnitLevel.COMMUNITY, "ST-W", "光明社区退管站", "Guangming Community"),
    ("C-CY", UnitLevel.COMMUNITY, "ST-W", "朝阳社区退管站", "Chaoyang Community"),
]

STAFF = [
    # username, name, role, units, phone
    ("admin", "王主任", Role.ADMIN, ["CTR"], "+8613900000001"),
    ("li.east", "李红", Role.STAFF, ["ST-E"], "+8613900000002"),
    ("zhao.west", "赵强", Role.STAFF, ["ST-W"], "+8613900000003"),
    ("chen.heping", "陈静", Role.STAFF, ["C-HP"], "+8613900000004"),
    ("vol.sun", "孙志愿", Role.VOLUNTEER, ["C-HP", "C-XF"], "+8613900000005"),
    ("vol.zhou", "周热心", Role.VOLUNTEER, ["C-GM"], "+8613900000006"),
]

SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗梁宋郑谢韩唐冯于董萧"
GIVEN = ["秀英", "桂兰", "建国", "志强", "淑珍", "玉兰", "德明", "国华", "凤英", "文斌"]
STREETS = ["和平路", "幸福街", "光明大道", "朝阳巷", "石油新村", "胜利小区"]
RELATIONS = ["儿子", "女儿", "老伴", "侄子", "邻居"]


@dataclass
class DemoReport:
    units: int
    staff: int
    retirees: int
    cases: int
    campaigns: int = 0


def _units(session: Session) -> dict[str, Unit]:
    existing = {u.code: u for u in session.scalars(select(Unit))}
    for code, level, parent, zh, en in UNITS:
        if code not in existing:
            unit = Unit(
                code=code, level=level, parent=existing.get(parent or ""), name_zh=zh, name_en=en
            )
            session.add(unit)
            existing[code] = unit
    session.flush()
    return existing


def _staff(session: Session, units: dict[str, Unit]) -> int:
    known = set(session.scalars(select(Staff.username)))
    added = 0
    password_hash = hash_password(DEMO_PASSWORD)
    for username, name, role, codes, phone in STAFF:
        if username in known:
            continue
        session.add(
            Staff(
                username=username,
                name=name,
                role=role,
                units=[units[c] for c in codes],
                phone=phone,
                on_duty=role != Role.VOLUNTEER,
                password_hash=password_hash,
            )
        )
        added += 1
    session.flush()
    return added


# The demo retirees' one-key phones: +8613800000001 to +8613800000030 (`hotline chat --phone`).
DEMO_PHONES = tuple(f"+86138{n:08d}" for n in range(1, 31))


def _retirees(session: Session, units: dict[str, Unit], today: date) -> list[Retiree]:
    rng = random.Random(2026)  # the same people every time
    communities = [units[c] for c in ("C-HP", "C-XF", "C-GM", "C-CY")]
    known = set(session.scalars(select(RetireePhone.number)))
    created = []
    for n, phone in enumerate(DEMO_PHONES):
        age = rng.choice([66, 72, 78, 81, 85, 88, 91, 94])
        name = rng.choice(SURNAMES) + rng.choice(GIVEN)
        if phone in known:
            continue
        registered, visits = _visit_history(n, rng, today)
        retiree = Retiree(
            name=name,
            birth_date=date(today.year - age, rng.randint(1, 12), rng.randint(1, 28)),
            community=communities[n % 4],
            address=f"{rng.choice(STREETS)}{rng.randint(1, 40)}号{rng.randint(1, 6)}单元",
            lives_alone=rng.random() < 0.3,
            self_care=rng.choice(
                [SelfCare.INDEPENDENT] * 4 + [SelfCare.PARTLY_DEPENDENT, SelfCare.DEPENDENT]
            ),
            hardship=rng.choice([Hardship.NONE] * 5 + [Hardship.HARDSHIP, Hardship.DIBAO]),
            health_class=rng.choice(["健康", "基本健康", "慢性病"]),
            party_member=rng.random() < 0.4,
            preferred_language="en" if n == 7 else "zh",
            registered_on=registered,
            phones=[RetireePhone(number=phone, label="一键通")],
            emergency_contacts=[
                EmergencyContact(
                    name=rng.choice(SURNAMES) + rng.choice(GIVEN),
                    relation=rng.choice(RELATIONS),
                    phone=f"+86137{n + 1:08d}",
                )
            ],
        )
        retiree.visits.extend(visits)
        session.add(retiree)
        created.append(retiree)
    session.flush()
    return created


def _visit_history(n: int, rng: random.Random, today: date) -> tuple[date, list[Visit]]:
    """When retiree ``n`` registered and when staff visited, as a community keeps it: most were
    visited this quarter, some last quarter (a quarterly visit is due), one registered two days
    ago (a first visit due soon) and one ten days ago whom nobody visited yet (overdue)."""
    quarter = date(today.year, 3 * ((today.month - 1) // 3) + 1, 1)
    registered = today - timedelta(days=365 * (1 + n % 4) + rng.randint(0, 200))
    kind = n % 10
    if kind == 8:
        return today - timedelta(days=2), []
    if kind == 9:
        return today - timedelta(days=10), []
    last = (
        quarter - timedelta(days=rng.randint(10, 80))  # last quarter: due again
        if kind in (3, 6)
        else max(quarter, today - timedelta(days=rng.randint(0, 60)))  # this quarter
    )
    earlier = last - timedelta(days=rng.randint(80, 100))
    notes = rng.choice(VISIT_NOTES)
    return registered, [
        Visit(visited_on=earlier, notes=notes),
        Visit(visited_on=last, notes=rng.choice(VISIT_NOTES)),
    ]


VISIT_NOTES = [
    "身体不错，精神好",
    "血压偏高，提醒按时吃药",
    "家里暖气不热，已报物业",
    "子女常来看望",
]


DEMO_CASES = [
    ("medication_reimbursement", "上个月的药费单据想报销，大概三百五十块"),
    ("help_request", "家里水龙头坏了，想请人来修一下"),
    ("hospital_transfer", "老伴要从县医院转到市中心医院，手续怎么办"),
    ("complaint", "物业一直不修电梯，我反映好几次了"),
    ("policy_question", "今年的活动经费什么时候发"),
    ("help_request", "想订一份明年的老年报"),
]


def seed_demo(session: Session, today: date | None = None) -> DemoReport:
    """Create whatever part of the demo data is missing; return how much was added."""
    today = today or date.today()
    units_before = session.scalar(select(func.count()).select_from(Unit)) or 0
    units = _units(session)
    staff_added = _staff(session, units)
    retirees = _retirees(session, units, today)
    cases = 0
    if retirees and not session.scalar(select(func.count()).select_from(Case)):
        for retiree, (category, words) in zip(retirees, DEMO_CASES, strict=False):
            actions.file_case(
                session,
                category=category,
                channel="phone",
                actor=Actor.system("demo"),
                retiree=retiree,
                summary=words[:40],
                original_text=words,
            )
            cases += 1
    return DemoReport(
        units=len(units) - units_before,
        staff=staff_added,
        retirees=len(retirees),
        cases=cases,
        campaigns=_visit_round(session, units, today),
    )


def _visit_round(session: Session, units: dict[str, Unit], today: date) -> int:
    """This quarter's visits to the 80+ of Heping and Xingfu, once (1 when it was added)."""
    if session.scalar(select(func.count()).select_from(Campaign)):
        return 0
    by_name = {s.username: s for s in session.scalars(select(Staff))}
    admin, visitors = by_name.get("admin"), [by_name.get("chen.heping"), by_name.get("vol.sun")]
    if admin is None or None in visitors:
        return 0
    last_month = date(today.year, (today.month - 1) // 3 * 3 + 3, 1)
    quarter_end = (last_month + timedelta(days=32)).replace(day=1) - timedelta(days=1)
    new = campaigns.NewCampaign(
        kind=CampaignKind.VISITS,
        title="本季度走访（80岁以上）",
        audience=campaigns.Audience(communities=(units["C-HP"].id, units["C-XF"].id), min_age=80),
        assignees=tuple(v.id for v in visitors if v is not None),
        due_on=quarter_end,
    )
    try:
        with session.begin_nested():
            campaigns.start(session, new, by=admin, now=utcnow())
    except campaigns.CampaignError:
        return 0  # nobody of 80 in those communities
    return 1


def database_is_empty(session: Session) -> bool:
    return not session.scalar(select(func.count()).select_from(Unit))
