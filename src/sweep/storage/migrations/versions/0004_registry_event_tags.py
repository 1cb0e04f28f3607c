"""A column of its own for the tag key of registry tag events, which 0001-0003 kept in
``alias``.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

KEY = 250
TAG_ACTIONS = ("set_tag", "delete_tag")

_events = sa.table(
    "sweep_registry_events",
    sa.column("action", sa.String),
    sa.column("alias", sa.String),
    sa.column("tag", sa.String),
)


def upgrade() -> None:
    with op.batch_alter_table("sweep_registry_events") as batch:
        batch.add_column(sa.Column("tag", sa.String(KEY), nullable=True))
    # Tag events written before this revision kept their key in ``alias``: move it.
    op.execute(
        _events.update()
        .where(_events.c.action.in_(TAG_ACTIONS))
        .values(tag=_events.c.alias, alias=None)
    )


def downgrade() -> None:
    op.execute(
        _events.update().where(_events.c.action.in_(TAG_ACTIONS)).values(alias=_events.c.tag)
    )
    with op.batch_alter_table("sweep_registry_events") as batch:
        batch.drop_column("tag")
