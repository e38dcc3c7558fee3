"""entities: several types per entity (NGSI-LD ``type`` may be an array)

Revision ID: 0017_entity_types
Revises: 0016_oidc_sign_in

An entity's first type stays in ``entities.type`` (so every existing single-typed entity keeps its type
as it is, and the (organisation, type, id) index still serves ``type=A``); the types after it go to
``entities.extra_types`` (a JSON array, NULL for one type) and, one row each, to ``entity_types`` — the
index type queries use (kept by every ORM write, see sensorhub.entities.models). No row moves: an
existing entity has exactly the one type it had, and ``type=<it>`` still finds it through the column.
"""

import sqlalchemy as sa
from alembic import op

revision: str = "0017_entity_types"
down_revision: str | None = "0016_oidc_sign_in"


def upgrade() -> None:
    with op.batch_alter_table("entities", schema=None) as batch_op:
        batch_op.add_column(sa.Column("extra_types", sa.JSON(), nullable=True))
    op.create_table(
        "entity_types",
        sa.Column(
            "entity_pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            sa.ForeignKey("entities.pk", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("type", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("entity_pk", "type", name="pk_entity_types"),
    )
    op.create_index("ix_entity_types_type", "entity_types", ["type", "entity_pk"])


def downgrade() -> None:
    op.drop_index("ix_entity_types_type", "entity_types")
    op.drop_table("entity_types")
    with op.batch_alter_table("entities", schema=None) as batch_op:
        batch_op.drop_column("extra_types")
