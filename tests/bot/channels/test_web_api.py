"""POST /api/v1/messages: one turn per call for other apps, behind a staff member's personal
token (the same kind as /api/v1/cases and /nlu/parse)."""

from __future__ import annotations

import shutil
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from bot.runtime.app import create_app
from config.settings import Settings
from storage.db import transaction
from storage.models import ApiToken, Case, MessagingIdentity, Retiree, Role
from storage.tokens import hash_token
from tests.factories import make_retiree, make_staff, make_unit_tree

TOKEN = "hlt_an-integration-s-token"  # made for a staff member by `hotline users token`


def personal_token(engine: Engine, token: str, role: Role = Role.STAFF) -> None:
    with transaction(engine) as session:
        holder = make_staff(session, role, username=f"app-{role.value}")
        session.add(ApiToken(staff_id=holder.id, name="bridge", token_hash=hash_token(token)))


def app_client(db_url: str, engine: Engine, trained_nlu_dir: Path, tmp_path: Path) -> TestClient:
    shutil.copytree(trained_nlu_dir / "nlu-cache", tmp_path / "nlu-cache")
    personal_token(engine, TOKEN)
    settings = Settings(database_url=db_url, data_dir=tmp_path, _env_file=None)
    return TestClient(create_app(settings, engine))


def linked_person(engine: Engine, sender: str) -> None:
    with transaction(engine) as session:
        tree = make_unit_tree(session)
        retiree = make_retiree(session, tree.community_a1, name="王秀英", age=75)
        retiree.identities.append(MessagingIdentity(channel="web", address=sender))


def post(client: TestClient, token: str | None = TOKEN, **body: object):  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.post("/api/v1/messages", json=body, headers=headers)


def test_a_conversation_through_the_api_files_a_case(
    db_url: str, engine: Engine, trained_nlu_dir: Path, tmp_path: Path
) -> None:
    linked_person(engine, "bridge-user-1")
    with app_client(db_url, engine, trained_nlu_dir, tmp_path) as client:
        first = post(
            client, sender="bridge-user-1", text="我想报销药费，门诊的，三百块", message_id="m1"
        )
        assert first.status_code == 200, first.text
        reply = first.json()["replies"][-1]
        assert "票据" in reply["text"]
        assert [c["label"] for c in reply["choices"]] == ["上门来取", "自己送去"]
        second = post(client, sender="bridge-user-1", choice="collect", message_id="m2")
        assert "对吗" in second.json()["replies"][-1]["text"]
        done = post(client, sender="bridge-user-1", choice="yes", message_id="m3").json()
        assert done["cases"] == [
            {
                "number": "2026-000001",
                "category": "medication_reimbursement",
                "priority": 3,
                "queue": "A1",
            }
        ]
        again = post(client, sender="bridge-user-1", choice="yes", message_id="m3").json()
        # Sent again (a retry after a lost answer): the same answer, nothing done twice.
        assert again["redelivered"] is True and again["cases"] == done["cases"]
        assert again["replies"] == done["replies"]
    with transaction(engine) as session:
        case = session.scalars(select(Case)).one()
        assert case.channel == "web" and case.retiree.name == "王秀英"


def test_without_the_token_nothing_runs(
    db_url: str, engine: Engine, trained_nlu_dir: Path, tmp_path: Path
) -> None:
    with app_client(db_url, engine, trained_nlu_dir, tmp_path) as client:
        for token in (None, "wrong", TOKEN + "x"):
            refused = post(client, token=token, sender="x", text="我摔倒了")
            assert refused.status_code == 401
            assert refused.headers["www-authenticate"] == "Bearer"
    with transaction(engine) as session:
        assert session.scalars(select(Case)).all() == []


