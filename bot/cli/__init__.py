"""The `hotline` command line: one typer app with a sub-command group per area."""

from __future__ import annotations

import typer

from bot.cli import (
    cases,
    chat,
    db,
    demo,
    nlu,
    retirees,
    serve,
    sip,
    spool,
    telegram,
    units,
    users,
    wechat,
    worker,
)

app = typer.Typer(
    name="hotline",
    help="Community Hotline (社区一键通): database, registry, users, cases and the server.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(db.app, name="db")
app.add_typer(retirees.app, name="retirees")
app.add_typer(users.app, name="users")
app.add_typer(cases.app, name="cases")
app.add_typer(nlu.app, name="nlu")
app.add_typer(telegram.app, name="telegram")
app.add_typer(wechat.app, name="wechat")
app.add_typer(units.app, name="units")
app.add_typer(spool.app, name="spool")
app.command("seed-demo")(demo.seed_demo_command)
app.command("serve")(serve.serve_command)
app.command("chat")(chat.chat_command)
app.command("worker")(worker.worker_command)
app.command("sip")(sip.sip_command)


@app.callback()
def main() -> None:
    """Check the deployment's configuration before any command runs."""
    from bot.cli.common import current_settings, fail
    from config.checks import check_configuration
    from config.loader import ConfigError
    from config.logging import configure_logging

    settings = current_settings()
    configure_logging("WARNING", json=settings.log_json)
    try:
        check_configuration(settings)
    except ConfigError as exc:
        fail(f"configuration: {exc}")
