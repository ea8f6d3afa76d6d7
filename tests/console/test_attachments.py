"""A case's voice messages on its page: played to those who may open the case, every play in
the audit log."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from storage import attachments
from storage.models import AuditEntry, Case
from tests.console.conftest import Browser, World

AUDIO = b"#!AMR\n" + bytes(range(256)) * 4


def attach(engine: Engine, number: str) -> int:
    with Session(engine) as session, session.begin():
        # Kept once; the same source again (a retried fetch) keeps nothing twice.
        kept = [
            attachments.keep(
                session,
                case_number=number,
                source="wechat:MEDIA-1",
                kind="audio",
                content_type="audio/amr",
                data=AUDIO,
            )
            for _ in range(2)
        ]
        assert kept == [True, False]
        case_id = session.scalar(select(Case.id).where(Case.number == number))
        assert case_id is not None
        [listed] = attachments.of_case(session, case_id)
        return listed.id


def test_staff_who_may_open_the_case_hear_its_voice_message(
    world: World, engine: Engine, browser: Callable[[str | None], Browser]
) -> None:
    number = world.complaint_a1.number
    file_id = attach(engine, number)
    staff = browser("staff_a")
    page = staff.get(f"/cases/{number}")
    assert (
        f'<audio controls preload="none" src="/cases/{number}/attachments/{file_id}">' in page.text
    )
    played = staff.client.get(f"/cases/{number}/attachments/{file_id}")
    assert played.status_code == 200
    assert played.content == AUDIO
    assert played.headers["content-type"] == "audio/amr"
    assert played.headers["cache-control"] == "private, no-store"
    with Session(engine) as session:
        [entry] = session.scalars(select(AuditEntry).where(AuditEntry.action == "play_attachment"))
        assert (entry.actor_id, entry.detail) == (
            world.staff_a.id,
            {"attachment": file_id, "case": number},
        )


def test_others_hear_nothing(
    world: World, engine: Engine, browser: Callable[[str | None], Browser]
) -> None:
    number = world.complaint_a1.number
    file_id = attach(engine, number)
    url = f"/cases/{number}/attachments/{file_id}"
    assert browser("vol_a1").client.get(url).status_code == 403  # complaints are staff-only
    assert browser("staff_b").client.get(url).status_code == 403  # another station's case
    other = f"/cases/{world.help_a1.number}/attachments/{file_id}"
    assert browser("staff_a").client.get(other).status_code == 404  # not that case's
    signed_out = browser(None).client.get(url, follow_redirects=False)
    assert signed_out.status_code in (303, 401)
    assert AUDIO not in signed_out.content
    with Session(engine) as session:
        assert session.scalars(select(AuditEntry.action)).all().count("play_attachment") == 0
