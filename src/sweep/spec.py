"""The sweep spec: a YAML file that declares one hyperparameter sweep.

``load_spec`` reads the file with PyYAML's SafeLoader, substitutes ``${VAR}`` and
``${VAR:-default}`` in string values, and validates the result into a frozen pydantic
:class:`SweepSpec`. Every problem becomes a :class:`~sweep.errors.SpecError` that names
the file, the dotted key path and the line, and says what is allowed.
"""

from __future__ import annotations

import datetime
import difflib
import importlib
import inspect
import os
import re
import sys
import types
import typing
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union

import optuna
import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    FiniteFloat,
    PrivateAttr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from sweep.errors import ObjectiveImportError, SpecError, SpecErrors

__all__ = [
    "PARAMETER_TYPES",
    "PRUNERS",
    "SAMPLERS",
    "BudgetSpec",
    "CategoricalParam",
    "FloatParam",
    "IntParam",
    "MetricSpec",
    "ParameterSpec",
    "PrunerSpec",
    "RaySpec",
    "RegistrySpec",
    "ResourcesSpec",
    "SamplerSpec",
    "SweepSpec",
    "TrackingSpec",
    "interpolate_env",
    "load_spec",
    "load_spec_from_dict",
    "resolve_objective",
]

#: Short sampler names accepted in ``sampler.name`` and the Optuna classes they build.
SAMPLERS: dict[str, str] = {
    "tpe": "TPESampler",
    "random": "RandomSampler",
    "cmaes": "CmaEsSampler",
    "gp": "GPSampler",
    "qmc": "QMCSampler",
    "nsgaii": "NSGAIISampler",
    "bruteforce": "BruteForceSampler",
}

#: Short pruner names accepted in ``pruner.name`` and the Optuna classes they build.
PRUNERS: dict[str, str] = {
    "hyperband": "HyperbandPruner",
    "median": "MedianPruner",
    "percentile": "PercentilePruner",
    "successive_halving": "SuccessiveHalvingPruner",
    "threshold": "ThresholdPruner",
    "wilcoxon": "WilcoxonPruner",
    "none": "NopPruner",
}

# Extra spellings that map onto a canonical name above.
_PRUNER_ALIASES: dict[str, str] = {"nop": "none", "successivehalving": "successive_halving"}

#: Values of ``type`` a parameter may have.
PARAMETER_TYPES: tuple[str, ...] = ("float", "uniform", "log_uniform", "int", "categorical")

_SPEC_ERROR = "sweep_spec"  # pydantic error type of the errors raised by this module
_KEY_CTX = "sweep_key"  # ctx entry naming the sub-key a model-level error is about
_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_TAG = "tag:yaml.org,2002:merge"


def _spec_error(message: str, key: str | None = None) -> PydanticCustomError:
    """Build a validation error; ``key`` extends the key path below the failing model.

    Model validators can only fail for the whole model, so the sub-key travels in the
    error's ctx and :func:`_convert_validation_error` appends it to the location.
    """
    return PydanticCustomError(_SPEC_ERROR, message, {_KEY_CTX: key} if key else None)


def _show(value: Any, limit: int = 60) -> str:
    """repr() of a user value, shortened so one bad value cannot flood the message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _yaml_type(value: Any) -> str:
    """Name a Python value's type the way a YAML author would."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, (datetime.date, datetime.datetime)):
        return "a date (quote it to make it a string)"
    return type(value).__name__


# ---------------------------------------------------------------------------------------
# Field types
# ---------------------------------------------------------------------------------------


def _reject_bool(value: Any) -> Any:
    # YAML reads yes/no/true/false as booleans and pydantic would quietly turn them into 1/0.
    if isinstance(value, bool):
        raise _spec_error(f"Input should be a number, got the boolean {str(value).lower()}")
    return value


def _empty_to_none(value: Any) -> Any:
    # `${VAR:-}` yields "" for an unset optional setting; treat that as not set.
    return None if isinstance(value, str) and value.strip() == "" else value


def _check_choice(value: Any) -> Any:
    # One clear error per bad choice instead of one per member of a scalar union.
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise _spec_error(
        f"a choice must be a string, number, boolean or null, got {_yaml_type(value)}"
    )


Int = Annotated[int, BeforeValidator(_reject_bool)]
Number = Annotated[FiniteFloat, BeforeValidator(_reject_bool)]
OptionalText = Annotated[str | None, BeforeValidator(_empty_to_none)]
Choice = Annotated[Any, AfterValidator(_check_choice)]


