"""Moving aliases inside a transaction, each move with its audit event."""

from __future__ import annotations

from sqlalchemy.orm import Session

from sweep.registry._audit import Change, audit
from sweep.storage.schema import ModelAliasRow


def move_alias(
    session: Session,
    model_name: str,
    alias: str,
    version: int | None,
    *,
    reason: str | None,
) -> None:
    """Set (or, with ``version=None``, delete) an alias and write its audit event. The
    model must be locked (:func:`~sweep.registry._rows.lock_model`)."""
    row = session.get(ModelAliasRow, (model_name, alias), with_for_update=True)
    previous = row.version if row is not None else None
    if version is None:
        if row is None:
            return
        session.delete(row)
    elif row is None:
        session.add(ModelAliasRow(model_name=model_name, alias=alias, version=version))
    else:
        row.version = version
    session.flush()
    audit(
        session,
        Change(
            model_name,
            "delete_alias" if version is None else "set_alias",
            to_version=version,
            from_version=previous,
            alias=alias,
            reason=reason,
        ),
    )
