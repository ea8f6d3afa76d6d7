"""messages.status is a checked enum like every other (storage.models.MessageStatus): a status
written by any channel is one of the listed values. A status the list does not have (none is
known to be stored) becomes "unknown" first.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 21:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHECK = "ck_messages_message_status"
STATUSES = (
    *("received", "replied", "follow_up", "opted_out", "unreadable", "empty"),
    *("posted", "taken", "settled"),
    *("accepted", "scheduled", "queued", "sending", "sent", "canceled", "failed"),
    *("undelivered", "partially_delivered", "delivered", "read"),
    *("initiated", "ringing", "in-progress", "answered", "completed", "busy", "no-answer"),
    *("not-accepted", "unknown"),
)
LISTED = ", ".join(f"'{s}'" for s in STATUSES)


def upgrade() -> None:
    op.execute(f"UPDATE messages SET status = 'unknown' WHERE status NOT IN ({LISTED})")
    with op.batch_alter_table("messages", recreate="auto") as batch:
        batch.alter_column(
            "status", existing_type=sa.String(20), type_=sa.String(24), existing_nullable=False
        )
        batch.create_check_constraint(op.f(CHECK), f"status IN ({LISTED})")


def downgrade() -> None:
    with op.batch_alter_table("messages", recreate="auto") as batch:
        batch.drop_constraint(op.f(CHECK), type_="check")
        batch.alter_column(
            "status", existing_type=sa.String(24), type_=sa.String(20), existing_nullable=False
        )
