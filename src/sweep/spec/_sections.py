"""The sections of a spec: metric, budget, resources, Ray, tracking, registry, retries
and leases."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from sweep.spec._base import Int, Number, OptionalText, _SpecModel
from sweep.spec._common import MAX_INT32, MAX_NAME_LENGTH, _show, _spec_error

# Defaults are given as Field(default=...): type checkers read only that keyword as a
# default (pydantic's dataclass_transform), so that e.g. ResourcesSpec() checks as a call
# without arguments and the class can be a default_factory.


class MetricSpec(_SpecModel):
    """The metric the objective returns and which way is better."""

    name: str = Field(min_length=1, description="the metric's name, e.g. val_accuracy")
    direction: Literal["minimize", "maximize"] = Field(description="minimize or maximize")
    target: Number | None = Field(
        default=None,
        description="W&B's name for budget.target: end the sweep once a complete trial "
        "reaches this value",
    )


class BudgetSpec(_SpecModel):
    """When the sweep stops: after ``n_trials`` trials, ``timeout`` seconds, or both."""

    n_trials: Int | None = Field(
        default=None,
        ge=1,
        le=MAX_INT32,
        description=f"the number of trials (an integer from 1 to {MAX_INT32})",
    )
    timeout: Number | None = Field(default=None, gt=0, description="seconds (a number > 0)")
    target: Number | None = Field(
        default=None,
        description="end the sweep once a complete trial reaches this value (>= when "
        "maximizing, <= when minimizing); W&B's metric.target, Katib's objective.goal",
    )
    on_target: Literal["finish", "cancel"] = Field(
        default="finish",
        description="what running trials do when the target is reached: finish, or cancel",
    )
    patience: Int | None = Field(
        default=None,
        ge=1,
        description="end the sweep once this many finished trials in a row did not improve "
        "on the best (an integer >= 1)",
    )

    @model_validator(mode="after")
    def _something_set(self) -> BudgetSpec:
        if self.n_trials is None and self.timeout is None:
            raise _spec_error(
                "budget needs n_trials (an integer >= 1), timeout (seconds > 0) or both "
                "(a target or patience alone may never end the sweep)"
            )
        if self.on_target == "cancel" and self.target is None:
            raise _spec_error(
                "on_target: cancel says what running trials do when the target is reached; "
                "set budget.target too, or drop on_target",
                "on_target",
            )
        return self

    def reached(self, value: float | None, direction: str) -> bool:
        """Whether ``value`` reaches ``target`` (>= when maximizing, <= when minimizing)."""
        if self.target is None or value is None:
            return False
        return value >= self.target if direction == "maximize" else value <= self.target


class ResourcesSpec(_SpecModel):
    """What one trial reserves from Ray."""

    cpu: Number = Field(default=1.0, gt=0, description="CPUs per trial (a number > 0)")
    gpu: Number = Field(default=0.0, ge=0, description="GPUs per trial (a number >= 0)")
    memory_mb: Int | None = Field(
        default=None,
        ge=1,
        description="memory a trial may allocate, in MiB (an integer >= 1); past it the "
        "objective gets a MemoryError and only its trial fails",
    )

    @model_validator(mode="after")
    def _ray_whole_numbers(self) -> ResourcesSpec:
        # Ray rejects fractional quantities above 1 when the task is submitted; say so now.
        for key in ("cpu", "gpu"):
            value = getattr(self, key)
            if value > 1 and not float(value).is_integer():
                raise _spec_error(
                    f"{key} must be a fraction up to 1 or a whole number (Ray's rule), got {value}",
                    key,
                )
        return self


class RaySpec(_SpecModel):
    """Where trials run: an existing Ray cluster (``address``) or a locally started Ray."""

    address: OptionalText = Field(
        default=None, description="a Ray cluster address, e.g. auto or ray://head:10001"
    )
    num_cpus: Int | None = Field(
        default=None, ge=1, description="logical CPUs of a local Ray (int >= 1)"
    )
    num_gpus: Int | None = Field(
        default=None, ge=0, description="logical GPUs of a local Ray (int >= 0)"
    )

    @model_validator(mode="after")
    def _local_only(self) -> RaySpec:
        # Ray refuses num_cpus/num_gpus when connecting to an existing cluster.
        if self.address is not None and self.address != "local":
            for key in ("num_cpus", "num_gpus"):
                if getattr(self, key) is not None:
                    raise _spec_error(
                        f"{key} applies only to a Ray that sweep starts locally; remove it or "
                        f"unset address (got address {self.address!r})",
                        key,
                    )
        return self


class TrackingSpec(_SpecModel):
    """Experiment tracking settings."""

    experiment: OptionalText = Field(
        default=None,
        max_length=MAX_NAME_LENGTH,
        description="experiment name (default: the sweep name)",
    )
    artifact_root: OptionalText = Field(default=None, description="where run artifacts are stored")
    mirror: Literal["mlflow"] | None = Field(
        default=None, description="mirror each finished run to MLflow as the sweep runs"
    )
    mlflow_uri: OptionalText = Field(
        default=None, description="the MLflow tracking URI the mirror writes to"
    )

    @model_validator(mode="after")
    def _mirror_needs_a_uri(self) -> TrackingSpec:
        if self.mirror == "mlflow" and not self.mlflow_uri:
            raise _spec_error(
                "mirror: mlflow needs mlflow_uri (e.g. sqlite:///mlflow.db or an MLflow "
                "server's http:// URL)",
                "mlflow_uri",
            )
        return self


_ALIAS_RE = re.compile(r"[^/@\s]+")


class SelectSpec(_SpecModel):
    """Which trial of a multi-objective sweep's Pareto front is registered: the one best
    on ``metric``, or the one with the highest ``weights``-weighted sum of its values."""

    metric: OptionalText = Field(
        default=None, description="the metric whose best Pareto-front trial is registered"
    )
    weights: dict[str, Number] | None = Field(
        default=None,
        description="metric name -> weight; the Pareto-front trial with the highest "
        "weighted sum of its values is registered",
    )

    @model_validator(mode="after")
    def _one_rule(self) -> SelectSpec:
        if (self.metric is None) == (self.weights is None):
            raise _spec_error(
                "select needs exactly one rule: metric (a metric's name) or weights (a "
                "mapping of metric names to numbers)"
            )
        if self.weights is not None and not any(self.weights.values()):
            raise _spec_error("weights needs at least one non-zero weight", "weights")
        return self


class RegistrySpec(_SpecModel):
    """Register the best trial's model under ``model_name`` and point ``alias`` at it."""

    model_name: str = Field(
        min_length=1, max_length=MAX_NAME_LENGTH, description="the registered model's name"
    )
    alias: str = Field(
        default="challenger",
        min_length=1,
        max_length=MAX_NAME_LENGTH,
        description="alias set on the new version",
    )
    required: bool = Field(
        default=False, description="fail the sweep when no model can be registered"
    )
    threshold: Number | None = Field(
        default=None,
        description="register only a best value at least this good "
        "(>= when maximizing, <= when minimizing)",
    )
    beat_champion: bool = Field(
        default=False, description="register only a best value better than the @champion's metric"
    )
    select: SelectSpec | None = Field(
        default=None,
        description="with several objectives, which Pareto-front trial is registered: "
        "{metric: NAME} or {weights: {NAME: number, ...}}",
    )

    @field_validator("model_name")
    @classmethod
    def _uri_safe_name(cls, value: str) -> str:
        # models:/<name>@<alias> and models:/<name>/<version> must be able to name it.
        if "/" in value or "@" in value or value != value.strip():
            raise _spec_error(
                "model_name must not contain '/' or '@' or start or end with spaces, so "
                f"that models:/<name>@<alias> can name it; got {_show(value)}"
            )
        return value

    @field_validator("alias")
    @classmethod
    def _uri_safe_alias(cls, value: str) -> str:
        if not _ALIAS_RE.fullmatch(value):
            raise _spec_error(
                "alias must not contain '/', '@' or spaces, so that models:/<name>@<alias> "
                f"can name it; got {_show(value)}"
            )
        return value


class RetrySpec(_SpecModel):
    """What happens to a trial whose worker died (its lease expired)."""

    max_retries: Int = Field(
        default=1, ge=0, description="times a lost trial is retried with the same params (int >= 0)"
    )


class LeaseSpec(_SpecModel):
    """Heartbeats of running trials: a trial whose worker stops renewing its lease for
    ``timeout`` seconds is failed (and retried by the retry policy)."""

    heartbeat_interval: Number = Field(
        default=5.0, gt=0, description="seconds between renewals (> 0)"
    )
    timeout: Number = Field(default=30.0, gt=0, description="seconds without renewal (> 0)")

    @model_validator(mode="after")
    def _timeout_covers_beats(self) -> LeaseSpec:
        if self.timeout < 2 * self.heartbeat_interval:
            raise _spec_error(
                f"timeout ({self.timeout:g} s) must be at least twice heartbeat_interval "
                f"({self.heartbeat_interval:g} s), or one late beat fails a healthy trial",
                "timeout",
            )
        return self
