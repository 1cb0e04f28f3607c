"""SQL helpers shared by the stores: the one upsert both backends understand."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def upsert(
    session: Session,
    table: Table,
    rows: list[dict[str, Any]],
    keys: Sequence[str],
    *,
    only_if_step_not_lower: bool = False,
) -> None:
    """Insert ``rows``, replacing the non-key columns of rows whose ``keys`` exist.

    With ``only_if_step_not_lower`` an existing row is replaced only by a point of the
    same or a higher step (the latest-metric rule)."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(table)
    columns = [c for c in rows[0] if c not in keys]
    where = table.c.step <= stmt.excluded.step if only_if_step_not_lower else None
    stmt = stmt.on_conflict_do_update(
        index_elements=list(keys),
        set_={c: stmt.excluded[c] for c in columns},
        where=where,
    )
    session.execute(stmt, rows)
