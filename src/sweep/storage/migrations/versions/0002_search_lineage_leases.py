"""Latest metrics and numeric params for search, dataset lineage, workers and trial
leases for agents and crash recovery, the sweep's global budget.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

KEY = 250


def _run_fk() -> sa.Column:
    return sa.Column(
        "run_id",
        sa.String(32),
        sa.ForeignKey("sweep_runs.run_id", ondelete="CASCADE"),
        primary_key=True,
    )


def upgrade() -> None:
    with op.batch_alter_table("sweep_params") as batch:
        batch.add_column(sa.Column("value_num", sa.Float(), nullable=True))
        batch.create_index("ix_sweep_params_key_num", ["key", "value_num"])
    # Numbers already logged become searchable as numbers.
    params = sa.table(
        "sweep_params",
        sa.column("run_id", sa.String),
        sa.column("key", sa.String),
        sa.column("value", sa.Text),
        sa.column("value_num", sa.Float),
    )
    connection = op.get_bind()
    for run_id, key, value in connection.execute(
        sa.select(params.c.run_id, params.c.key, params.c.value)
    ):
        try:
            number = float(value)
        except ValueError:
            continue
        connection.execute(
            params.update()
            .where(params.c.run_id == run_id, params.c.key == key)
            .values(value_num=number)
        )

    op.create_table(
        "sweep_latest_metrics",
        _run_fk(),
        sa.Column("key", sa.String(KEY), primary_key=True),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("step", sa.BigInteger(), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_sweep_latest_metrics_key_value", "sweep_latest_metrics", ["key", "value"])
    # Fill it from the history: per run and key, the point with the highest step (and,
    # among equal steps, the last logged).
    op.execute(
        """
        INSERT INTO sweep_latest_metrics (run_id, key, value, step, timestamp)
        SELECT m.run_id, m.key, m.value, m.step, m.timestamp FROM sweep_metrics m
        WHERE m.id = (
            SELECT m2.id FROM sweep_metrics m2
            WHERE m2.run_id = m.run_id AND m2.key = m.key
            ORDER BY m2.step DESC, m2.id DESC LIMIT 1
        )
        """
    )

    op.create_table(
        "sweep_run_inputs",
        _run_fk(),
        sa.Column("name", sa.String(KEY), primary_key=True),
        sa.Column("context", sa.String(64), primary_key=True),
        sa.Column("digest", sa.String(128), nullable=False),
        sa.Column("source", sa.Text()),
        sa.Column("profile", sa.Text()),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_sweep_run_inputs_digest", "sweep_run_inputs", ["digest"])

    with op.batch_alter_table("sweep_sweeps") as batch:
        batch.add_column(sa.Column("n_trials", sa.Integer(), nullable=True))

    op.create_table(
        "sweep_workers",
        sa.Column("worker_id", sa.String(32), primary_key=True),
        sa.Column("sweep_name", sa.String(KEY), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("host", sa.String(KEY), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("gpus", sa.String(KEY)),
        sa.Column("started_at", sa.BigInteger(), nullable=False),
        sa.Column("heartbeat_at", sa.BigInteger(), nullable=False),
        sa.Column("stopped_at", sa.BigInteger()),
    )
    op.create_index("ix_sweep_workers_sweep", "sweep_workers", ["sweep_name", "heartbeat_at"])
    op.create_table(
        "sweep_trial_leases",
        sa.Column("trial_id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("sweep_name", sa.String(KEY), nullable=False),
        sa.Column("worker_id", sa.String(32), nullable=False),
        sa.Column("renewed_at", sa.BigInteger(), nullable=False),
    )
    op.create_index(
        "ix_sweep_trial_leases_sweep", "sweep_trial_leases", ["sweep_name", "renewed_at"]
    )


def downgrade() -> None:
    op.drop_table("sweep_trial_leases")
    op.drop_table("sweep_workers")
    with op.batch_alter_table("sweep_sweeps") as batch:
        batch.drop_column("n_trials")
    op.drop_table("sweep_run_inputs")
    op.drop_table("sweep_latest_metrics")
    with op.batch_alter_table("sweep_params") as batch:
        batch.drop_index("ix_sweep_params_key_num")
        batch.drop_column("value_num")
