"""W&B parameter configs: the keys of each distribution and the native parameter each
becomes (see :mod:`sweep.spec._wandb` for the mapping)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from sweep.spec._quantile import multiples_within, quantise

# distribution -> keys it allows besides `distribution` (W&B's schema), and defaults.
_DISTRIBUTIONS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "constant": (("value",), {}),
    "categorical": (("values",), {}),
    "categorical_w_probabilities": (("values", "probabilities"), {}),
    "int_uniform": (("min", "max"), {}),
    "uniform": (("min", "max"), {}),
    "q_uniform": (("min", "max", "q"), {"q": 1.0}),
    "log_uniform": (("min", "max"), {}),
    "log_uniform_values": (("min", "max"), {}),
    "inv_log_uniform": (("min", "max"), {}),
    "inv_log_uniform_values": (("min", "max"), {}),
    "q_log_uniform": (("min", "max", "q"), {"q": 1.0}),
    "q_log_uniform_values": (("min", "max", "q"), {"q": 1.0}),
    "normal": (("mu", "sigma"), {"mu": 0.0, "sigma": 1.0}),
    "q_normal": (("mu", "sigma", "q"), {"mu": 0.0, "sigma": 1.0, "q": 1.0}),
    "log_normal": (("mu", "sigma"), {"mu": 0.0, "sigma": 1.0}),
    "q_log_normal": (("mu", "sigma", "q"), {"mu": 0.0, "sigma": 1.0, "q": 1.0}),
    "beta": (("a", "b"), {"a": 1.0, "b": 1.0}),
    "q_beta": (("a", "b", "q"), {"a": 1.0, "b": 1.0, "q": 1.0}),
}
_REQUIRED = {"min", "max", "value", "values"}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def infer_distribution(config: Mapping[str, Any]) -> str | None:
    if "value" in config:
        return "constant"
    if "values" in config:
        return "categorical"
    if "min" in config and "max" in config:
        both_int = _is_int(config["min"]) and _is_int(config["max"])
        return "int_uniform" if both_int else "uniform"
    return None


def _q_uniform(low: float, high: float, q: Any) -> dict[str, Any]:
    if not _is_number(q) or q <= 0:
        raise ValueError(f"q must be a number > 0, got {q!r}")
    first, last = multiples_within(low, high, q)
    if first > last:
        raise ValueError(f"no multiple of q {q} lies in [{low}, {high}]; lower q")
    kind = "int" if _is_int(q) and _is_int(low) and _is_int(high) else "float"
    return {"type": kind, "low": quantise(first * q, q), "high": quantise(last * q, q), "step": q}


def native_parameter(dist: str, c: Mapping[str, Any]) -> dict[str, Any]:
    """The native parameter for W&B distribution ``dist`` with keys ``c`` (defaults in)."""
    if dist == "constant":
        return {"type": "constant", "value": c["value"]}
    if dist == "categorical":
        return {"type": "categorical", "choices": c["values"]}
    if dist == "categorical_w_probabilities":
        probs = c["probabilities"]
        if not isinstance(probs, list) or len(probs) != len(c["values"]):
            raise ValueError("probabilities must list one number per value")
        if not all(_is_number(p) for p in probs) or not math.isclose(sum(probs), 1.0):
            raise ValueError(f"probabilities must be numbers summing to 1, got {probs}")
        return {"type": "categorical", "choices": c["values"], "weights": probs}
    if dist in ("normal", "q_normal", "log_normal", "q_log_normal"):
        native = {"type": dist.removeprefix("q_"), "mu": c["mu"], "sigma": c["sigma"]}
        return {**native, "step": c["q"]} if dist.startswith("q_") else native
    if dist in ("beta", "q_beta"):
        native = {"type": "beta", "a": c["a"], "b": c["b"]}
        return {**native, "step": c["q"]} if dist == "q_beta" else native
    low, high = c["min"], c["max"]
    if not (_is_number(low) and _is_number(high)):
        raise ValueError(f"min and max must be numbers, got {low!r} and {high!r}")
    if low >= high:
        raise ValueError(f"min {low} is not less than max {high}")
    if dist == "int_uniform":
        if not (_is_int(low) and _is_int(high)):
            raise ValueError(f"int_uniform needs integer min and max, got {low!r} and {high!r}")
        return {"type": "int", "low": low, "high": high}
    if dist == "uniform":
        return {"type": "float", "low": low, "high": high}
    if dist == "q_uniform":
        return _q_uniform(low, high, c["q"])
    if dist == "log_uniform":  # bounds are exponents
        return {"type": "log_uniform", "low": math.exp(low), "high": math.exp(high)}
    if dist == "inv_log_uniform":  # log(1/X) ~ U(min, max)
        return {"type": "log_uniform", "low": math.exp(-high), "high": math.exp(-low)}
    if dist in ("log_uniform_values", "inv_log_uniform_values"):
        return {"type": "log_uniform", "low": low, "high": high}
    if dist == "q_log_uniform":
        return {"type": "q_log_uniform", "low": math.exp(low), "high": math.exp(high),
                "step": c["q"]}  # fmt: skip
    return {"type": "q_log_uniform", "low": low, "high": high, "step": c["q"]}
