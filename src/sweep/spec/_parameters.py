"""Parameter specs: one declared hyperparameter and the Optuna distribution it samples."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import optuna
from pydantic import Field, field_validator, model_validator

from sweep.spec._base import Choice, Int, Number, _SpecModel
from sweep.spec._common import _spec_error

#: Values of ``type`` a parameter may have.
PARAMETER_TYPES: tuple[str, ...] = ("float", "uniform", "log_uniform", "int", "categorical")


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
