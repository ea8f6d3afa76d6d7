"""Every permission rule of the case actions, as a table: who may do what to whose case."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from sqlalchemy.orm import Session

from storage import actions
from storage.errors import NotPermitted
from storage.models import Case, Role
from storage.permissions import Actor, units_in_scope
from tests.factories import UnitTree, make_retiree, make_staff, make_unit_tree

NOW = datetime(2026, 6, 1, 2, 0, tzinfo=UTC)

# Who, by the units they serve.
PEOPLE = {
    "assignee": (Role.VOLUNTEER, "community_a1"),  # the volunteer who claimed the case
    "volunteer_same_community": (Role.VOLUNTEER, "community_a1"),
    "volunteer_other_community": (Role.VOLUNTEER, "community_a2"),
    "staff_same_community": (Role.STAFF, "community_a1"),
    "staff_same_station": (Role.STAFF, "station_a"),
    "staff_other_station": (Role.STAFF, "station_b"),
    "staff_other_community": (Role.STAFF, "community_a2"),
    "admin": (Role.ADMIN, "center"),
    "inactive_staff": (Role.STAFF, "station_a"),
}

# What each action needs before it can be tried, and how to try it.
Attempt = Callable[[Session, Case, Actor, UnitTree], object]
ACTIONS: dict[str, tuple[str, Attempt]] = {
    "release": ("claimed", lambda s, c, a, u: actions.release(s, c, a)),
    "transfer": (
        "claimed",
        lambda s, c, a, u: actions.transfer(s, c, a, reason="r", to_unit=u.community_a2),
    ),
    "resolve": ("claimed", lambda s, c, a, u: actions.resolve(s, c, a, outcome="done")),
    "note": ("claimed", lambda s, c, a, u: actions.add_note(s, c, a, "a note")),
    "cancel": ("claimed", lambda s, c, a, u: actions.cancel(s, c, a, reason="r")),
    "close": ("resolved", lambda s, c, a, u: actions.close(s, c, a)),
    "reopen": ("resolved", lambda s, c, a, u: actions.reopen(s, c, a, reason="r")),
    "escalate": ("open", lambda s, c, a, u: actions.escalate(s, c, a, reason="r")),
}

ALLOWED = {
    "release": {"assignee", "staff_same_community", "staff_same_station", "admin"},
    "transfer": {"staff_same_community", "staff_same_station", "admin"},
    "resolve": {"assignee", "staff_same_community", "staff_same_station", "admin"},
    # A volunteer of the unit may note an open case, not one someone else has claimed.
    "note": {
        "assignee",
        "staff_same_community",
        "staff_same_station",
        "admin",
    },
    "cancel": {"staff_same_community", "staff_same_station", "admin"},
    "close": {"staff_same_community", "staff_same_station", "admin"},
    "reopen": {"staff_same_community", "staff_same_station", "admin"},
    "escalate": {"staff_same_community", "staff_same_station", "admin"},
}


@pytest.mark.parametrize("person", sorted(PEOPLE))
@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_permission_table(session: Session, action: str, person: str) -> None:
    units = make_unit_tree(session)
    people = {
        name: make_staff(session, role, [getattr(units, unit)], active=name != "inactive_staff")
        for name, (role, unit) in PEOPLE.items()
    }
    case = actions.file_case(
        session,
        category="help_request",
        channel="phone",
        actor=Actor.system(),
        retiree=make_retiree(session, units.community_a1),
        now=NOW,
    )
    needs, attempt = ACTIONS[action]
    if needs in ("claimed", "resolved"):
        actions.claim(session, case, Actor.person(people["assignee"]))
    if needs == "resolved":
        actions.resolve(session, case, Actor.person(people["assignee"]), outcome="done")
    actor = Actor.person(people[person])
    if person in ALLOWED[action]:
        attempt(session, case, actor, units)
    else:
        with pytest.raises(NotPermitted):
            attempt(session, case, actor, units)


def test_scope_follows_the_hierarchy(session: Session) -> None:
    units = make_unit_tree(session)
    station = make_staff(session, Role.STAFF, [units.station_a])
    assert units_in_scope(session, station) == {
        units.station_a.id,
        units.community_a1.id,
        units.community_a2.id,
    }
    admin = make_staff(session, Role.ADMIN, [])
    assert len(units_in_scope(session, admin)) == 6
    volunteer = make_staff(session, Role.VOLUNTEER, [units.community_b1])
    assert units_in_scope(session, volunteer) == {units.community_b1.id}
