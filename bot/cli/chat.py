"""`hotline chat`: talk to the bot in the terminal, as a retiree would on a phone or by SMS.

Each line typed is one turn through the real conversation engine, against the configured
database: an empty line is silence, and at the end of input (Ctrl-D, Ctrl-C, or the end of a
pipe) the conversation is closed as when a person hangs up, so a request left half-way is filed.
A line of digits answers a numbered choice ("1" is the first); with --channel phone it is sent as
keypad digits, as the phone sends a key press. Piped input gives a transcript without prompts:

    printf '我想报销药费，大概三百块，是上个月住院的\\n上门来取吧\\n1\\n' | hotline chat --phone +8613800000001
"""

from __future__ import annotations

import enum
import sys
import uuid
from collections.abc import Iterator

import typer
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, selectinload

from bot.cli.common import current_settings, fail
from bot.conversation.engine import ConversationEngine, FiledCase
from bot.conversation.messages import Inbound, Style, render
from bot.runtime.configure import load_deployment
from config.loader import ConfigError
from handlers import HandlerError
from nlu.parser import get_parser
from storage.db import make_engine
from storage.demo import DEMO_PHONES, database_is_empty
from storage.identities import retiree_by_phone
from storage.migrate import alembic_config, current_revision
from storage.models import Case
from storage.phones import InvalidPhoneNumber, normalize_phone
from storage.site import bind
from storage.types import utcnow

# Nobody in the demo data has this number: without --phone the bot meets a stranger and
# registers them (once registered, the number is known on the next run).
UNKNOWN_CALLER = "+8613999990000"


class ChatChannel(enum.StrEnum):
    CLI = "cli"  # a text channel: numbered choices, digits typed as text
    SMS = "sms"
    PHONE = "phone"  # the voice rendering ("…请按1"); a line of digits is a keypad press


def chat_command(
    phone: str = typer.Option(
        UNKNOWN_CALLER,
        "--phone",
        help=f"Who is writing: a retiree's phone (demo: {DEMO_PHONES[0]} … {DEMO_PHONES[-1]}). "
        "The default is a number nobody has, so the bot registers an unknown caller.",
    ),
    channel: ChatChannel = typer.Option(
        ChatChannel.CLI, "--channel", help="phone: hear the replies as the voice channel says them."
    ),
) -> None:
    """Talk to the bot: one line per turn, an empty line is silence, Ctrl-D hangs up."""
    try:
        address = normalize_phone(phone)
    except InvalidPhoneNumber as exc:
        fail(str(exc))
    settings = current_settings()
    db = make_engine(settings.effective_database_url)
    try:
        _check_database(db)
        try:
            deployment = load_deployment(settings)
            bind(db, deployment)
            engine = ConversationEngine(db, get_parser(settings), deployment)
        except (ConfigError, HandlerError) as exc:
            fail(f"configuration: {exc}")
        Chat(engine, channel, address, interactive=sys.stdin.isatty()).run()
    finally:
        db.dispose()


def _check_database(db: Engine) -> None:
    """Refuse a database that is not migrated or has no units, naming the command that fixes it.

    The schema is not upgraded here: this is a tool to try the bot with, and changing the schema
    of the configured (perhaps the production) database is for `hotline db upgrade` (and for
    `hotline serve`, the deployment's entry point) to do, not a side effect of a chat."""
    head = ScriptDirectory.from_config(alembic_config(db)).get_current_head()
    current = current_revision(db)
    if current != head:
        at = f"at revision {current}" if current else "empty"
        fail(f"the database is {at}, not at the newest schema {head}: run `hotline db upgrade`")
    with Session(db) as session:
        if database_is_empty(session):
            fail(
                "the database has no units to file cases in: run `hotline seed-demo` "
                "(demo data) or `hotline retirees import`"
            )


class Chat:
    def __init__(
        self, engine: ConversationEngine, channel: ChatChannel, address: str, *, interactive: bool
    ) -> None:
        self.engine = engine
        self.channel = channel
        self.address = address
        self.interactive = interactive
        self.style = Style.VOICE if channel == ChatChannel.PHONE else Style.TEXT
        self.lang = engine.deployment.settings.default_language

    def run(self) -> None:
        if self.interactive:
            typer.echo(self._banner())
        try:
            for line in self._lines():
                if self.turn(line):
                    break
        except KeyboardInterrupt:
            if self.interactive:
                typer.echo()
        finally:
            self.close()

    def _lines(self) -> Iterator[str]:
        if not self.interactive:
            for line in sys.stdin:
                yield line.strip()
            return
        while True:
            try:
                yield input("> ").strip()
            except EOFError:
                typer.echo()
                return

    def _banner(self) -> str:
        with Session(self.engine.db) as session:
            retiree = retiree_by_phone(session, self.address)
            who = (
                f"{retiree.name} ({retiree.community.name(self.lang)})"
                if retiree is not None and retiree.community is not None
                else retiree.name
                if retiree is not None
                else "not a registered retiree"
            )
        return (
            f"hotline chat on {self.channel.value} from {self.address}: {who}\n"
            "One line per turn; an empty line is silence; Ctrl-D hangs up."
        )

    def turn(self, line: str) -> bool:
        """Send one line; print the replies and any case filed. True when the bot ended."""
        keypad = self.channel == ChatChannel.PHONE and line.isdigit()
        result = self.engine.handle(
            Inbound(
                channel=self.channel.value,
                address=self.address,
                provider_id=str(uuid.uuid4()),
                received_at=utcnow(),
                text="" if keypad else line,
                digits=line if keypad else "",
            )
        )
        catalogs = self.engine.deployment.catalogs
        for reply in result.replies:
            typer.echo(render(reply, self.style, catalogs))
            self.lang = reply.language
        for case in result.cases:
            typer.echo(_case_line(case))
        if not self.interactive:
            typer.echo()  # a blank line between turns keeps a piped transcript readable
        return result.ended

    def close(self) -> None:
        """The person hung up: file what was left half-way."""
        numbers = self.engine.close_conversation(self.channel.value, self.address)
        if numbers:
            with Session(self.engine.db) as session:
                cases = session.scalars(
                    select(Case).where(Case.number.in_(numbers)).options(selectinload(Case.unit))
                ).all()
                filed = [
                    FiledCase(c.number, c.category, c.priority, c.unit.code, c.unit.name(self.lang))
                    for c in sorted(cases, key=lambda c: c.number)
                ]
            for case in filed:
                typer.echo(_case_line(case, "filed at hang-up"))
        elif self.interactive:
            typer.echo("[conversation closed: nothing was left open]")


def _case_line(case: FiledCase, how: str = "filed") -> str:
    return (
        f"[case {case.number} {how}: {case.category}, priority {case.priority}, "
        f"queue {case.unit_code} {case.unit_name}]"
    )
