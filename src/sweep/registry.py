"""The model registry: registered models, immutable numbered versions, aliases
(``challenger``, ``champion``, ...), version tags and descriptions, the lineage of each
version back to its sweep, and an audit log of every change.

``models:/<name>@<alias>`` and ``models:/<name>/<version>`` name a version;
:func:`load_model` returns the model object itself.

A version's source, run and metric never change once it is registered (an ORM guard
refuses it). Its tags and description, the model's description and the aliases can
change; each change is one transaction together with its audit event.
"""

from __future__ import annotations

import getpass
import re
import socket
from collections import defaultdict
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event, func, inspect, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from sweep.errors import NotFoundError, RegistryError, StorageError
from sweep.storage import Database, resolve_storage_url
from sweep.storage._schema import (
    KEY_LENGTH,
    ModelAliasRow,
    ModelVersionRow,
    ModelVersionTagRow,
    ParamRow,
    RegisteredModelRow,
    RegistryEventRow,
    RunInputRow,
    RunRow,
    TagRow,
)
from sweep.tracking._artifacts import load_model_dir
from sweep.tracking._store import now_ms

_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/@]+)|/(?P<version>\d+))$")
#: Aliases appear in ``models:/<name>@<alias>`` and on command lines: no ``/``, ``@`` or
#: white space.
_ALIAS = re.compile(r"^[^/@\s]+$")


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
    """One audit-log entry. ``action`` is one of ``register``, ``set_alias``,
    ``delete_alias``, ``set_tag``, ``delete_tag`` and ``set_description``.

    Alias changes move ``alias`` from ``from_version`` to ``to_version`` (None: the
    alias did not exist / was deleted); ``register`` has the new version in
    ``to_version``; tag and description changes name the version they concern in
    ``to_version`` (None for the model's own description) and tag changes the key in
    ``tag``.
    """

    model_name: str
    action: str
    alias: str | None
    from_version: int | None
    to_version: int | None
    user: str
    host: str
    reason: str | None
    at: int
    tag: str | None = None


@dataclass(frozen=True)
class DatasetInput:
    """A dataset the version's run used (``sweep.log_input``)."""

    name: str
    context: str
    digest: str
    source: str | None


@dataclass(frozen=True)
class VersionLineage:
    """Where a version came from: the sweep, trial and run that produced it, the run's
    params, the code (git commit, branch, uncommitted changes) and the datasets it
    used. Fields are None (or empty) where the version has no run, as when it was
    registered by hand, or where the run did not record them (no git repository)."""

    model_name: str
    version: int
    run_id: str | None
    parent_run_id: str | None
    sweep_name: str | None
    trial_number: int | None
    metric_name: str | None
    metric_value: float | None
    params: dict[str, str] = field(default_factory=dict)
    git_commit: str | None = None
    git_branch: str | None = None
    git_dirty: bool | None = None
    datasets: tuple[DatasetInput, ...] = ()


_GIT_TAGS = ("sweep.git.commit", "sweep.git.branch", "sweep.git.dirty")
_RUN_TAGS = (*_GIT_TAGS, "sweep.sweep", "sweep.trial_number")
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


#: Who acts, when not this process's OS user: the web UI sets the user who made the
#: change (``acting_user.set("alice (sweep ui)")``) for the audit log.
acting_user: ContextVar[str | None] = ContextVar("sweep_acting_user", default=None)


def _who() -> tuple[str, str]:
    override = acting_user.get()
    if override:
        return override[:250], socket.gethostname()
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return user, socket.gethostname()


def _check_alias(model_name: str, alias: str) -> None:
    if not _ALIAS.match(alias) or len(alias) > KEY_LENGTH:
        raise RegistryError(
            f"{alias!r} is not a valid alias: it must be 1 to {KEY_LENGTH} characters "
            f"without '/', '@' or spaces, so that models:/{model_name}@<alias> can name it"
        )


