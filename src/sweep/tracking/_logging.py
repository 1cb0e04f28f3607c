"""The logging API an objective calls: ``sweep.log_metric(...)`` and friends.

Calls go to the *active run*: the trial's child run while a sweep runs the objective,
or a run opened with :func:`start_run`. Metric points are buffered and written in
batches (every ``FLUSH_EVERY`` points or ``FLUSH_INTERVAL_S`` seconds, and when the run
ends), so logging inside a training loop costs little.
"""

from __future__ import annotations

import contextvars
import math
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sweep.errors import NoActiveRunError
from sweep.tracking._artifacts import copy_artifact, safe_artifact_path, save_model
from sweep.tracking._entities import MetricPoint, Run, RunStatus
from sweep.tracking._store import TrackingStore, now_ms

FLUSH_EVERY = 1000
FLUSH_INTERVAL_S = 2.0

_active: contextvars.ContextVar[ActiveRun | None] = contextvars.ContextVar(
    "sweep_active_run", default=None
)


class ActiveRun:
    """A run being written to; holds the metric buffer."""

    def __init__(self, store: TrackingStore, run: Run) -> None:
        self.store = store
        self.run = run
        self.run_id = run.run_id
        self._buffer: list[MetricPoint] = []
        self._next_step: dict[str, int] = {}
        self._last_flush = time.monotonic()
        self.model_path: str | None = None

    def log_metric(self, key: str, value: float, step: int | None = None) -> None:
        value = float(value)
        if step is None:
            step = self._next_step.get(key, 0)
        self._next_step[key] = max(self._next_step.get(key, 0), step + 1)
        self._buffer.append(MetricPoint(key, value, step, now_ms()))
        if (
            len(self._buffer) >= FLUSH_EVERY
            or time.monotonic() - self._last_flush >= FLUSH_INTERVAL_S
        ):
            self.flush()

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.store.log_params(self.run_id, params)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self.store.set_tags(self.run_id, tags)

    def log_artifact(self, local_path: str | Path, name: str | None = None) -> str:
        source = Path(local_path)
        name = name or source.name
        target = safe_artifact_path(self.run.artifact_uri, name)
        kind, size = copy_artifact(source, target)
        self.store.record_artifact(self.run_id, name, kind, size)
        return str(target)

    def log_text(self, text: str, name: str) -> str:
        target = safe_artifact_path(self.run.artifact_uri, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        self.store.record_artifact(self.run_id, name, "file", target.stat().st_size)
        return str(target)

    def log_model(self, model: Any, name: str = "model") -> str:
        target = safe_artifact_path(self.run.artifact_uri, name)
        size = save_model(model, target)
        self.store.record_artifact(self.run_id, name, "model", size)
        self.model_path = name
        return str(target)

    def flush(self) -> None:
        # NaN and infinities are kept out of the database: not every backend stores them.
        points = [p for p in self._buffer if math.isfinite(p.value)]
        self._buffer = []
        self._last_flush = time.monotonic()
        self.store.log_metrics(self.run_id, points)


@contextmanager
def activate(active: ActiveRun) -> Iterator[ActiveRun]:
    """Make ``active`` the target of the module-level logging calls; flush on exit."""
    token = _active.set(active)
    try:
        yield active
    finally:
        _active.reset(token)
        active.flush()


def active_run() -> ActiveRun:
    run = _active.get()
    if run is None:
        raise NoActiveRunError(
            "no active run: call sweep.log_* from inside an objective that sweep runs, "
            "or open one with `with sweep.start_run(...)`"
        )
    return run


@contextmanager
def start_run(
    experiment: str,
    *,
    name: str = "run",
    storage: str | None = None,
    parent_run_id: str | None = None,
) -> Iterator[ActiveRun]:
    """Open a run outside a sweep; it ends FINISHED, or FAILED if the block raises."""
    from sweep.storage import Database, default_home, resolve_storage_url

    store = TrackingStore(Database(resolve_storage_url(storage)))
    store.db.ensure_schema()
    exp = store.get_or_create_experiment(experiment, default_home() / "artifacts")
    active = ActiveRun(store, store.create_run(exp, name, parent_run_id=parent_run_id))
    try:
        with activate(active):
            yield active
    except BaseException:
        store.end_run(active.run_id, RunStatus.FAILED)
        raise
    store.end_run(active.run_id, RunStatus.FINISHED)


def log_metric(key: str, value: float, step: int | None = None) -> None:
    """Log one metric point; ``step`` defaults to the key's previous step + 1."""
    active_run().log_metric(key, value, step)


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    run = active_run()
    for key, value in metrics.items():
        run.log_metric(key, value, step)


def log_param(key: str, value: Any) -> None:
    active_run().log_params({key: value})


def log_params(params: Mapping[str, Any]) -> None:
    active_run().log_params(params)


def set_tag(key: str, value: Any) -> None:
    active_run().set_tags({key: value})


def set_tags(tags: Mapping[str, Any]) -> None:
    active_run().set_tags(tags)


def log_artifact(local_path: str | Path, name: str | None = None) -> str:
    """Copy a file or directory into the run's artifacts; returns where it was stored."""
    return active_run().log_artifact(local_path, name)


def log_model(model: Any, name: str = "model") -> str:
    """Save ``model`` (joblib) as the run's model; the sweep registers the best one."""
    return active_run().log_model(model, name)
