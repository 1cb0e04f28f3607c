"""Parameter specs: one declared hyperparameter and the Optuna distribution it samples.

Every parameter model has the same four methods: ``suggest`` (ask an ``optuna.Trial``
for the value), ``distribution`` (the Optuna distribution stored with the trial),
``value_of`` (the value a stored Optuna param stands for: the identity, except for
choices stored as JSON text and the quantile types of :mod:`sweep.spec._transformed`)
and ``grid_values`` (the values a grid search enumerates, or a reason why it cannot).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

import optuna
from pydantic import Field, field_validator, model_validator

from sweep.spec._base import Choice, Int, Number, _SpecModel
from sweep.spec._common import NotGriddable, _show, _spec_error
from sweep.spec._quantile import EPS, weighted_index
from sweep.spec._transformed import (
    BetaParam,
    LogNormalParam,
    NormalParam,
    QLogUniformParam,
    _quantile_distribution,
)

#: Values of ``type`` a parameter may have.
PARAMETER_TYPES: tuple[str, ...] = (
    "float",
    "uniform",
    "log_uniform",
    "int",
    "categorical",
    "constant",
    "normal",
    "log_normal",
    "beta",
    "q_log_uniform",
)


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

    def value_of(self, stored: Any) -> Any:
        """The value a stored Optuna param of this parameter stands for."""
        return stored

    def to_stored(self, value: Any) -> Any:
        """What Optuna stores for ``value`` (the inverse of :meth:`value_of`)."""
        return value

    def grid_values(self) -> list[Any]:
        """``low, low + step, ...`` up to ``high``; a float without step has no grid."""
        if self.step is None:
            raise NotGriddable("a float without step has infinitely many values; give it a step")
        count = int(round((self.high - self.low) / self.step, 9)) + 1
        values = [float(f"{self.low + i * self.step:.15g}") for i in range(count)]
        return [v for v in values if v <= self.high + 1e-12]


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

    def value_of(self, stored: Any) -> Any:
        """The value a stored Optuna param of this parameter stands for."""
        return stored

    def to_stored(self, value: Any) -> Any:
        """What Optuna stores for ``value`` (the inverse of :meth:`value_of`)."""
        return value

    def grid_values(self) -> list[Any]:
        """``low, low + step, ...`` up to ``high``."""
        return list(range(self.low, self.high + 1, self.step))


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _encode_choice(value: Any) -> Any:
    # Optuna's choices are scalars; a list or mapping is stored as its JSON text.
    return value if _is_scalar(value) else json.dumps(value, sort_keys=True)


class CategoricalParam(_SpecModel):
    """A choice among values: strings, numbers, booleans, null, or lists and mappings of
    those (stored in Optuna as their JSON text). With ``weights`` each choice is drawn
    with its weight's share (an Optuna quantile mapped to a choice, see
    :mod:`sweep.spec._quantile`)."""

    type: Literal["categorical"] = Field(description="categorical")
    choices: list[Choice] = Field(
        description="a non-empty list of strings, numbers, booleans, null, lists or mappings"
    )
    weights: list[Number] | None = Field(
        default=None,
        description="one number >= 0 per choice: how often it is drawn (W&B's probabilities)",
    )

    @field_validator("choices")
    @classmethod
    def _non_empty(cls, choices: list[Any]) -> list[Any]:
        if not choices:
            raise _spec_error("choices must not be empty; list at least one value")
        encoded = [_encode_choice(c) for c in choices]
        for index, value in enumerate(encoded):
            # A list's JSON text must not collide with a string choice, nor repeat.
            if any(value == other and type(value) is type(other) for other in encoded[:index]):
                raise _spec_error(f"choice {_show(choices[index])} is listed twice; list it once")
        return choices

    @model_validator(mode="after")
    def _check_weights(self) -> CategoricalParam:
        if self.weights is None:
            return self
        if len(self.weights) != len(self.choices):
            raise _spec_error(
                f"weights must have one number per choice: {len(self.choices)} choices, "
                f"{len(self.weights)} weights",
                "weights",
            )
        if any(w < 0 for w in self.weights) or sum(self.weights) <= 0:
            raise _spec_error("weights must be >= 0 with a positive sum", "weights")
        return self

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        """Ask ``trial`` for this parameter's value."""
        if self.weights is not None:
            return self.value_of(trial.suggest_float(name, EPS, 1 - EPS))
        return self.value_of(trial.suggest_categorical(name, self._encoded()))

    def _encoded(self) -> list[Any]:
        return [_encode_choice(c) for c in self.choices]

    def distribution(self) -> optuna.distributions.BaseDistribution:
        """The Optuna distribution this parameter samples from."""
        if self.weights is not None:
            return _quantile_distribution()
        return optuna.distributions.CategoricalDistribution(self._encoded())

    def value_of(self, stored: Any) -> Any:
        """The choice a stored Optuna param (a choice, its JSON text, or a quantile) means."""
        if self.weights is not None:
            return self.choices[weighted_index(float(stored), list(self.weights))]
        for choice, encoded in zip(self.choices, self._encoded(), strict=True):
            if encoded == stored and type(encoded) is type(stored):
                return choice
        return stored

    def to_stored(self, value: Any) -> Any:
        """What Optuna stores for choice ``value``: its JSON text for a list or mapping,
        the middle of its quantile band with weights."""
        index = next(i for i, c in enumerate(self.choices) if c == value and type(c) is type(value))
        if self.weights is None:
            return self._encoded()[index]
        total = sum(self.weights)
        below = sum(self.weights[:index]) / total
        return below + self.weights[index] / total / 2

    def grid_values(self) -> list[Any]:
        """Every choice (weights only shape random draws)."""
        return list(self.choices)


