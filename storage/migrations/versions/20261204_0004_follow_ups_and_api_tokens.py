"""Follow-ups (回访) after a case is resolved; personal tokens for the JSON API

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 04:13:09.756051
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import storage.types


revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("staff_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["staff_id"],
            ["staff.id"],
            name=op.f("fk_api_tokens_staff_id_staff"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
    )
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_api_tokens_staff_id"), ["staff_id"], unique=False)

    op.create_table(
        "follow_ups",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "asked",
                "answered",
                "unanswered",
                "cancelled",
                name="follow_up_status",
                native_enum=False,
                create_constraint=True,
                length=24,
            ),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("address", sa.String(length=100), nullable=False),
        sa.Column("next_attempt_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("asked_at", storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("answered_at", storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("done", sa.Boolean(), nullable=True),
        sa.Column("satisfied", sa.Boolean(), nullable=True),
        sa.Column("callback_case_id", sa.Integer(), nullable=True),
        sa.Column("created_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["callback_case_id"], ["cases.id"], name=op.f("fk_follow_ups_callback_case_id_cases")
        ),
        sa.ForeignKeyConstraint(
            ["case_id"], ["cases.id"], name=op.f("fk_follow_ups_case_id_cases")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_follow_ups")),
        sa.UniqueConstraint("case_id", "round", name=op.f("uq_follow_ups_case_id_round")),
    )
    with op.batch_alter_table("follow_ups", schema=None) as batch_op:
        batch_op.create_index("ix_follow_ups_due", ["status", "next_attempt_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("follow_ups", schema=None) as batch_op:
        batch_op.drop_index("ix_follow_ups_due")

    op.drop_table("follow_ups")
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_tokens_staff_id"))

    op.drop_table("api_tokens")
