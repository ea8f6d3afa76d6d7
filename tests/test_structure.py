"""The layout's rules, read from the source: no import circles between our modules, one writer
of case events. A function-level import counts (it only hides a circle until run time); one
under ``if TYPE_CHECKING:`` does not."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Iterator, Mapping
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bot", "config", "console", "handlers", "nlu", "storage")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    return {
        module_name(path): path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if "migrations" not in path.parts
    }


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node, less the bodies of ``if TYPE_CHECKING:``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            yield from (n for other in node.orelse for n in (other, *_runtime_nodes(other)))
            continue
        yield node
        yield from _runtime_nodes(node)


def imports_in(source: str, module: str, known: Iterable[str]) -> frozenset[str]:
    """The modules of ``known`` that ``source`` (the text of ``module``) imports: ``from a import
    b`` names the module a.b when there is one, else a."""
    known = set(known)
    found: set[str] = set()
    for node in _runtime_nodes(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in known else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return frozenset(name for name in found if name in known and name != module)


@cache
def import_graph() -> dict[str, frozenset[str]]:
    known = modules()
    return {
        module: imports_in(path.read_text(encoding="utf-8"), module, known)
        for module, path in known.items()
    }


def circles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The strongly connected groups of two or more modules (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for other in sorted(graph.get(module, ())):
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in on_stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return sorted(groups)


def test_no_import_circles() -> None:
    assert circles(import_graph()) == []


def test_a_circle_is_found_also_through_a_late_import() -> None:
    known = {"storage.a", "storage.b", "storage.c", "handlers.x"}
    graph = {
        "storage.a": imports_in("from storage import b", "storage.a", known),
        "storage.b": imports_in("def f():\n    from storage.c import thing", "storage.b", known),
        "storage.c": imports_in("import storage.a", "storage.c", known),
        "handlers.x": imports_in(
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from storage import a",
            "handlers.x",
            known,
        ),
    }
    assert graph["handlers.x"] == frozenset()  # for type checkers only
    assert circles(graph) == [["storage.a", "storage.b", "storage.c"]]


def table_writes(source: str, model: str) -> list[str]:
    """The calls in ``source`` that write ``model``'s table: ``Model(...)``, or an insert or
    update of it (``insert(Model.__table__)``, ``update(Model)``, ``Model.__table__.update()``)."""
    found = []
    mentions = re.compile(rf"\b{model}\b")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            called = ast.unparse(node.func)
            args = " ".join(ast.unparse(a) for a in node.args)
            writes = called.rsplit(".", 1)[-1] in ("insert", "update")
            if (
                called == model
                or (writes and mentions.search(args))
                or (writes and mentions.search(called))
            ):
                found.append(ast.unparse(node)[:60])
    return found


@pytest.mark.parametrize(
    ("model", "writer"), [("CaseEvent", "storage.timeline"), ("Message", "storage.messages")]
)
def test_one_module_writes_each_of_these_tables(model: str, writer: str) -> None:
    writers = {
        module: calls
        for module, path in modules().items()
        if module not in (writer, "storage.models")
        and (calls := table_writes(path.read_text(encoding="utf-8"), model))
    }
    assert writers == {}


def test_table_writes_are_recognised() -> None:
    assert table_writes("session.add(CaseEvent(case_id=1))", "CaseEvent") == [
        "CaseEvent(case_id=1)"
    ]
    assert table_writes("s.execute(insert(CaseEvent.__table__), {})", "CaseEvent") != []
    assert table_writes("s.execute(update(Message).where(x))", "Message") != []
    assert table_writes("s.execute(Message.__table__.update())", "Message") != []
    assert table_writes("s.execute(update(MessagingIdentity))", "Message") == []
    assert table_writes("select(Message.status)", "Message") == []


def test_handlers_import_only_handlers_base() -> None:
    """A handler module (one kind of request) uses what handlers/base.py offers, nothing else of
    ours: the conversation's API is in one place, and a new kind of request is one module."""
    graph = import_graph()
    handler_modules = [
        m
        for m in modules()
        if m.startswith("handlers.") and not m.rsplit(".", 1)[1].startswith("_")
    ]
    assert len(handler_modules) > 10
    beyond = {
        m: sorted(graph[m] - {"handlers.base"}) for m in handler_modules if m != "handlers.base"
    }
    assert {m: found for m, found in beyond.items() if found} == {}


def test_the_conversation_does_not_import_the_handlers() -> None:
    """The engine gets the handlers from the deployment (bot/runtime/configure.py), so handlers/
    builds on bot/conversation/ and never the other way round."""
    graph = import_graph()
    reaching = {
        m: sorted(n for n in graph[m] if n == "handlers" or n.startswith("handlers."))
        for m in modules()
        if m.startswith("bot.conversation")
    }
    assert {m: found for m, found in reaching.items() if found} == {}
    assert any(n.startswith("bot.conversation") for n in graph["handlers.base"])


