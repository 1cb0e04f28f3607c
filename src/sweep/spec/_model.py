"""The sections of a spec and :class:`SweepSpec`, the model of a whole spec."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import optuna
from pydantic import Field, PrivateAttr, field_validator, model_validator

from sweep.errors import SpecError
from sweep.spec._base import Int, Number, OptionalText, _SpecModel
from sweep.spec._common import MAX_INT32, MAX_NAME_LENGTH, _show, _spec_error
from sweep.spec._optuna import PRUNERS, SAMPLERS, PrunerSpec, SamplerSpec
from sweep.spec._parameters import ParameterSpec
from sweep.spec._yaml import _nearest_line

# Defaults are given as Field(default=...): type checkers read only that keyword as a
# default (pydantic's dataclass_transform), so that e.g. ResourcesSpec() checks as a call
# without arguments and the class can be a default_factory.


class MetricSpec(_SpecModel):
    """The metric the objective returns and which way is better."""

    name: str = Field(min_length=1, description="the metric's name, e.g. val_accuracy")
    direction: Literal["minimize", "maximize"] = Field(description="minimize or maximize")


class BudgetSpec(_SpecModel):
    """When the sweep stops: after ``n_trials`` trials, ``timeout`` seconds, or both."""

    n_trials: Int | None = Field(
        default=None,
        ge=1,
        le=MAX_INT32,
        description=f"the number of trials (an integer from 1 to {MAX_INT32})",
    )
    timeout: Number | None = Field(default=None, gt=0, description="seconds (a number > 0)")

    @model_validator(mode="after")
    def _something_set(self) -> BudgetSpec:
        if self.n_trials is None and self.timeout is None:
            raise _spec_error(
                "budget needs n_trials (an integer >= 1), timeout (seconds > 0) or both"
            )
        return self


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


_ALIAS_RE = re.compile(r"[^/@\s]+")


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


_NAME_RE = re.compile(r"[A-Za-z0-9._-]+")


def _is_objective_ref(value: str) -> bool:
    module, sep, function = value.partition(":")
    return (
        bool(sep)
        and function.isidentifier()
        and all(part.isidentifier() for part in module.split("."))
    )


class SweepSpec(_SpecModel):
    """A whole sweep spec. Build it with :func:`load_spec` or :func:`load_spec_from_dict`."""

    name: str = Field(description="the sweep's name: letters, digits, '.', '_' and '-'")
    objective: str = Field(
        description="the objective function as 'module.path:function', e.g. train:objective"
    )
    code_dir: str = Field(
        default=".", description="the directory (relative to the spec) of the code"
    )
    parameters: dict[str, ParameterSpec] = Field(
        default_factory=dict, description="a mapping of parameter names to parameter specs"
    )
    metric: MetricSpec = Field(description="a mapping with name and direction")
    sampler: SamplerSpec = Field(
        default_factory=lambda: SamplerSpec(name="tpe"),
        description=f"a mapping with name (one of {', '.join(SAMPLERS)}) and options",
    )
    pruner: PrunerSpec = Field(
        default_factory=lambda: PrunerSpec(name="hyperband"),
        description=f"a mapping with name (one of {', '.join(PRUNERS)}) and options",
    )
    budget: BudgetSpec = Field(
        description="a mapping with n_trials (an integer >= 1), timeout (seconds > 0) or both"
    )
    parallelism: Int = Field(default=1, ge=1, description="trials run at once (an integer >= 1)")
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    ray: RaySpec = Field(default_factory=RaySpec)
    storage: OptionalText = Field(default=None, description="a SQLAlchemy database URL")
    tracking: TrackingSpec = Field(default_factory=TrackingSpec)
    registry: RegistrySpec | None = None
    trial_timeout: Number | None = Field(
        default=None,
        gt=0,
        description="seconds a trial may run before it is killed and failed (> 0)",
    )
    retries: RetrySpec = Field(default_factory=RetrySpec)
    lease: LeaseSpec = Field(default_factory=LeaseSpec)

    # Where the spec came from; set by the loaders, not part of the schema.
    _source: str = PrivateAttr(default="<dict>")
    _source_path: Path | None = PrivateAttr(default=None)
    _base_dir: Path | None = PrivateAttr(default=None)
    _lines: dict[str, int] = PrivateAttr(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _null_means_default(cls, data: Any) -> Any:
        # `parameters:` with everything under it commented out reads as null; so does
        # `ray:` left empty. For keys with a default, null means "use the default".
        if isinstance(data, dict):
            optional = {n for n, f in cls.model_fields.items() if not f.is_required()}
            data = {k: v for k, v in data.items() if not (v is None and k in optional)}
        return data

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _NAME_RE.fullmatch(value):
            raise _spec_error(
                f"name may contain only letters, digits, '.', '_' and '-', got {_show(value)}"
            )
        if len(value) > MAX_NAME_LENGTH:
            raise _spec_error(
                f"name may be at most {MAX_NAME_LENGTH} characters (the store's limit), "
                f"got {len(value)}"
            )
        return value

    @field_validator("objective")
    @classmethod
    def _check_objective(cls, value: str) -> str:
        if not _is_objective_ref(value.strip()):
            raise _spec_error(
                "objective must have the form 'module.path:function' (Python identifiers, "
                f"e.g. train:objective), got {_show(value)}"
            )
        return value.strip()

    @field_validator("storage")
    @classmethod
    def _check_storage(cls, value: str | None) -> str | None:
        if value is None:
            return None
        # Imported here: SQLAlchemy is slow to import and only specs with storage need it.
        from sweep.errors import StorageError
        from sweep.storage._url import check_url

        try:
            check_url(value)
        except StorageError as exc:
            # The message masks any password the URL holds.
            raise _spec_error(str(exc)) from None
        return value

    # -- derived values -------------------------------------------------------------------

    @property
    def objective_module(self) -> str:
        """The module part of ``objective``."""
        return self.objective.partition(":")[0]

    @property
    def objective_function(self) -> str:
        """The function part of ``objective``."""
        return self.objective.partition(":")[2]

    @property
    def code_path(self) -> Path:
        """``code_dir`` resolved against the spec file's directory (or the cwd for dicts)."""
        base = self._base_dir if self._base_dir is not None else Path.cwd()
        return (base / Path(self.code_dir).expanduser()).resolve()

    @property
    def experiment_name(self) -> str:
        """The tracking experiment: ``tracking.experiment`` or else the sweep name."""
        return self.tracking.experiment or self.name

    @property
    def source_path(self) -> Path | None:
        """The absolute path of the spec file, or None for a spec built from a dict."""
        return self._source_path

    @property
    def source(self) -> str:
        """How errors name this spec's origin: the file as given, or e.g. ``<dict>``."""
        return self._source

    def line_of(self, key_path: str, *, nearest: bool = True) -> int | None:
        """The YAML line of ``key_path`` (dotted, e.g. ``budget.n_trials``).

        With ``nearest`` a key that is not written falls back to its nearest written
        parent, then line 1. None for specs that were not read from a file.
        """
        if self._source_path is None:
            return None
        if not nearest:
            return self._lines.get(key_path)
        return _nearest_line(self._lines, key_path)

    def error_at(
        self, key_path: str, message: str, *, cls: type[SpecError] = SpecError
    ) -> SpecError:
        """A ``cls`` error that points at ``key_path`` of this spec; for later checks."""
        return cls(message, file=self._source, key_path=key_path, line=self.line_of(key_path))

    def suggest_parameters(self, trial: optuna.Trial) -> dict[str, Any]:
        """Suggest every declared parameter on ``trial``, in the order written."""
        return {name: param.suggest(trial, name) for name, param in self.parameters.items()}

    def distributions(self) -> dict[str, optuna.distributions.BaseDistribution]:
        """The Optuna distribution of every declared parameter, in the order written."""
        return {name: param.distribution() for name, param in self.parameters.items()}