class _SpecModel(BaseModel):
    """Base of all spec models: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------------------


class FloatParam(_SpecModel):
    """A float parameter; ``log_uniform`` is shorthand for ``float`` with ``log: true``."""

    type: Literal["float", "uniform", "log_uniform"] = Field(
        description="one of float, uniform, log_uniform"
    )
    low: Number = Field(description="the smallest value (a number)")
    high: Number = Field(description="the largest value (a number greater than low)")
    log: bool = False
    step: Number | None = None

    @model_validator(mode="before")
    @classmethod
    def _log_uniform_implies_log(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("type") == "log_uniform" and "log" not in data:
            data = {**data, "log": True}
        return data

    @model_validator(mode="after")
    def _check(self) -> FloatParam:
        if self.type == "log_uniform" and not self.log:
            raise _spec_error(
                "log_uniform is always log scale; drop 'log' or use type float", "log"
            )
        if self.type == "uniform" and self.log:
            raise _spec_error(
                "uniform is linear; use type log_uniform (or float with log: true)", "log"
            )
        if self.step is not None and self.step <= 0:
            raise _spec_error(f"step must be > 0, got {self.step}", "step")
        if self.step is not None and self.log:
            raise _spec_error("step cannot be combined with log scale; drop one of them", "step")
        if self.low >= self.high:
            raise _spec_error(
                f"low must be less than high, got low={self.low}, high={self.high}", "low"
            )
        if self.log and self.low <= 0:
            raise _spec_error(f"log-uniform needs low > 0, got {self.low}", "low")
        return self

    def suggest(self, trial: optuna.Trial, name: str) -> float:
        """Ask ``trial`` for this parameter's value."""
        return trial.suggest_float(name, self.low, self.high, step=self.step, log=self.log)

    def distribution(self) -> optuna.distributions.FloatDistribution:
        """The Optuna distribution this parameter samples from."""
        return optuna.distributions.FloatDistribution(
            self.low, self.high, log=self.log, step=self.step
        )


class IntParam(_SpecModel):
    """An integer parameter in ``[low, high]``, optionally on a log scale or with a step."""

    type: Literal["int"] = Field(description="int")
    low: Int = Field(description="the smallest value (an integer)")
    high: Int = Field(description="the largest value (an integer >= low)")
    log: bool = False
    step: Int = 1

    @model_validator(mode="after")
    def _check(self) -> IntParam:
        if self.step < 1:
            raise _spec_error(f"step must be > 0, got {self.step}", "step")
        if self.log and self.step != 1:
            raise _spec_error("step cannot be combined with log scale; drop one of them", "step")
        if self.low > self.high:
            raise _spec_error(
                f"low must not be greater than high, got low={self.low}, high={self.high}", "low"
            )
        if self.log and self.low < 1:
            raise _spec_error(f"log scale needs low > 0 (low >= 1), got {self.low}", "low")
        return self

    def suggest(self, trial: optuna.Trial, name: str) -> int:
        """Ask ``trial`` for this parameter's value."""
        return trial.suggest_int(name, self.low, self.high, step=self.step, log=self.log)

    def distribution(self) -> optuna.distributions.IntDistribution:
        """The Optuna distribution this parameter samples from."""
        return optuna.distributions.IntDistribution(
            self.low, self.high, log=self.log, step=self.step
        )


class CategoricalParam(_SpecModel):
    """A choice among strings, numbers, booleans and null."""

    type: Literal["categorical"] = Field(description="categorical")
    choices: list[Choice] = Field(
        description="a non-empty list of strings, numbers, booleans or null"
    )

    @field_validator("choices")
    @classmethod
    def _non_empty(cls, choices: list[Any]) -> list[Any]:
        if not choices:
            raise _spec_error("choices must not be empty; list at least one value")
        return choices

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        """Ask ``trial`` for this parameter's value."""
        return trial.suggest_categorical(name, self.choices)

    def distribution(self) -> optuna.distributions.CategoricalDistribution:
        """The Optuna distribution this parameter samples from."""
        return optuna.distributions.CategoricalDistribution(self.choices)


#: One declared parameter; the ``type`` key picks the variant.
ParameterSpec = Annotated[FloatParam | IntParam | CategoricalParam, Field(discriminator="type")]

_PARAM_BY_TYPE: dict[str, type[_SpecModel]] = {
    "float": FloatParam,
    "uniform": FloatParam,
    "log_uniform": FloatParam,
    "int": IntParam,
    "categorical": CategoricalParam,
}


