"""Indexes for the console's reports and visit lists: cases by filing time, retirees by
community and status, visits by retiree and date (replacing the single-column ones they extend)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 16:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_cases_created_at", "cases", ["created_at"])
    op.create_index("ix_retirees_community_status", "retirees", ["community_id", "status"])
    op.drop_index("ix_retirees_community_id", table_name="retirees")
    op.create_index("ix_visits_retiree_visited", "visits", ["retiree_id", "visited_on"])
    op.drop_index("ix_visits_retiree_id", table_name="visits")


def downgrade() -> None:
    op.create_index("ix_visits_retiree_id", "visits", ["retiree_id"])
    op.drop_index("ix_visits_retiree_visited", table_name="visits")
    op.create_index("ix_retirees_community_id", "retirees", ["community_id"])
    op.drop_index("ix_retirees_community_status", table_name="retirees")
    op.drop_index("ix_cases_created_at", table_name="cases")
