"""Run search: a parsed filter and order-by compiled to one SQLAlchemy ``select()``.

Every condition is an ``EXISTS`` on an indexed table (params by ``(run_id, key)`` and
``(key, value_num)``, latest metrics by ``(run_id, key)`` and ``(key, value)``, tags by
``(run_id, key)``) or a comparison on a run column, so the database does all the
filtering; a run lacking the param, metric or tag a condition names does not match.
Sort keys are outer joins on the same primary keys (one row per run), missing values
last, ties broken by start time then run id. Only the page (``LIMIT``) comes back.

Semantics worth knowing:

- params compare numerically (``value_num``) when the filter's value is a number and as
  text (``value``) when it is quoted; a param logged as text never matches ``< 3``.
- metrics compare their latest value (highest step), from ``sweep_latest_metrics``.
- ``like`` is case-sensitive and ``ilike`` is not, on every backend; ``%`` matches any
  text, ``_`` one character, and a backslash makes the next character literal.
- ordering by a param sorts numbers numerically, then text values, then runs without it.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, exists, select
from sqlalchemy.orm import aliased

from sweep.storage._schema import LatestMetricRow, ParamRow, RunRow, TagRow
from sweep.tracking._filter import Condition, OrderKey, Value

_COMPARE: dict[str, Callable[[Any, Any], ColumnElement[bool]]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_KEYED: dict[str, Any] = {"params": ParamRow, "metrics": LatestMetricRow, "tags": TagRow}
_ATTRIBUTE_COLUMNS: dict[str, Any] = {
    "run_id": RunRow.run_id,
    "name": RunRow.name,
    "status": RunRow.status,
    "start_time": RunRow.start_time,
    "end_time": RunRow.end_time,
    "parent_run_id": RunRow.parent_run_id,
    "experiment_id": RunRow.experiment_id,
}


def build_search(
    conditions: Sequence[Condition],
    order: Sequence[OrderKey],
    *,
    dialect: str,
    experiment_ids: Sequence[int] | None = None,
    parent_run_id: str | None = None,
    max_results: int = 1000,
) -> Select[Any]:
    """The ``select(RunRow)`` of the runs matching every condition, in ``order``, at
    most ``max_results`` of them. ``dialect`` is the database's (``sqlite``,
    ``postgresql``): SQLite needs its own case-sensitive ``like``."""
    stmt = select(RunRow)
    if experiment_ids is not None:
        stmt = stmt.where(RunRow.experiment_id.in_(list(experiment_ids)))
    if parent_run_id is not None:
        stmt = stmt.where(RunRow.parent_run_id == parent_run_id)
    for condition in conditions:
        stmt = stmt.where(_condition(condition, dialect))
    sort: list[Any] = []
    for order_key in order:
        key = order_key.key
        if key.type == "attributes":
            columns = [_ATTRIBUTE_COLUMNS[key.name]]
        else:
            row = aliased(_KEYED[key.type])
            stmt = stmt.outerjoin(row, and_(row.run_id == RunRow.run_id, row.key == key.name))
            columns = [row.value_num, row.value] if key.type == "params" else [row.value]
        for column in columns:
            direction = column.desc() if order_key.descending else column.asc()
            sort.append(direction.nulls_last())
    sort += [RunRow.start_time.asc(), RunRow.run_id.asc()]
    return stmt.order_by(*sort).limit(max_results)


def _condition(condition: Condition, dialect: str) -> ColumnElement[bool]:
    key = condition.key
    if key.type == "attributes":
        column = _ATTRIBUTE_COLUMNS[key.name]
        value = condition.value
        if condition.numeric:  # integer columns: compare with integers where exact
            value = (
                tuple(_integral(v) for v in value) if isinstance(value, tuple) else _integral(value)
            )
        return _compare(column, condition.op, value, dialect)
    table = aliased(_KEYED[key.type])
    numeric_param = key.type == "params" and condition.numeric
    column = table.value_num if numeric_param else table.value
    return exists(
        select(1)
        .select_from(table)
        .where(
            table.run_id == RunRow.run_id,
            table.key == key.name,
            _compare(column, condition.op, condition.value, dialect),
        )
        .correlate(RunRow)
    )


def _compare(
    column: Any, op: str, value: Value | tuple[Value, ...], dialect: str
) -> ColumnElement[bool]:
    if op == "in":
        return column.in_(list(value))  # type: ignore[arg-type]
    if op == "not in":
        return column.not_in(list(value))  # type: ignore[arg-type]
    if op == "ilike":
        return column.ilike(value, escape="\\")
    if op == "like":
        if dialect == "sqlite":  # SQLite's LIKE ignores case; GLOB does not
            return column.op("GLOB")(like_to_glob(str(value)))
        return column.like(value, escape="\\")
    return _COMPARE[op](column, value)


def like_to_glob(pattern: str) -> str:
    """A SQL ``like`` pattern (``%``, ``_``, backslash escapes) as a SQLite GLOB pattern."""
    out: list[str] = []
    chars = iter(pattern)
    for char in chars:
        if char == "\\":
            char = next(chars, "\\")
            out.append(_glob_literal(char))
        elif char == "%":
            out.append("*")
        elif char == "_":
            out.append("?")
        else:
            out.append(_glob_literal(char))
    return "".join(out)


def _glob_literal(char: str) -> str:
    return f"[{char}]" if char in "*?[" else char


def _integral(value: Value) -> Value | int:
    return int(value) if isinstance(value, float) and value.is_integer() else value
