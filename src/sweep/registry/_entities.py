"""The registry's domain objects: frozen values that never carry ORM rows out of a
session."""

from __future__ import annotations

from dataclasses import dataclass, field

from sweep.errors import RegistryError

#: The aliases `sweep models promote` and `rollback` move.
CHALLENGER, CHAMPION, ROLLBACK = "challenger", "champion", "rollback"


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


class AlreadyPromotedError(RegistryError):
    """Raised when ``promote`` finds the @challenger version already @champion: nothing
    changes, and the CLI reports it as done (exit 0)."""
