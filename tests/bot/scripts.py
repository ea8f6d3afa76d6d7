"""Conversation scripts: YAML files in tests/bot/conversations/ that read like a story.

A file holds `scripts:`, each with:
  name:     what it shows
  people:   retirees to create (default: one, 王秀英, +8613800000001, 75, community A1);
            keys: name, phone, community (a unit code of tests.factories.make_unit_tree: C, SA,
            SB, A1, A2, B1), age, lives_alone, self_care, hardship, language,
            contacts: [{name, phone, relation}], telegram (a linked Telegram user id)
  staff:    staff to create: {name, role, units: [codes], on_duty, phone, telegram}
  channel:  the channel of every turn (default sms); `from` the sender (default: the first
            person's phone)
  at:       when the first turn happens (default 2026-11-24T10:00:00+08:00, a Tuesday); each
            later turn is a minute later unless it says `after: 45m` (or 2h, 30s)
  turns:    each one of say: TEXT | press: DIGITS | choose: VALUE | silence: true | event:
            {name: value} (inbound metadata), optionally with from, channel, id (the provider's
            message id, to test a redelivery), after; and what is expected:
              bot:      substrings that appear in the replies, in this order
              not_bot:  substrings that must not appear
              choices:  the labels of the choices offered (exactly)
              hints:    the hints given (exactly; e.g. [urgent] or [end])
              filed:    the cases this turn filed, in order: {category, priority, unit,
                        status, slots: {...subset}, details: {...subset}, summary: substring,
                        retiree: name or null}
              redelivered: true when the same replies came back for a repeated id
  cases:    the cases at the end, by number order, each like `filed` (the list is exact)
  outbox:   what waits to be sent at the end: [{channel, address, kind, count}] (count default 1)
  retirees: people at the end: [{name, status, phones, community}] (checks listed ones only)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.conversation.engine import ConversationEngine, TurnResult
from bot.conversation.messages import Inbound
from storage.models import (
    Case,
    EmergencyContact,
    MessagingIdentity,
    OutboxItem,
    Retiree,
    RetireePhone,
    Role,
)
from tests.factories import UnitTree, make_retiree, make_staff, make_unit_tree

FOLDER = Path(__file__).parent / "conversations"
DEFAULT_START = "2026-11-24T10:00:00+08:00"
DEFAULT_PERSON = {"name": "王秀英", "phone": "+8613800000001", "age": 75, "community": "A1"}
TURN_KEYS = {"say", "press", "choose", "silence", "event"}
_DURATION = re.compile(r"^(\d+)(s|m|h)$")


@dataclass(frozen=True)
class Script:
    file: str
    name: str
    spec: dict[str, Any]

    @property
    def id(self) -> str:
        return f"{self.file}::{self.name}"


def load_scripts() -> list[Script]:
    scripts = []
    for path in sorted(FOLDER.glob("*.yml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for spec in data.get("scripts", []):
            scripts.append(Script(path.stem, spec["name"], spec))
    return scripts


def _duration(text: str) -> timedelta:
    match = _DURATION.match(str(text))
    if not match:
        raise ValueError(f"after: {text!r} is not like 30s, 45m or 2h")
    value, unit = int(match.group(1)), match.group(2)
    return timedelta(**{{"s": "seconds", "m": "minutes", "h": "hours"}[unit]: value})


def _unit(tree: UnitTree, code: str) -> Any:
    return {
        "C": tree.center,
        "SA": tree.station_a,
        "SB": tree.station_b,
        "A1": tree.community_a1,
        "A2": tree.community_a2,
        "B1": tree.community_b1,
    }[code]


def build_world(session: Session, spec: dict[str, Any], today: Any) -> UnitTree:
    tree = make_unit_tree(session)
    people = spec.get("people", [DEFAULT_PERSON])
    for person in people:
        person = dict(person)
        contacts = person.pop("contacts", [])
        telegram = person.pop("telegram", None)
        community = person.pop("community", "A1")
        language = person.pop("language", "zh")
        retiree = make_retiree(
            session,
            _unit(tree, community) if community else None,
            phone=person.pop("phone", None),
            age=person.pop("age", None),
            today=today,
            preferred_language=language,
            **person,
        )
        for contact in contacts:
            retiree.emergency_contacts.append(
                EmergencyContact(
                    name=contact["name"],
                    phone=contact["phone"],
                    relation=contact.get("relation", ""),
                )
            )
        if telegram is not None:
            retiree.identities.append(MessagingIdentity(channel="telegram", address=str(telegram)))
    for member in spec.get("staff", []):
        member = dict(member)
        units = [_unit(tree, code) for code in member.pop("units", [])]
        role = Role(member.pop("role", "staff"))
        telegram = member.pop("telegram", None)
        make_staff(session, role, units, telegram_user_id=telegram, **member)
    session.flush()
    return tree


class ScriptRunner:
    def __init__(self, engine: ConversationEngine, session_factory: Any, script: Script) -> None:
        self.engine = engine
        self.sessions = session_factory
        self.script = script
        spec = script.spec
        self.channel = spec.get("channel", "sms")
        people = spec.get("people", [DEFAULT_PERSON])
        self.sender = str(
            spec.get("from") or (people[0].get("phone") if people else "+8613900000999")
        )
        self.clock = datetime.fromisoformat(str(spec.get("at", DEFAULT_START)))
        self.seen_cases = 0

    def run(self) -> None:
        for n, turn in enumerate(self.script.spec.get("turns", []), 1):
            where = f"{self.script.id}, turn {n} ({_describe(turn)})"
            result = self.engine.handle(self.inbound(turn, n))
            self.check_turn(turn, result, where)
        with self.sessions() as session:
            self.check_end(session)

    def inbound(self, turn: dict[str, Any], n: int) -> Inbound:
        if n > 1:
            self.clock += _duration(turn["after"]) if "after" in turn else timedelta(minutes=1)
        if not TURN_KEYS & turn.keys():
            raise ValueError(f"{self.script.id}, turn {n}: needs one of {sorted(TURN_KEYS)}")
        return Inbound(
            channel=turn.get("channel", self.channel),
            address=str(turn.get("from", self.sender)),
            provider_id=str(turn["id"]) if "id" in turn else f"{self.script.name}-{n}",
            received_at=self.clock,
            text=str(turn.get("say", "")),
            digits=str(turn.get("press", "")),
            choice=turn.get("choose"),
            metadata=dict(turn.get("event", {})),
        )

    def check_turn(self, turn: dict[str, Any], result: TurnResult, where: str) -> None:
        said = "\n".join(r.text for r in result.replies)
        shown = f"{where}\nthe bot said:\n{said}"
        position = 0
        for expected in turn.get("bot", []):
            found = said.find(str(expected), position)
            assert found >= 0, f"{shown}\n--> expected {expected!r} (in this order)"
            position = found + len(str(expected))
        for unexpected in turn.get("not_bot", []):
            assert str(unexpected) not in said, f"{shown}\n--> did not expect {unexpected!r}"
        if "choices" in turn:
            offered = [c.label for c in result.replies[-1].choices] if result.replies else []
            assert offered == turn["choices"], f"{shown}\n--> choices {offered}"
        if "hints" in turn:
            hints = sorted(h.value for h in result.hints)
            assert hints == sorted(turn["hints"]), f"{shown}\n--> hints {hints}"
        if "redelivered" in turn:
            assert result.redelivered == turn["redelivered"], f"{shown}\n--> redelivered?"
        if "filed" in turn:
            expected_cases = turn["filed"] or []
            filed = [c.number for c in result.cases]
            assert len(filed) == len(expected_cases), f"{shown}\n--> filed {filed}"
            with self.sessions() as session:
                for number, expected in zip(filed, expected_cases, strict=True):
                    case = session.scalars(select(Case).where(Case.number == number)).one()
                    check_case(case, expected, f"{shown}\n--> case {number}")

    def check_end(self, session: Session) -> None:
        spec, where = self.script.spec, self.script.id
        if "cases" in spec:
            cases = session.scalars(select(Case).order_by(Case.number)).all()
            listed = [(c.number, c.category) for c in cases]
            assert len(cases) == len(spec["cases"]), f"{where}: cases at the end {listed}"
            for case, expected in zip(cases, spec["cases"], strict=True):
                check_case(case, expected, f"{where}: case {case.number}")
        if "outbox" in spec:
            items = session.scalars(select(OutboxItem).order_by(OutboxItem.id)).all()
            got = [(i.channel, i.address, i.payload.get("kind")) for i in items]
            for expected in spec["outbox"]:
                matching = [
                    g
                    for g in got
                    if all(
                        str(expected[k]) == str(v)
                        for k, v in zip(("channel", "address", "kind"), g, strict=True)
                        if k in expected
                    )
                ]
                count = expected.get("count", 1)
                assert len(matching) == count, (
                    f"{where}: outbox {expected} matched {len(matching)} of {got}"
                )
        for expected in spec.get("retirees", []):
            retiree = session.scalars(
                select(Retiree).where(Retiree.name == expected["name"])
            ).first()
            assert retiree is not None, f"{where}: no retiree named {expected['name']}"
            if "status" in expected:
                assert retiree.status.value == expected["status"], f"{where}: {retiree.status}"
            if "phones" in expected:
                phones = session.scalars(
                    select(RetireePhone.number).where(RetireePhone.retiree_id == retiree.id)
                ).all()
                assert sorted(phones) == sorted(expected["phones"]), f"{where}: phones {phones}"
            if "community" in expected:
                code = retiree.community.code if retiree.community else None
                assert code == expected["community"], f"{where}: community {code}"


def check_case(case: Case, expected: dict[str, Any], where: str) -> None:
    simple = {
        "category": case.category,
        "priority": case.priority,
        "unit": case.unit.code,
        "status": case.status.value,
        "channel": case.channel,
    }
    for key, value in simple.items():
        if key in expected:
            assert value == expected[key], (
                f"{where}: {key} is {value!r}, expected {expected[key]!r}"
            )
    if "retiree" in expected:
        name = case.retiree.name if case.retiree else None
        assert name == expected["retiree"], f"{where}: retiree {name!r}"
    if "summary" in expected:
        assert str(expected["summary"]) in case.summary, f"{where}: summary {case.summary!r}"
    if "original_text" in expected:
        assert str(expected["original_text"]) in case.original_text, (
            f"{where}: original text {case.original_text!r}"
        )
    slots = case.details.get("slots", {})
    for key, value in (expected.get("slots") or {}).items():
        assert slots.get(key) == value, (
            f"{where}: slot {key} is {slots.get(key)!r}, expected {value!r}"
        )
    for key, value in (expected.get("details") or {}).items():
        assert case.details.get(key) == value, (
            f"{where}: details[{key}] is {case.details.get(key)!r}, expected {value!r}"
        )
    if "notes" in expected:
        notes = [e.note for e in case.events if e.action == "note"]
        for note in expected["notes"]:
            assert any(str(note) in n for n in notes), f"{where}: notes {notes}"


def _describe(turn: dict[str, Any]) -> str:
    for key in ("say", "press", "choose", "event"):
        if key in turn:
            return f"{key}: {turn[key]}"
    return "silence"