# ---------------------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------------------


class MetricSpec(_SpecModel):
    """The metric the objective returns and which way is better."""

    name: str = Field(min_length=1, description="the metric's name, e.g. val_accuracy")
    direction: Literal["minimize", "maximize"] = Field(description="minimize or maximize")


# Option annotations of Optuna constructors are mostly strings (PEP 563); these names are
# enough to evaluate the ones a YAML value can satisfy. Anything else (callables, samplers,
# numpy arrays) fails to evaluate and is reported as "cannot be set in a spec".
_ANNOTATION_NAMES: dict[str, Any] = {
    "int": int,
    "float": float,
    "bool": bool,
    "str": str,
    "None": None,
    "Any": Any,
    "dict": dict,
    "list": list,
    "tuple": tuple,
    "Sequence": Sequence,
    "Mapping": Mapping,
    "Literal": Literal,
    "Optional": typing.Optional,
    "Union": Union,
}
_YAML_LEAVES: tuple[Any, ...] = (int, float, bool, str, type(None), None, Any)
_YAML_ORIGINS: tuple[Any, ...] = (Union, types.UnionType, list, dict, tuple, Sequence, Mapping)


def _yaml_expressible(annotation: Any) -> bool:
    """Whether a value read from YAML can satisfy ``annotation``."""
    if annotation in _YAML_LEAVES or annotation in (list, dict, tuple):
        return True
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return True
    if origin in _YAML_ORIGINS:
        return all(_yaml_expressible(a) for a in typing.get_args(annotation) if a is not Ellipsis)
    return False


def _flat_types(annotation: Any) -> set[Any]:
    """The leaf types of a (possibly nested) union annotation."""
    if typing.get_origin(annotation) in (Union, types.UnionType):
        return set().union(*(_flat_types(a) for a in typing.get_args(annotation)))
    return {annotation}


@cache
def _constructor_options(cls: type) -> tuple[dict[str, Any], frozenset[str], frozenset[str]]:
    """Inspect ``cls.__init__``: (settable option -> annotation, other options, required)."""
    settable: dict[str, Any] = {}
    unsettable: set[str] = set()
    required: set[str] = set()
    for param in inspect.signature(cls).parameters.values():
        if param.kind not in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY):
            continue
        annotation: Any = param.annotation
        if annotation is inspect.Parameter.empty:
            annotation = Any
        elif isinstance(annotation, str):
            try:
                annotation = eval(annotation, {"__builtins__": {}}, _ANNOTATION_NAMES)
            except Exception:
                annotation = object  # names a Python class: not expressible in YAML
        if _yaml_expressible(annotation):
            settable[param.name] = annotation
        else:
            unsettable.add(param.name)
        if param.default is inspect.Parameter.empty:
            required.add(param.name)
    return settable, frozenset(unsettable), frozenset(required)


@cache
def _adapter(annotation: Any) -> TypeAdapter[Any]:
    return TypeAdapter(annotation)


