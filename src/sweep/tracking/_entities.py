"""Frozen records the tracking store returns; ORM rows never leave the store."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class RunStatus(str, enum.Enum):
    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"

    @property
    def is_finished(self) -> bool:
        return self is not RunStatus.RUNNING


@dataclass(frozen=True)
class Experiment:
    experiment_id: int
    name: str
    artifact_root: str
    created_at: int


@dataclass(frozen=True)
class MetricPoint:
    key: str
    value: float
    step: int
    timestamp: int


@dataclass(frozen=True)
class ArtifactInfo:
    path: str
    kind: str
    size: int


@dataclass(frozen=True)
class RunInput:
    """A dataset a run used (``sweep.log_input``), in a context such as ``training``.

    ``digest`` is ``sha256:<hex>`` of the data's content; ``profile`` a small summary
    (rows, shape, dtype or columns, size); ``source`` where the data came from."""

    name: str
    context: str
    digest: str
    source: str | None = None
    profile: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Run:
    """A run with its data; ``metrics`` holds the latest value (highest step) per key."""

    run_id: str
    experiment_id: int
    parent_run_id: str | None
    name: str
    status: RunStatus
    start_time: int
    end_time: int | None
    artifact_uri: str
    description: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    #: The datasets it used; loaded by ``TrackingStore.get_run`` (empty in listings).
    inputs: tuple[RunInput, ...] = ()
