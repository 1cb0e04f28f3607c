"""The model registry: registered models, immutable numbered versions, aliases
(``challenger``, ``champion``, ...) and an audit log of every change.

``models:/<name>@<alias>`` and ``models:/<name>/<version>`` name a version;
:func:`load_model` returns the model object itself.
"""

from __future__ import annotations

import getpass
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from sweep.errors import NotFoundError, RegistryError, StorageError
from sweep.storage import Database, resolve_storage_url
from sweep.storage._schema import (
    ModelAliasRow,
    ModelVersionRow,
    ModelVersionTagRow,
    RegisteredModelRow,
    RegistryEventRow,
)
from sweep.tracking._artifacts import load_model_dir
from sweep.tracking._store import now_ms

_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/@]+)|/(?P<version>\d+))$")


@dataclass(frozen=True)
class ModelVersion:
    model_name: str
    version: int
    source: str
    run_id: str | None
    metric_name: str | None
    metric_value: float | None
    sweep_name: str | None
    trial_number: int | None
    description: str | None
    created_at: int
    tags: dict[str, str] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()

    @property
    def uri(self) -> str:
        return f"models:/{self.model_name}/{self.version}"


#: The aliases `sweep models promote` and `rollback` move.
CHALLENGER, CHAMPION, ROLLBACK = "challenger", "champion", "rollback"


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    description: str | None
    created_at: int
    latest_version: int | None
    aliases: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class RegistryEvent:
    model_name: str
    action: str
    alias: str | None
    from_version: int | None
    to_version: int | None
    user: str
    host: str
    reason: str | None
    at: int


def _who() -> tuple[str, str]:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return user, socket.gethostname()


