"""A partial index of the posts of cases still to be updated once their case is taken
(messages.status "posted"; bot/channels/telegram_staff.py)

Posts recorded before this revision keep status "sent" and are not updated by the upkeep; a
tap on one still says who took the case.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 17:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

POSTED = sa.text("status = 'posted'")


def upgrade() -> None:
    op.create_index(
        "ix_messages_posted",
        "messages",
        ["case_id"],
        postgresql_where=POSTED,
        sqlite_where=POSTED,
    )


def downgrade() -> None:
    op.drop_index("ix_messages_posted", table_name="messages")
