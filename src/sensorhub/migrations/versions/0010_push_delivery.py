"""push: connectors, rules (+ states, history), deliveries (+ attempts) and the fan-out cursor

Revision ID: 0009_push_delivery
Revises: 0006_sumsq
"""

import sqlalchemy as sa
from alembic import op

import sensorhub.db

revision: str = "0009_push_delivery"
down_revision: str | None = "0006_sumsq"

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TS = sensorhub.db.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "push_connectors",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("org_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("secrets_enc", sa.Text(), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("disabled_reason", sa.String(length=500), nullable=True),
        sa.Column("created_by", sa.String(length=36), nullable=True),
        sa.Column("created_at", _TS(), nullable=False),
        sa.Column("updated_at", _TS(), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["organisations.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_push_connectors_org_id", "push_connectors", ["org_id"])
    op.create_table(
        "push_rules",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("org_id", sa.String(length=36), nullable=False),
        sa.Column("workspace_id", sa.String(length=36), nullable=True),
        sa.Column("entity_type", sa.String(length=200), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("condition", sa.JSON(), nullable=True),
        sa.Column("cooldown_s", sa.Integer(), nullable=False),
        sa.Column("actions", sa.JSON(), nullable=False),
        sa.Column("notify_resolved", sa.Boolean(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(length=36), nullable=False),
        sa.Column("created_at", _TS(), nullable=False),
        sa.Column("updated_at", _TS(), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["organisations.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_push_rules_org_id", "push_rules", ["org_id"])
    op.create_table(
        "push_rule_states",
        sa.Column("rule_id", sa.String(length=36), nullable=False),
        sa.Column("entity_pk", sa.BigInteger(), nullable=False),
        sa.Column("entity_ref", sa.String(length=512), nullable=False),
        sa.Column("org_id", sa.String(length=36), nullable=False),
        sa.Column("workspace_id", sa.String(length=36), nullable=False),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("since", _TS(), nullable=False),
        sa.Column("last_value", sa.JSON(), nullable=True),
        sa.Column("last_time_us", sa.BigInteger(), nullable=True),
        sa.Column("last_seen_at", _TS(), nullable=False),
        sa.Column("last_notified_at", _TS(), nullable=True),
        sa.ForeignKeyConstraint(["rule_id"], ["push_rules.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("rule_id", "entity_pk"),
    )
    op.create_table(
        "push_rule_history",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("rule_id", sa.String(length=36), nullable=False),
        sa.Column("entity_ref", sa.String(length=512), nullable=False),
        sa.Column("attribute", sa.String(length=200), nullable=True),
        sa.Column("from_state", sa.String(length=8), nullable=False),
        sa.Column("to_state", sa.String(length=8), nullable=False),
        sa.Column("value", sa.JSON(), nullable=True),
        sa.Column("time_us", sa.BigInteger(), nullable=True),
        sa.Column("notified", sa.Boolean(), nullable=False),
        sa.Column("at", _TS(), nullable=False),
        sa.ForeignKeyConstraint(["rule_id"], ["push_rules.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_push_rule_history_rule", "push_rule_history", ["rule_id", "id"])
    op.create_table(
        "push_deliveries",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("org_id", sa.String(length=36), nullable=False),
        sa.Column("target_kind", sa.String(length=40), nullable=False),
        sa.Column("target_id", sa.String(length=64), nullable=False),
        sa.Column("rule_id", sa.String(length=36), nullable=True),
        sa.Column("ordering_key", sa.String(length=200), nullable=False),
        sa.Column("entity_pk", sa.BigInteger(), nullable=True),
        sa.Column("owner_user_id", sa.String(length=36), nullable=True),
        sa.Column("owner_credential_id", sa.String(length=36), nullable=True),
        sa.Column("message", sa.JSON(), nullable=False),
        sa.Column("first_event_id", sa.BigInteger(), nullable=True),
        sa.Column("last_event_id", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", _TS(), nullable=False),
        sa.Column("lease_until", _TS(), nullable=True),
        sa.Column("claimed_by", sa.String(length=200), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("created_at", _TS(), nullable=False),
        sa.Column("delivered_at", _TS(), nullable=True),
        sa.ForeignKeyConstraint(["org_id"], ["organisations.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_push_deliveries_due", "push_deliveries", ["status", "next_attempt_at"])
    op.create_index("ix_push_deliveries_key", "push_deliveries", ["ordering_key", "status", "id"])
    op.create_index("ix_push_deliveries_target", "push_deliveries", ["target_kind", "target_id", "id"])
    op.create_table(
        "push_attempts",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("delivery_id", sa.BigInteger(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("at", _TS(), nullable=False),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["delivery_id"], ["push_deliveries.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_push_attempts_delivery", "push_attempts", ["delivery_id", "id"])
    op.create_table(
        "push_cursors",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("updated_at", _TS(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    for t in (
        "push_cursors",
        "push_attempts",
        "push_deliveries",
        "push_rule_history",
        "push_rule_states",
        "push_rules",
        "push_connectors",
    ):
        op.drop_table(t)
