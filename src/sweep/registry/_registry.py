"""The :class:`ModelRegistry`: registered models, immutable numbered versions, aliases,
version tags and descriptions, each change audited in its own transaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from sweep.errors import NotFoundError, StorageError
from sweep.registry import _rows
from sweep.registry._aliases import move_alias
from sweep.registry._audit import Change, audit, to_event
from sweep.registry._entities import (
    CHALLENGER,
    CHAMPION,
    ROLLBACK,
    AlreadyPromotedError,
    ModelVersion,
    RegisteredModel,
    RegistryEvent,
    VersionLineage,
)
from sweep.registry._lineage import lineages
from sweep.registry._uris import parse_model_uri
from sweep.storage import Database
from sweep.storage.schema import (
    ModelAliasRow,
    ModelVersionRow,
    ModelVersionTagRow,
    RegisteredModelRow,
    RegistryEventRow,
)
from sweep.tracking import now_ms


@dataclass(frozen=True)
class _NewVersion:
    """What :meth:`ModelRegistry.create_model_version` registers."""

    model_name: str
    source: str
    run_id: str | None = None
    metric_name: str | None = None
    metric_value: float | None = None
    sweep_name: str | None = None
    trial_number: int | None = None
    tags: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None


class ModelRegistry:
    """Registry operations on one :class:`~sweep.storage.Database`.

    Thread- and process-safe. Every registration and every change (aliases, tags,
    descriptions) is one transaction together with its audit event, so the log and the
    state never disagree; changes to one model are serialised by a lock on its row.

    Methods raise :class:`~sweep.errors.NotFoundError` for an unknown model, version,
    alias or tag, :class:`~sweep.errors.RegistryError` for a change the registry
    refuses, and :class:`~sweep.errors.StorageError` when the database fails.
    """

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- versions ---------------------------------------------------------------------

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
        new = _NewVersion(
            model_name,
            source,
            run_id=run_id,
            metric_name=metric_name,
            metric_value=metric_value,
            sweep_name=sweep_name,
            trial_number=trial_number,
            tags=dict(tags or {}),
            reason=reason,
        )
        for key in new.tags:
            _rows.check_tag_key(key)
        for attempt in range(5):
            try:
                return self._create_version_once(new)
            except StorageError as exc:
                # Two registrations raced for the same version number: take the next one.
                if not isinstance(exc.__cause__, IntegrityError) or attempt == 4:
                    raise
        raise AssertionError("unreachable")

    def _create_version_once(self, new: _NewVersion) -> ModelVersion:
        name = new.model_name
        with self.db.session() as session:
            if session.get(RegisteredModelRow, name) is None:
                session.add(RegisteredModelRow(name=name, created_at=now_ms()))
                session.flush()
            latest = session.scalar(
                select(func.max(ModelVersionRow.version)).where(ModelVersionRow.model_name == name)
            )
            version = (latest or 0) + 1
            row = ModelVersionRow(
                model_name=name,
                version=version,
                run_id=new.run_id,
                source=new.source,
                metric_name=new.metric_name,
                metric_value=new.metric_value,
                sweep_name=new.sweep_name,
                trial_number=new.trial_number,
                created_at=now_ms(),
            )
            session.add(row)
            session.flush()
            for key, value in new.tags.items():
                session.add(
                    ModelVersionTagRow(model_name=name, version=version, key=key, value=str(value))
                )
            audit(session, Change(name, "register", to_version=version, reason=new.reason))
            session.flush()
            return _rows.version(session, row)

    def set_version_tag(
        self, model_name: str, version: int, key: str, value: Any, *, reason: str | None = None
    ) -> ModelVersion:
        """Set tag ``key`` of a version to ``str(value)``, replacing an earlier value."""
        _rows.check_tag_key(key)
        with self.db.session() as session:
            row = self._locked_version(session, model_name, version)
            tag = session.get(ModelVersionTagRow, (model_name, version, key))
            if tag is None:
                session.add(
                    ModelVersionTagRow(
                        model_name=model_name, version=version, key=key, value=str(value)
                    )
                )
            else:
                tag.value = str(value)
            session.flush()
            change = Change(model_name, "set_tag", to_version=version, tag=key, reason=reason)
            audit(session, change)
            return _rows.version(session, row)

    def delete_version_tag(
        self, model_name: str, version: int, key: str, *, reason: str | None = None
    ) -> ModelVersion:
        """Remove tag ``key`` from a version."""
        with self.db.session() as session:
            row = self._locked_version(session, model_name, version)
            tag = session.get(ModelVersionTagRow, (model_name, version, key))
            if tag is None:
                raise NotFoundError(
                    f"version {version} of {model_name!r} has no tag {key!r}; "
                    f"see its tags with: sweep models show {model_name}"
                )
            session.delete(tag)
            session.flush()
            change = Change(model_name, "delete_tag", to_version=version, tag=key, reason=reason)
            audit(session, change)
            return _rows.version(session, row)

    def set_version_description(
        self, model_name: str, version: int, text: str | None, *, reason: str | None = None
    ) -> ModelVersion:
        """Set a version's description; an empty ``text`` removes it."""
        with self.db.session() as session:
            row = self._locked_version(session, model_name, version)
            row.description = text or None
            session.flush()
            audit(session, Change(model_name, "set_description", to_version=version, reason=reason))
            return _rows.version(session, row)

    def set_model_description(
        self, model_name: str, text: str | None, *, reason: str | None = None
    ) -> RegisteredModel:
        """Set the registered model's own description; an empty ``text`` removes it."""
        with self.db.session() as session:
            _rows.lock_model(session, model_name)
            row = session.get(RegisteredModelRow, model_name)
            assert row is not None
            row.description = text or None
            session.flush()
            audit(session, Change(model_name, "set_description", reason=reason))
        return self.get_model(model_name)

    @staticmethod
    def _locked_version(session: Session, model_name: str, version: int) -> ModelVersionRow:
        _rows.lock_model(session, model_name)
        return _rows.require_version(session, model_name, version)

    # -- aliases ----------------------------------------------------------------------

    def set_alias(
        self, model_name: str, alias: str, version: int, *, reason: str | None = None
    ) -> None:
        """Point ``alias`` at ``version`` (moving it if it pointed elsewhere)."""
        _rows.check_alias(model_name, alias)
        with self.db.session() as session:
            self._locked_version(session, model_name, version)
            move_alias(session, model_name, alias, version, reason=reason)

    def delete_alias(self, model_name: str, alias: str, *, reason: str | None = None) -> None:
        with self.db.session() as session:
            _rows.lock_model(session, model_name)
            if _rows.alias_version(session, model_name, alias) is None:
                raise NotFoundError(
                    f"model {model_name!r} has no alias {alias!r}; "
                    f"see its aliases with: sweep models show {model_name}"
                )
            move_alias(session, model_name, alias, None, reason=reason)

    def promote(self, model_name: str, *, reason: str | None = None) -> ModelVersion:
        """Move ``challenger`` to ``champion`` and keep the old champion as ``rollback``,
        in one transaction. Returns the new champion."""
        with self.db.session() as session:
            _rows.lock_model(session, model_name)
            challenger = _rows.alias_version(session, model_name, CHALLENGER)
            if challenger is None:
                raise NotFoundError(
                    f"model {model_name!r} has no @{CHALLENGER} to promote; run a sweep "
                    f"that registers one, or: sweep models alias {model_name} {CHALLENGER} N"
                )
            champion = _rows.alias_version(session, model_name, CHAMPION)
            if champion == challenger:
                raise AlreadyPromotedError(
                    f"version {challenger} of {model_name!r} is already @{CHAMPION}; "
                    "nothing to promote"
                )
            if champion is not None:
                move_alias(session, model_name, ROLLBACK, champion, reason=reason)
            move_alias(session, model_name, CHAMPION, challenger, reason=reason)
            move_alias(session, model_name, CHALLENGER, None, reason=reason)
            session.flush()
            return _rows.version(session, _rows.require_version(session, model_name, challenger))

    def rollback(self, model_name: str, *, reason: str | None = None) -> ModelVersion:
        """Put the ``rollback`` version back as ``champion``; the ``rollback`` alias is
        used up (the demoted champion is not kept as a rollback target)."""
        with self.db.session() as session:
            _rows.lock_model(session, model_name)
            previous = _rows.alias_version(session, model_name, ROLLBACK)
            if previous is None:
                raise NotFoundError(
                    f"model {model_name!r} has no @{ROLLBACK} version; see its history with: "
                    f"sweep models history {model_name}"
                )
            move_alias(session, model_name, CHAMPION, previous, reason=reason)
            move_alias(session, model_name, ROLLBACK, None, reason=reason)
            session.flush()
            return _rows.version(session, _rows.require_version(session, model_name, previous))

    # -- reading ----------------------------------------------------------------------

    def list_models(self) -> list[RegisteredModel]:
        with self.db.session() as session:
            models = session.scalars(select(RegisteredModelRow).order_by(RegisteredModelRow.name))
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
                for m in list(models)
            ]

    def get_model(self, model_name: str) -> RegisteredModel:
        with self.db.session() as session:
            row = _rows.require_model(session, model_name)
            latest = session.scalar(
                select(func.max(ModelVersionRow.version)).where(
                    ModelVersionRow.model_name == model_name
                )
            )
            aliases = dict(
                session.execute(
                    select(ModelAliasRow.alias, ModelAliasRow.version)
                    .where(ModelAliasRow.model_name == model_name)
                    .order_by(ModelAliasRow.alias)
                ).all()
            )
            return RegisteredModel(row.name, row.description, row.created_at, latest, aliases)

    def get_version(self, model_name: str, version: int) -> ModelVersion:
        with self.db.session() as session:
            return _rows.version(session, _rows.require_version(session, model_name, version))

    def get_by_alias(self, model_name: str, alias: str) -> ModelVersion:
        with self.db.session() as session:
            row = session.get(ModelAliasRow, (model_name, alias))
            if row is None:
                _rows.require_model(session, model_name)
                raise NotFoundError(
                    f"model {model_name!r} has no alias {alias!r}; "
                    f"see its aliases with: sweep models show {model_name}"
                )
            return _rows.version(session, _rows.require_version(session, model_name, row.version))

    def list_versions(self, model_name: str) -> list[ModelVersion]:
        with self.db.session() as session:
            return _rows.versions(session, model_name, self._version_rows(session, model_name))

    def lineage(self, model_name: str, version: int) -> VersionLineage:
        """Where ``version`` came from: sweep, trial, run, params, code and data."""
        with self.db.session() as session:
            return lineages(session, [_rows.require_version(session, model_name, version)])[0]

    def lineages(self, model_name: str) -> list[VersionLineage]:
        """The lineage of every version of ``model_name``, oldest first."""
        with self.db.session() as session:
            _rows.require_model(session, model_name)
            return lineages(session, self._version_rows(session, model_name))

    def history(self, model_name: str) -> list[RegistryEvent]:
        """The model's audit log, oldest first."""
        with self.db.session() as session:
            _rows.require_model(session, model_name)
            rows = session.scalars(
                select(RegistryEventRow)
                .where(RegistryEventRow.model_name == model_name)
                .order_by(RegistryEventRow.id)
            )
            return [to_event(r) for r in rows]

    def resolve(self, uri: str) -> ModelVersion:
        """The version a ``models:/name@alias`` or ``models:/name/version`` URI names."""
        name, alias, version = parse_model_uri(uri)
        if alias is not None:
            return self.get_by_alias(name, alias)
        assert version is not None
        return self.get_version(name, version)

    @staticmethod
    def _version_rows(session: Session, model_name: str) -> list[ModelVersionRow]:
        return list(
            session.scalars(
                select(ModelVersionRow)
                .where(ModelVersionRow.model_name == model_name)
                .order_by(ModelVersionRow.version)
            )
        )
