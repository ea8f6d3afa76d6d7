"""The app with the WeChat channel on, on a real server on 127.0.0.1, and WeChat's side of the
webhook: messages signed (plain mode) or encrypted (safe mode) with wechatpy, as WeChat sends
them, and the fake WeChat API the sender talks to."""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select
from wechatpy.crypto import WeChatCrypto
from wechatpy.utils import WeChatSigner

from bot.runtime.app import create_app
from config.settings import Settings
from storage.db import transaction
from storage.models import MessagingIdentity, OutboxItem, Retiree
from tests.bot.channels.serving import free_socket, served, with_trained_model
from tests.factories import make_retiree, make_unit_tree
from tests.fakes.wechat_api import FakeWeChatApi

TOKEN = "wechat-token-for-tests"
APP_ID = "wx1234567890abcdef"
SECRET = "wechat-app-secret-for-tests"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"  # 43 characters
ACCOUNT = "gh_hotline"
OPENID = "oWANG-xiuying-0000000000001"
PHONE = "+8613800000001"

_ids = itertools.count(100000)


def settings_for(db_url: str, data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": db_url,
        "data_dir": data_dir,
        "wechat_token": TOKEN,
        "wechat_app_id": APP_ID,
        "wechat_app_secret": SECRET,
        "run_worker": False,
    }
    values.update(overrides)
    return Settings(**values, _env_file=None)


def text_xml(content: str, msg_id: int, openid: str = OPENID, at: int | None = None) -> str:
    return (
        f"<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName>"
        f"<FromUserName><![CDATA[{openid}]]></FromUserName>"
        f"<CreateTime>{at or int(time.time())}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
        f"<Content><![CDATA[{content}]]></Content><MsgId>{msg_id}</MsgId></xml>"
    )


def voice_xml(recognition: str, msg_id: int, media_id: str = "MEDIA-1") -> str:
    return (
        f"<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName>"
        f"<FromUserName><![CDATA[{OPENID}]]></FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[voice]]></MsgType>"
        f"<MediaId><![CDATA[{media_id}]]></MediaId><Format><![CDATA[amr]]></Format>"
        f"<Recognition><![CDATA[{recognition}]]></Recognition><MsgId>{msg_id}</MsgId></xml>"
    )


def event_xml(event: str, key: str = "", openid: str = OPENID, at: int | None = None) -> str:
    return (
        f"<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName>"
        f"<FromUserName><![CDATA[{openid}]]></FromUserName>"
        f"<CreateTime>{at or int(time.time())}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        f"<Event><![CDATA[{event}]]></Event><EventKey><![CDATA[{key}]]></EventKey></xml>"
    )


def signature(timestamp: str, nonce: str, token: str = TOKEN) -> str:
    signer = WeChatSigner()
    signer.add_data(token, timestamp, nonce)
    return str(signer.signature)


@dataclass
class WeChatSide:
    """What WeChat's servers send to the app, and what they read back."""

    url: str
    http: httpx.Client
    aes_key: str = ""
    nonces: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def post(
        self,
        xml: str,
        *,
        timestamp: str | None = None,
        nonce: str | None = None,
        token: str = TOKEN,
        encrypt: bool | None = None,
    ) -> httpx.Response:
        timestamp = timestamp or str(int(time.time()))
        nonce = nonce or f"nonce{next(self.nonces)}"
        query = {
            "signature": signature(timestamp, nonce, token),
            "timestamp": timestamp,
            "nonce": nonce,
            "openid": OPENID,
        }
        body = xml
        if self.aes_key if encrypt is None else encrypt:
            sealed = WeChatCrypto(TOKEN, self.aes_key or AES_KEY, APP_ID).encrypt_message(
                xml, nonce, timestamp
            )
            encrypted = re.search(r"<Encrypt><!\[CDATA\[(.*?)\]\]></Encrypt>", sealed)
            signed = re.search(r"<MsgSignature><!\[CDATA\[(.*?)\]\]></MsgSignature>", sealed)
            assert encrypted and signed
            body = (
                f"<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName>"
                f"<Encrypt><![CDATA[{encrypted.group(1)}]]></Encrypt></xml>"
            )
            query.update(encrypt_type="aes", msg_signature=signed.group(1))
        return self.http.post(
            f"{self.url}/wechat",
            params=query,
            content=body.encode(),
            headers={"Content-Type": "text/xml"},
        )

    def say(self, content: str, msg_id: int | None = None, openid: str = OPENID) -> httpx.Response:
        return self.post(text_xml(content, msg_id or next(_ids), openid))

    def reply_text(self, response: httpx.Response) -> str:
        """The passive reply's text ("" for "success"), decrypted in safe mode."""
        assert response.status_code == 200, response.text
        if response.text == "success":
            return ""
        xml = response.text
        if self.aes_key:
            timestamp = re.search(r"<TimeStamp>(\d+)</TimeStamp>", xml)
            nonce = re.search(r"<Nonce><!\[CDATA\[(.*?)\]\]></Nonce>", xml)
            signed = re.search(r"<MsgSignature><!\[CDATA\[(.*?)\]\]></MsgSignature>", xml)
            assert timestamp and nonce and signed, xml
            xml = WeChatCrypto(TOKEN, self.aes_key, APP_ID).decrypt_message(
                xml, signed.group(1), timestamp.group(1), nonce.group(1)
            )
        assert f"<ToUserName><![CDATA[{OPENID}]]></ToUserName>" in xml or "FromUserName" in xml
        content = re.search(r"<Content><!\[CDATA\[(.*?)\]\]></Content>", xml, re.S)
        assert content, xml
        return content.group(1)


@contextmanager
def wechat_app(
    db_url: str, engine: Engine, trained_nlu_dir: Path, data_dir: Path, **overrides: Any
) -> Iterator[WeChatSide]:
    with_trained_model(trained_nlu_dir, data_dir)
    sock, url = free_socket()
    settings = settings_for(db_url, data_dir, **overrides)
    with served(create_app(settings, engine), sock), httpx.Client(timeout=60) as http:
        yield WeChatSide(url=url, http=http, aes_key=settings.wechat_aes_key)


@pytest.fixture
def wechat(db_url: str, engine: Engine, trained_nlu_dir: Path, tmp_path: Path) -> Any:
    def start(**overrides: Any) -> Any:
        return wechat_app(db_url, engine, trained_nlu_dir, tmp_path, **overrides)

    return start


@pytest.fixture
def fake_api() -> Iterator[FakeWeChatApi]:
    with FakeWeChatApi(APP_ID, SECRET) as fake:
        yield fake


def registered(engine: Engine, *, linked: bool = True, phone: str = PHONE) -> int:
    """王秀英 of community A1, her WeChat account linked to her profile (or not)."""
    with transaction(engine) as session:
        tree = make_unit_tree(session)
        retiree = make_retiree(session, tree.community_a1, name="王秀英", age=78, phone=phone)
        if linked:
            session.add(MessagingIdentity(retiree=retiree, channel="wechat", address=OPENID))
        return retiree.id


def outbox(engine: Engine, channel: str | None = None) -> list[OutboxItem]:
    with transaction(engine) as session:
        query = select(OutboxItem).order_by(OutboxItem.id)
        if channel is not None:
            query = query.where(OutboxItem.channel == channel)
        return list(session.scalars(query))


def linked_to(engine: Engine, openid: str = OPENID) -> Retiree | None:
    with transaction(engine) as session:
        return session.scalars(
            select(Retiree)
            .join(MessagingIdentity)
            .where(MessagingIdentity.channel == "wechat", MessagingIdentity.address == openid)
        ).first()
