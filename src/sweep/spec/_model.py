"""The model of a whole spec, :class:`SweepSpec` (its sections are in ``_sections``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import optuna
from pydantic import Field, PrivateAttr, field_validator, model_validator

from sweep.errors import SpecError
from sweep.spec._base import Int, Number, OptionalText, _SpecModel
from sweep.spec._command import CollectorSpec, check_command
from sweep.spec._common import MAX_NAME_LENGTH, NotGriddable, _show, _spec_error
from sweep.spec._grid import MAX_GRID_POINTS, grid_points, grid_size
from sweep.spec._objectives import check_objectives, objectives_before
from sweep.spec._optuna import PRUNERS, SAMPLERS, PrunerSpec, SamplerSpec
from sweep.spec._overrides import Override
from sweep.spec._parameters import _PARAM_BY_TYPE, ParameterSpec, stores_other_form
from sweep.spec._search import WarmStartSpec, is_function_ref, search_problems, target_in_budget
from sweep.spec._sections import (
    BudgetSpec,
    LeaseSpec,
    MetricSpec,
    RaySpec,
    RegistrySpec,
    ResourcesSpec,
    RetrySpec,
    SelectSpec,
    TrackingSpec,
)
from sweep.spec._yaml import _nearest_line

__all__ = [
    "BudgetSpec",
    "LeaseSpec",
    "MetricSpec",
    "RaySpec",
    "RegistrySpec",
    "ResourcesSpec",
    "RetrySpec",
    "SelectSpec",
    "SweepSpec",
    "TrackingSpec",
]


_NAME_RE = re.compile(r"[A-Za-z0-9._-]+")


class SweepSpec(_SpecModel):
    """A whole sweep spec. Build it with :func:`load_spec` or :func:`load_spec_from_dict`."""

    name: str = Field(description="the sweep's name: letters, digits, '.', '_' and '-'")
    objective: str | None = Field(
        default=None,
        description="the objective function as 'module.path:function', e.g. train:objective",
    )
    code_dir: str = Field(
        default=".", description="the directory (relative to the spec) of the code"
    )
    parameters: dict[str, ParameterSpec] = Field(
        default_factory=dict, description="a mapping of parameter names to parameter specs"
    )
    metric: MetricSpec = Field(
        description="a mapping with name and direction (or a list of them, one per objective)"
    )
    metrics: list[MetricSpec] = Field(
        default_factory=list,
        min_length=1,
        description="the objectives, a list of mappings with name and direction "
        "(metric is the first)",
    )
    sampler: SamplerSpec = Field(
        default_factory=lambda: SamplerSpec(name="tpe"),
        description=f"a mapping with name (one of {', '.join(SAMPLERS)}) and options",
    )
    pruner: PrunerSpec = Field(
        default_factory=lambda: PrunerSpec(name="hyperband"),
        description=f"a mapping with name (one of {', '.join(PRUNERS)}) and options",
    )
    budget: BudgetSpec = Field(
        description="a mapping with n_trials (an integer >= 1), timeout (seconds > 0) or both "
        "(optional with sampler grid: the grid's size)"
    )
    parallelism: Int = Field(default=1, ge=1, description="trials run at once (an integer >= 1)")
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    ray: RaySpec = Field(default_factory=RaySpec)
    executor: Literal["auto", "local", "ray"] = Field(
        default="auto",
        description="what runs the trials: ray, local (processes of this machine) or auto "
        "(Ray when the spec configures Ray or asks for GPUs, local otherwise)",
    )
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
    description: OptionalText = Field(default=None, description="what the sweep is for")
    tags: dict[str, str] = Field(
        default_factory=dict, description="a mapping of tag names to strings, set on the sweep"
    )
    program: OptionalText = Field(
        default=None, description="a script run per trial (relative to code_dir), e.g. train.py"
    )
    command: list[str] | None = Field(
        default=None,
        description="the argv of a trial, with W&B macros such as ${program} and ${args}",
    )
    collector: CollectorSpec = Field(
        default_factory=CollectorSpec,
        description="how metrics are read from a command's output (kind auto or regex)",
    )
    command_grace_s: float = Field(
        default=10.0,
        ge=0,
        description="seconds a command-mode trial's processes get between SIGTERM and SIGKILL",
    )
    follow: bool = Field(
        default=False,
        description="stream command-mode trials' output to the console, prefixed per trial",
    )
    enqueue: list[dict[str, Any]] = Field(
        default_factory=list,
        description="a list of param mappings run first, each once (Optuna's enqueue_trial)",
    )
    warm_start: WarmStartSpec | None = Field(
        default=None, description="a mapping with from_sweep: the sweep whose trials seed this one"
    )
    callbacks: list[str] = Field(
        default_factory=list,
        description="'module.path:function' hooks called as trials and the sweep end",
    )

    # Where the spec came from; set by the loaders, not part of the schema.
    _source: str = PrivateAttr(default="<dict>")
    _source_path: Path | None = PrivateAttr(default=None)
    _base_dir: Path | None = PrivateAttr(default=None)
    _lines: dict[str, int] = PrivateAttr(default_factory=dict)
    _dialect: str = PrivateAttr(default="native")
    _overrides: tuple[Override, ...] = PrivateAttr(default=())

    @model_validator(mode="before")
    @classmethod
    def _null_means_default(cls, data: Any) -> Any:
        # `parameters:` with everything under it commented out reads as null; so does
        # `ray:` left empty. For keys with a default, null means "use the default".
        if isinstance(data, dict):
            optional = {n for n, f in cls.model_fields.items() if not f.is_required()}
            data = {k: v for k, v in data.items() if not (v is None and k in optional)}
            data = objectives_before(target_in_budget(_grid_budget(data)))
        return data

    @field_validator("command", mode="before")
    @classmethod
    def _command_items(cls, value: Any) -> Any:
        # W&B allows numbers in command (e.g. --epochs, 5): they are argv text.
        if isinstance(value, list):
            return [
                str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v
                for v in value
            ]
        return value

    @model_validator(mode="after")
    def _one_way_to_run(self) -> SweepSpec:
        if self.objective is not None and (self.program is not None or self.command is not None):
            key = "program" if self.program is not None else "command"
            raise _spec_error(
                f"objective and {key} are mutually exclusive: a trial is either a Python "
                "function (objective) or a script (program and/or command); remove one",
                key,
            )
        if self.objective is None and self.program is None and self.command is None:
            raise _spec_error(
                "missing required key 'objective': the objective function as "
                "'module.path:function', or program (a script) and/or command (its argv)",
                "objective",
            )
        if self.command is not None:
            for index, message in check_command(self.command, has_program=self.program is not None):
                raise _spec_error(message, "command" if index < 0 else f"command.{index}")
        if self.sampler.is_grid:
            self._check_grid()
        for key, message in search_problems(self):
            raise _spec_error(message, key)
        check_objectives(self)
        if self.executor == "local":
            self._check_local()
        return self

    def _check_local(self) -> None:
        if self.resources.gpu > 0:
            raise _spec_error(
                "executor local runs no GPU trials (Ray assigns GPUs); use executor ray or "
                "auto, or `sweep agent --gpus`",
                "executor",
            )
        if self.ray.address not in (None, "local"):
            raise _spec_error(
                f"executor local runs on this machine, but ray.address names a cluster "
                f"({self.ray.address!r}); use executor ray or auto, or remove ray.address",
                "executor",
            )

    def _check_grid(self) -> None:
        try:
            size = grid_size(self.parameters)
        except NotGriddable as exc:
            name = str(exc).partition(":")[0]
            raise _spec_error(f"sampler grid: {exc}", f"parameters.{name}") from None
        if size > MAX_GRID_POINTS:
            raise _spec_error(
                f"the grid has {size} combinations, more than {MAX_GRID_POINTS}; use fewer values "
                "or a sampler such as tpe or random",
                "sampler",
            )
        n_trials = self.budget.n_trials
        if n_trials is not None and n_trials > size:
            raise _spec_error(
                f"n_trials {n_trials} exceeds the grid's {size} combinations, and each runs once; "
                f"set n_trials to at most {size}, or drop it (the default is the grid's size)",
                "budget.n_trials",
            )

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
    def _check_objective(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not is_function_ref(value.strip()):
            raise _spec_error(
                "objective must have the form 'module.path:function' (Python identifiers, "
                f"e.g. train:objective), got {_show(value)}"
            )
        return value.strip()

    @field_validator("callbacks")
    @classmethod
    def _check_callbacks(cls, value: list[str]) -> list[str]:
        for index, ref in enumerate(value):
            if not is_function_ref(ref.strip()):
                raise _spec_error(
                    "a callback must have the form 'module.path:function' (Python "
                    f"identifiers, e.g. notify:on_event), got {_show(ref)}",
                    str(index),
                )
        return [ref.strip() for ref in value]

    @field_validator("storage")
    @classmethod
    def _check_storage(cls, value: str | None) -> str | None:
        if value is None:
            return None
        # Imported here: SQLAlchemy is slow to import and only specs with storage need it.
        from sweep.errors import StorageError
        from sweep.storage import check_url

        try:
            check_url(value)
        except StorageError as exc:
            # The message masks any password the URL holds.
            raise _spec_error(str(exc)) from None
        return value

    # -- derived values -------------------------------------------------------------------

    @property
    def multi_objective(self) -> bool:
        """Whether the sweep has several objectives (``metrics``): a Pareto front, not
        one best trial."""
        return len(self.metrics) > 1

    @property
    def metric_names(self) -> list[str]:
        """The objectives' names, in order (one for a single-objective sweep)."""
        return [m.name for m in self.metrics]

    @property
    def directions(self) -> list[str]:
        """The objectives' directions, in order."""
        return [m.direction for m in self.metrics]

    @property
    def is_command(self) -> bool:
        """Whether trials run a script (``program``/``command``), not an ``objective``."""
        return self.objective is None

    @property
    def objective_module(self) -> str:
        """The module part of ``objective`` ("" for a command-mode spec)."""
        return (self.objective or "").partition(":")[0]

    @property
    def objective_function(self) -> str:
        """The function part of ``objective`` ("" for a command-mode spec)."""
        return (self.objective or "").partition(":")[2]

    @property
    def runs(self) -> str:
        """What a trial runs, for messages: the objective, or the program/command."""
        if self.objective is not None:
            return f"objective {self.objective}"
        if self.command is not None:
            return "command " + " ".join(self.command)
        return f"program {self.program}"

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
    def dialect(self) -> str:
        """``native``, or ``wandb`` for a spec read from a W&B sweep config."""
        return self._dialect

    @property
    def source(self) -> str:
        """How errors name this spec's origin: the file as given, or e.g. ``<dict>``."""
        return self._source

    @property
    def overrides(self) -> tuple[str, ...]:
        """The ``KEY.PATH=VALUE`` overrides (``--set``) applied to the file, as given."""
        return tuple(o.text for o in self._overrides)

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
        """A ``cls`` error that points at ``key_path`` of this spec (or at the ``--set``
        override that set it); for later checks."""
        for override in reversed(self._overrides):
            if override.covers(key_path):
                return cls(message, file=override.source, key_path=key_path)
        return cls(message, file=self._source, key_path=key_path, line=self.line_of(key_path))

    def suggest_parameters(self, trial: optuna.Trial) -> dict[str, Any]:
        """Suggest every declared parameter on ``trial``, in the order written."""
        return {name: param.suggest(trial, name) for name, param in self.parameters.items()}

    def distributions(self) -> dict[str, optuna.distributions.BaseDistribution]:
        """The Optuna distribution of every declared parameter, in the order written."""
        return {name: param.distribution() for name, param in self.parameters.items()}

    def decode_params(self, stored: dict[str, Any]) -> dict[str, Any]:
        """The values that params stored by Optuna stand for: quantile parameters
        (normal, beta, weighted choices...) and JSON-encoded choices are mapped back;
        params the spec does not declare pass through."""
        return {
            name: self.parameters[name].value_of(value) if name in self.parameters else value
            for name, value in stored.items()
        }

    def encoded_parameters(self) -> list[str]:
        """Parameters whose value Optuna stores in another form (a quantile, JSON text):
        an objective reading ``trial.params`` would not see the value itself."""
        return [name for name, param in self.parameters.items() if stores_other_form(param)]

    def grid_points(self) -> list[dict[str, Any]]:
        """Every combination of the parameters' values (see :mod:`sweep.spec._grid`)."""
        return grid_points(self.parameters)


