"""Reading and locking the registry's rows inside a session, and turning them into
domain objects. ORM rows never leave the registry package."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import event, inspect, select, update
from sqlalchemy.orm import Session

from sweep.errors import NotFoundError, RegistryError
from sweep.registry._entities import ModelVersion
from sweep.storage.schema import (
    KEY_LENGTH,
    ModelAliasRow,
    ModelVersionRow,
    ModelVersionTagRow,
    RegisteredModelRow,
)

#: Aliases appear in ``models:/<name>@<alias>`` and on command lines: no ``/``, ``@`` or
#: white space.
_ALIAS = re.compile(r"^[^/@\s]+$")
#: The columns of a version that may change after registration.
_MUTABLE_VERSION_FIELDS = frozenset({"description"})


@event.listens_for(ModelVersionRow, "before_update")
def _versions_are_immutable(_mapper: Any, _connection: Any, target: ModelVersionRow) -> None:
    """Refuse, at flush, any ORM change to a version other than its description."""
    changed = sorted(
        attr.key
        for attr in inspect(target).attrs
        if attr.key not in _MUTABLE_VERSION_FIELDS and attr.history.has_changes()
    )
    if changed:
        raise RegistryError(
            f"version {target.version} of {target.model_name!r} is immutable; cannot change "
            f"{', '.join(changed)}. Register a new version instead"
        )


def check_alias(model_name: str, alias: str) -> None:
    if not _ALIAS.match(alias) or len(alias) > KEY_LENGTH:
        raise RegistryError(
            f"{alias!r} is not a valid alias: it must be 1 to {KEY_LENGTH} characters "
            f"without '/', '@' or spaces, so that models:/{model_name}@<alias> can name it"
        )


def check_tag_key(key: str) -> None:
    if not key.strip() or len(key) > KEY_LENGTH:
        raise RegistryError(f"a tag key must be 1 to {KEY_LENGTH} characters, got {key!r}")


def lock_model(session: Session, model_name: str) -> None:
    """Serialise changes of one model: the first statement of the transaction is a
    no-op write on the model's row, which takes PostgreSQL's row lock and SQLite's
    write lock before anything is read."""
    result = session.execute(
        update(RegisteredModelRow)
        .where(RegisteredModelRow.name == model_name)
        .values(name=RegisteredModelRow.name)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        raise _no_model(model_name)


def _no_model(model_name: str) -> NotFoundError:
    return NotFoundError(f"no registered model {model_name!r}; list them with: sweep models list")


def require_model(session: Session, model_name: str) -> RegisteredModelRow:
    row = session.get(RegisteredModelRow, model_name)
    if row is None:
        raise _no_model(model_name)
    return row


#: The largest version number the store holds (its version columns are 32-bit).
MAX_VERSION = 2**31 - 1


def require_version(session: Session, model_name: str, version: int) -> ModelVersionRow:
    # A number past the version column (32-bit) names no version: not a database error.
    in_range = 1 <= version <= MAX_VERSION
    row = session.get(ModelVersionRow, (model_name, version)) if in_range else None
    if row is None:
        require_model(session, model_name)
        raise NotFoundError(
            f"model {model_name!r} has no version {version}; "
            f"list versions with: sweep models show {model_name}"
        )
    return row


def alias_version(session: Session, model_name: str, alias: str) -> int | None:
    """The version ``alias`` points at (locked for update), or None."""
    row = session.get(ModelAliasRow, (model_name, alias), with_for_update=True)
    return row.version if row is not None else None


def version(session: Session, row: ModelVersionRow) -> ModelVersion:
    return versions(session, row.model_name, [row])[0]


def versions(
    session: Session, model_name: str, rows: Sequence[ModelVersionRow]
) -> list[ModelVersion]:
    """Domain objects for ``rows`` (all of ``model_name``), in two queries."""
    numbers = [r.version for r in rows]
    tags: dict[int, dict[str, str]] = defaultdict(dict)
    aliases: dict[int, list[str]] = defaultdict(list)
    if numbers:
        for number, key, value in session.execute(
            select(ModelVersionTagRow.version, ModelVersionTagRow.key, ModelVersionTagRow.value)
            .where(
                ModelVersionTagRow.model_name == model_name,
                ModelVersionTagRow.version.in_(numbers),
            )
            .order_by(ModelVersionTagRow.key)
        ):
            tags[number][key] = value
        for number, alias in session.execute(
            select(ModelAliasRow.version, ModelAliasRow.alias)
            .where(ModelAliasRow.model_name == model_name, ModelAliasRow.version.in_(numbers))
            .order_by(ModelAliasRow.alias)
        ):
            aliases[number].append(alias)
    return [
        ModelVersion(
            model_name=row.model_name,
            version=row.version,
            source=row.source,
            run_id=row.run_id,
            metric_name=row.metric_name,
            metric_value=row.metric_value,
            sweep_name=row.sweep_name,
            trial_number=row.trial_number,
            description=row.description,
            created_at=row.created_at,
            tags=tags[row.version],
            aliases=tuple(aliases[row.version]),
        )
        for row in rows
    ]
