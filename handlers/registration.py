"""A sender the system does not know: a short registration (name, community or address, phone)
that creates a pending profile and a `registration` case, so staff verify the person and visit
them within five working days. A request made before registering is taken afterwards."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from handlers.base import (
    PHONE_CHANNELS,
    UNKNOWN,
    Case,
    Handler,
    InvalidPhoneNumber,
    MessagingIdentity,
    Retiree,
    RetireePhone,
    RetireeStatus,
    Slot,
    SlotKind,
    Task,
    Turn,
    Unit,
    UnitLevel,
    ending,
    normalize_phone,
    only_fillers,
    opening,
    record_access,
)

_CLAUSES = re.compile(r"[,，。.!！?？;；、~～…]+")
_DIGITS = re.compile(r"[0-9０-９]")
MAX_NAME = 12


def _first_clause(text: str) -> str:
    return next((c.strip() for c in _CLAUSES.split(text) if c.strip()), "")


def _no_answer(turn: Turn, text: str, *, shortest: int = 1) -> bool:
    """Not a name or a place: a yes or a no ("对"), fillers, a time ("今天下午")."""
    heard, rules = turn.heard, turn.deployment.dialogue
    said = text.strip().lower()
    sure = heard.choice is not None or heard.confidence >= rules.yes_no_confidence
    return (
        len(said) < shortest
        or ((heard.affirm or heard.deny) and sure)
        or only_fillers(said, rules.fillers)
        or heard.entity("date") is not None
        or said in {w.lower() for w in rules.nothing_more}
    )


@dataclass(frozen=True)
class NameSlot(Slot):
    """A name: the first clause, without "我叫" ("刘桂芳，刚才说了呀" is 刘桂芳); never a time, a
    yes, a number or a sentence. In the first sentence only after "我叫…" / "我是…"."""

    def extract(self, turn: Turn, *, answering: bool) -> Any | None:
        intro = opening(turn.deployment.words.of("registration").list_of("name_intro"))
        said = turn.heard.said
        if not answering:
            for clause in _CLAUSES.split(said):
                found = intro.match(clause.strip())
                if found is not None:
                    name = clause.strip()[found.end() :].strip()
                    if self._plausible(turn, name):
                        return name
            return None
        name = intro.sub("", _first_clause(said)).strip()
        return name if self._plausible(turn, name) else None

    @staticmethod
    def _plausible(turn: Turn, name: str) -> bool:
        return (
            bool(name)
            and len(name) <= MAX_NAME
            and not _DIGITS.search(name)
            and not _no_answer(turn, name)
        )


@dataclass(frozen=True)
class PlaceSlot(Slot):
    """Where the person lives, in their words without "我住在"; never a yes or fillers."""

    def extract(self, turn: Turn, *, answering: bool) -> Any | None:
        if not answering:
            return None
        intro = opening(turn.deployment.words.of("registration").list_of("place_intro"))
        place = intro.sub("", turn.heard.said.strip()).strip(" ，,。.")
        return None if _no_answer(turn, place, shortest=2) else place


class RegistrationHandler(Handler):
    name = "registration"
    intents = ()
    category = "registration"
    word_lists = ("name_intro", "place_intro", "unit_suffix")
    slots = (
        NameSlot("name", SlotKind.TEXT),
        PlaceSlot("place", SlotKind.TEXT, prefill=False, optional=True),
        Slot("phone", SlotKind.PHONE, prefill=False),
    )

    def start(self, turn: Turn, task: Task) -> None:
        task.said = []  # the request itself is kept in state.deferred, not in the registration
        if turn.inbound.channel in PHONE_CHANNELS:
            task.slots["phone"] = turn.inbound.address.removeprefix("whatsapp:")
        turn.say("registration.intro_request" if turn.state.deferred else "registration.intro")
        self.prefill(turn, task)  # "我叫刘桂芳，想报销药费": the name is not asked again
        self.proceed(turn, task)

    def finish(self, turn: Turn, task: Task) -> None:
        retiree, problems = self._create_profile(turn, task)
        turn.retiree = retiree
        turn.state.registered = True
        task.data["problems"] = problems
        case = self.file(turn, task)
        task.case = case.number
        task.done = True
        task.asking = None
        self.acknowledge(turn, task, case)

    def details(self, turn: Turn, task: Task) -> dict[str, Any]:
        details = super().details(turn, task)
        if task.data.get("problems"):
            details["problems"] = task.data["problems"]
        return details

    def acknowledge(self, turn: Turn, task: Task, case: Case) -> None:
        if task.data.get("linked"):
            turn.say("registration.linked", name=case.retiree.name if case.retiree else "")
            return
        if case.resolve_deadline is not None:
            turn.say("registration.done", number=case.number, by=turn.by(case.resolve_deadline))
        else:
            turn.say("registration.done_soon", number=case.number)

    def _known_by_name_and_phone(self, turn: Turn, task: Task) -> Retiree | None:
        """The registered retiree whose phone was given, when the name given is theirs too: a
        messaging account of someone already registered is linked to them (as staff would
        on the phone), not made into a second profile; staff confirm it with a call (the
        registration case says so). A typed number alone never links: someone else's name
        with it makes a new profile, the number left for staff to check."""
        name, phone = task.slots.get("name", UNKNOWN), task.slots.get("phone", UNKNOWN)
        if turn.inbound.channel in PHONE_CHANNELS or UNKNOWN in (name, phone):
            return None
        try:
            number = normalize_phone(str(phone))
        except InvalidPhoneNumber:
            return None
        session = turn.session
        owners = session.scalars(
            select(Retiree).join(RetireePhone).where(RetireePhone.number == number)
        ).all()
        found = next((r for r in owners if _same_name(r.name, str(name))), None)
        if found is None:
            return None
        found.identities.append(
            MessagingIdentity(
                channel=turn.inbound.channel, address=turn.inbound.address, linked_at=turn.now
            )
        )
        task.data["linked"] = True
        session.flush()
        record_access(
            session,
            actor=None,
            actor_label="retiree",
            action="link_identity",
            subject_type="retiree",
            subject_id=found.id,
            detail={"channel": turn.inbound.channel, "by": "name and phone"},
        )
        return found

    def _create_profile(self, turn: Turn, task: Task) -> tuple[Retiree, list[str]]:
        session = turn.session
        name = task.slots.get("name", UNKNOWN)
        place = task.slots.get("place", UNKNOWN)
        known = self._known_by_name_and_phone(turn, task)
        if known is not None:
            return known, [
                f"linked to the registered profile #{known.id} by name and phone "
                f"({turn.inbound.channel}): confirm with a call to that phone"
            ]
        problems: list[str] = []
        suffixes = self.words_of(turn).list_of("unit_suffix")
        community = _find_community(session, place, suffixes) if place != UNKNOWN else None
        retiree = Retiree(
            name=name if name != UNKNOWN else turn.text("registration.unnamed", turn.staff_lang),
            community=community,
            address="" if place == UNKNOWN else place,
            status=RetireeStatus.PENDING,
            preferred_language=turn.lang,
            registered_on=turn.now.astimezone(turn.deployment.tz).date(),
        )
        if community is None and place != UNKNOWN:
            problems.append("community not recognised from the address")
        session.add(retiree)
        phone = task.slots.get("phone", UNKNOWN)
        if phone != UNKNOWN:
            try:
                number = normalize_phone(str(phone))
            except InvalidPhoneNumber:
                problems.append(f"phone number not valid: {phone}")
            else:
                taken = session.scalars(
                    select(RetireePhone).where(RetireePhone.number == number)
                ).first()
                if taken is None:
                    retiree.phones.append(RetireePhone(number=number, label="registration"))
                else:
                    # Never link to someone else's profile on a typed number: staff check it.
                    problems.append(
                        f"phone {number} already belongs to retiree #{taken.retiree_id}"
                    )
        if turn.inbound.channel not in PHONE_CHANNELS:
            retiree.identities.append(
                MessagingIdentity(
                    channel=turn.inbound.channel, address=turn.inbound.address, linked_at=turn.now
                )
            )
        session.flush()
        record_access(
            session,
            actor=None,
            actor_label="retiree",
            action="register_retiree",
            subject_type="retiree",
            subject_id=retiree.id,
            detail={"channel": turn.inbound.channel},
        )
        return retiree, problems


def _same_name(a: str, b: str) -> bool:
    return "".join(a.split()).casefold() == "".join(b.split()).casefold()


def _find_community(session: Any, place: str, suffixes: tuple[str, ...]) -> Unit | None:
    """The community the person named ("和平社区5号楼" → 和平社区退管站), if exactly one matches
    (``suffixes``: what may follow a community's own name in a unit's name)."""
    communities = session.scalars(select(Unit).where(Unit.level == UnitLevel.COMMUNITY)).all()
    lowered = place.lower()
    matches = [u for u in communities if any(key in lowered for key in _name_keys(u, suffixes))]
    return matches[0] if len(matches) == 1 else None


def _name_keys(unit: Unit, suffixes: tuple[str, ...]) -> set[str]:
    keys = {unit.name_zh, unit.name_en.lower(), unit.code.lower()}
    core = ending(suffixes).sub("", unit.name_zh)
    keys.add(core)
    if core.endswith("社区") and len(core) > 3:
        keys.add(core.removesuffix("社区"))
    return {k for k in keys if len(k) >= 2}


HANDLER = RegistrationHandler()
