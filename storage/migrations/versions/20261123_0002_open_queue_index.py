"""The claim-order partial index of open cases (PostgreSQL only)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 16:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.create_index(
            "ix_cases_open_queue",
            "cases",
            ["priority", "claim_deadline", "created_at", "id"],
            postgresql_where=sa.text("status = 'open'"),
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_cases_open_queue", table_name="cases")