class _OptunaComponentSpec(BaseModel):
    """Shared logic of sampler and pruner specs: a ``name`` plus constructor options."""

    # Extra keys are the Optuna constructor's keyword arguments, checked in _check_options.
    model_config = ConfigDict(extra="allow", frozen=True)

    component_kind: ClassVar[str]
    component_module: ClassVar[Any]
    known_names: ClassVar[dict[str, str]]
    name_aliases: ClassVar[dict[str, str]] = {}

    name: str = Field(description="the algorithm's name")

    @model_validator(mode="before")
    @classmethod
    def _name_shorthand(cls, data: Any) -> Any:
        # `sampler: random` is shorthand for `sampler: {name: random}`.
        return {"name": data} if isinstance(data, str) else data

    @field_validator("name", mode="before")
    @classmethod
    def _canonical_name(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value  # the str field reports the wrong type
        key = value.strip().lower().replace("-", "_")
        key = cls.name_aliases.get(key, key)
        if key in cls.known_names:
            return key
        by_class = {v.lower(): k for k, v in cls.known_names.items()}
        if value.strip().lower() in by_class:
            return by_class[value.strip().lower()]
        example = next(iter(cls.known_names.values()))
        raise _spec_error(
            f"unknown {cls.component_kind} {value!r}; allowed names: "
            f"{', '.join(cls.known_names)} (or the Optuna class name, e.g. {example})"
        )

    @model_validator(mode="after")
    def _check_options(self) -> _OptunaComponentSpec:
        cls = self.optuna_class
        settable, unsettable, required = _constructor_options(cls)
        options = self.__pydantic_extra__ if self.__pydantic_extra__ is not None else {}
        what = f"{self.component_kind} {self.name}"
        allowed = ", ".join(settable) if settable else "(none)"

        unknown = [key for key in options if key not in settable and key not in unsettable]
        if unknown:
            names = ", ".join(repr(k) for k in unknown)
            plural = "options" if len(unknown) > 1 else "option"
            hint = _did_you_mean(unknown[0], settable)
            raise _spec_error(
                f"unknown {plural} {names} for {what}{hint}; allowed options: {allowed}",
                unknown[0],
            )
        for key in options:
            if key in unsettable:
                raise _spec_error(
                    f"option {key!r} of {what} takes a Python object and cannot be set in a "
                    f"spec; options you can set: {allowed}",
                    key,
                )

        for key, value in options.items():
            annotation = settable[key]
            if isinstance(value, bool) and not ({bool, Any} & _flat_types(annotation)):
                raise _spec_error(f"option {key!r} of {what} must not be a boolean", key)
            try:
                # Coerce in place: the extra dict is the model's own storage.
                options[key] = _adapter(annotation).validate_python(value)
            except ValidationError as exc:
                reason = exc.errors()[0]["msg"]
                raise _spec_error(
                    f"option {key!r} of {what}: {reason} (got {_show(value)})", key
                ) from None

        missing = sorted(required - options.keys())
        if missing:
            raise _spec_error(f"{what} needs option(s): {', '.join(missing)}", missing[0])

        # Constructing once catches value errors Optuna itself checks (e.g. qmc_type).
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cls(**options)
        except Exception as exc:
            raise _spec_error(f"invalid options for {what}: {type(exc).__name__}: {exc}") from None
        return self

    @property
    def optuna_class(self) -> type:
        """The Optuna class ``name`` selects."""
        return getattr(self.component_module, self.known_names[self.name])

    @property
    def options(self) -> dict[str, Any]:
        """The constructor options given besides ``name``."""
        return dict(self.__pydantic_extra__ or {})


class SamplerSpec(_OptunaComponentSpec):
    """Which Optuna sampler to use; other keys are its constructor's keyword arguments."""

    component_kind: ClassVar[str] = "sampler"
    component_module: ClassVar[Any] = optuna.samplers
    known_names: ClassVar[dict[str, str]] = SAMPLERS

    name: str = Field(description=f"one of {', '.join(SAMPLERS)}")

    @property
    def seed(self) -> int | None:
        """The ``seed`` option, or None when the sampler is unseeded."""
        seed = self.options.get("seed")
        return None if seed is None else int(seed)

    def build(self, seed_offset: int = 0) -> optuna.samplers.BaseSampler:
        """Construct the sampler; a seeded one uses ``seed + seed_offset``.

        Parallel workers pass distinct offsets so that they do not draw identical samples.
        """
        options = self.options
        if options.get("seed") is not None:
            options["seed"] = int(options["seed"]) + seed_offset
        return self.optuna_class(**options)


class PrunerSpec(_OptunaComponentSpec):
    """Which Optuna pruner to use; other keys are its constructor's keyword arguments."""

    component_kind: ClassVar[str] = "pruner"
    component_module: ClassVar[Any] = optuna.pruners
    known_names: ClassVar[dict[str, str]] = PRUNERS
    name_aliases: ClassVar[dict[str, str]] = _PRUNER_ALIASES

    name: str = Field(description=f"one of {', '.join(PRUNERS)}")

    def build(self) -> optuna.pruners.BasePruner:
        """Construct the pruner with the given options."""
        return self.optuna_class(**self.options)


class BudgetSpec(_SpecModel):
    """When the sweep stops: after ``n_trials`` trials, ``timeout`` seconds, or both."""

    n_trials: Int | None = Field(None, ge=1, description="the number of trials (an integer >= 1)")
    timeout: Number | None = Field(None, gt=0, description="seconds (a number > 0)")

    @model_validator(mode="after")
    def _something_set(self) -> BudgetSpec:
        if self.n_trials is None and self.timeout is None:
            raise _spec_error(
                "budget needs n_trials (an integer >= 1), timeout (seconds > 0) or both"
            )
        return self


class ResourcesSpec(_SpecModel):
    """What one trial reserves from Ray."""

    cpu: Number = Field(1.0, gt=0, description="CPUs per trial (a number > 0)")
    gpu: Number = Field(0.0, ge=0, description="GPUs per trial (a number >= 0)")

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
        None, description="a Ray cluster address, e.g. auto or ray://head:10001"
    )
    num_cpus: Int | None = Field(None, ge=1, description="logical CPUs of a local Ray (int >= 1)")
    num_gpus: Int | None = Field(None, ge=0, description="logical GPUs of a local Ray (int >= 0)")

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

    experiment: OptionalText = Field(None, description="experiment name (default: the sweep name)")
    artifact_root: OptionalText = Field(None, description="where run artifacts are stored")


