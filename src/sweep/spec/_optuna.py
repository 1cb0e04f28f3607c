"""Sampler and pruner specs: an Optuna class chosen by name, plus constructor options.

The options are checked against the constructor's signature, then by constructing once.
"""

from __future__ import annotations

import inspect
import types
import typing
import warnings
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any, ClassVar, Literal, Union

import optuna
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from sweep.spec._common import _did_you_mean, _show, _spec_error
from sweep.spec._grid import GridSampler
from sweep.tpe import CachingTPESampler

#: Short sampler names accepted in ``sampler.name`` and the Optuna classes they build.
SAMPLERS: dict[str, str] = {
    "tpe": "TPESampler",
    "random": "RandomSampler",
    "cmaes": "CmaEsSampler",
    "gp": "GPSampler",
    "qmc": "QMCSampler",
    "nsgaii": "NSGAIISampler",
    "nsgaiii": "NSGAIIISampler",
    "grid": "GridSampler",  # sweep's own: sweep.spec._grid.GridSampler
}

#: Samplers that Optuna runs on one objective only (CmaEsSampler raises on a study with
#: several directions); every other sampler above takes several objectives.
SINGLE_OBJECTIVE_SAMPLERS = frozenset({"cmaes"})

# Optuna's BruteForceSampler repeats combinations across workers and calls Study.stop()
# outside optimize(); its name now means sweep's grid, which runs each point once.
_SAMPLER_ALIASES: dict[str, str] = {
    "bruteforce": "grid",
    "brute_force": "grid",
    "bruteforcesampler": "grid",
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
    name_aliases: ClassVar[dict[str, str]] = _SAMPLER_ALIASES

    name: str = Field(description=f"one of {', '.join(SAMPLERS)}")

    @property
    def optuna_class(self) -> type:
        """The sampler class ``name`` selects (sweep's own for ``grid``)."""
        return GridSampler if self.name == "grid" else super().optuna_class

    @property
    def is_grid(self) -> bool:
        """Whether this is a grid search (``grid``, or its alias ``bruteforce``)."""
        return self.name == "grid"

    @property
    def seed(self) -> int | None:
        """The ``seed`` option, or None when the sampler is unseeded."""
        seed = self.options.get("seed")
        return None if seed is None else int(seed)

    def build(self, seed_offset: int = 0) -> optuna.samplers.BaseSampler:
        """Construct the sampler; a seeded one uses ``seed + seed_offset``.

        Parallel workers pass distinct offsets so that they do not draw identical samples.
        TPE is built as :class:`sweep.tpe.CachingTPESampler`: Optuna's TPE, drawing the
        same params, with less work per sample.
        """
        options = self.options
        if options.get("seed") is not None:
            options["seed"] = int(options["seed"]) + seed_offset
        if self.name == "tpe":
            return CachingTPESampler(**options)
        with warnings.catch_warnings():
            # Optuna marks some samplers experimental (NSGAIIISampler); said once per
            # worker it is noise in every log.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
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

    @model_validator(mode="after")
    def _check_at_run_time(self) -> PrunerSpec:
        """Refuse options Optuna accepts when built and trips over at the first report:
        Hyperband with ``reduction_factor`` below 2 (a ZeroDivisionError in every trial)
        or ``min_resource`` above ``max_resource`` (no bracket)."""
        if self.name != "hyperband":
            return self
        options = self.options
        factor = options.get("reduction_factor", 3)
        if factor < 2:
            raise _spec_error(
                f"pruner hyperband: reduction_factor must be at least 2, got {_show(factor)}",
                "reduction_factor",
            )
        low, high = options.get("min_resource", 1), options.get("max_resource", "auto")
        if isinstance(high, int) and isinstance(low, int) and low > high:
            raise _spec_error(
                f"pruner hyperband: min_resource ({low}) must not exceed max_resource "
                f"({high}); max_resource is the most steps a trial reports",
                "min_resource",
            )
        _dry_run(self.build())
        return self


def _dry_run(pruner: optuna.pruners.BasePruner) -> None:
    """Let ``pruner`` decide on one trial of an in-memory study, as a worker would at a
    trial's first report, so that what fails there fails at validation."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        level = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        try:
            study = optuna.create_study(pruner=pruner, sampler=optuna.samplers.RandomSampler(0))
            trial = study.ask()
            trial.report(0.0, 1)
            trial.should_prune()
        except Exception as exc:
            raise _spec_error(
                f"the pruner fails on its first decision: {type(exc).__name__}: {exc}"
            ) from None
        finally:
            optuna.logging.set_verbosity(level)
