"""The case actions work with the deployment their database engine is bound to (the app and
the CLI bind theirs), not with what the environment says."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine

from config.settings import Settings
from storage import actions
from storage.db import transaction
from storage.permissions import Actor
from storage.site import Site, bind, environment_site, site_of
from tests.factories import make_retiree, make_unit_tree

# Friday 27 November 2026, 16:30 UTC: already Saturday 00:30 in Shanghai, still Friday 22:30 in
# Urumqi (Xinjiang's oil-field stations keep the local time).
LATE_FRIDAY = datetime(2026, 11, 27, 16, 30, tzinfo=UTC)


def file_medication_case(engine: Engine) -> datetime | None:
    with transaction(engine) as session:
        tree = make_unit_tree(session)
        person = make_retiree(session, tree.community_a1)
        case = actions.file_case(
            session,
            category="medication_reimbursement",  # resolve within 5 working days
            channel="phone",
            actor=Actor.system(),
            retiree=person,
            now=LATE_FRIDAY,
        )
        return case.resolve_deadline


def test_an_unbound_engine_serves_the_environment(engine: Engine) -> None:
    with transaction(engine) as session:
        assert site_of(session) is environment_site()
    due = file_medication_case(engine)
    # Saturday 00:30 in Shanghai: the offices open on Monday 30 November at 8:30, and five
    # working days on is Monday 7 December, 8:30 there.
    assert due == datetime(2026, 12, 7, 0, 30, tzinfo=UTC)


def test_a_bound_engine_serves_its_deployment_time_zone(engine: Engine) -> None:
    urumqi = Site.load(Settings(timezone="Asia/Urumqi", _env_file=None))
    bind(engine, urumqi)
    with transaction(engine) as session:
        assert site_of(session) is urumqi
        assert site_of(session.connection()) is urumqi
    due = file_medication_case(engine)
    # Friday 22:30 in Urumqi: its offices open on Monday at 8:30 Urumqi time, two hours after
    # Shanghai's; five working days on is Monday 7 December, 8:30 there.
    assert due == datetime(2026, 12, 7, 2, 30, tzinfo=UTC)
