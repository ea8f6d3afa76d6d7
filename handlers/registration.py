"""A sender the system does not know: a short registration (name, community or address, phone)
that creates a pending profile and a `registration` case, so staff verify the person and visit
them within five working days. A request made before registering is taken afterwards."""

from __future__ import annotations

import re
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
    normalize_phone,
    record_access,
)

# "我叫王秀英" → 王秀英
_NAME_INTRO = re.compile(
    r"^(?:我的名字叫|我的名字是|我叫|我是|我姓|叫|my name is|i am|i'm|this is)\s*", re.IGNORECASE
)

# "我住在光明社区" → 光明社区
_PLACE_INTRO = re.compile(
    r"^(?:我家住在|我住在|我家在|住在|在|i live in|i live at|in|at)\s*", re.IGNORECASE
)


class RegistrationHandler(Handler):
    name = "registration"
    intents = ()
    category = "registration"
    slots = (
        Slot("name", SlotKind.TEXT, prefill=False),
        Slot("place", SlotKind.TEXT, prefill=False, optional=True),
        Slot("phone", SlotKind.PHONE, prefill=False),
    )

    def start(self, turn: Turn, task: Task) -> None:
        task.said = []  # the request itself is kept in state.deferred, not in the registration
        if turn.inbound.channel in PHONE_CHANNELS:
            task.slots["phone"] = turn.inbound.address.removeprefix("whatsapp:")
        turn.say("registration.intro_request" if turn.state.deferred else "registration.intro")
        self.proceed(turn, task)

    def on_slot_answer(self, turn: Turn, task: Task, slot: Slot) -> None:
        intro = {"name": _NAME_INTRO, "place": _PLACE_INTRO}.get(slot.name)
        if intro is not None and turn.heard.said:
            turn.heard.said = intro.sub("", turn.heard.said) or turn.heard.said
        super().on_slot_answer(turn, task, slot)

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
        if case.resolve_deadline is not None:
            turn.say("registration.done", number=case.number, by=turn.by(case.resolve_deadline))
        else:
            turn.say("registration.done_soon", number=case.number)

    def _create_profile(self, turn: Turn, task: Task) -> tuple[Retiree, list[str]]:
        session = turn.session
        name = task.slots.get("name", UNKNOWN)
        place = task.slots.get("place", UNKNOWN)
        problems: list[str] = []
        community = _find_community(session, place) if place != UNKNOWN else None
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


def _find_community(session: Any, place: str) -> Unit | None:
    """The community the person named ("和平社区5号楼" → 和平社区退管站), if exactly one matches."""
    communities = session.scalars(select(Unit).where(Unit.level == UnitLevel.COMMUNITY)).all()
    lowered = place.lower()
    matches = [u for u in communities if any(key in lowered for key in _name_keys(u))]
    return matches[0] if len(matches) == 1 else None


def _name_keys(unit: Unit) -> set[str]:
    keys = {unit.name_zh, unit.name_en.lower(), unit.code.lower()}
    core = _UNIT_SUFFIX.sub("", unit.name_zh)
    keys.add(core)
    if core.endswith("社区") and len(core) > 3:
        keys.add(core.removesuffix("社区"))
    return {k for k in keys if len(k) >= 2}


# What follows a community's own name in a unit's name: 和平社区退管站 → 和平社区.
_UNIT_SUFFIX = re.compile(r"(?:退管站|退休职工服务站|服务站|工作站|居委会|站)$")


HANDLER = RegistrationHandler()
