"""Sending one outbox item with a real sender (at a fake provider), then closing it."""

from __future__ import annotations

from typing import Any

from bot.channels.base import SendOutcome

TO = "+8613800000001"


async def send(sender: Any, channel: str, address: str = TO, **payload: Any) -> SendOutcome:
    payload.setdefault("text", "您好，测试")
    payload.setdefault("kind", "emergency_alert")
    try:
        return await sender.send(channel, address, payload, f"K-1:{channel}")
    finally:
        await sender.aclose()
