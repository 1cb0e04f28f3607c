"""Field types and the base model shared by every spec model."""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, FiniteFloat

from sweep.spec._common import _spec_error, _yaml_type


def _reject_bool(value: Any) -> Any:
    # YAML reads yes/no/true/false as booleans and pydantic would quietly turn them into 1/0.
    if isinstance(value, bool):
        raise _spec_error(f"Input should be a number, got the boolean {str(value).lower()}")
    return value


def _empty_to_none(value: Any) -> Any:
    # `${VAR:-}` yields "" for an unset optional setting; treat that as not set.
    return None if isinstance(value, str) and value.strip() == "" else value


def _is_json(value: Any) -> bool:
    if value is None or isinstance(value, (str, int, float, bool)):
        return not isinstance(value, float) or math.isfinite(value)
    if isinstance(value, list):
        return all(_is_json(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_json(v) for k, v in value.items())
    return False


def _check_choice(value: Any) -> Any:
    # One clear error per bad choice instead of one per member of a scalar union.
    if _is_json(value):
        return value
    raise _spec_error(
        "a choice must be a string, number, boolean, null, or a list or mapping of those, "
        f"got {_yaml_type(value)}"
    )


Int = Annotated[int, BeforeValidator(_reject_bool)]
Number = Annotated[FiniteFloat, BeforeValidator(_reject_bool)]
OptionalText = Annotated[str | None, BeforeValidator(_empty_to_none)]
Choice = Annotated[Any, AfterValidator(_check_choice)]
#: A quantisation step: an int step keeps values ints (W&B's rule for ``q``).
Quantum = Annotated[int | FiniteFloat, BeforeValidator(_reject_bool)]


class _SpecModel(BaseModel):
    """Base of all spec models: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)
