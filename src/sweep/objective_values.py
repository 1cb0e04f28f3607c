"""What an objective returns, checked: one number per objective, in the spec's order.

One objective: a real number (not a bool, not NaN). Several: a sequence of numbers in
the spec's order, or a mapping by metric name holding exactly the spec's metrics.
Anything else fails the trial with a message saying what was expected.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any


def check_objective_value(result: Any) -> tuple[float | None, str | None]:
    """The float an objective returned, or why it is not a usable value."""
    if isinstance(result, bool) or not isinstance(result, numbers.Real):
        return None, (
            f"objective returned {type(result).__name__} {result!r:.80}, not a number; "
            "return the metric as a float"
        )
    value = float(result)
    if math.isnan(value):
        return None, "objective returned NaN"
    return value, None


def check_objective_values(
    result: Any, names: Sequence[str]
) -> tuple[list[float] | None, str | None]:
    """The values an objective returned for the objectives ``names``, in their order
    (one number for one objective; a sequence or a mapping by name for several), or why
    they are not usable."""
    if len(names) == 1:
        value, error = check_objective_value(result)
        return (None, error) if value is None else ([value], None)
    expected = f"return {len(names)} numbers ({', '.join(names)}) as a tuple or list, or a dict"
    if isinstance(result, Mapping):
        missing = [n for n in names if n not in result]
        unknown = [str(k) for k in result if k not in names]
        if missing or unknown:
            what = f"lacks {', '.join(missing)}" if missing else f"has {', '.join(unknown)}"
            return None, (
                f"objective returned a dict that {what}; its keys must be the spec's metrics "
                f"({', '.join(names)}); log other values with sweep.log_metric"
            )
        result = [result[n] for n in names]
    elif isinstance(result, (str, bytes)) or not isinstance(result, Sequence):
        return None, f"objective returned {type(result).__name__} {result!r:.80}; {expected}"
    if len(result) != len(names):
        return None, f"objective returned {len(result)} values; {expected}"
    values: list[float] = []
    for name, item in zip(names, result, strict=True):
        value, error = check_objective_value(item)
        if value is None:
            return None, f"{name}: {error}"
        values.append(value)
    return values, None
