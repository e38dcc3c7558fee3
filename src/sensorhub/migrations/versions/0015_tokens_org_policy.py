"""organisation token policy: approval of members' PATs, allowed PAT scopes, an IP allowlist; and what an
organisation decided about each member's PAT (approved, denied, revoked for it)

Revision ID: 0009_tokens
Revises: 0008_tokens
"""

import sqlalchemy as sa
from alembic import op

import sensorhub.db

revision: str = "0009_tokens"
down_revision: str | None = "0008_tokens"


def upgrade() -> None:
    with op.batch_alter_table("organisations", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("require_pat_approval", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("allowed_pat_scopes", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("allowed_ips", sa.JSON(), nullable=True))
    op.create_table(
        "credential_org_access",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("credential_id", sa.String(length=36), nullable=False),
        sa.Column("org_id", sa.String(length=36), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("decided_by", sa.String(length=36), nullable=True),
        sa.Column("decided_at", sensorhub.db.UTCDateTime(), nullable=True),
        sa.Column("created_at", sensorhub.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["credential_id"], ["credentials.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["org_id"], ["organisations.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("credential_id", "org_id", name="uq_credential_org_access"),
    )
    with op.batch_alter_table("credential_org_access", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_credential_org_access_credential_id"), ["credential_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_credential_org_access_org_id"), ["org_id"], unique=False)


def downgrade() -> None:
    op.drop_table("credential_org_access")
    with op.batch_alter_table("organisations", schema=None) as batch_op:
        batch_op.drop_column("allowed_ips")
        batch_op.drop_column("allowed_pat_scopes")
        batch_op.drop_column("require_pat_approval")