class RegistrySpec(_SpecModel):
    """Register the best trial's model under ``model_name`` and point ``alias`` at it."""

    model_name: str = Field(min_length=1, description="the registered model's name")
    alias: str = Field("challenger", min_length=1, description="alias set on the new version")
    required: bool = Field(False, description="fail the sweep when no model can be registered")


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
    code_dir: str = Field(".", description="the directory (relative to the spec) of the code")
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
    parallelism: Int = Field(1, ge=1, description="trials run at once (an integer >= 1)")
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    ray: RaySpec = Field(default_factory=RaySpec)
    storage: OptionalText = Field(None, description="a SQLAlchemy database URL")
    tracking: TrackingSpec = Field(default_factory=TrackingSpec)
    registry: RegistrySpec | None = None

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
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            make_url(value)
        except ArgumentError:
            # The URL may hold a password: describe it, never echo it.
            raise _spec_error(
                "storage must be a SQLAlchemy URL such as sqlite:///sweep.db or "
                "postgresql+psycopg://user:password@host/db; the value given could not be parsed"
            ) from None
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


# ---------------------------------------------------------------------------------------
# Environment variables
# ---------------------------------------------------------------------------------------

# `$$` is an escaped `$`; `${...}` is a reference; a `${` without `}` is malformed.
_REF_RE = re.compile(r"\$\$|\$\{([^}]*)\}|\$\{")
_BODY_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?", re.DOTALL)


def interpolate_env(
    value: str, environ: Mapping[str, str] | None = None
) -> tuple[str, list[str]]:
    """Substitute ``${VAR}`` and ``${VAR:-default}`` in ``value``; ``$$`` is a literal ``$``.

    ``:-`` uses the default when the variable is unset or empty, as in the shell.
    Returns the new string and a list of problems (empty when all went well).
    """
    env = os.environ if environ is None else environ
    problems: list[str] = []

    def replace(match: re.Match[str]) -> str:
        text = match.group(0)
        if text == "$$":
            return "$"
        body = match.group(1)
        parsed = _BODY_RE.fullmatch(body) if body is not None else None
        if parsed is None:
            problems.append(
                f"malformed variable reference {_show(text)}; write ${{NAME}} or "
                "${NAME:-default} (and $$ for a literal $)"
            )
            return text
        name, default = parsed.group(1), parsed.group(2)
        current = env.get(name)
        if default is not None and not current:
            return default
        if current is None:
            problems.append(
                f"environment variable {name} is not set; export {name}=... before running, "
                f"or give a default with ${{{name}:-default}}"
            )
            return text
        return current

    return _REF_RE.sub(replace, value), problems


# ---------------------------------------------------------------------------------------
# Reading YAML
# ---------------------------------------------------------------------------------------


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _nearest_line(lines: Mapping[str, int], key_path: str | None) -> int:
    """The line of ``key_path`` or of its nearest parent present in ``lines``; else 1."""
    parts = key_path.split(".") if key_path else []
    while parts:
        line = lines.get(".".join(parts))
        if line is not None:
            return line
        parts.pop()
    return 1