GLOBAL_CONFIGURATION = ("get_settings", "get_categories", "get_catalogs", "get_dialogue")


def configuration_reads(source: str) -> list[str]:
    """Calls in ``source`` that read the configuration from the environment afresh."""
    return [
        ast.unparse(node)
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call) and ast.unparse(node.func) in GLOBAL_CONFIGURATION
    ]


def test_the_configuration_is_read_once_and_passed_down() -> None:
    """The app and the CLI load the deployment once (bot/runtime, bot/cli) and pass it down:
    the conversation, the channels, the handlers and the console never read the environment
    again, and deep in storage/ the configuration is the deployment's the database engine
    serves (storage/site.py; storage.db's default URL aside)."""
    below = ("storage.", "bot.conversation.", "bot.channels", "handlers.", "console")
    readers = {
        module: calls
        for module, path in modules().items()
        if module.startswith(below)
        and module not in ("storage.site", "storage.db")
        and (calls := configuration_reads(path.read_text(encoding="utf-8")))
    }
    assert readers == {}
    assert configuration_reads("tz = ZoneInfo(get_settings().timezone)") == ["get_settings()"]


def word_lists_in(source: str) -> list[str]:
    """Module-level names in ``source`` bound to five or more string constants, one of them
    Chinese, or to a pattern alternating four or more words with Chinese among them: a keyword
    list that belongs in config/words/."""
    found = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign | ast.AnnAssign):
            strings = [
                n.value
                for n in ast.walk(node)
                if isinstance(n, ast.Constant) and isinstance(n.value, str)
            ]
            chinese = [s for s in strings if not s.isascii()]
            # A regex alternating four or more words, one of them Chinese ("我叫|我是|叫|...").
            alternated = any(len(re.split(r"(?<!\\)\|", s)) >= 4 for s in chinese)
            if (len(strings) >= 5 and chinese) or alternated:
                target = node.targets[0] if isinstance(node, ast.Assign) else node.target
                found.append(ast.unparse(target))
    return found


def test_the_words_handlers_listen_for_are_in_config_words() -> None:
    """A deployment adds local ways of saying things in config/words/<handler>.yml; no handler
    keeps a keyword list of its own."""
    lists = {
        module: names
        for module, path in modules().items()
        if module.startswith("handlers")
        and (names := word_lists_in(path.read_text(encoding="utf-8")))
    }
    assert lists == {}
    assert word_lists_in('WORDS = ("修", "坏了", "漏水", "fix", "broken")') == ["WORDS"]
    assert word_lists_in('KINDS = ("repair", "cleaning", "meals", "bills", "other")') == []
    assert word_lists_in('INTRO = re.compile(r"^(?:我叫|我是|叫|my name is)")') == ["INTRO"]
    assert word_lists_in('CASE = re.compile(r"\\d{4}\\s*[-杠]?\\s*\\d{6}")') == []


# The keys of an alert call's payload that hold the emergency chain's state.
ALERT_STATE = frozenset({"chain", "held", "taken", "outcome", "passed_because", "wave"})


def alert_state_uses(source: str) -> list[str]:
    """Where ``source`` reads or writes the chain's state in a payload: ``payload["taken"]``,
    ``payload.get("held")``, or ``{**payload, "outcome": ...}``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        keys: list[ast.expr | None] = []
        if isinstance(node, ast.Subscript) and "payload" in ast.unparse(node.value):
            keys = [node.slice]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and "payload" in ast.unparse(node.func.value)
        ):
            keys = node.args[:1]
        elif isinstance(node, ast.Dict) and any(
            k is None and "payload" in ast.unparse(v)
            for k, v in zip(node.keys, node.values, strict=True)
        ):
            keys = list(node.keys)
        if any(isinstance(k, ast.Constant) and k.value in ALERT_STATE for k in keys):
            found.append(ast.unparse(node)[:60])
    return found


def test_the_emergency_chain_state_is_one_modules() -> None:
    """storage/alert_chain.py owns the states of an emergency's alert calls (its docstring has
    the diagram): no other module reads or writes them in the outbox payloads; a voice channel
    places the calls and speaks, and asks that module what to do."""
    users = {
        module: found
        for module, path in modules().items()
        if module != "storage.alert_chain"
        and (found := alert_state_uses(path.read_text(encoding="utf-8")))
    }
    assert users == {}
    assert alert_state_uses('item.payload = {**item.payload, "outcome": "taken"}') != []
    assert alert_state_uses('if item.payload.get("held") == "caller": pass') != []
    assert alert_state_uses('x = payload["chain"]') != []
    assert alert_state_uses('x = payload.get("text")') == []
