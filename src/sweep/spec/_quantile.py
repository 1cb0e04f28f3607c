"""Inverse CDFs for parameter types that Optuna's distributions cannot express.

Optuna samples floats uniformly (or log-uniformly) between bounds, ints and choices; it
has no normal, log-normal or beta distribution, no weighted choice and no log scale with
a step. Parameters of those types ask Optuna for a *quantile* ``u`` in ``(0, 1)`` (a
uniform float, stored as the trial's param under the parameter's own name) and map it
through the distribution's inverse CDF. So:

* random search draws exactly the declared distribution (a uniform ``u`` through the
  inverse CDF);
* TPE models the quantile, which is TPE's usual transformed space (as it models
  ``log x`` for a log-uniform float);
* a retry or an enqueued trial that fixes ``u`` gets the same value back, because the
  map is deterministic.

The catch: Optuna's ``trial.params`` (and anything that reads them) hold ``u``, not the
value. :meth:`sweep.spec.SweepSpec.decode_params` maps stored params back to values.

Only the standard library is used (``statistics.NormalDist`` and a continued fraction
for the regularized incomplete beta function), so no scipy is needed at run time.
"""

from __future__ import annotations

import math
from statistics import NormalDist

#: Quantiles are drawn in [EPS, 1 - EPS]: the normal's inverse CDF is infinite at 0 and 1.
EPS = 1e-9


def quantise(
    value: float, step: int | float, lo: int | None = None, hi: int | None = None
) -> int | float:
    """``value`` rounded to the nearest multiple of ``step`` (W&B's ``round(x / q) * q``),
    the multiplier clamped to ``[lo, hi]`` when given; an int when ``step`` is an int."""
    k = round(value / step)
    if lo is not None:
        k = max(k, lo)
    if hi is not None:
        k = min(k, hi)
    if isinstance(step, int):
        return int(k * step)
    # 3 * 0.1 is 0.30000000000000004: keep the multiple that the user would write.
    return float(f"{k * step:.15g}")


def multiples_within(low: float, high: float, step: float) -> tuple[int, int]:
    """The first and last ``k`` with ``low <= k * step <= high`` (tolerating rounding)."""
    tol = 1e-9
    first = math.ceil(low / step - tol)
    last = math.floor(high / step + tol)
    return first, last


def normal_ppf(u: float, mu: float, sigma: float) -> float:
    return NormalDist(mu, sigma).inv_cdf(u)


def log_normal_ppf(u: float, mu: float, sigma: float) -> float:
    return math.exp(NormalDist(mu, sigma).inv_cdf(u))


def log_uniform_ppf(u: float, low: float, high: float) -> float:
    return math.exp(math.log(low) + u * (math.log(high) - math.log(low)))


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """Lentz's method for the continued fraction of the incomplete beta function."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        for numerator in (
            m * (b - m) * x / ((qam + m2) * (a + m2)),
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def beta_cdf(x: float, a: float, b: float) -> float:
    """The regularized incomplete beta function ``I_x(a, b)``."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_continued_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_continued_fraction(b, a, 1.0 - x) / b


def beta_ppf(u: float, a: float, b: float) -> float:
    """The inverse of :func:`beta_cdf` by bisection (the CDF is monotone on [0, 1])."""
    lo, hi = 0.0, 1.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if beta_cdf(mid, a, b) < u:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-15:
            break
    return (lo + hi) / 2


def weighted_index(u: float, weights: list[float]) -> int:
    """The index whose cumulative weight band holds quantile ``u`` (weights sum to > 0)."""
    total = sum(weights)
    cumulative = 0.0
    for index, weight in enumerate(weights):
        cumulative += weight / total
        if u < cumulative and weight > 0:
            return index
    return max(i for i, w in enumerate(weights) if w > 0)