def _names_grid(sampler: Any) -> bool:
    name = sampler.get("name") if isinstance(sampler, dict) else sampler
    if not isinstance(name, str):
        return False
    key = name.strip().lower().replace("-", "_")
    return key in ("grid", "gridsampler", "bruteforce", "brute_force", "bruteforcesampler")


def raw_grid_size(params: Any) -> int | None:
    """The grid size of unvalidated ``parameters``, or None if they do not validate."""
    if not isinstance(params, dict):
        return None
    try:
        models = {
            name: _PARAM_BY_TYPE[raw["type"]].model_validate(raw) for name, raw in params.items()
        }
        return grid_size(models)
    except Exception:
        return None  # the parameters' own errors are reported


def _grid_budget(data: dict[str, Any]) -> dict[str, Any]:
    """With sampler grid, a missing budget (or one without n_trials) is the grid's size."""
    budget = data.get("budget")
    if not _names_grid(data.get("sampler")) or (
        isinstance(budget, dict) and budget.get("n_trials") is not None
    ):
        return data
    if budget is not None and not isinstance(budget, dict):
        return data
    size = raw_grid_size(data.get("parameters") or {})
    if size is None:
        return data  # n_trials stays unset: "missing budget" joins the parameters' errors
    return {**data, "budget": {**(budget or {}), "n_trials": min(size, MAX_GRID_POINTS)}}