def _check_tag_key(key: str) -> None:
    if not key.strip() or len(key) > KEY_LENGTH:
        raise RegistryError(f"a tag key must be 1 to {KEY_LENGTH} characters, got {key!r}")


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
        for key in tags:
            _check_tag_key(key)
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

    def set_version_tag(
        self, model_name: str, version: int, key: str, value: Any, *, reason: str | None = None
    ) -> ModelVersion:
        """Set tag ``key`` of a version to ``str(value)``, replacing an earlier value."""
        _check_tag_key(key)
        with self.db.session() as session:
            self._lock_model(session, model_name)
            row = self._require_version(session, model_name, version)
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
            self._audit(session, model_name, "set_tag", None, None, version, reason, tag=key)
            return self._version(session, row)

    def delete_version_tag(
        self, model_name: str, version: int, key: str, *, reason: str | None = None
    ) -> ModelVersion:
        """Remove tag ``key`` from a version."""
        with self.db.session() as session:
            self._lock_model(session, model_name)
            row = self._require_version(session, model_name, version)
            tag = session.get(ModelVersionTagRow, (model_name, version, key))
            if tag is None:
                raise NotFoundError(
                    f"version {version} of {model_name!r} has no tag {key!r}; "
                    f"see its tags with: sweep models show {model_name}"
                )
            session.delete(tag)
            session.flush()
            self._audit(session, model_name, "delete_tag", None, None, version, reason, tag=key)
            return self._version(session, row)

    def set_version_description(
        self, model_name: str, version: int, text: str | None, *, reason: str | None = None
    ) -> ModelVersion:
        """Set a version's description; an empty ``text`` removes it."""
        with self.db.session() as session:
            self._lock_model(session, model_name)
            row = self._require_version(session, model_name, version)
            row.description = text or None
            session.flush()
            self._audit(session, model_name, "set_description", None, None, version, reason)
            return self._version(session, row)

    def set_model_description(
        self, model_name: str, text: str | None, *, reason: str | None = None
    ) -> RegisteredModel:
        """Set the registered model's own description; an empty ``text`` removes it."""
        with self.db.session() as session:
            self._lock_model(session, model_name)
            row = session.get(RegisteredModelRow, model_name)
            assert row is not None
            row.description = text or None
            session.flush()
            self._audit(session, model_name, "set_description", None, None, None, reason)
        return self.get_model(model_name)

    # -- aliases ----------------------------------------------------------------------

    def set_alias(
        self, model_name: str, alias: str, version: int, *, reason: str | None = None
    ) -> None:
        """Point ``alias`` at ``version`` (moving it if it pointed elsewhere)."""
        _check_alias(model_name, alias)
        with self.db.session() as session:
            self._lock_model(session, model_name)
            self._require_version(session, model_name, version)
            self._move_alias(session, model_name, alias, version, reason)

    def delete_alias(self, model_name: str, alias: str, *, reason: str | None = None) -> None:
        with self.db.session() as session:
            self._lock_model(session, model_name)
            if self._alias_version(session, model_name, alias) is None:
                raise NotFoundError(
                    f"model {model_name!r} has no alias {alias!r}; "
                    f"see its aliases with: sweep models show {model_name}"
                )
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

    # -- reading ----------------------------------------------------------------------

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

    def get_model(self, model_name: str) -> RegisteredModel:
        with self.db.session() as session:
            row = self._require_model(session, model_name)
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
            return self._version(session, self._require_version(session, model_name, version))

    def get_by_alias(self, model_name: str, alias: str) -> ModelVersion:
        with self.db.session() as session:
            row = session.get(ModelAliasRow, (model_name, alias))
            if row is None:
                self._require_model(session, model_name)
                raise NotFoundError(
                    f"model {model_name!r} has no alias {alias!r}; "
                    f"see its aliases with: sweep models show {model_name}"
                )
            version = session.get(ModelVersionRow, (model_name, row.version))
            assert version is not None
            return self._version(session, version)

    def list_versions(self, model_name: str) -> list[ModelVersion]:
        with self.db.session() as session:
            rows = list(
                session.scalars(
                    select(ModelVersionRow)
                    .where(ModelVersionRow.model_name == model_name)
                    .order_by(ModelVersionRow.version)
                )
            )
            return self._versions(session, model_name, rows)

    def lineage(self, model_name: str, version: int) -> VersionLineage:
        """Where ``version`` came from: sweep, trial, run, params, code and data."""
        with self.db.session() as session:
            row = self._require_version(session, model_name, version)
            return self._lineages(session, [row])[0]

    def lineages(self, model_name: str) -> list[VersionLineage]:
        """The lineage of every version of ``model_name``, oldest first."""
        with self.db.session() as session:
            self._require_model(session, model_name)
            rows = session.scalars(
                select(ModelVersionRow)
                .where(ModelVersionRow.model_name == model_name)
                .order_by(ModelVersionRow.version)
            )
            return self._lineages(session, list(rows))

    def history(self, model_name: str) -> list[RegistryEvent]:
        """The model's audit log, oldest first."""
        with self.db.session() as session:
            self._require_model(session, model_name)
            rows = session.scalars(
                select(RegistryEventRow)
                .where(RegistryEventRow.model_name == model_name)
                .order_by(RegistryEventRow.id)
            )
            return [_event(r) for r in rows]

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
        """Serialise changes of one model: the first statement of the transaction is a
        no-op write on the model's row, which takes PostgreSQL's row lock and SQLite's
        write lock before anything is read."""
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
    def _require_model(session: Session, model_name: str) -> RegisteredModelRow:
        row = session.get(RegisteredModelRow, model_name)
        if row is None:
            raise NotFoundError(
                f"no registered model {model_name!r}; list them with: sweep models list"
            )
        return row

    @classmethod
    def _require_version(cls, session: Session, model_name: str, version: int) -> ModelVersionRow:
        row = session.get(ModelVersionRow, (model_name, version))
        if row is None:
            cls._require_model(session, model_name)
            raise NotFoundError(
                f"model {model_name!r} has no version {version}; "
                f"list versions with: sweep models show {model_name}"
            )
        return row

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
        *,
        tag: str | None = None,
    ) -> None:
        """Write one audit event. The table has one name column, ``alias``; tag events
        keep the tag key there (:func:`_event` reads it back as ``tag``)."""
        user, host = _who()
        session.add(
            RegistryEventRow(
                model_name=model_name,
                action=action,
                alias=tag if tag is not None else alias,
                from_version=from_version,
                to_version=to_version,
                user=user,
                host=host,
                reason=reason,
                at=now_ms(),
            )
        )

    @classmethod
    def _version(cls, session: Session, row: ModelVersionRow) -> ModelVersion:
        return cls._versions(session, row.model_name, [row])[0]

    @staticmethod
    def _versions(
        session: Session, model_name: str, rows: Sequence[ModelVersionRow]
    ) -> list[ModelVersion]:
        """Domain objects for ``rows`` (all of ``model_name``), in two queries."""
        numbers = [r.version for r in rows]
        tags: dict[int, dict[str, str]] = defaultdict(dict)
        aliases: dict[int, list[str]] = defaultdict(list)
        if numbers:
            for version, key, value in session.execute(
                select(ModelVersionTagRow.version, ModelVersionTagRow.key, ModelVersionTagRow.value)
                .where(
                    ModelVersionTagRow.model_name == model_name,
                    ModelVersionTagRow.version.in_(numbers),
                )
                .order_by(ModelVersionTagRow.key)
            ):
                tags[version][key] = value
            for version, alias in session.execute(
                select(ModelAliasRow.version, ModelAliasRow.alias)
                .where(ModelAliasRow.model_name == model_name, ModelAliasRow.version.in_(numbers))
                .order_by(ModelAliasRow.alias)
            ):
                aliases[version].append(alias)
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

    @staticmethod
    def _lineages(session: Session, rows: Sequence[ModelVersionRow]) -> list[VersionLineage]:
        """The lineage of each of ``rows``, reading the runs' data in four queries."""
        run_ids = sorted({r.run_id for r in rows if r.run_id})
        parents: dict[str, str | None] = {}
        params: dict[str, dict[str, str]] = defaultdict(dict)
        tags: dict[str, dict[str, str]] = defaultdict(dict)
        datasets: dict[str, list[DatasetInput]] = defaultdict(list)
        if run_ids:
            parents = dict(
                session.execute(
                    select(RunRow.run_id, RunRow.parent_run_id).where(RunRow.run_id.in_(run_ids))
                ).all()
            )
            for run_id, key, value in session.execute(
                select(ParamRow.run_id, ParamRow.key, ParamRow.value)
                .where(ParamRow.run_id.in_(run_ids))
                .order_by(ParamRow.key)
            ):
                params[run_id][key] = value
            for run_id, key, value in session.execute(
                select(TagRow.run_id, TagRow.key, TagRow.value).where(
                    TagRow.run_id.in_(run_ids), TagRow.key.in_(_RUN_TAGS)
                )
            ):
                tags[run_id][key] = value
            for data in session.scalars(
                select(RunInputRow)
                .where(RunInputRow.run_id.in_(run_ids))
                .order_by(RunInputRow.context, RunInputRow.name)
            ):
                datasets[data.run_id].append(
                    DatasetInput(data.name, data.context, data.digest, data.source)
                )
        return [_lineage(row, parents, params, tags, datasets) for row in rows]


