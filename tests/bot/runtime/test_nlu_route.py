"""`POST /nlu/parse` on the app: Rasa's parse JSON for what a retiree said."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from bot.runtime.app import create_app
from config.settings import Settings
from storage.db import make_engine, transaction
from storage.models import ApiToken, Role
from storage.tokens import hash_token
from tests.factories import make_staff

TOKEN = "hlt_nlu-route-test"


def client(sqlite_url: str, data_dir: Path) -> TestClient:
    """The app, and a client that carries a volunteer's personal token (any person's will do)."""
    engine = make_engine(sqlite_url)
    with transaction(engine) as session:
        holder = make_staff(session, Role.VOLUNTEER, username="nlu-user")
        session.add(ApiToken(staff_id=holder.id, name="nlu", token_hash=hash_token(TOKEN)))
    engine.dispose()
    settings = Settings(database_url=sqlite_url, data_dir=data_dir, _env_file=None)
    return TestClient(create_app(settings), headers={"Authorization": f"Bearer {TOKEN}"})


def test_parse_route_wants_a_personal_token(sqlite_url: str, trained_nlu_dir: Path) -> None:
    """What retirees say is not for anyone to probe."""
    with client(sqlite_url, trained_nlu_dir) as http:
        for headers in ({"Authorization": ""}, {"Authorization": "Bearer hlt_guess"}):
            refused = http.post("/nlu/parse", json={"text": "你好"}, headers=headers)
            assert refused.status_code == 401


def test_parse_route_answers_like_rasa(sqlite_url: str, trained_nlu_dir: Path) -> None:
    with client(sqlite_url, trained_nlu_dir) as http:
        reply = http.post("/nlu/parse", json={"text": "我老伴摔倒了起不来"})
    assert reply.status_code == 200
    body = reply.json()
    assert set(body) >= {"text", "intent", "intent_ranking", "entities", "text_tokens"}
    assert body["text"] == "我老伴摔倒了起不来"
    assert body["intent"] == {"name": "emergency", "confidence": 1.0}
    ranking = [r["confidence"] for r in body["intent_ranking"]]
    assert ranking == sorted(ranking, reverse=True)
    (relation,) = [e for e in body["entities"] if e["entity"] == "relation"]
    assert relation["value"] == "spouse"
    assert body["text"][relation["start"] : relation["end"]] == "老伴"


def test_parse_route_refuses_a_body_without_text(sqlite_url: str, trained_nlu_dir: Path) -> None:
    with client(sqlite_url, trained_nlu_dir) as http:
        reply = http.post("/nlu/parse", json={"txt": "你好"})
        assert reply.status_code == 422
        assert reply.json()["detail"][0]["loc"] == ["body", "text"]
        blank = http.post("/nlu/parse", json={"text": "   "})
        assert blank.status_code == 200
        assert blank.json()["intent"]["name"] == "nlu_fallback"
