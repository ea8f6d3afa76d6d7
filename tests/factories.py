"""Factories that build test data: units, retirees, staff and cases with sensible defaults."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import date
from functools import cache
from typing import Any

from sqlalchemy.orm import Session

from storage.models import Retiree, RetireePhone, Role, Staff, Unit, UnitLevel

_seq = itertools.count(1)


@dataclass
class UnitTree:
    """A center with two stations; station A has communities A1 and A2, station B has B1."""

    center: Unit
    station_a: Unit
    station_b: Unit
    community_a1: Unit
    community_a2: Unit
    community_b1: Unit


def make_unit(
    session: Session, code: str, level: UnitLevel, parent: Unit | None = None, **kw: Any
) -> Unit:
    unit = Unit(
        code=code,
        level=level,
        parent=parent,
        name_zh=kw.pop("name_zh", f"{code}单位"),
        name_en=kw.pop("name_en", f"Unit {code}"),
        **kw,
    )
    session.add(unit)
    return unit


def make_unit_tree(session: Session) -> UnitTree:
    center = make_unit(session, "C", UnitLevel.CENTER, name_zh="退管中心", name_en="Center")
    station_a = make_unit(
        session, "SA", UnitLevel.STATION, center, name_zh="东街道", name_en="East"
    )
    station_b = make_unit(
        session, "SB", UnitLevel.STATION, center, name_zh="西街道", name_en="West"
    )
    tree = UnitTree(
        center=center,
        station_a=station_a,
        station_b=station_b,
        community_a1=make_unit(
            session, "A1", UnitLevel.COMMUNITY, station_a, name_zh="和平社区", name_en="Heping"
        ),
        community_a2=make_unit(
            session, "A2", UnitLevel.COMMUNITY, station_a, name_zh="幸福社区", name_en="Xingfu"
        ),
        community_b1=make_unit(
            session, "B1", UnitLevel.COMMUNITY, station_b, name_zh="光明社区", name_en="Guangming"
        ),
    )
    session.flush()
    return tree


def make_retiree(
    session: Session,
    community: Unit | None = None,
    *,
    phone: str | None = None,
    age: int | None = None,
    today: date = date(2026, 6, 1),
    **kw: Any,
) -> Retiree:
    """A retiree; ``age`` sets the birth date relative to ``today``."""
    n = next(_seq)
    if age is not None:
        kw.setdefault("birth_date", date(today.year - age, 1, 1))
    retiree = Retiree(name=kw.pop("name", f"测试老人{n}"), community=community, **kw)
    retiree.phones.append(RetireePhone(number=phone or f"+86139{n:08d}"))
    session.add(retiree)
    session.flush()
    return retiree


def make_staff(
    session: Session, role: Role = Role.STAFF, units: list[Unit] | None = None, **kw: Any
) -> Staff:
    n = next(_seq)
    staff = Staff(name=kw.pop("name", f"{role.value}{n}"), role=role, **kw)
    staff.units = list(units or [])
    session.add(staff)
    session.flush()
    return staff


@cache
def shipped_deployment() -> Any:
    """The shipped configuration and handlers, loaded once (bot/runtime/configure.py)."""
    from bot.runtime.configure import load_deployment
    from config.settings import Settings

    return load_deployment(Settings(_env_file=None))
