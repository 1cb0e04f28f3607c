"""A study's trial slots counted once (``sweep_study_slots``), so that a claim's cost
does not grow with the study's finished trials; an index on Optuna's ``trials`` by
study and id, for counting the trials created since.

Rows are created by the first claim after the upgrade (which counts the study's trials
once), so no data moves here.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

#: On Optuna's table (created before ours, see Database.upgrade): the trials of a study
#: after a given id, an index range whatever plan the server picks.
TRIALS_INDEX = "ix_sweep_trials_study_trial"


def upgrade() -> None:
    op.create_table(
        "sweep_study_slots",
        sa.Column("study_id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("seen_trial_id", sa.Integer(), nullable=False),
        sa.Column("trials", sa.Integer(), nullable=False),
        sa.Column("waiting", sa.Integer(), nullable=False),
        sa.Column("uncounted", sa.Integer(), nullable=False),
    )
    if sa.inspect(op.get_bind()).has_table("trials"):
        op.create_index(TRIALS_INDEX, "trials", ["study_id", "trial_id"])


def downgrade() -> None:
    if sa.inspect(op.get_bind()).has_table("trials"):
        op.drop_index(TRIALS_INDEX, table_name="trials")
    op.drop_table("sweep_study_slots")
