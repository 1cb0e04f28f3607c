"""How big a run filter may be: a search must not be able to hold the database.

Checked around parsing (:func:`sweep.tracking._filter.parse_filter`): the length before
the text is tokenized, the conditions and in-list values after.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from sweep.errors import FilterError

if TYPE_CHECKING:
    from sweep.tracking._filter import Condition

#: Longest filter accepted, in characters: beyond it the search is refused before it is
#: parsed (a filter is a few conditions; 100 kB of them is a mistake or an attack).
MAX_FILTER_LENGTH = 10_000
#: Most conditions in one filter, and most values in all its in-lists together.
MAX_CONDITIONS = 100
MAX_LIST_VALUES = 1_000


def check_length(text: str) -> None:
    """Refuse a filter longer than :data:`MAX_FILTER_LENGTH` characters."""
    if len(text) > MAX_FILTER_LENGTH:
        raise FilterError(
            f"the filter is {len(text):,} characters long; at most {MAX_FILTER_LENGTH:,} "
            "are accepted (run several narrower searches)",
            text=text,
            position=MAX_FILTER_LENGTH,
        )


def check_size(text: str, conditions: Sequence[Condition]) -> None:
    """Refuse more than :data:`MAX_CONDITIONS` conditions or more than
    :data:`MAX_LIST_VALUES` in-list values in all."""
    if len(conditions) > MAX_CONDITIONS:
        extra = conditions[MAX_CONDITIONS].key
        raise FilterError(
            f"the filter has {len(conditions)} conditions; at most {MAX_CONDITIONS} are "
            f"accepted (the first one too many is at position {extra.position})",
            text=text,
            position=extra.position,
            length=len(extra.text),
        )
    values = 0
    for condition in conditions:
        values += len(condition.value) if isinstance(condition.value, tuple) else 0
        if values > MAX_LIST_VALUES:
            key = condition.key
            raise FilterError(
                f"the filter's in-lists hold more than {MAX_LIST_VALUES:,} values together "
                f"(reached in the list of {key.text!r} at position {key.position})",
                text=text,
                position=key.position,
                length=len(key.text),
            )
