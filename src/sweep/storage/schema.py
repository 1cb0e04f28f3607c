"""The tables sweep owns, as SQLAlchemy 2 ORM models.

Optuna's own tables live in the same database; ours are prefixed ``sweep_`` so the two
never collide. Times are epoch milliseconds (portable, cheap to index and compare).
Change these only together with a migration under ``migrations/versions``.
"""

from __future__ import annotations

from typing import cast

from sqlalchemy import (
    BigInteger,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Table,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

KEY_LENGTH = 250
RUN_ID_LENGTH = 32


class Base(DeclarativeBase):
    pass


class ExperimentRow(Base):
    __tablename__ = "sweep_experiments"

    experiment_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(KEY_LENGTH), unique=True)
    artifact_root: Mapped[str] = mapped_column(Text)
    created_at: Mapped[int] = mapped_column(BigInteger)


class RunRow(Base):
    __tablename__ = "sweep_runs"
    __table_args__ = (
        Index("ix_sweep_runs_experiment", "experiment_id", "start_time"),
        Index("ix_sweep_runs_parent", "parent_run_id"),
    )

    run_id: Mapped[str] = mapped_column(String(RUN_ID_LENGTH), primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("sweep_experiments.experiment_id"))
    parent_run_id: Mapped[str | None] = mapped_column(
        ForeignKey("sweep_runs.run_id"), nullable=True
    )
    name: Mapped[str] = mapped_column(String(KEY_LENGTH))
    status: Mapped[str] = mapped_column(String(16))
    start_time: Mapped[int] = mapped_column(BigInteger)
    end_time: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    artifact_uri: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)