class ConstantParam(_SpecModel):
    """A fixed value, passed to every trial (W&B's ``value``); any JSON value."""

    type: Literal["constant"] = Field(description="constant")
    value: Choice = Field(description="the value: any string, number, boolean, null, list or map")

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        """Record the value on ``trial`` (a one-choice categorical) and return it."""
        trial.suggest_categorical(name, [_encode_choice(self.value)])
        return self.value

    def distribution(self) -> optuna.distributions.CategoricalDistribution:
        """The Optuna distribution this parameter samples from."""
        return optuna.distributions.CategoricalDistribution([_encode_choice(self.value)])

    def value_of(self, stored: Any) -> Any:
        """The constant, whatever was stored."""
        return self.value

    def to_stored(self, value: Any) -> Any:
        """What Optuna stores for the constant."""
        return _encode_choice(self.value)

    def grid_values(self) -> list[Any]:
        """The one value."""
        return [self.value]


#: One declared parameter; the ``type`` key picks the variant.
ParameterSpec = Annotated[
    FloatParam
    | IntParam
    | CategoricalParam
    | ConstantParam
    | NormalParam
    | LogNormalParam
    | BetaParam
    | QLogUniformParam,
    Field(discriminator="type"),
]

_PARAM_BY_TYPE: dict[str, type[_SpecModel]] = {
    "float": FloatParam,
    "uniform": FloatParam,
    "log_uniform": FloatParam,
    "int": IntParam,
    "categorical": CategoricalParam,
    "constant": ConstantParam,
    "normal": NormalParam,
    "log_normal": LogNormalParam,
    "beta": BetaParam,
    "q_log_uniform": QLogUniformParam,
}


def stores_other_form(param: Any) -> bool:
    """Whether Optuna stores ``param``'s values in another form (a quantile, JSON text)."""
    if isinstance(param, (NormalParam, LogNormalParam, BetaParam, QLogUniformParam)):
        return True
    if isinstance(param, CategoricalParam):
        return param.weights is not None or not all(_is_scalar(c) for c in param.choices)
    return isinstance(param, ConstantParam) and not _is_scalar(param.value)
