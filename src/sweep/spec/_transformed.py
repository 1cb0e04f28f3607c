"""Parameter types sampled through a quantile: normal, log-normal, beta, and a log scale
with a step. See :mod:`sweep.spec._quantile` for why and how.

Each asks Optuna for ``u`` in ``[EPS, 1 - EPS]`` under the parameter's name and returns
the inverse CDF of ``u``. With ``step`` the value is rounded to the nearest multiple of
``step`` (W&B's ``q``), as an int when ``step`` is an int; a bounded type keeps the
multiple within its bounds.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import optuna
from pydantic import Field, model_validator

from sweep.spec._base import Number, Quantum, _SpecModel
from sweep.spec._common import NotGriddable, _spec_error
from sweep.spec._quantile import (
    EPS,
    beta_ppf,
    log_normal_ppf,
    log_uniform_ppf,
    multiples_within,
    normal_ppf,
    quantise,
)


def _quantile_distribution() -> optuna.distributions.FloatDistribution:
    """What Optuna stores for a quantile parameter: a uniform float in (0, 1)."""
    return optuna.distributions.FloatDistribution(EPS, 1 - EPS)


class _QuantileParam(_SpecModel):
    """Shared suggest/distribution/value_of of the quantile types."""

    def ppf(self, u: float) -> int | float:  # pragma: no cover - every subclass overrides
        raise NotImplementedError

    def suggest(self, trial: optuna.Trial, name: str) -> int | float:
        """Ask ``trial`` for a quantile and return the value it maps to."""
        return self.ppf(trial.suggest_float(name, EPS, 1 - EPS))

    def distribution(self) -> optuna.distributions.FloatDistribution:
        """The Optuna distribution stored with the trial: the quantile's."""
        return _quantile_distribution()

    def value_of(self, stored: Any) -> int | float:
        """The value a stored quantile stands for."""
        return self.ppf(float(stored))

    def to_stored(self, value: Any) -> float:
        """The quantile of ``value``; only grid types (q_log_uniform) have one."""
        raise NotGriddable(f"a {getattr(self, 'type', 'quantile')} parameter has no grid")

    def grid_values(self) -> list[Any]:
        """Unbounded or continuous: no grid."""
        raise NotGriddable(
            f"a {getattr(self, 'type', 'quantile')} parameter has infinitely many values; "
            "grid search needs int, categorical, constant or float with step"
        )


def _check_step(step: int | float | None) -> None:
    if step is not None and step <= 0:
        raise _spec_error(f"step must be > 0, got {step}", "step")


class NormalParam(_QuantileParam):
    """A normal distribution N(mu, sigma); with ``step``, multiples of step."""

    type: Literal["normal"] = Field(description="normal")
    mu: Number = Field(default=0.0, description="the mean")
    sigma: Number = Field(default=1.0, gt=0, description="the standard deviation (> 0)")
    step: Quantum | None = Field(default=None, description="round to multiples of this (> 0)")

    @model_validator(mode="after")
    def _check(self) -> NormalParam:
        _check_step(self.step)
        return self

    def ppf(self, u: float) -> int | float:
        value = normal_ppf(u, self.mu, self.sigma)
        return value if self.step is None else quantise(value, self.step)


class LogNormalParam(_QuantileParam):
    """``exp(N(mu, sigma))``; with ``step``, multiples of step (0 included)."""

    type: Literal["log_normal"] = Field(description="log_normal")
    mu: Number = Field(default=0.0, description="the mean of the log")
    sigma: Number = Field(default=1.0, gt=0, description="the standard deviation of the log")
    step: Quantum | None = Field(default=None, description="round to multiples of this (> 0)")

    @model_validator(mode="after")
    def _check(self) -> LogNormalParam:
        _check_step(self.step)
        return self

    def ppf(self, u: float) -> int | float:
        value = log_normal_ppf(u, self.mu, self.sigma)
        return value if self.step is None else quantise(value, self.step, lo=0)


class BetaParam(_QuantileParam):
    """A beta distribution on [0, 1]; with ``step``, multiples of step within [0, 1]."""

    type: Literal["beta"] = Field(description="beta")
    a: Number = Field(default=1.0, gt=0, description="alpha (> 0)")
    b: Number = Field(default=1.0, gt=0, description="beta (> 0)")
    step: Quantum | None = Field(default=None, description="round to multiples of this (> 0)")

    @model_validator(mode="after")
    def _check(self) -> BetaParam:
        _check_step(self.step)
        if self.step is not None and self.step > 1:
            raise _spec_error(f"step must be at most 1 for a beta, got {self.step}", "step")
        return self

    def ppf(self, u: float) -> int | float:
        value = beta_ppf(u, self.a, self.b)
        if self.step is None:
            return value
        first, last = multiples_within(0.0, 1.0, self.step)
        return quantise(value, self.step, lo=first, hi=last)


class QLogUniformParam(_QuantileParam):
    """Log-uniform on [low, high], rounded to multiples of ``step`` within the bounds
    (Optuna refuses ``log`` with ``step``)."""

    type: Literal["q_log_uniform"] = Field(description="q_log_uniform")
    low: Number = Field(description="the smallest value (> 0)")
    high: Number = Field(description="the largest value (> low)")
    step: Quantum = Field(description="values are multiples of this (> 0)")

    @model_validator(mode="after")
    def _check(self) -> QLogUniformParam:
        _check_step(self.step)
        if self.low <= 0:
            raise _spec_error(f"log scale needs low > 0, got {self.low}", "low")
        if self.low >= self.high:
            raise _spec_error(
                f"low must be less than high, got low={self.low}, high={self.high}", "low"
            )
        first, last = multiples_within(self.low, self.high, self.step)
        if first > last:
            raise _spec_error(
                f"no multiple of step {self.step} lies in [{self.low}, {self.high}]; "
                "use a smaller step or wider bounds",
                "step",
            )
        return self

    def ppf(self, u: float) -> int | float:
        value = log_uniform_ppf(u, self.low, self.high)
        first, last = multiples_within(self.low, self.high, self.step)
        return quantise(value, self.step, lo=first, hi=last)

    def to_stored(self, value: Any) -> float:
        """The quantile that maps to grid value ``value``."""
        u = (math.log(value) - math.log(self.low)) / (math.log(self.high) - math.log(self.low))
        return min(max(u, EPS), 1 - EPS)

    def grid_values(self) -> list[Any]:
        """Every multiple of ``step`` in ``[low, high]``."""
        first, last = multiples_within(self.low, self.high, self.step)
        return [quantise(k * self.step, self.step) for k in range(first, last + 1)]
