"""Run search: a parsed filter and order-by compiled to one SQLAlchemy ``select()``.

The cost grows gently with the number of conditions and no join order has to be
searched: the conditions on params, latest metrics and tags (each keyed by a unique
``(run_id, key)``) make one grouped subquery. Each table is read once, for the rows its
conditions can match; each row counts the conditions it meets (a ``CASE`` on its key
picks those that concern it), and a run whose rows add up to the number of conditions
meets them all::

    run_id IN (SELECT run_id FROM (
                   SELECT run_id, CASE WHEN key = 'lr' THEN
                                      CASE WHEN value_num < 0.01 THEN 1 ELSE 0 END
                                  ELSE 0 END AS hits
                   FROM sweep_params WHERE key = 'lr' AND value_num < 0.01
                   UNION ALL
                   SELECT run_id, ... FROM sweep_tags WHERE ...
               ) GROUP BY run_id HAVING sum(hits) = 2)

With up to :data:`FEW_CONDITIONS` conditions on a table its rows are found through the
indexes (params ``(key, value_num)``, latest metrics ``(key, value)``), one range per
condition; with more, the rows of the keys named are read in one pass. It used to be one
correlated ``EXISTS`` per condition: 50 of them took 3.7-6.7 s on 10,000 runs and 90 up
to 11 s, against 0.24 and 0.34 s now (PostgreSQL 15, 2 loaded cores). On PostgreSQL a
search also runs without nested-loop joins (the planner cannot estimate the ``HAVING``
and guesses a handful of runs; a nested loop on that guess took 3.9 s for 90 conditions)
and under a statement timeout (:func:`statement_deadline`). Conditions on run attributes
compare run columns. A run lacking the param, metric or tag a condition names does not
match. Sort keys are outer joins on the same primary keys (one row per run), missing
values last, ties broken by start time then run id. Only the page (``LIMIT``) comes back.

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
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, case, func, or_, select, union_all
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, aliased

from sweep.errors import InvalidValueError, SearchTimeoutError
from sweep.storage.schema import LatestMetricRow, ParamRow, RunRow, TagRow
from sweep.tracking._filter import Condition, OrderKey, Value

#: Environment variable: seconds a search may run in the database before the server
#: cancels it (so that a search its client abandoned does not run on); default 30.
SEARCH_TIMEOUT_ENV = "SWEEP_SEARCH_TIMEOUT"
DEFAULT_SEARCH_TIMEOUT_S = 30.0
#: The most runs one search may ask for: LIMIT is a 64-bit integer in the database.
MAX_RESULTS_LIMIT = 2**63 - 1
#: Up to this many conditions on one table, its rows are found through the indexes, one
#: range per condition; beyond, the rows of the keys named are read once.
FEW_CONDITIONS = 8
#: PostgreSQL's SQLSTATE for a statement cancelled (by statement_timeout among others).
_QUERY_CANCELED = "57014"

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
    keyed = [c for c in conditions if c.key.type != "attributes"]
    for condition in conditions:
        if condition.key.type == "attributes":
            stmt = stmt.where(_attribute_condition(condition, dialect))
    if keyed:
        stmt = stmt.where(RunRow.run_id.in_(_matching_runs(keyed, dialect)))
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


def _attribute_condition(condition: Condition, dialect: str) -> ColumnElement[bool]:
    column = _ATTRIBUTE_COLUMNS[condition.key.name]
    value = condition.value
    if condition.numeric:  # integer columns: compare with integers where exact
        value = tuple(_integral(v) for v in value) if isinstance(value, tuple) else _integral(value)
    return _compare(column, condition.op, value, dialect)


def _matching_runs(conditions: Sequence[Condition], dialect: str) -> Select[Any]:
    """The ids of the runs that satisfy every one of ``conditions`` (on params, metrics
    and tags), in one aggregate whatever their number.

    Each table is read once, for the rows of the keys the conditions name; each row
    counts the conditions it meets (a ``CASE`` on its key picks the few that concern
    it), and since ``(run_id, key)`` is unique a run whose rows add up to the number of
    conditions meets them all."""
    branches = []
    for kind, table in _KEYED.items():
        by_key: dict[str, list[Condition]] = {}
        for condition in conditions:
            if condition.key.type == kind:
                by_key.setdefault(condition.key.name, []).append(condition)
        if not by_key:
            continue
        hits = case(
            *((table.key == name, _hits(table, mine, dialect)) for name, mine in by_key.items()),
            else_=0,
        )
        mine = [c for group in by_key.values() for c in group]
        if len(mine) <= FEW_CONDITIONS:  # the indexes narrow each condition's rows
            where = or_(*(_keyed_test(c, dialect) for c in mine))
        else:  # one pass over the keys' rows, not one OR of them all per row
            where = table.key.in_(list(by_key))
        branches.append(select(table.run_id.label("run_id"), hits.label("hits")).where(where))
    rows = (branches[0] if len(branches) == 1 else union_all(*branches)).subquery("matched")
    return (
        select(rows.c.run_id)
        .group_by(rows.c.run_id)
        .having(func.sum(rows.c.hits) == len(conditions))
    )


def _keyed_test(condition: Condition, dialect: str) -> ColumnElement[bool]:
    """Whether a row of the condition's table is its key and satisfies it."""
    table = _KEYED[condition.key.type]
    numeric_param = condition.key.type == "params" and condition.numeric
    column = table.value_num if numeric_param else table.value
    return and_(
        table.key == condition.key.name,
        _compare(column, condition.op, condition.value, dialect),
    )