class ParamRow(Base):
    __tablename__ = "sweep_params"
    __table_args__ = (Index("ix_sweep_params_key_num", "key", "value_num"),)

    run_id: Mapped[str] = mapped_column(
        ForeignKey("sweep_runs.run_id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(KEY_LENGTH), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    # The value as a number when it is one, so that search can compare numerically.
    value_num: Mapped[float | None] = mapped_column(Float, nullable=True)


class TagRow(Base):
    __tablename__ = "sweep_tags"

    run_id: Mapped[str] = mapped_column(
        ForeignKey("sweep_runs.run_id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(KEY_LENGTH), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class MetricRow(Base):
    """The metric history. ``run_id`` has no foreign key on purpose: checking one per row
    costs PostgreSQL about half of its ingest time, and only the tracking store writes
    here, always for a run it has opened (its latest point, in ``sweep_latest_metrics``,
    keeps the key)."""

    __tablename__ = "sweep_metrics"
    __table_args__ = (Index("ix_sweep_metrics_run_key_step", "run_id", "key", "step"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    run_id: Mapped[str] = mapped_column(String(RUN_ID_LENGTH))
    key: Mapped[str] = mapped_column(String(KEY_LENGTH))
    value: Mapped[float] = mapped_column(Float)
    step: Mapped[int] = mapped_column(BigInteger)
    timestamp: Mapped[int] = mapped_column(BigInteger)


class LatestMetricRow(Base):
    """The highest-step point of each metric of each run, kept up to date on ingest, so
    that listing and searching runs never scans the metric history."""

    __tablename__ = "sweep_latest_metrics"
    __table_args__ = (Index("ix_sweep_latest_metrics_key_value", "key", "value"),)

    run_id: Mapped[str] = mapped_column(
        ForeignKey("sweep_runs.run_id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(KEY_LENGTH), primary_key=True)
    value: Mapped[float] = mapped_column(Float)
    step: Mapped[int] = mapped_column(BigInteger)
    timestamp: Mapped[int] = mapped_column(BigInteger)


class RunInputRow(Base):
    """Dataset lineage: a dataset a run used, in a context (training, validation, ...)."""

    __tablename__ = "sweep_run_inputs"
    __table_args__ = (Index("ix_sweep_run_inputs_digest", "digest"),)

    run_id: Mapped[str] = mapped_column(
        ForeignKey("sweep_runs.run_id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(KEY_LENGTH), primary_key=True)
    context: Mapped[str] = mapped_column(String(64), primary_key=True)
    digest: Mapped[str] = mapped_column(String(128))
    source: Mapped[str | None] = mapped_column(Text, nullable=True)
    profile: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON: rows, shape, ...
    created_at: Mapped[int] = mapped_column(BigInteger)


class ArtifactRow(Base):
    __tablename__ = "sweep_artifacts"

    run_id: Mapped[str] = mapped_column(
        ForeignKey("sweep_runs.run_id", ondelete="CASCADE"), primary_key=True
    )
    path: Mapped[str] = mapped_column(String(1000), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # "file", "dir" or "model"
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[int] = mapped_column(BigInteger)


class SweepRow(Base):
    """One row per sweep: ties the Optuna study to its experiment and parent run."""

    __tablename__ = "sweep_sweeps"

    name: Mapped[str] = mapped_column(String(KEY_LENGTH), primary_key=True)
    study_name: Mapped[str] = mapped_column(String(KEY_LENGTH))
    experiment_id: Mapped[int] = mapped_column(ForeignKey("sweep_experiments.experiment_id"))
    parent_run_id: Mapped[str] = mapped_column(ForeignKey("sweep_runs.run_id"))
    status: Mapped[str] = mapped_column(String(16))
    spec_yaml: Mapped[str] = mapped_column(Text)
    created_at: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)
    # The global budget every controller and agent claims trial slots against.
    n_trials: Mapped[int | None] = mapped_column(Integer, nullable=True)


class WorkerRow(Base):
    """A process working on a sweep (controller, Ray worker or agent worker) and its
    heartbeat; shown by `sweep status`."""

    __tablename__ = "sweep_workers"
    __table_args__ = (Index("ix_sweep_workers_sweep", "sweep_name", "heartbeat_at"),)

    worker_id: Mapped[str] = mapped_column(String(RUN_ID_LENGTH), primary_key=True)
    sweep_name: Mapped[str] = mapped_column(String(KEY_LENGTH))
    kind: Mapped[str] = mapped_column(String(16))  # controller, ray or agent
    host: Mapped[str] = mapped_column(String(KEY_LENGTH))
    pid: Mapped[int] = mapped_column(Integer)
    gpus: Mapped[str | None] = mapped_column(String(KEY_LENGTH), nullable=True)
    started_at: Mapped[int] = mapped_column(BigInteger)
    heartbeat_at: Mapped[int] = mapped_column(BigInteger)
    stopped_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class TrialLeaseRow(Base):
    """The lease on a running trial: its worker renews ``renewed_at``; a lease older
    than the sweep's lease timeout means the worker died and the trial is failed."""

    __tablename__ = "sweep_trial_leases"
    __table_args__ = (Index("ix_sweep_trial_leases_sweep", "sweep_name", "renewed_at"),)

    trial_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    sweep_name: Mapped[str] = mapped_column(String(KEY_LENGTH))
    worker_id: Mapped[str] = mapped_column(String(RUN_ID_LENGTH))
    renewed_at: Mapped[int] = mapped_column(BigInteger)


# Leases are written through Core on every claim and trial end. DeclarativeBase types
# ``__table__`` as any FromClause (a model may map a join); TrialLeaseRow maps one Table.
LEASE_TABLE = cast(Table, TrialLeaseRow.__table__)


class StudySlotsRow(Base):
    """A study's trial slots, counted once: its trials, those WAITING, those that use no
    budget (killed, superseded), up to trial ``seen_trial_id``. A claim counts only the
    trials created after it (sweep.storage._slots), so its cost does not grow with the
    study. Written under the sweep's claim lock only."""

    __tablename__ = "sweep_study_slots"

    study_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seen_trial_id: Mapped[int] = mapped_column(Integer)
    trials: Mapped[int] = mapped_column(Integer)
    waiting: Mapped[int] = mapped_column(Integer)
    uncounted: Mapped[int] = mapped_column(Integer)


class RegisteredModelRow(Base):
    __tablename__ = "sweep_registered_models"

    name: Mapped[str] = mapped_column(String(KEY_LENGTH), primary_key=True)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[int] = mapped_column(BigInteger)


class ModelVersionRow(Base):
    __tablename__ = "sweep_model_versions"

    model_name: Mapped[str] = mapped_column(
        ForeignKey("sweep_registered_models.name"), primary_key=True
    )
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    run_id: Mapped[str | None] = mapped_column(ForeignKey("sweep_runs.run_id"), nullable=True)
    source: Mapped[str] = mapped_column(Text)
    metric_name: Mapped[str | None] = mapped_column(String(KEY_LENGTH), nullable=True)
    metric_value: Mapped[float | None] = mapped_column(Float, nullable=True)
    sweep_name: Mapped[str | None] = mapped_column(String(KEY_LENGTH), nullable=True)
    trial_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[int] = mapped_column(BigInteger)


class ModelVersionTagRow(Base):
    __tablename__ = "sweep_model_version_tags"
    __table_args__ = (
        ForeignKeyConstraint(
            ["model_name", "version"],
            ["sweep_model_versions.model_name", "sweep_model_versions.version"],
        ),
    )

    model_name: Mapped[str] = mapped_column(String(KEY_LENGTH), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    key: Mapped[str] = mapped_column(String(KEY_LENGTH), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class ModelAliasRow(Base):
    __tablename__ = "sweep_model_aliases"
    __table_args__ = (
        ForeignKeyConstraint(
            ["model_name", "version"],
            ["sweep_model_versions.model_name", "sweep_model_versions.version"],
        ),
    )

    model_name: Mapped[str] = mapped_column(String(KEY_LENGTH), primary_key=True)
    alias: Mapped[str] = mapped_column(String(KEY_LENGTH), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)


class RegistryEventRow(Base):
    """Audit log: every version registration, alias move, tag and description change,
    never updated or deleted. ``alias`` names the alias an alias event moves, ``tag`` the
    key a tag event concerns."""

    __tablename__ = "sweep_registry_events"
    __table_args__ = (Index("ix_sweep_registry_events_model", "model_name"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    model_name: Mapped[str] = mapped_column(String(KEY_LENGTH))
    action: Mapped[str] = mapped_column(String(32))
    alias: Mapped[str | None] = mapped_column(String(KEY_LENGTH), nullable=True)
    tag: Mapped[str | None] = mapped_column(String(KEY_LENGTH), nullable=True)
    from_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    to_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    user: Mapped[str] = mapped_column(String(KEY_LENGTH))
    host: Mapped[str] = mapped_column(String(KEY_LENGTH))
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    at: Mapped[int] = mapped_column(BigInteger)