def _lineage(
    row: ModelVersionRow,
    parents: dict[str, str | None],
    params: dict[str, dict[str, str]],
    tags: dict[str, dict[str, str]],
    datasets: dict[str, list[DatasetInput]],
) -> VersionLineage:
    run_id = row.run_id
    run_tags = tags.get(run_id, {}) if run_id else {}
    trial = run_tags.get("sweep.trial_number")
    dirty = run_tags.get("sweep.git.dirty")
    return VersionLineage(
        model_name=row.model_name,
        version=row.version,
        run_id=run_id,
        parent_run_id=parents.get(run_id) if run_id else None,
        # A version registered by hand from a trial's run still finds its sweep and trial.
        sweep_name=row.sweep_name or run_tags.get("sweep.sweep"),
        trial_number=(
            row.trial_number
            if row.trial_number is not None
            else (int(trial) if trial is not None and trial.isdigit() else None)
        ),
        metric_name=row.metric_name,
        metric_value=row.metric_value,
        params=dict(params.get(run_id, {})) if run_id else {},
        git_commit=run_tags.get("sweep.git.commit"),
        git_branch=run_tags.get("sweep.git.branch"),
        git_dirty=None if dirty is None else dirty == "true",
        datasets=tuple(datasets.get(run_id, ())) if run_id else (),
    )


def _event(row: RegistryEventRow) -> RegistryEvent:
    is_tag = row.action in ("set_tag", "delete_tag")
    return RegistryEvent(
        model_name=row.model_name,
        action=row.action,
        alias=None if is_tag else row.alias,
        from_version=row.from_version,
        to_version=row.to_version,
        user=row.user,
        host=row.host,
        reason=row.reason,
        at=row.at,
        tag=row.alias if is_tag else None,
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
        return load_model_dir(version.source)
    finally:
        db.dispose()
