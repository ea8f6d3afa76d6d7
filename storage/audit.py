"""The audit log of personal data: every view and change of a retiree's profile is written here."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from storage.models import AuditEntry, Staff


def record_access(
    session: Session,
    *,
    actor: Staff | None,
    actor_label: str,
    action: str,
    subject_type: str,
    subject_id: int | None,
    detail: dict[str, Any] | None = None,
) -> AuditEntry:
    """Add one audit entry (in the caller's transaction). ``detail`` must hold no personal data."""
    entry = AuditEntry(
        actor_id=actor.id if actor is not None else None,
        actor_label=actor_label,
        action=action,
        subject_type=subject_type,
        subject_id=subject_id,
        detail=detail or {},
    )
    session.add(entry)
    return entry


def viewed_retiree(
    session: Session, viewer: Staff | str, retiree_id: int, **detail: Any
) -> AuditEntry:
    """A retiree's personal data was shown to ``viewer``: a staff member or volunteer, or a
    label ("cli"). ``detail`` says where (no personal data)."""
    staff = viewer if isinstance(viewer, Staff) else None
    return record_access(
        session,
        actor=staff,
        actor_label=staff.role.value if staff is not None else str(viewer),
        action="view_retiree",
        subject_type="retiree",
        subject_id=retiree_id,
        detail=detail,
    )
