"""Sends the outbox's "wecom" items through the WeCom app (wechatpy's enterprise client): case
cards (cards.py), their updates, and text to one person's UserID (an emergency alert, an
escalation reminder, the contact details after a claim, the answer to a command). The access
token is kept in the database for every server, as WeChat's (bot/channels/wechat/sender.py).

A card WeCom took is recorded (with the people it reached and its response code) in the
transaction that marks the item sent. People WeCom does not know (``invaliduser``: left the
organisation, not in the app's visible range) are logged; a text to nobody valid fails."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import requests
import structlog
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from wechatpy.enterprise import WeChatClient as EnterpriseClient
from wechatpy.exceptions import APILimitedException, WeChatClientException
from wechatpy.session import SessionStorage

from bot.channels.base import SendOutcome
from bot.channels.staff_desk import Desk
from bot.channels.wechat.sender import DatabaseTokens
from bot.channels.wecom import cards
from config.i18n import Catalogs
from config.settings import Settings
from storage.models import OutboxItem
from storage.site import site_of

log = structlog.get_logger(__name__)

TIMEOUT_S = 10.0
LIMITED_RETRY_S = 60.0
GONE = (60111, 81013)  # no such UserID; none of the people is in the app's range


class HotlineWeComClient(EnterpriseClient):  # type: ignore[misc]
    def __init__(self, settings: Settings, session: SessionStorage) -> None:
        super().__init__(
            settings.wecom_corp_id, settings.wecom_secret, session=session, timeout=TIMEOUT_S
        )
        self.API_BASE_URL = settings.wecom_api_url.rstrip("/") + "/"

    def fetch_access_token(self) -> dict[str, Any]:
        result: dict[str, Any] = self._fetch_access_token(
            url=f"{self.API_BASE_URL}gettoken",
            params={"corpid": self.corp_id, "corpsecret": self.secret},
        )
        return result


class WeComSender:
    channels = (cards.CHANNEL,)

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.agent_id = settings.wecom_agent_id
        self._client: HotlineWeComClient | None = None
        self._codes: dict[str, str] = {}  # a card's response code, from send to after_sent

    def attach(self, db: Engine) -> None:
        self._client = HotlineWeComClient(self.settings, DatabaseTokens(db))

    async def send(
        self, channel: str, address: str, payload: dict[str, Any], idempotency_key: str
    ) -> SendOutcome:
        if self._client is None:
            return SendOutcome.retry("the WeCom sender has no database (attach was not called)")
        return await asyncio.to_thread(self._send, address, payload, idempotency_key)

    def _send(self, address: str, payload: dict[str, Any], key: str) -> SendOutcome:
        kind = payload.get("kind")
        if kind == cards.CARD:
            body = {
                "touser": "|".join(payload[cards.PEOPLE]),
                "msgtype": "template_card",
                "agentid": self.agent_id,
                "template_card": payload["card"],
                "enable_duplicate_check": 1,
                "duplicate_check_interval": 1800,
            }
            outcome, result = self._call(lambda c: c.post("message/send", data=body))
            if outcome.sent:
                self._codes[key] = str(result.get("response_code") or "")
            return outcome
        if kind == cards.UPDATE:
            body = {
                "userids": payload[cards.PEOPLE],
                "agentid": self.agent_id,
                "response_code": payload["response_code"],
                "button": {"replace_name": payload["line"]},
            }
            outcome, _ = self._call(lambda c: c.post("message/update_template_card", data=body))
            return outcome
        text = str(payload.get("text") or "")
        if not text:
            return SendOutcome.failed(f"nothing to send (a {kind!r} item without text)")
        body = {
            "touser": address,
            "msgtype": "text",
            "agentid": self.agent_id,
            "text": {"content": text[:2000]},
        }
        outcome, result = self._call(lambda c: c.post("message/send", data=body))
        if outcome.sent and address in str(result.get("invaliduser") or "").split("|"):
            return SendOutcome.failed(f"WeCom does not know the UserID {address!r} in this app")
        return outcome

    def _call(
        self, call: Callable[[HotlineWeComClient], Any]
    ) -> tuple[SendOutcome, dict[str, Any]]:
        assert self._client is not None
        try:
            result = call(self._client)
        except APILimitedException as exc:
            return SendOutcome.retry(f"WeCom API limit: {exc.errmsg}", LIMITED_RETRY_S), {}
        except WeChatClientException as exc:
            error = f"WeCom error {exc.errcode}: {exc.errmsg}"
            if exc.errcode in GONE:
                return SendOutcome.failed(error), {}
            return SendOutcome.retry(error), {}
        except requests.RequestException as exc:
            return SendOutcome.retry(f"WeCom not reached: {type(exc).__name__}: {exc}"[:300]), {}
        result = result if isinstance(result, dict) else {}
        if result.get("invaliduser"):
            log.warning("wecom_unknown_users", users=str(result["invaliduser"])[:200])
        return SendOutcome.ok(str(result.get("msgid") or "") or None), result

    def after_sent(self, session: Session, item: OutboxItem, outcome: SendOutcome) -> None:
        """A card WeCom took: recorded, with its response code (updates need one)."""
        if item.payload.get("kind") == cards.CARD:
            code = self._codes.pop(item.idempotency_key, "")
            cards.record_card(session, item.payload, item.case_id, code)

    def upkeep(self, session: Session, *, catalogs: Catalogs, language: str | None) -> int:
        """Cards of cases taken elsewhere, withdrawn, done, or back in the queue."""
        site = site_of(session)
        desk = Desk(
            catalogs,
            site.categories,
            self.settings.default_language,
            site.tz,
            cards.CHANNEL,
        )
        return cards.keep_cards_up(session, desk)

    async def aclose(self) -> None:
        if self._client is not None:
            self._client._http.close()
