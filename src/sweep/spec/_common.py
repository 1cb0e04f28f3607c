"""Small helpers shared by the spec modules: validation errors and describing values."""

from __future__ import annotations

import datetime
import difflib
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic_core import PydanticCustomError

from sweep.errors import SpecError, SpecErrors

#: Longest name the store keeps (sweep, experiment, model, alias): the width of its name
#: columns, ``sweep.storage.schema.KEY_LENGTH`` (a test checks they agree).
MAX_NAME_LENGTH = 250
#: Largest n_trials the store's integer columns hold.
MAX_INT32 = 2**31 - 1

_SPEC_ERROR = "sweep_spec"  # pydantic error type of the errors raised by this module
_KEY_CTX = "sweep_key"  # ctx entry naming the sub-key a model-level error is about


class NotGriddable(ValueError):
    """Raised by a parameter's ``grid_values`` when it has infinitely many values."""


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


def _did_you_mean(key: str, allowed: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(allowed), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _raise_all(errors: list[SpecError]) -> typing.NoReturn:
    if len(errors) == 1:
        raise errors[0]
    raise SpecErrors(errors)
