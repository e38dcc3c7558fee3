"""entities: NGSI-LD multi-attributes (several instances of one attribute, told apart by ``datasetId``)

Revision ID: 0025_entity_datasets
Revises: 0024_attribute_instances

``entities.attrs`` keeps one instance per attribute (the default one, else the first given): what every
API family reads. The other instances of a multi-attribute go to ``entities.datasets`` (a JSON object
attribute name → array of instances, NULL for none). No row moves: no existing entity has one.
"""

import sqlalchemy as sa
from alembic import op

revision: str = "0025_entity_datasets"
down_revision: str | None = "0024_attribute_instances"


def upgrade() -> None:
    with op.batch_alter_table("entities", schema=None) as batch_op:
        batch_op.add_column(sa.Column("datasets", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("entities", schema=None) as batch_op:
        batch_op.drop_column("datasets")
