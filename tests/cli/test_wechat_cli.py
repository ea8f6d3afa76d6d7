"""`hotline wechat menu`: the menu of config/wechat.yml, sent through wechatpy to a fake WeChat
API (the access token kept in the database), or shown."""

from __future__ import annotations

import json

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from bot.cli import app
from storage.models import ProviderToken
from tests.bot.channels.wechat.conftest import APP_ID, SECRET
from tests.fakes.wechat_api import FakeWeChatApi


def env(db_url: str, fake: FakeWeChatApi) -> dict[str, str]:
    return {
        "HOTLINE_DATABASE_URL": db_url,
        "HOTLINE_WECHAT_TOKEN": "t",
        "HOTLINE_WECHAT_APP_ID": APP_ID,
        "HOTLINE_WECHAT_APP_SECRET": SECRET,
        "HOTLINE_WECHAT_API_URL": fake.url,
    }


def test_the_menu_is_sent_to_wechat(db_url: str, engine: Engine) -> None:
    with FakeWeChatApi(APP_ID, SECRET) as fake:
        result = CliRunner().invoke(app, ["wechat", "menu"], env=env(db_url, fake))
        assert result.exit_code == 0, result.output
        assert "menu sent: 3 top buttons, 8 in all" in result.output
        [menu] = fake.menus
        fake.fail("/cgi-bin/menu/create", 40018, "invalid button name size")
        refused = CliRunner().invoke(app, ["wechat", "menu"], env=env(db_url, fake))
    first, emergency, contact = menu["button"]
    assert first["name"] == "我要办事"
    assert [b["key"] for b in first["sub_button"]][:2] == ["MEDICINE", "HOSPITAL"]
    assert emergency == {"type": "click", "name": "紧急求助", "key": "EMERGENCY"}
    assert contact["sub_button"][-1]["key"] == "LINK"
    with Session(engine) as session:
        assert session.scalars(select(ProviderToken.value)).all() == ["TOKEN-1"]
    assert refused.exit_code == 1
    assert "WeChat refused the menu: 40018 invalid button name size" in refused.output


def test_the_menu_can_be_shown_without_an_account(db_url: str) -> None:
    result = CliRunner().invoke(
        app, ["wechat", "menu", "--show"], env={"HOTLINE_DATABASE_URL": db_url}
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["button"][1]["key"] == "EMERGENCY"


def test_without_the_account_settings_nothing_is_sent(db_url: str) -> None:
    result = CliRunner().invoke(app, ["wechat", "menu"], env={"HOTLINE_DATABASE_URL": db_url})
    assert result.exit_code == 1
    assert "HOTLINE_WECHAT_APP_SECRET" in result.output
