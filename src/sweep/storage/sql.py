"""SQL helpers shared by the stores: many rows in one statement, and the one upsert both
backends understand.

On PostgreSQL, rows go in as one ``INSERT ... SELECT FROM unnest(...)`` with an array
per column: one statement to parse and run however many rows, where ``executemany``
sends and runs a statement per row (measured: about 3x less time per row, client and
server together). SQLite, in-process, gets ``executemany``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Executable, Float, Integer, Table, bindparam, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.types import TypeEngine


def insert_rows(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``rows`` (dicts with the same keys) into ``table``."""
    if rows:
        _write(session, table, rows, None, False)


def upsert(
    session: Session,
    table: Table,
    rows: Sequence[dict[str, Any]],
    keys: Sequence[str],
    *,
    only_if_step_not_lower: bool = False,
) -> None:
    """Insert ``rows``, replacing the non-key columns of rows whose ``keys`` exist.

    With ``only_if_step_not_lower`` an existing row is replaced only by a point of the
    same or a higher step (the latest-metric rule). Among ``rows`` with the same keys,
    the one written is the last (with ``only_if_step_not_lower``, the last of the
    highest step), as if they were written one after the other."""
    if rows:
        _write(session, table, rows, tuple(keys), only_if_step_not_lower)


def _write(
    session: Session,
    table: Table,
    rows: Sequence[dict[str, Any]],
    keys: tuple[str, ...] | None,
    only_if_step_not_lower: bool,
) -> None:
    dialect = session.get_bind().dialect.name
    columns = tuple(rows[0])
    stmt = _statement(table, columns, keys, only_if_step_not_lower, dialect)
    if dialect != "postgresql":
        session.execute(stmt, list(rows))
        return
    if keys is not None:
        # One statement may not update a row twice: keep the row that would win.
        winners: dict[tuple[Any, ...], dict[str, Any]] = {}
        for row in rows:
            key = tuple(row[k] for k in keys)
            held = winners.get(key)
            if held is None or not only_if_step_not_lower or row["step"] >= held["step"]:
                winners[key] = row
        rows = list(winners.values())
    arrays = {
        f"rows_{c}": _column_values(table.c[c].type, [row[c] for row in rows]) for c in columns
    }
    session.execute(stmt, arrays)


@functools.lru_cache(maxsize=256)
def _statement(
    table: Table,
    columns: tuple[str, ...],
    keys: tuple[str, ...] | None,
    only_if_step_not_lower: bool,
    dialect: str,
) -> Executable:
    """The insert (or, with ``keys``, upsert) of rows with ``columns``: on PostgreSQL
    ``INSERT ... SELECT FROM unnest(<an array per column>)``, the arrays bound as
    ``rows_<column>``; elsewhere one for ``executemany``. Built once: building it costs
    more than running it."""
    stmt: postgresql.Insert | sqlite.Insert
    if dialect == "postgresql":
        arrays = [bindparam(f"rows_{c}", type_=postgresql.ARRAY(table.c[c].type)) for c in columns]
        given = func.unnest(*arrays).table_valued(*columns).render_derived(name="given")
        stmt = postgresql.insert(table).from_select(
            list(columns), select(*(given.c[c] for c in columns))
        )
    else:
        stmt = sqlite.insert(table)
    if keys is None:
        return stmt
    return stmt.on_conflict_do_update(
        index_elements=list(keys),
        set_={c: stmt.excluded[c] for c in columns if c not in keys},
        where=table.c.step <= stmt.excluded.step if only_if_step_not_lower else None,
    )


def _column_values(kind: TypeEngine[Any], values: list[Any]) -> list[Any]:
    """``values`` as one Python type, as an array needs (a float column may be given
    ints, say, which a row at a time would convert)."""
    convert: type | None = None
    if isinstance(kind, Float):
        convert = float
    elif isinstance(kind, Integer):
        convert = int
    if convert is None:
        return values
    return [None if v is None else convert(v) for v in values]
