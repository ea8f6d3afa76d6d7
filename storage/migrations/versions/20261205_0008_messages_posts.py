"""The posts kept up with their case are those with a Claim button (messages.status "posted")
and those saying who took it ("taken": the case may come back to the queue, or go to someone
else); the partial index of 0007 covered only the first (bot/channels/telegram_staff.py).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 22:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

POSTED = sa.text("status = 'posted'")
WATCHED = sa.text("status IN ('posted', 'taken')")


def upgrade() -> None:
    op.drop_index("ix_messages_posted", table_name="messages")
    op.create_index(
        "ix_messages_posts", "messages", ["case_id"], postgresql_where=WATCHED, sqlite_where=WATCHED
    )


def downgrade() -> None:
    op.drop_index("ix_messages_posts", table_name="messages")
    op.create_index(
        "ix_messages_posted", "messages", ["case_id"], postgresql_where=POSTED, sqlite_where=POSTED
    )
