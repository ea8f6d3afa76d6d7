"""What volunteers and staff do on a messaging channel, the same on each (Telegram, WeCom): the
line a posted case gets once it is taken, whom to contact after a claim, the list of their
cases, closing one. Every change goes through storage.actions; texts are under ``staff_desk``
in the catalogs, in the deployment's language (Staff has no language of its own)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from config.categories import CategoryConfig
from config.i18n import Catalogs
from config.settings import Settings
from storage import actions
from storage.audit import viewed_retiree
from storage.errors import CaseConflict, IllegalTransition, NotFound, NotPermitted
from storage.models import Case, CaseStatus, Role, Staff
from storage.permissions import Actor

MINE_LIMIT = 30


@dataclass(frozen=True)
class Desk:
    catalogs: Catalogs
    categories: CategoryConfig
    language: str
    tz: ZoneInfo
    via: str  # the channel, for the audit log

    @classmethod
    def of(
        cls, settings: Settings, catalogs: Catalogs, categories: CategoryConfig, via: str
    ) -> Desk:
        """The deployment's desk on channel ``via``: its language and time zone."""
        return cls(
            catalogs, categories, settings.default_language, ZoneInfo(settings.timezone), via
        )

    def text(self, key: str, **params: Any) -> str:
        return self.catalogs.text(f"staff_desk.{key}", self.language, **params)

    def category(self, case: Case) -> str:
        return self.categories.get(case.category).name.get(self.language)

    def priority(self, case: Case) -> str:
        return self.text(f"priority.{case.priority}")


def local_time(moment: datetime, tz: ZoneInfo) -> str:
    return moment.astimezone(tz).strftime("%m-%d %H:%M")


def taken_line(desk: Desk, number: str, status: CaseStatus, owner: str | None, own: bool) -> str:
    """What a post of a case says once it is no longer waiting: you have it, X has it, or how
    it stands now."""
    if status == CaseStatus.CLAIMED and owner:
        if own:
            return desk.text("claimed_by_you", number=number)
        return desk.text("taken_by", number=number, name=owner)
    status_text = desk.text(f"status.{status.value}")
    return desk.text("no_longer_open", number=number, status=status_text)


def claim(desk: Desk, session: Session, staff: Staff, number: str) -> Case:
    """Claim ``number`` for ``staff`` (the scope and volunteer rules of storage.actions);
    raises what actions raise (`refusal` says it)."""
    case = actions.get_case(session, number)
    actions.claim(session, case, Actor.person(staff), categories=desk.categories)
    return case


def find(session: Session, number: str) -> Case | None:
    try:
        return actions.get_case(session, number)
    except NotFound:
        return None


def case_details(desk: Desk, session: Session, case: Case, staff: Staff) -> str:
    """Whom to contact for ``case``, for the person who claimed it: name, phone numbers,
    address, what was asked, the deadline. Their view of it goes to the audit log."""
    lines = [desk.text("details_header", number=case.number, category=desk.category(case))]
    retiree = case.retiree
    if retiree is not None:
        phones = ", ".join(p.number for p in retiree.phones) or "-"
        lines.append(desk.text("details_person", name=retiree.name, phones=phones))
        lines.append(desk.text("details_address", address=retiree.address or "-"))
        viewed_retiree(session, staff, retiree.id, case=case.number, via=desk.via)
    else:
        caller = str(case.details.get("caller") or "-")
        lines.append(desk.text("details_unregistered", channel=case.channel, caller=caller))
    if case.summary:
        lines.append(desk.text("summary", summary=case.summary))
    if case.resolve_deadline is not None:
        lines.append(desk.text("resolve_by", when=local_time(case.resolve_deadline, desk.tz)))
    return "\n".join(lines)


def mine(desk: Desk, session: Session, staff: Staff) -> str:
    """The cases ``staff`` has claimed and not yet resolved, most urgent first."""
    cases = session.scalars(
        select(Case)
        .where(Case.assignee_id == staff.id, Case.status == CaseStatus.CLAIMED)
        .order_by(Case.priority, Case.resolve_deadline.asc().nulls_last(), Case.id)
        .limit(MINE_LIMIT)
    ).all()
    if not cases:
        return desk.text("mine_none")
    lines = [desk.text("mine_header", count=len(cases))]
    for case in cases:
        lines.append(
            desk.text(
                "mine_line",
                number=case.number,
                category=desk.category(case),
                priority=desk.priority(case),
                summary=case.summary or "-",
            )
        )
    return "\n".join(lines)


def close(desk: Desk, session: Session, staff: Staff, number: str, note: str) -> str:
    """Staff close a resolved case (storage.actions.close decides); raises what actions raise
    (`refusal` says it)."""
    if staff.role == Role.VOLUNTEER:
        return desk.text("close_only_staff")
    case = actions.get_case(session, number)
    actions.close(session, case, Actor.person(staff), note=note, categories=desk.categories)
    return desk.text("closed", number=number)


def refusal(desk: Desk, exc: Exception, number: str, doing: str) -> str:
    """What a claim or close that storage.actions refused says (``doing``: claim, close)."""
    if isinstance(exc, NotFound):
        return desk.text("not_found", number=number)
    if isinstance(exc, NotPermitted):
        return desk.text(
            "may_not_claim" if doing == "claim" else "close_not_permitted", number=number
        )
    if isinstance(exc, IllegalTransition) and doing == "close":
        status = desk.text(f"status.{exc.status}")
        return desk.text("close_not_resolved", number=number, status=status)
    if isinstance(exc, CaseConflict | IllegalTransition):
        return desk.text("conflict", number=number)
    raise exc


REFUSED = (NotFound, NotPermitted, IllegalTransition, CaseConflict)
