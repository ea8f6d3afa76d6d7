"""`hotline wechat menu`: send the account's menu (config/wechat.yml) to WeChat."""

from __future__ import annotations

import typer

from bot.cli.common import current_settings, fail
from config.loader import ConfigError
from config.wechat import load_wechat
from storage.db import make_engine

app = typer.Typer(help="WeChat Official Account: set up the account.", no_args_is_help=True)


@app.command("menu")
def menu_command(
    show: bool = typer.Option(
        False, "--show", help="Print the menu as WeChat takes it; send nothing."
    ),
) -> None:
    """Replace the account's menu with the one in config/wechat.yml."""
    import json

    from wechatpy.exceptions import WeChatClientException

    from bot.channels.wechat.sender import client_for

    settings = current_settings()
    try:
        menu = load_wechat(settings.config_dir).wechat_menu()
    except ConfigError as exc:
        fail(f"configuration: {exc}")
    if show:
        typer.echo(json.dumps(menu, ensure_ascii=False, indent=2))
        return
    if not settings.wechat_enabled:
        fail("set HOTLINE_WECHAT_TOKEN, HOTLINE_WECHAT_APP_ID and HOTLINE_WECHAT_APP_SECRET")
    engine = make_engine(settings.effective_database_url, pool_timeout=5)
    try:
        client_for(settings, engine).menu.create(menu)
    except WeChatClientException as exc:
        fail(f"WeChat refused the menu: {exc.errcode} {exc.errmsg}")
    finally:
        engine.dispose()
    buttons = sum(max(1, len(top.get("sub_button", []))) for top in menu["button"])
    typer.echo(f"menu sent: {len(menu['button'])} top buttons, {buttons} in all")
