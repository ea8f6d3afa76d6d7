"""The outbox keeps what was called off: status "cancelled" (an emergency's alert calls that
were not needed any more used to be deleted)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 14:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHECK = "ck_outbox_outbox_status"
BEFORE = ("pending", "sending", "sent", "dead")
AFTER = (*BEFORE, "cancelled")


def _allow(statuses: tuple[str, ...]) -> None:
    """Replace the CHECK constraint of outbox.status (SQLite: the table is rebuilt)."""
    listed = ", ".join(f"'{s}'" for s in statuses)
    with op.batch_alter_table("outbox", recreate="auto") as batch:
        batch.drop_constraint(op.f(CHECK), type_="check")
        batch.create_check_constraint(op.f(CHECK), f"status IN ({listed})")


def upgrade() -> None:
    _allow(AFTER)


def downgrade() -> None:
    # Cancelled items were never sent: what the old schema did with them was to delete them.
    op.execute("DELETE FROM outbox WHERE status = 'cancelled'")
    _allow(BEFORE)
