"""`hotline wechat menu`: the menu of config/wechat.yml, sent through wechatpy to a fake WeChat
API (the access token kept in the database), or shown."""

from __future__ import annotations

import json
from typing import Any

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


def test_a_users_wecom_account_is_linked_unlinked_and_never_shared(
    db_url: str, engine: Engine
) -> None:
    from storage.models import AuditEntry, Staff
    from tests.factories import make_unit_tree

    with Session(engine) as session:
        make_unit_tree(session)
        session.commit()
    runner, env = CliRunner(), {"HOTLINE_DATABASE_URL": db_url}

    def run(*args: str) -> Any:
        return runner.invoke(app, ["users", *args], env=env)

    added = run(
        "add",
        "--username",
        "zhang",
        "--role",
        "staff",
        "--unit",
        "SA",
        "--no-password",
        "--wecom-user",
        "ZhangSan",
    )
    assert added.exit_code == 0, added.output
    assert (
        run(
            "add", "--username", "li", "--role", "volunteer", "--unit", "SA", "--no-password"
        ).exit_code
        == 0
    )
    taken = run("set-wecom", "--username", "li", "--wecom-user", "ZhangSan")
    assert taken.exit_code == 1 and "another user has the WeCom UserID 'ZhangSan'" in taken.output
    assert run("set-wecom", "--username", "li", "--wecom-user", "LiSi").exit_code == 0
    assert run("set-wecom", "--username", "zhang", "--wecom-user", "").exit_code == 0
    with Session(engine) as session:
        linked = dict(session.execute(select(Staff.username, Staff.wecom_user_id)).all())
        assert linked == {"zhang": None, "li": "LiSi"}
        audited = session.scalars(select(AuditEntry.action).where(AuditEntry.action == "set_wecom"))
        assert len(list(audited)) == 2
