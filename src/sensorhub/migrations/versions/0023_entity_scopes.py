"""entities: NGSI-LD scopes (``scope``: a string or an array of strings such as ``/Madrid/Gardens``)

Revision ID: 0023_entity_scopes
Revises: 0022_push_event_types

An entity's scopes go to ``entities.scopes`` (a JSON array, NULL for none) and, one row each, to
``entity_scopes`` — the index ``scopeQ`` uses (kept by every ORM write, see sensorhub.entities.models).
No row moves: no existing entity has a scope.
"""

import sqlalchemy as sa
from alembic import op

revision: str = "0023_entity_scopes"
down_revision: str | None = "0022_push_event_types"


def upgrade() -> None:
    with op.batch_alter_table("entities", schema=None) as batch_op:
        batch_op.add_column(sa.Column("scopes", sa.JSON(), nullable=True))
    op.create_table(
        "entity_scopes",
        sa.Column(
            "entity_pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            sa.ForeignKey("entities.pk", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("scope", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("entity_pk", "scope", name="pk_entity_scopes"),
    )
    op.create_index("ix_entity_scopes_scope", "entity_scopes", ["scope", "entity_pk"])


def downgrade() -> None:
    op.drop_index("ix_entity_scopes_scope", "entity_scopes")
    op.drop_table("entity_scopes")
    with op.batch_alter_table("entities", schema=None) as batch_op:
        batch_op.drop_column("scopes")
