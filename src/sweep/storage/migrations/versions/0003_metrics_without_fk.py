"""Drop the foreign key of the metric history's run_id: it halves PostgreSQL's ingest.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

KEY = 250
BIGINT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _metrics_table(with_fk: bool) -> sa.Table:
    run_id = (
        sa.Column(
            "run_id",
            sa.String(32),
            sa.ForeignKey("sweep_runs.run_id", ondelete="CASCADE"),
            nullable=False,
        )
        if with_fk
        else sa.Column("run_id", sa.String(32), nullable=False)
    )
    return sa.Table(
        "sweep_metrics",
        sa.MetaData(),
        sa.Column("id", BIGINT_ID, primary_key=True, autoincrement=True),
        run_id,
        sa.Column("key", sa.String(KEY), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("step", sa.BigInteger(), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.Index("ix_sweep_metrics_run_key_step", "run_id", "key", "step"),
    )


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # SQLite's foreign keys have no name: rebuild the table from a definition
        # without it (the rows are copied over).
        with op.batch_alter_table(
            "sweep_metrics", copy_from=_metrics_table(with_fk=False), recreate="always"
        ):
            pass
        return
    for fk in sa.inspect(op.get_bind()).get_foreign_keys("sweep_metrics"):
        assert fk["name"] is not None  # PostgreSQL names every constraint
        op.drop_constraint(fk["name"], "sweep_metrics", type_="foreignkey")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table(
            "sweep_metrics", copy_from=_metrics_table(with_fk=True), recreate="always"
        ):
            pass
        return
    op.create_foreign_key(
        "sweep_metrics_run_id_fkey",
        "sweep_metrics",
        "sweep_runs",
        ["run_id"],
        ["run_id"],
        ondelete="CASCADE",
    )
