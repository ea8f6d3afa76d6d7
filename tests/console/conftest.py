"""The console on a real database (SQLite and PostgreSQL): a world of units, people, retirees and
cases, and a signed-in browser-like client per person."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from bot.runtime.configure import load_deployment
from config.settings import Settings
from console import bind_engine, mount_console
from storage import actions
from storage.models import Case, EmergencyContact, Retiree, Role, Staff
from storage.passwords import hash_password
from storage.permissions import Actor
from tests.factories import UnitTree, make_retiree, make_staff, make_unit_tree

PASSWORD = "correct horse battery"
# Hashed once: argon2 is slow on purpose, and every person of the world shares the password.
PASSWORD_HASH = hash_password(PASSWORD)
CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class World:
    units: UnitTree
    admin: Staff
    staff_a: Staff  # station A (east): serves A1 and A2
    staff_b: Staff  # station B (west)
    volunteer_a1: Staff
    volunteer2_a1: Staff
    retiree_a1: Retiree
    retiree_b1: Retiree
    help_a1: Case  # volunteer-eligible, community A1
    complaint_a1: Case  # staff only
    help_b1: Case  # another station's


def _person(session: Session, role: Role, units: list, username: str, name: str) -> Staff:
    return make_staff(
        session,
        role,
        units,
        username=username,
        name=name,
        phone="+8613700000000",
        password_hash=PASSWORD_HASH,
    )


@pytest.fixture
def world(engine: Engine) -> World:
    with Session(engine, expire_on_commit=False) as session, session.begin():
        units = make_unit_tree(session)
        retiree_a1 = make_retiree(
            session,
            units.community_a1,
            phone="+8613911112222",
            age=86,
            name="王秀英",
            address="和平路 8 号 3 单元 502",
            lives_alone=True,
            health_notes="高血压，膝关节不好",
        )
        retiree_a1.emergency_contacts.append(
            EmergencyContact(name="李明", relation="儿子", phone="+8613800009999")
        )
        retiree_b1 = make_retiree(session, units.community_b1, phone="+8613933334444", age=75)
        w = World(
            units=units,
            admin=_person(session, Role.ADMIN, [units.center], "admin", "管理员甲"),
            staff_a=_person(session, Role.STAFF, [units.station_a], "staff_a", "张社工"),
            staff_b=_person(session, Role.STAFF, [units.station_b], "staff_b", "赵社工"),
            volunteer_a1=_person(session, Role.VOLUNTEER, [units.community_a1], "vol_a1", "王芳"),
            volunteer2_a1=_person(session, Role.VOLUNTEER, [units.community_a1], "vol2_a1", "刘强"),
            retiree_a1=retiree_a1,
            retiree_b1=retiree_b1,
            help_a1=_file(session, "help_request", retiree_a1, "帮忙买菜"),
            complaint_a1=_file(session, "complaint", retiree_a1, "楼道灯坏了三个月没人修"),
            help_b1=_file(session, "help_request", retiree_b1, "修水龙头"),
        )
    return w


def _file(session: Session, category: str, retiree: Retiree, summary: str) -> Case:
    return actions.file_case(
        session,
        category=category,
        channel="sms",
        actor=Actor.system("retiree"),
        retiree=retiree,
        summary=summary,
        original_text=summary,
    )


@pytest.fixture
def console_app(engine: Engine, tmp_path: Path) -> FastAPI:
    """The console alone, on the test database (the full app mounts the same function)."""
    return make_console_app(engine, tmp_path)


def make_console_app(engine: Engine, tmp_path: Path) -> FastAPI:
    """A console server on ``engine``; two made on one database are two servers of one
    deployment (the same secret key)."""
    settings = Settings(
        database_url=engine.url.render_as_string(hide_password=False),
        data_dir=tmp_path,
        secret_key="test-secret-key-test-secret-key",
        _env_file=None,
    )
    app = FastAPI()
    mount_console(app, load_deployment(settings))
    bind_engine(app, engine)
    return app


class Browser:
    """A TestClient that remembers the page's CSRF token, as a browser's form would send it."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.csrf = ""

    def get(self, url: str, **kw: object) -> object:
        response = self.client.get(url, **kw)  # type: ignore[arg-type]
        found = CSRF_INPUT.search(response.text)
        if found:
            self.csrf = found.group(1)
        return response

    def post(self, url: str, data: dict[str, str] | None = None, *, csrf: bool = True) -> object:
        form = dict(data or {})
        if csrf:
            if not self.csrf:
                self.get("/queue")
            form["csrf_token"] = self.csrf
        return self.client.post(url, data=form, follow_redirects=False)

    def sign_in(self, username: str, password: str = PASSWORD) -> object:
        self.get("/login")
        return self.post("/login", {"username": username, "password": password})


@pytest.fixture
def browser(console_app: FastAPI) -> Iterator[Callable[[str | None], Browser]]:
    """``browser("vol_a1")``: a client signed in as that user (None: signed out)."""
    clients: list[TestClient] = []

    def open_as(username: str | None) -> Browser:
        client = TestClient(console_app)
        clients.append(client)
        b = Browser(client)
        if username is not None:
            response = b.sign_in(username)
            assert response.status_code == 303, response.text  # type: ignore[attr-defined]
            b.get("/queue")
        return b

    yield open_as
    for client in clients:
        client.close()