def _hits(table: Any, conditions: Sequence[Condition], dialect: str) -> Any:
    """How many of ``conditions`` (all on one key) a row of ``table`` meets."""
    total: Any = None
    for condition in conditions:
        numeric_param = condition.key.type == "params" and condition.numeric
        column = table.value_num if numeric_param else table.value
        one = case((_compare(column, condition.op, condition.value, dialect), 1), else_=0)
        total = one if total is None else total + one
    return total


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


def check_max_results(max_results: int) -> int:
    """``max_results`` if it is a page size the database can take, else an
    :class:`~sweep.errors.InvalidValueError` that says what is allowed."""
    if isinstance(max_results, bool) or not isinstance(max_results, int):
        raise InvalidValueError(f"max_results must be a whole number, got {max_results!r}")
    if not 1 <= max_results <= MAX_RESULTS_LIMIT:
        raise InvalidValueError(
            f"max_results must be between 1 and {MAX_RESULTS_LIMIT} (a 64-bit integer), "
            f"got {max_results}"
        )
    return max_results


def search_timeout_s(timeout_s: float | None = None) -> float:
    """The statement timeout of a search: ``timeout_s``, else ``SWEEP_SEARCH_TIMEOUT``,
    else 30 seconds. Raises :class:`~sweep.errors.InvalidValueError` unless positive."""
    raw: object = timeout_s
    if timeout_s is None:
        raw = os.environ.get(SEARCH_TIMEOUT_ENV) or DEFAULT_SEARCH_TIMEOUT_S
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        value = float("nan")
    if not 0 < value <= 10**7:  # also refuses NaN
        where = "the search timeout" if timeout_s is not None else SEARCH_TIMEOUT_ENV
        raise InvalidValueError(f"{where} must be a number of seconds above 0, got {raw!r}")
    return value


@contextmanager
def statement_deadline(session: Session, timeout_s: float) -> Iterator[None]:
    """Let the statements of ``session`` run at most ``timeout_s`` seconds each; past it
    the database cancels the statement and :class:`~sweep.errors.SearchTimeoutError`
    is raised. PostgreSQL: ``SET LOCAL statement_timeout`` (the server stops the query
    even when its client is gone), and no nested-loop joins (see below). SQLite: a
    progress handler that interrupts it."""
    dialect = session.get_bind().dialect.name
    restore: Any = None
    if dialect == "postgresql":
        milliseconds = f"{timeout_s * 1000:.0f}"
        session.execute(select(func.set_config("statement_timeout", milliseconds, True)))
        # The planner cannot estimate how many runs pass the HAVING of the matched rows
        # and guesses a handful; a nested loop on that guess can be quadratic in the runs
        # (3.9 s for 90 conditions on 10,000 runs, against 0.34 s). Hash joins are linear.
        session.execute(select(func.set_config("enable_nestloop", "off", True)))
    elif dialect == "sqlite":
        raw: Any = session.connection().connection.driver_connection
        deadline = time.monotonic() + timeout_s
        raw.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
        restore = raw
    try:
        yield
    except DBAPIError as exc:
        code = getattr(exc.orig, "sqlstate", None)
        if code == _QUERY_CANCELED or "interrupted" in str(exc.orig):
            raise SearchTimeoutError(
                f"the search ran past its timeout of {timeout_s:g} s and was cancelled; "
                "narrow the filter, or allow longer with --timeout (sweep runs) or "
                f"{SEARCH_TIMEOUT_ENV}"
            ) from None
        raise
    finally:
        if restore is not None:
            restore.set_progress_handler(None, 0)