def test_bad_bodies_say_what_is_wrong(
    db_url: str, engine: Engine, trained_nlu_dir: Path, tmp_path: Path
) -> None:
    with app_client(db_url, engine, trained_nlu_dir, tmp_path) as client:
        missing = post(client, text="你好")
        assert missing.status_code == 422
        assert missing.json()["detail"][0]["loc"] == ["body", "sender"]
        empty = post(client, sender="a")
        assert empty.status_code == 422 and empty.json()["detail"] == "give text or a choice"
        extra = post(client, sender="a", text="hi", colour="red")
        assert extra.status_code == 422


def test_an_unknown_sender_is_registered_on_the_web_channel(
    db_url: str, engine: Engine, trained_nlu_dir: Path, tmp_path: Path
) -> None:
    with transaction(engine) as session:
        make_unit_tree(session)
    with app_client(db_url, engine, trained_nlu_dir, tmp_path) as client:
        for text in ("你好", "李桂兰", "住在光明社区", "13912345678", "对"):
            result = post(client, sender="web-42", text=text)
            assert result.status_code == 200
    with transaction(engine) as session:
        person = session.scalars(select(Retiree).where(Retiree.name == "李桂兰")).one()
        assert [(i.channel, i.address) for i in person.identities] == [("web", "web-42")]


def test_a_registered_person_writing_from_the_web_is_linked_not_registered_twice(
    db_url: str, engine: Engine, trained_nlu_dir: Path, tmp_path: Path
) -> None:
    """Her name and her registered phone: the web account is linked to her profile (staff
    confirm it by a call, the registration case says so), no second profile. Someone else's
    name with that phone is a new person (a spouse sharing a phone): the number is left for
    staff to check, never linked."""
    with transaction(engine) as session:
        tree = make_unit_tree(session)
        make_retiree(session, tree.community_b1, name="李桂兰", phone="+8613912345678")
    with app_client(db_url, engine, trained_nlu_dir, tmp_path) as client:
        for text in ("你好", "李桂兰", "住在光明社区", "13912345678"):
            post(client, sender="web-7", text=text)
        linked = post(client, sender="web-7", text="对").json()
        assert "李桂兰您好，找到您的登记了" in linked["replies"][0]["text"]
        for text in ("你好", "张建国", "住在光明社区", "13912345678", "对"):
            post(client, sender="web-8", text=text)
    with transaction(engine) as session:
        people = {r.name: r for r in session.scalars(select(Retiree))}
        assert sorted(people) == ["张建国", "李桂兰"]
        her = people["李桂兰"]
        assert [(i.channel, i.address) for i in her.identities] == [("web", "web-7")]
        assert [p.number for p in people["张建国"].phones] == []  # not his to take
        cases = {c.retiree.name: c for c in session.scalars(select(Case))}
        assert "confirm with a call" in cases["李桂兰"].details["problems"][0]
        assert "already belongs to retiree" in cases["张建国"].details["problems"][0]


def test_one_kind_of_token_for_every_json_route(
    db_url: str, engine: Engine, trained_nlu_dir: Path, tmp_path: Path
) -> None:
    """The personal token that works on /api/v1/cases works here and on /nlu/parse; a
    volunteer's token may not speak for retirees (403); the old HOTLINE_API_TOKENS are no
    longer read."""
    shutil.copytree(trained_nlu_dir / "nlu-cache", tmp_path / "nlu-cache")
    personal_token(engine, TOKEN)
    personal_token(engine, "hlt_a-volunteer-s", Role.VOLUNTEER)
    settings = Settings(database_url=db_url, data_dir=tmp_path, api_tokens="old", _env_file=None)
    with TestClient(create_app(settings, engine)) as client:
        assert client.get("/api/v1/cases", headers=bearer(TOKEN)).status_code == 200
        assert post(client, sender="a", text="你好").status_code == 200
        parsed = client.post("/nlu/parse", json={"text": "你好"}, headers=bearer(TOKEN))
        assert parsed.status_code == 200
        assert client.post("/nlu/parse", json={"text": "你好"}).status_code == 401
        assert post(client, token="hlt_a-volunteer-s", sender="a", text="你好").status_code == 403
        assert post(client, token="old", sender="a", text="你好").status_code == 401


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
