"""The JSON API under /api/v1: personal tokens made by `hotline users token`, the same scope and
case rules as the console, refusals as JSON."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from bot.cli import app as cli
from storage.models import AuditEntry, Case, CaseStatus
from tests.console.conftest import World

Client = Callable[[str], TestClient]


@pytest.fixture
def token_for(engine: Engine, db_url: str) -> Callable[[str], str]:
    """Make a token the way an operator does, with the CLI."""

    def make(username: str) -> str:
        result = CliRunner().invoke(
            cli,
            ["users", "token", "--username", username, "--name", "test integration"],
            env={"HOTLINE_DATABASE_URL": db_url},
        )
        assert result.exit_code == 0, result.output
        return result.output.strip().splitlines()[-1]

    return make


@pytest.fixture
def api(console_app: FastAPI, token_for: Callable[[str], str]) -> Client:
    def client(username: str) -> TestClient:
        c = TestClient(console_app)
        c.headers["Authorization"] = f"Bearer {token_for(username)}"
        return c

    return client


def _case(engine: Engine, number: str) -> Case:
    with Session(engine) as session:
        return session.scalars(select(Case).where(Case.number == number)).one()


def test_no_token_or_a_wrong_one_is_refused(world: World, console_app: FastAPI) -> None:
    client = TestClient(console_app)
    assert client.get("/api/v1/cases").status_code == 401
    wrong = client.get("/api/v1/cases", headers={"Authorization": "Bearer hlt_not-a-token"})
    assert wrong.status_code == 401 and "personal token" in wrong.json()["detail"]


def test_a_volunteer_lists_only_their_volunteer_cases(world: World, api: Client) -> None:
    body = api("vol_a1").get("/api/v1/cases").json()
    assert [c["number"] for c in body["cases"]] == [world.help_a1.number]
    assert body["cases"][0]["unit"] == "A1" and body["cases"][0]["minutes_left"] > 0
    staff = api("staff_a").get("/api/v1/cases", params={"category": "complaint"}).json()
    assert [c["number"] for c in staff["cases"]] == [world.complaint_a1.number]
    assert api("staff_a").get("/api/v1/cases", params={"unit": "ZZ"}).status_code == 422


def test_case_detail_hides_contact_details_until_claimed(
    world: World, api: Client, engine: Engine
) -> None:
    volunteer = api("vol_a1")
    before = volunteer.get(f"/api/v1/cases/{world.help_a1.number}").json()
    assert before["retiree"]["phones"] is None and before["retiree"]["health_notes"] is None
    assert "claim" in before["allowed_actions"]
    claimed = volunteer.post(f"/api/v1/cases/{world.help_a1.number}/claim")
    assert claimed.status_code == 200 and claimed.json()["status"] == "claimed"
    after = volunteer.get(f"/api/v1/cases/{world.help_a1.number}").json()
    assert after["retiree"]["phones"] == ["+8613911112222"]
    assert after["retiree"]["health_notes"] is None
    with Session(engine) as session:
        audited = session.scalars(
            select(AuditEntry.detail).where(
                AuditEntry.action == "view_retiree", AuditEntry.actor_id == world.volunteer_a1.id
            )
        ).all()
    assert [d["contact"] for d in audited] == [False, True]


def test_refusals_are_json_with_the_reason(world: World, api: Client) -> None:
    volunteer = api("vol_a1")
    complaint = volunteer.get(f"/api/v1/cases/{world.complaint_a1.number}")
    assert complaint.status_code == 403 and complaint.json()["error"] == "not_permitted"
    assert volunteer.get("/api/v1/cases/2026-999999").status_code == 404
    staff = api("staff_a")
    staff.post(f"/api/v1/cases/{world.complaint_a1.number}/claim")
    twice = staff.post(f"/api/v1/cases/{world.complaint_a1.number}/claim")
    assert twice.status_code == 409 and twice.json()["error"] == "illegal_transition"
    empty = staff.post(f"/api/v1/cases/{world.complaint_a1.number}/resolve", json={"text": " "})
    assert empty.status_code == 422 and "outcome" in empty.json()["detail"]


def test_staff_work_a_case_through_to_closed(world: World, api: Client, engine: Engine) -> None:
    staff = api("staff_a")
    number = world.complaint_a1.number
    staff.post(f"/api/v1/cases/{number}/claim")
    assert staff.post(f"/api/v1/cases/{number}/note", json={"text": "已联系"}).status_code == 200
    resolved = staff.post(f"/api/v1/cases/{number}/resolve", json={"text": "已修好"})
    assert resolved.json()["status"] == "resolved"
    staff.post(f"/api/v1/cases/{number}/close", json={})
    assert _case(engine, number).status == CaseStatus.CLOSED
    timeline = staff.get(f"/api/v1/cases/{number}").json()["timeline"]
    assert [i["action"] for i in timeline if i["kind"] == "event"] == [
        "file",
        "claim",
        "note",
        "resolve",
        "close",
    ]


def test_transfer_by_unit_code_and_claim_next(world: World, api: Client, engine: Engine) -> None:
    staff = api("staff_a")
    moved = staff.post(
        f"/api/v1/cases/{world.complaint_a1.number}/transfer",
        json={"reason": "属西街道", "to_unit": "SB"},
    )
    assert moved.status_code == 200 and moved.json()["unit"] == "SB"
    nxt = api("vol_a1").post("/api/v1/queue/claim-next")
    assert nxt.json()["number"] == world.help_a1.number
    assert api("vol2_a1").post("/api/v1/queue/claim-next").json() is None


def test_a_revoked_token_stops_working(world: World, console_app: FastAPI, db_url: str) -> None:
    runner = CliRunner()
    env = {"HOTLINE_DATABASE_URL": db_url}
    made = runner.invoke(cli, ["users", "token", "--username", "staff_a", "--name", "x"], env=env)
    token = made.output.strip().splitlines()[-1]
    token_id = made.output.split("#", 1)[1].split()[0]
    client = TestClient(console_app, headers={"Authorization": f"Bearer {token}"})
    assert client.get("/api/v1/cases").status_code == 200
    revoked = runner.invoke(cli, ["users", "revoke-token", "--id", token_id], env=env)
    assert revoked.exit_code == 0, revoked.output
    assert client.get("/api/v1/cases").status_code == 401


def test_the_api_is_documented(world: World, console_app: FastAPI) -> None:
    paths = TestClient(console_app).get("/openapi.json").json()["paths"]
    assert "/api/v1/cases/{number}/resolve" in paths and "/api/v1/queue/claim-next" in paths
    assert "/queue" not in paths  # the pages are not part of the API
