"""A web API for other apps: `POST /api/v1/messages` runs one turn (channel "web") and returns the
replies, so a web chat or a bridge to another messenger can use the bot. It takes the same
personal tokens as the rest of the JSON API (``Authorization: Bearer hlt_...``, made with
`hotline users token` for a staff member or admin; console/auth.py).
A message sent again with the same ``message_id`` (a retry after a lost answer) gets the first
answer again, its replies and the cases it filed, with ``redelivered: true``; nothing is done
twice."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from bot.channels.base import Conversations, Mounted, conversations
from bot.conversation.deployment import Deployment
from bot.conversation.engine import TurnResult
from bot.conversation.messages import Inbound
from console.auth import staff_token

log = structlog.get_logger(__name__)

CHANNEL = "web"


class MessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sender: str = Field(
        min_length=1, max_length=100, description="The person on your side: a stable id."
    )
    text: str = Field(default="", max_length=4000)
    choice: str | None = Field(
        default=None, max_length=64, description="The value of a choice picked."
    )
    message_id: str | None = Field(
        default=None,
        max_length=100,
        description="Your id of this message: a repeat is answered once.",
    )


class ChoiceOut(BaseModel):
    value: str
    label: str


class ReplyOut(BaseModel):
    text: str
    choices: list[ChoiceOut]
    hints: list[str]
    language: str


class CaseOut(BaseModel):
    number: str
    category: str
    priority: int
    queue: str


class MessageOut(BaseModel):
    replies: list[ReplyOut]
    cases: list[CaseOut]
    redelivered: bool


def mount(app: FastAPI, deployment: Deployment) -> Mounted:
    if deployment.settings.api_tokens:
        log.warning(
            "api_tokens_ignored",
            why="HOTLINE_API_TOKENS is no longer read: make a personal token with "
            "`hotline users token --username <staff> --name <app>` and remove it",
        )
    router = APIRouter(prefix="/api/v1", tags=["messages"], dependencies=[Depends(staff_token)])

    @router.post("/messages", response_model=MessageOut)
    async def post_message(
        body: MessageIn, talk: Annotated[Conversations, Depends(conversations)]
    ) -> dict[str, Any]:
        """Run one turn of the conversation with ``sender`` and return what the bot says."""
        if not body.text.strip() and body.choice is None:
            raise HTTPException(422, detail="give text or a choice")
        inbound = Inbound(
            channel=CHANNEL,
            address=body.sender,
            provider_id=body.message_id,
            received_at=datetime.now(UTC),
            text=body.text,
            choice=body.choice,
        )
        return _out(await talk.turn(inbound))

    app.include_router(router)
    return Mounted("web_api", enabled=True)


def _out(result: TurnResult) -> dict[str, Any]:
    return {
        "replies": [
            {
                "text": r.text,
                "choices": [{"value": c.value, "label": c.label} for c in r.choices],
                "hints": sorted(h.value for h in r.hints),
                "language": r.language,
            }
            for r in result.replies
        ],
        "cases": [
            {
                "number": c.number,
                "category": c.category,
                "priority": c.priority,
                "queue": c.unit_code,
            }
            for c in result.cases
        ],
        "redelivered": result.redelivered,
    }
