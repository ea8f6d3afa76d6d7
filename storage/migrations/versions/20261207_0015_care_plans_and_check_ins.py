"""Proactive care: retirees' check-in plans set in the registry, each day's check-ins and
their timelines (storage/check_ins.py).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 07:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import storage.types

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# messages.status gains "check_in" (an inbound message that answered a check-in).
CHECK = "ck_messages_message_status"
STATUSES = (
    *("received", "replied", "follow_up", "opted_out", "unreadable", "empty"),
    *("posted", "taken", "settled"),
    *("accepted", "scheduled", "queued", "sending", "sent", "canceled", "failed"),
    *("undelivered", "partially_delivered", "delivered", "read"),
    *("initiated", "ringing", "in-progress", "answered", "completed", "busy", "no-answer"),
    *("not-accepted", "unknown"),
)


def _message_statuses(statuses: Sequence[str]) -> None:
    listed = ", ".join(f"'{s}'" for s in statuses)
    with op.batch_alter_table("messages", recreate="auto") as batch:
        batch.drop_constraint(op.f(CHECK), type_="check")
        batch.create_check_constraint(op.f(CHECK), f"status IN ({listed})")


def upgrade() -> None:
    _message_statuses((*STATUSES, "check_in"))
    op.create_table(
        "care_plans",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("retiree_id", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("rule", sa.JSON(), nullable=False),
        sa.Column("quiet_days", sa.JSON(), nullable=False),
        sa.Column("updated_by_id", sa.Integer(), nullable=True),
        sa.Column("updated_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["retiree_id"],
            ["retirees.id"],
            name=op.f("fk_care_plans_retiree_id_retirees"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["updated_by_id"], ["staff.id"], name=op.f("fk_care_plans_updated_by_id_staff")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_care_plans")),
        sa.UniqueConstraint("retiree_id", name=op.f("uq_care_plans_retiree_id")),
    )
    op.create_table(
        "check_ins",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("retiree_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "scheduled",
                "asked",
                "well",
                "needs_help",
                "helped",
                "visit",
                "cancelled",
                name="check_in_status",
                native_enum=False,
                create_constraint=True,
                length=24,
            ),
            nullable=False,
        ),
        sa.Column("rung", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("address", sa.String(length=100), nullable=False),
        sa.Column("due_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("window_end", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("asked_at", storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("answered_at", storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("case_id", sa.Integer(), nullable=True),
        sa.Column("created_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name=op.f("fk_check_ins_case_id_cases")),
        sa.ForeignKeyConstraint(
            ["retiree_id"],
            ["retirees.id"],
            name=op.f("fk_check_ins_retiree_id_retirees"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_check_ins")),
        sa.UniqueConstraint("retiree_id", "day", name=op.f("uq_check_ins_retiree_id_day")),
    )
    with op.batch_alter_table("check_ins", schema=None) as batch_op:
        batch_op.create_index("ix_check_ins_due", ["status", "due_at"], unique=False)
        batch_op.create_index("ix_check_ins_asked_at", ["asked_at"], unique=False)

    op.create_table(
        "family_members",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("retiree_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("relation", sa.String(length=40), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("address", sa.String(length=100), nullable=False),
        sa.Column("may_know", sa.JSON(), nullable=False),
        sa.Column("may_ask", sa.Boolean(), nullable=False),
        sa.Column("consent", sa.Text(), nullable=False),
        sa.Column("consented_on", sa.Date(), nullable=False),
        sa.Column("recorded_by_id", sa.Integer(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["recorded_by_id"], ["staff.id"], name=op.f("fk_family_members_recorded_by_id_staff")
        ),
        sa.ForeignKeyConstraint(
            ["retiree_id"],
            ["retirees.id"],
            name=op.f("fk_family_members_retiree_id_retirees"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_family_members")),
        sa.UniqueConstraint(
            "retiree_id",
            "channel",
            "address",
            name=op.f("uq_family_members_retiree_id_channel_address"),
        ),
    )
    with op.batch_alter_table("family_members", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_family_members_retiree_id"), ["retiree_id"])
        batch_op.create_index(batch_op.f("ix_family_members_address"), ["address"])
    op.create_table(
        "check_in_days",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("planned_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_check_in_days")),
    )
    op.create_table(
        "check_in_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("check_in_id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=24), nullable=False),
        sa.Column("at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["check_in_id"],
            ["check_ins.id"],
            name=op.f("fk_check_in_events_check_in_id_check_ins"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_check_in_events")),
    )
    with op.batch_alter_table("check_in_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_check_in_events_check_in_id"), ["check_in_id"], unique=False
        )


def downgrade() -> None:
    op.execute("UPDATE messages SET status = 'follow_up' WHERE status = 'check_in'")
    _message_statuses(STATUSES)
    with op.batch_alter_table("check_in_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_check_in_events_check_in_id"))

    op.drop_table("check_in_events")
    with op.batch_alter_table("check_ins", schema=None) as batch_op:
        batch_op.drop_index("ix_check_ins_asked_at")
        batch_op.drop_index("ix_check_ins_due")

    op.drop_table("check_ins")
    op.drop_table("family_members")
    op.drop_table("check_in_days")
    op.drop_table("care_plans")
