"""Initial schema: experiments, runs, params, tags, metrics, artifacts, sweeps, registry.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

KEY = 250
BIGINT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "sweep_experiments",
        sa.Column("experiment_id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(KEY), nullable=False, unique=True),
        sa.Column("artifact_root", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "sweep_runs",
        sa.Column("run_id", sa.String(32), primary_key=True),
        sa.Column(
            "experiment_id",
            sa.Integer(),
            sa.ForeignKey("sweep_experiments.experiment_id"),
            nullable=False,
        ),
        sa.Column("parent_run_id", sa.String(32), sa.ForeignKey("sweep_runs.run_id")),
        sa.Column("name", sa.String(KEY), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("start_time", sa.BigInteger(), nullable=False),
        sa.Column("end_time", sa.BigInteger()),
        sa.Column("artifact_uri", sa.Text(), nullable=False),
        sa.Column("description", sa.Text()),
    )
    op.create_index("ix_sweep_runs_experiment", "sweep_runs", ["experiment_id", "start_time"])
    op.create_index("ix_sweep_runs_parent", "sweep_runs", ["parent_run_id"])
    for table in ("sweep_params", "sweep_tags"):
        op.create_table(
            table,
            sa.Column(
                "run_id",
                sa.String(32),
                sa.ForeignKey("sweep_runs.run_id", ondelete="CASCADE"),
                primary_key=True,
            ),
            sa.Column("key", sa.String(KEY), primary_key=True),
            sa.Column("value", sa.Text(), nullable=False),
        )
    op.create_table(
        "sweep_metrics",
        sa.Column("id", BIGINT_ID, primary_key=True, autoincrement=True),
        sa.Column(
            "run_id",
            sa.String(32),
            sa.ForeignKey("sweep_runs.run_id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("key", sa.String(KEY), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("step", sa.BigInteger(), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_sweep_metrics_run_key_step", "sweep_metrics", ["run_id", "key", "step"])
    op.create_table(
        "sweep_artifacts",
        sa.Column(
            "run_id",
            sa.String(32),
            sa.ForeignKey("sweep_runs.run_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("path", sa.String(1000), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "sweep_sweeps",
        sa.Column("name", sa.String(KEY), primary_key=True),
        sa.Column("study_name", sa.String(KEY), nullable=False),
        sa.Column(
            "experiment_id",
            sa.Integer(),
            sa.ForeignKey("sweep_experiments.experiment_id"),
            nullable=False,
        ),
        sa.Column(
            "parent_run_id", sa.String(32), sa.ForeignKey("sweep_runs.run_id"), nullable=False
        ),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("spec_yaml", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "sweep_registered_models",
        sa.Column("name", sa.String(KEY), primary_key=True),
        sa.Column("description", sa.Text()),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "sweep_model_versions",
        sa.Column(
            "model_name",
            sa.String(KEY),
            sa.ForeignKey("sweep_registered_models.name"),
            primary_key=True,
        ),
        sa.Column("version", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("run_id", sa.String(32), sa.ForeignKey("sweep_runs.run_id")),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("metric_name", sa.String(KEY)),
        sa.Column("metric_value", sa.Float()),
        sa.Column("sweep_name", sa.String(KEY)),
        sa.Column("trial_number", sa.Integer()),
        sa.Column("description", sa.Text()),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
    )
    version_fk = sa.ForeignKeyConstraint(
        ["model_name", "version"],
        ["sweep_model_versions.model_name", "sweep_model_versions.version"],
    )
    op.create_table(
        "sweep_model_version_tags",
        sa.Column("model_name", sa.String(KEY), primary_key=True),
        sa.Column("version", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("key", sa.String(KEY), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
        version_fk,
    )
    op.create_table(
        "sweep_model_aliases",
        sa.Column("model_name", sa.String(KEY), primary_key=True),
        sa.Column("alias", sa.String(KEY), primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_name", "version"],
            ["sweep_model_versions.model_name", "sweep_model_versions.version"],
        ),
    )
    op.create_table(
        "sweep_registry_events",
        sa.Column("id", BIGINT_ID, primary_key=True, autoincrement=True),
        sa.Column("model_name", sa.String(KEY), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("alias", sa.String(KEY)),
        sa.Column("from_version", sa.Integer()),
        sa.Column("to_version", sa.Integer()),
        sa.Column("user", sa.String(KEY), nullable=False),
        sa.Column("host", sa.String(KEY), nullable=False),
        sa.Column("reason", sa.Text()),
        sa.Column("at", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_sweep_registry_events_model", "sweep_registry_events", ["model_name"])


def downgrade() -> None:
    for table in (
        "sweep_registry_events",
        "sweep_model_aliases",
        "sweep_model_version_tags",
        "sweep_model_versions",
        "sweep_registered_models",
        "sweep_sweeps",
        "sweep_artifacts",
        "sweep_metrics",
        "sweep_tags",
        "sweep_params",
        "sweep_runs",
        "sweep_experiments",
    ):
        op.drop_table(table)
