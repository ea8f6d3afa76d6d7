"""The Telegram sender against a fake Bot API on 127.0.0.1, through python-telegram-bot."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from bot.channels.telegram.sender import TelegramSender, keyboard_of
from config.settings import Settings
from tests.bot.channels.sending import send
from tests.fakes.telegram_api import FakeTelegramApi


@pytest.fixture
def telegram() -> Iterator[FakeTelegramApi]:
    with FakeTelegramApi(token="123:ABC") as fake:
        yield fake


def telegram_settings(url: str) -> Settings:
    return Settings(telegram_bot_token="123:ABC", telegram_api_url=url, _env_file=None)


@pytest.mark.asyncio
async def test_telegram_message(telegram: FakeTelegramApi) -> None:
    outcome = await send(TelegramSender(telegram_settings(telegram.url)), "telegram", "7")
    assert outcome.sent and outcome.provider_id == "7:1"
    (call,) = telegram.calls_to("sendMessage")
    assert call["chat_id"] == 7 and call["text"] == "您好，测试"
    assert "reply_markup" not in call


@pytest.mark.asyncio
async def test_telegram_choices_become_buttons(telegram: FakeTelegramApi) -> None:
    choices = [["yes", "是"], ["no", "不是"], ["x" * 65, "too long"], ["长" * 21, "63 bytes"]]
    sender = TelegramSender(telegram_settings(telegram.url))
    assert (await send(sender, "telegram", "7", choices=choices)).sent
    markup = telegram.calls_to("sendMessage")[0]["reply_markup"]
    assert markup["inline_keyboard"] == [
        [{"text": "是", "callback_data": "yes"}],
        [{"text": "不是", "callback_data": "no"}],
        [{"text": "63 bytes", "callback_data": "长" * 21}],
    ]


@pytest.mark.asyncio
async def test_telegram_edits_a_post_and_an_edit_made_already_is_done(
    telegram: FakeTelegramApi,
) -> None:
    """An "edit_post" item edits the message (its buttons go); an edit that changes nothing
    (the post says so already) is done, not an error; one of a message gone fails for good."""
    sender = TelegramSender(telegram_settings(telegram.url))
    assert (await send(sender, "telegram", "7", choices=[["claim:1", "认领"]])).sent
    edit = {"kind": "edit_post", "case": "2026-000001", "message_id": 1, "text": "已由张三认领"}
    for _ in range(2):  # the second: "message is not modified"
        outcome = await sender.send("telegram", "7", edit, "edit_post:7:1")
        assert outcome.sent and outcome.provider_id is None, outcome.error
    assert telegram.messages[(7, 1)]["text"] == "已由张三认领"
    assert "reply_markup" not in telegram.messages[(7, 1)]
    gone = await sender.send("telegram", "7", {**edit, "message_id": 99}, "edit_post:7:99")
    assert not gone.sent and gone.permanent and "not found" in gone.error
    await sender.aclose()


def test_inline_keyboard_of_nothing() -> None:
    assert keyboard_of([]) is None
    assert keyboard_of([["x" * 70, "long"]]) is None


@pytest.mark.asyncio
@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")  # inside PTB
async def test_telegram_flood_control_is_retried_after_its_delay(
    telegram: FakeTelegramApi,
) -> None:
    telegram.fail("sendMessage", error_code=429, description="Too Many Requests", retry_after=9)
    outcome = await send(TelegramSender(telegram_settings(telegram.url)), "telegram", "7")
    assert not outcome.sent and not outcome.permanent
    assert outcome.retry_after_s == 9


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "code, description",
    [
        (403, "Forbidden: bot was blocked by the user"),
        (400, "Bad Request: chat not found"),
    ],
)
async def test_telegram_blocked_or_unknown_chat_fails_for_good(
    telegram: FakeTelegramApi, code: int, description: str
) -> None:
    telegram.fail("sendMessage", error_code=code, description=description)
    outcome = await send(TelegramSender(telegram_settings(telegram.url)), "telegram", "7")
    assert not outcome.sent and outcome.permanent
    assert description.split(": ", 1)[1].lower() in outcome.error.lower()


@pytest.mark.asyncio
async def test_telegram_server_error_is_retried(telegram: FakeTelegramApi) -> None:
    telegram.fail("sendMessage", error_code=502, description="Bad Gateway")
    outcome = await send(TelegramSender(telegram_settings(telegram.url)), "telegram", "7")
    assert not outcome.sent and not outcome.permanent


@pytest.mark.asyncio
async def test_telegram_unreachable_is_retried() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sender = TelegramSender(telegram_settings(f"http://127.0.0.1:{port}"))
    outcome = await send(sender, "telegram", "7")
    assert not outcome.sent and not outcome.permanent