class _NodeWalker:
    """One pass over the composed YAML: line map, duplicate keys, env substitution."""

    def __init__(self, file: str, environ: Mapping[str, str] | None = None) -> None:
        self.file = file
        self.environ = environ
        self.lines: dict[str, int] = {}
        self.errors: list[SpecError] = []
        # Aliases share nodes: each is handled once (under its first path), which also
        # ends recursive aliases and keeps "billion laughs" documents cheap.
        self._seen: set[int] = set()

    def walk(self, node: yaml.Node, path: str = "", *, merged: bool = False) -> None:
        """Visit ``node`` at ``path``; ``merged`` nodes never override explicit keys' lines."""
        if id(node) in self._seen:
            return
        self._seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            self._walk_mapping(node, path, merged)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                child = _join(path, str(index))
                self.lines.setdefault(child, item.start_mark.line + 1)
                self.walk(item, child)
        elif isinstance(node, yaml.ScalarNode) and node.tag == _STR_TAG and "$" in node.value:
            # Tags were resolved when composing, so a substituted "8" stays a string and
            # pydantic's coercion decides whether it fits the field.
            node.value, problems = interpolate_env(node.value, self.environ)
            line = node.start_mark.line + 1
            for problem in problems:
                self.errors.append(
                    SpecError(problem, file=self.file, key_path=path or None, line=line)
                )

    def _walk_mapping(self, node: yaml.MappingNode, path: str, merged_in: bool) -> None:
        first_line: dict[str, int] = {}
        merged: list[yaml.Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merged.append(value_node)
                continue
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
            child = _join(path, key)
            line = key_node.start_mark.line + 1
            if key in first_line:
                # SafeLoader keeps the last value silently; a repeated key is almost
                # always a mistake, so it is an error.
                self.errors.append(
                    SpecError(
                        f"duplicate key {key!r} (also on line {first_line[key]}); "
                        "write each key once",
                        file=self.file,
                        key_path=child,
                        line=line,
                    )
                )
            else:
                first_line[key] = line
            if merged_in:
                self.lines.setdefault(child, line)
            else:
                self.lines[child] = line
            self.walk(value_node, child)
        # Keys merged in with `<<:` count only where not written explicitly.
        for value_node in merged:
            is_list = isinstance(value_node, yaml.SequenceNode)
            sources = value_node.value if is_list else [value_node]
            for source in sources:
                if isinstance(source, yaml.MappingNode):
                    for key_node, _ in source.value:
                        if isinstance(key_node, yaml.ScalarNode):
                            child = _join(path, str(key_node.value))
                            self.lines.setdefault(child, key_node.start_mark.line + 1)
                self.walk(source, path, merged=True)


def _yaml_error(exc: yaml.YAMLError, file: str, text: str) -> SpecError:
    """Turn a PyYAML error into a SpecError at the line of its mark."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or "could not parse"
        if exc.context:
            at = f" on line {exc.context_mark.line + 1}" if exc.context_mark is not None else ""
            problem = f"{problem} ({exc.context}{at})"
        if "'\\t'" in problem:
            problem += "; indent with spaces, YAML does not allow tabs"
        line = mark.line + 1 if mark is not None else None
        if line is not None and "${" in "".join(text.splitlines(True)[line - 1 : line]):
            # `{a: ${X}}` is a classic: the `{` of ${X} ends a plain scalar in flow style.
            problem += "; quote values that use ${VAR} inside [...] or {...}, e.g. '${VAR}'"
        return SpecError(f"invalid YAML: {problem}", file=file, line=line)
    return SpecError(f"invalid YAML: {exc}", file=file)


def _read_yaml(text: str, file: str) -> tuple[dict[str, Any], dict[str, int]]:
    """Parse ``text`` safely, substitute env vars; return (data, key path -> line)."""
    loader = yaml.SafeLoader(text)
    try:
        try:
            root = loader.get_single_node()
        except yaml.YAMLError as exc:
            raise _yaml_error(exc, file, text) from None
        if root is None:
            raise SpecError(
                "the spec is empty; it needs at least name, objective, metric and budget",
                file=file,
                line=1,
            )
        if not isinstance(root, yaml.MappingNode):
            kind = "a list" if isinstance(root, yaml.SequenceNode) else "a single value"
            raise SpecError(
                f"the top level of a spec must be a mapping of keys to values, got {kind}",
                file=file,
                line=root.start_mark.line + 1,
            )
        walker = _NodeWalker(file)
        walker.walk(root)
        if walker.errors:
            _raise_all(walker.errors)
        try:
            data = loader.construct_document(root)
        except yaml.YAMLError as exc:
            raise _yaml_error(exc, file, text) from None
    finally:
        loader.dispose()
    return data, walker.lines


# ---------------------------------------------------------------------------------------
# Validation errors
# ---------------------------------------------------------------------------------------


def _did_you_mean(key: str, allowed: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(allowed), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class validating the mapping at ``loc`` (a raw pydantic location)."""
    if not loc:
        return SweepSpec
    if loc[0] == "parameters":
        return _PARAM_BY_TYPE.get(loc[2]) if len(loc) == 3 else None
    if len(loc) == 1 and loc[0] in SweepSpec.model_fields:
        annotation = SweepSpec.model_fields[loc[0]].annotation
        for candidate in (annotation, *typing.get_args(annotation)):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                return candidate
    return None


def _key_path(loc: tuple[Any, ...]) -> list[str]:
    """Map a pydantic location to the YAML key path (drop union tags and '[key]')."""
    parts = list(loc)
    # parameters.<name>.<tag>.<field>: the discriminated union adds the tag.
    if len(parts) >= 3 and parts[0] == "parameters" and parts[2] in _PARAM_BY_TYPE:
        del parts[2]
    return [str(p) for p in parts if p != "[key]"]


def _allowed_keys(model: type[BaseModel]) -> str:
    return ", ".join(model.model_fields)


def _message(err: Mapping[str, Any], loc: tuple[Any, ...], parts: list[str]) -> str:
    """Rewrite a pydantic error message so that it says what is allowed."""
    kind = err["type"]
    value = err.get("input")
    if kind == _SPEC_ERROR:
        return str(err["msg"])
    if kind == "extra_forbidden":
        key = str(loc[-1])
        model = _model_at(loc[:-1])
        if model is None:
            return f"unknown key {key!r}"
        allowed = list(model.model_fields)
        hint = _did_you_mean(key, allowed)
        return f"unknown key {key!r}{hint}; allowed keys: {', '.join(allowed)}"
    if kind == "missing":
        key = str(loc[-1])
        model = _model_at(loc[:-1])
        field = model.model_fields.get(key) if model is not None else None
        hint = f": {field.description}" if field is not None and field.description else ""
        return f"missing required key {key!r}{hint}"
    if kind == "union_tag_not_found":
        return f"missing key 'type'; allowed types: {', '.join(PARAMETER_TYPES)}"
    if kind == "union_tag_invalid":
        tag = (err.get("ctx") or {}).get("tag", value)
        return f"unknown parameter type {_show(tag)}; allowed types: {', '.join(PARAMETER_TYPES)}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        got = _yaml_type(value)
        if loc and loc[0] == "parameters" and len(loc) == 2:
            return (f"expected a mapping with a 'type' key (one of {', '.join(PARAMETER_TYPES)}), "
                    f"got {got}")
        model = _model_at(loc)
        if model is not None and issubclass(model, _OptunaComponentSpec):
            kind = model.component_kind
            return f"expected a {kind} name or a mapping with name and {kind} options, got {got}"
        if model is not None:
            return f"expected a mapping with keys {_allowed_keys(model)}, got {got}"
        if loc == ("parameters",):
            return f"expected a mapping of parameter names to parameter specs, got {got}"
        return f"expected a mapping, got {got}"
    message = str(err["msg"])
    if loc and loc[-1] == "[key]":
        return f"keys here must be strings: {message} (got {_show(value)})"
    if parts and parts[0] == "storage":
        return message  # never echo a database URL: it may hold a password
    if value is None or isinstance(value, (str, int, float, bool)):
        return f"{message} (got {_show(value)})"
    return f"{message} (got {_yaml_type(value)})"


def _convert_validation_error(
    exc: ValidationError, file: str, lines: Mapping[str, int] | None
) -> list[SpecError]:
    """One SpecError per pydantic error, located by key path and (if known) line."""
    errors: list[SpecError] = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        parts = _key_path(loc)
        if err["type"] in ("union_tag_not_found", "union_tag_invalid"):
            parts.append("type")
        sub_key = (err.get("ctx") or {}).get(_KEY_CTX)
        if sub_key:
            parts.append(str(sub_key))
        key_path = ".".join(parts) or None
        line = _nearest_line(lines, key_path) if lines is not None else None
        errors.append(SpecError(_message(err, loc, parts), file=file, key_path=key_path, line=line))
    # Read top to bottom, like the file.
    errors.sort(key=lambda e: e.line or 0)
    return errors


def _raise_all(errors: list[SpecError]) -> typing.NoReturn:
    if len(errors) == 1:
        raise errors[0]
    raise SpecErrors(errors)


def _validate(
    data: Any, file: str, lines: Mapping[str, int] | None
) -> SweepSpec:
    if not isinstance(data, Mapping):
        raise SpecError(
            f"a spec must be a mapping of keys to values, got {_yaml_type(data)}",
            file=file,
            line=1 if lines is not None else None,
        )
    try:
        return SweepSpec.model_validate(dict(data))
    except ValidationError as exc:
        errors = _convert_validation_error(exc, file, lines)
    # Raised outside the except block so tracebacks do not drag pydantic's error along.
    _raise_all(errors)


# ---------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------


def load_spec(path: str | os.PathLike[str], *, check_objective: bool = True) -> SweepSpec:
    """Read, interpolate and validate the YAML spec at ``path``.

    With ``check_objective`` the objective is also imported (see :func:`resolve_objective`).
    Raises SpecError (SpecErrors for several problems) or ObjectiveImportError.
    """
    file = os.fspath(path)
    spec_path = Path(file)
    if not spec_path.exists():
        raise SpecError(f"spec file not found: {spec_path.absolute()}", file=file)
    if not spec_path.is_file():
        raise SpecError("spec path is not a file; pass the path of a YAML spec", file=file)
    try:
        text = spec_path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"spec file is not UTF-8 text: {exc.reason}", file=file) from None
    except OSError as exc:
        raise SpecError(f"cannot read spec file: {exc.strerror or exc}", file=file) from None

    data, lines = _read_yaml(text, file)
    spec = _validate(data, file, lines)
    source_path = spec_path.resolve()
    spec._source = file
    spec._source_path = source_path
    spec._base_dir = source_path.parent
    spec._lines = lines
    if check_objective:
        resolve_objective(spec)
    return spec