class ModelRegistry:
    """Registry operations on one :class:`~sweep.storage.Database`.

    Every registration and alias change is one transaction together with its audit
    event, so the log and the state never disagree.
    """

    def __init__(self, db: Database) -> None:
        self.db = db

    def create_model_version(
        self,
        model_name: str,
        source: str,
        *,
        run_id: str | None = None,
        metric_name: str | None = None,
        metric_value: float | None = None,
        sweep_name: str | None = None,
        trial_number: int | None = None,
        tags: dict[str, Any] | None = None,
        reason: str | None = None,
    ) -> ModelVersion:
        """Register ``source`` (a model directory) as the next version of ``model_name``."""
        for attempt in range(5):
            try:
                return self._create_version_once(
                    model_name,
                    source,
                    run_id,
                    metric_name,
                    metric_value,
                    sweep_name,
                    trial_number,
                    tags or {},
                    reason,
                )
            except StorageError as exc:
                # Two registrations raced for the same version number: take the next one.
                if not isinstance(exc.__cause__, IntegrityError) or attempt == 4:
                    raise
        raise AssertionError("unreachable")

    def _create_version_once(
        self,
        model_name: str,
        source: str,
        run_id: str | None,
        metric_name: str | None,
        metric_value: float | None,
        sweep_name: str | None,
        trial_number: int | None,
        tags: dict[str, Any],
        reason: str | None,
    ) -> ModelVersion:
        with self.db.session() as session:
            if session.get(RegisteredModelRow, model_name) is None:
                session.add(RegisteredModelRow(name=model_name, created_at=now_ms()))
                session.flush()
            latest = session.scalar(
                select(func.max(ModelVersionRow.version)).where(
                    ModelVersionRow.model_name == model_name
                )
            )
            version = (latest or 0) + 1
            row = ModelVersionRow(
                model_name=model_name,
                version=version,
                run_id=run_id,
                source=source,
                metric_name=metric_name,
                metric_value=metric_value,
                sweep_name=sweep_name,
                trial_number=trial_number,
                created_at=now_ms(),
            )
            session.add(row)
            session.flush()
            for key, value in tags.items():
                session.add(
                    ModelVersionTagRow(
                        model_name=model_name, version=version, key=key, value=str(value)
                    )
                )
            self._audit(session, model_name, "register", None, None, version, reason)
            session.flush()
            return self._version(session, row)

    def set_alias(
        self, model_name: str, alias: str, version: int, *, reason: str | None = None
    ) -> None:
        """Point ``alias`` at ``version`` (moving it if it pointed elsewhere)."""
        with self.db.session() as session:
            self._lock_model(session, model_name)
            if session.get(ModelVersionRow, (model_name, version)) is None:
                raise NotFoundError(
                    f"model {model_name!r} has no version {version}; "
                    f"list versions with: sweep models show {model_name}"
                )
            self._move_alias(session, model_name, alias, version, reason)

    def delete_alias(self, model_name: str, alias: str, *, reason: str | None = None) -> None:
        with self.db.session() as session:
            self._lock_model(session, model_name)
            if self._alias_version(session, model_name, alias) is None:
                raise NotFoundError(f"model {model_name!r} has no alias {alias!r}")
            self._move_alias(session, model_name, alias, None, reason)

    def promote(self, model_name: str, *, reason: str | None = None) -> ModelVersion:
        """Move ``challenger`` to ``champion`` and keep the old champion as ``rollback``,
        in one transaction. Returns the new champion."""
        with self.db.session() as session:
            self._lock_model(session, model_name)
            challenger = self._alias_version(session, model_name, CHALLENGER)
            if challenger is None:
                raise NotFoundError(
                    f"model {model_name!r} has no @{CHALLENGER} to promote; run a sweep "
                    f"that registers one, or: sweep models alias {model_name} {CHALLENGER} N"
                )
            champion = self._alias_version(session, model_name, CHAMPION)
            if champion == challenger:
                raise RegistryError(
                    f"version {challenger} of {model_name!r} is already @{CHAMPION}; "
                    "nothing to promote"
                )
            if champion is not None:
                self._move_alias(session, model_name, ROLLBACK, champion, reason)
            self._move_alias(session, model_name, CHAMPION, challenger, reason)
            self._move_alias(session, model_name, CHALLENGER, None, reason)
            row = session.get(ModelVersionRow, (model_name, challenger))
            assert row is not None
            session.flush()
            return self._version(session, row)

    def rollback(self, model_name: str, *, reason: str | None = None) -> ModelVersion:
        """Put the ``rollback`` version back as ``champion``; the ``rollback`` alias is
        used up (the demoted champion is not kept as a rollback target)."""
        with self.db.session() as session:
            self._lock_model(session, model_name)
            previous = self._alias_version(session, model_name, ROLLBACK)
            if previous is None:
                raise NotFoundError(
                    f"model {model_name!r} has no @{ROLLBACK} version; see its history with: "
                    f"sweep models history {model_name}"
                )
            self._move_alias(session, model_name, CHAMPION, previous, reason)
            self._move_alias(session, model_name, ROLLBACK, None, reason)
            row = session.get(ModelVersionRow, (model_name, previous))
            assert row is not None
            session.flush()
            return self._version(session, row)

    def list_models(self) -> list[RegisteredModel]:
        with self.db.session() as session:
            models = list(
                session.scalars(select(RegisteredModelRow).order_by(RegisteredModelRow.name))
            )
            latest = dict(
                session.execute(
                    select(ModelVersionRow.model_name, func.max(ModelVersionRow.version)).group_by(
                        ModelVersionRow.model_name
                    )
                ).all()
            )
            aliases: dict[str, dict[str, int]] = {}
            for alias in session.scalars(select(ModelAliasRow)):
                aliases.setdefault(alias.model_name, {})[alias.alias] = alias.version
            return [
                RegisteredModel(
                    m.name, m.description, m.created_at, latest.get(m.name), aliases.get(m.name, {})
                )
                for m in models
            ]

    def get_version(self, model_name: str, version: int) -> ModelVersion:
        with self.db.session() as session:
            row = session.get(ModelVersionRow, (model_name, version))
            if row is None:
                raise NotFoundError(
                    f"model {model_name!r} has no version {version}; "
                    f"list versions with: sweep models show {model_name}"
                )
            return self._version(session, row)

    def get_by_alias(self, model_name: str, alias: str) -> ModelVersion:
        with self.db.session() as session:
            row = session.get(ModelAliasRow, (model_name, alias))
            if row is None:
                raise NotFoundError(
                    f"model {model_name!r} has no alias {alias!r}; "
                    f"see its aliases with: sweep models show {model_name}"
                )
            version = session.get(ModelVersionRow, (model_name, row.version))
            assert version is not None
            return self._version(session, version)

    def list_versions(self, model_name: str) -> list[ModelVersion]:
        with self.db.session() as session:
            rows = session.scalars(
                select(ModelVersionRow)
                .where(ModelVersionRow.model_name == model_name)
                .order_by(ModelVersionRow.version)
            )
            return [self._version(session, r) for r in rows]

    def history(self, model_name: str) -> list[RegistryEvent]:
        with self.db.session() as session:
            rows = session.scalars(
                select(RegistryEventRow)
                .where(RegistryEventRow.model_name == model_name)
                .order_by(RegistryEventRow.id)
            )
            return [
                RegistryEvent(
                    r.model_name,
                    r.action,
                    r.alias,
                    r.from_version,
                    r.to_version,
                    r.user,
                    r.host,
                    r.reason,
                    r.at,
                )
                for r in rows
            ]

    def resolve(self, uri: str) -> ModelVersion:
        """The version a ``models:/name@alias`` or ``models:/name/version`` URI names."""
        match = _URI.match(uri)
        if match is None:
            raise RegistryError(
                f"{uri!r} is not a model URI; use models:/<name>@<alias> or "
                "models:/<name>/<version>"
            )
        if match["alias"]:
            return self.get_by_alias(match["name"], match["alias"])
        return self.get_version(match["name"], int(match["version"]))

    # -- helpers ----------------------------------------------------------------------

    @staticmethod
    def _lock_model(session: Session, model_name: str) -> None:
        """Serialise alias changes of one model: the first statement of the transaction
        is a no-op write on the model's row, which takes PostgreSQL's row lock and
        SQLite's write lock before anything is read."""
        result = session.execute(
            update(RegisteredModelRow)
            .where(RegisteredModelRow.name == model_name)
            .values(name=RegisteredModelRow.name)
        )
        if not result.rowcount:  # type: ignore[attr-defined]
            raise NotFoundError(
                f"no registered model {model_name!r}; list them with: sweep models list"
            )

    @staticmethod
    def _alias_version(session: Session, model_name: str, alias: str) -> int | None:
        row = session.get(ModelAliasRow, (model_name, alias), with_for_update=True)
        return row.version if row is not None else None

    def _move_alias(
        self,
        session: Session,
        model_name: str,
        alias: str,
        version: int | None,
        reason: str | None,
    ) -> None:
        """Set (or, with ``version=None``, delete) an alias and write its audit event."""
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
        action = "delete_alias" if version is None else "set_alias"
        self._audit(session, model_name, action, alias, previous, version, reason)

    @staticmethod
    def _audit(
        session: Session,
        model_name: str,
        action: str,
        alias: str | None,
        from_version: int | None,
        to_version: int | None,
        reason: str | None,
    ) -> None:
        user, host = _who()
        session.add(
            RegistryEventRow(
                model_name=model_name,
                action=action,
                alias=alias,
                from_version=from_version,
                to_version=to_version,
                user=user,
                host=host,
                reason=reason,
                at=now_ms(),
            )
        )

    @staticmethod
    def _version(session: Session, row: ModelVersionRow) -> ModelVersion:
        tags = {
            t.key: t.value
            for t in session.scalars(
                select(ModelVersionTagRow).where(
                    ModelVersionTagRow.model_name == row.model_name,
                    ModelVersionTagRow.version == row.version,
                )
            )
        }
        aliases = tuple(
            session.scalars(
                select(ModelAliasRow.alias)
                .where(
                    ModelAliasRow.model_name == row.model_name,
                    ModelAliasRow.version == row.version,
                )
                .order_by(ModelAliasRow.alias)
            )
        )
        return ModelVersion(
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
            tags=tags,
            aliases=aliases,
        )


def load_model(uri: str, *, storage: str | None = None) -> Any:
    """Load the model a registry URI names, e.g. ``models:/digits-sgd@challenger``.

    The store is ``storage`` if given, else ``SWEEP_DATABASE_URL``, else the embedded
    default under ``.sweep/``.
    """
    db = Database(resolve_storage_url(storage))
    try:
        db.ensure_schema()
        version = ModelRegistry(db).resolve(uri)
        return load_model_dir(Path(version.source))
    finally:
        db.dispose()