def load_spec_from_dict(
    data: Mapping[str, Any], *, source: str = "<dict>", check_objective: bool = False
) -> SweepSpec:
    """Validate a spec given as a Python mapping; errors name ``source`` and carry no line.

    Strings are taken as they are: ``${VAR}`` is not substituted here, so a dict that was
    dumped from a loaded spec validates to the same spec. ``code_dir`` is relative to the
    current directory.
    """
    spec = _validate(data, source, None)
    spec._source = source
    spec._base_dir = Path.cwd()
    if check_objective:
        resolve_objective(spec)
    return spec


def resolve_objective(spec: SweepSpec) -> Callable[..., Any]:
    """Import ``spec.objective`` with ``spec.code_path`` first on ``sys.path``.

    Raises ObjectiveImportError pointing at the spec's ``objective`` (or ``code_dir``) key.
    """
    module_name, function_name = spec.objective_module, spec.objective_function
    code_path = spec.code_path

    def fail(message: str, key: str = "objective") -> ObjectiveImportError:
        return spec.error_at(key, message, cls=ObjectiveImportError)  # type: ignore[return-value]

    if not code_path.is_dir():
        raise fail(
            f"code_dir {code_path} is not a directory; set code_dir (relative to the spec "
            "file) to the directory that holds the objective's code",
            key="code_dir",
        )
    entry = str(code_path)
    if entry not in sys.path:
        sys.path.insert(0, entry)
    # Finders cache directory listings; a module written moments ago must still be found.
    importlib.invalidate_caches()
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing == module_name or module_name.startswith(missing + "."):
            relative = module_name.replace(".", "/")
            raise fail(
                f"module {module_name!r} not found: searched {code_path} (the code_dir) and "
                f"sys.path for {relative}.py or {relative}/__init__.py; put the module "
                "there or set code_dir (relative to the spec file) to its directory"
            ) from exc
        raise fail(
            f"importing module {module_name!r} raised ModuleNotFoundError: {exc}; install "
            "the missing package in this environment"
        ) from exc
    except (Exception, SystemExit) as exc:
        # SystemExit too: a module that runs argparse or sys.exit() at import time.
        raise fail(
            f"importing module {module_name!r} raised {type(exc).__name__}: {exc}; fix the "
            "module so that it imports cleanly"
        ) from exc

    where = getattr(module, "__file__", None) or module_name
    function = getattr(module, function_name, None)
    if function is None:
        defined = sorted(
            name
            for name, value in vars(module).items()
            if callable(value)
            and not name.startswith("_")
            and getattr(value, "__module__", None) == module.__name__
        )
        listing = (
            f"callables defined there: {', '.join(defined)}"
            if defined
            else "it defines no public functions"
        )
        raise fail(
            f"module {module_name!r} ({where}) has no function {function_name!r}"
            f"{_did_you_mean(function_name, defined)}; {listing}"
        )
    if not callable(function):
        raise fail(
            f"{module_name}:{function_name} is {type(function).__name__}, not a function; "
            "point objective at a function that takes an optuna.Trial"
        )
    return typing.cast(Callable[..., Any], function)
