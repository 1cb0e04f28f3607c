"""The logging API an objective calls: ``sweep.log_metric(...)`` and friends.

Calls go to the *active run*: the trial's child run while a sweep runs the objective,
or a run opened with :func:`start_run` (an :class:`~sweep.tracking._active_run.ActiveRun`,
which buffers the metric points and writes them in batches).
"""

from __future__ import annotations

import contextvars
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sweep.errors import NoActiveRunError, SweepError
from sweep.tracking._active_run import ActiveRun
from sweep.tracking._entities import Experiment, RunInput, RunStatus
from sweep.tracking._environment import command_line, environment_tags
from sweep.tracking._lineage import open_run
from sweep.tracking._store import TrackingStore
from sweep.tracking.artifacts import (
    resolve_artifact_root,
)

logger = logging.getLogger(__name__)

_active: contextvars.ContextVar[ActiveRun | None] = contextvars.ContextVar(
    "sweep_active_run", default=None
)


@contextmanager
def activate(active: ActiveRun, *, end: bool = False, flush: bool = True) -> Iterator[ActiveRun]:
    """Make ``active`` the target of the module-level logging calls; on exit, write its
    buffered metrics (raising :class:`~sweep.errors.MetricFlushError` if they cannot be
    written, unless the block is already raising: then that error is logged). With
    ``end``, the run is also closed, FINISHED or FAILED (if the block raised). With
    ``flush=False`` nothing is written on exit: the caller takes the points
    (:meth:`ActiveRun.take_points`) and writes them with the run's end."""
    token = _active.set(active)
    if not flush:
        try:
            yield active
        finally:
            _active.reset(token)
        return
    try:
        yield active
    except BaseException:
        _active.reset(token)
        try:
            active.close(RunStatus.FAILED if end else None)
        except SweepError as exc:  # the block's own exception is the one to raise
            logger.error("%s", exc)
        raise
    _active.reset(token)
    active.close(RunStatus.FINISHED if end else None)


#: Where the script of a command-mode trial finds its trial's run, which another
#: process (the trial's runner) opened: installed by :mod:`sweep.script`.
_attached_run: Callable[[], ActiveRun | None] | None = None


def attach_runs_with(find: Callable[[], ActiveRun | None]) -> None:
    """Have ``active_run`` fall back on ``find()`` where no run is active."""
    global _attached_run
    _attached_run = find


def active_run() -> ActiveRun:
    run = _active.get() or (_attached_run() if _attached_run else None)
    if run is None:
        raise NoActiveRunError(
            "no active run: call sweep.log_* from inside an objective that sweep runs, "
            "or open one with `with sweep.start_run(...)`"
        )
    return run


# One store per database URL and process, schema checked once: a nested run costs its
# own writes only.
_stores: dict[tuple[int, str], TrackingStore] = {}
_experiments: dict[tuple[int, str, str], Experiment] = {}
_cache_lock = threading.Lock()


def _store_for(url: str) -> TrackingStore:
    from sweep.storage import Database

    key = (os.getpid(), url)
    with _cache_lock:
        store = _stores.get(key)
        if store is None:
            database = Database(url)
            database.ensure_schema()
            store = _stores[key] = TrackingStore(database)
        return store


def _experiment_for(store: TrackingStore, name: str, artifact_root: str | None) -> Experiment:
    key = (os.getpid(), store.db.url, name)
    found = _experiments.get(key)
    if found is None:
        root = resolve_artifact_root(artifact_root)
        found = _experiments[key] = store.get_or_create_experiment(name, root)
    return found


@contextmanager
def start_run(
    experiment: str,
    *,
    name: str = "run",
    storage: str | None = None,
    parent_run_id: str | None = None,
    artifact_root: str | None = None,
    code_dir: str | Path | None = None,
) -> Iterator[ActiveRun]:
    """Open a run outside a sweep; it ends FINISHED, or FAILED if the block raises.

    The experiment is created if new, with ``artifact_root`` (a path or an fsspec URL
    such as ``s3://bucket/prefix``; default ``SWEEP_ARTIFACT_ROOT``, else
    ``.sweep/artifacts``). The run records the lineage of ``code_dir`` (default: the
    current directory): git commit, branch and diff, packages, host, GPUs.
    """
    from sweep.storage import resolve_storage_url

    store = _store_for(resolve_storage_url(storage))
    exp = _experiment_for(store, experiment, artifact_root)
    code = str(code_dir or Path.cwd())
    tags = {**environment_tags(code), "sweep.command": command_line()}
    run = open_run(store, exp, name, code_dir=code, parent_run_id=parent_run_id, tags=tags)
    with activate(ActiveRun(store, run), end=True) as active:
        yield active


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


def log_input(
    data: Any, name: str, *, context: str = "training", source: str | None = None
) -> RunInput:
    """Record a dataset the run uses: ``data`` is a numpy array, a pandas DataFrame or
    Series, a list of numbers, bytes, or a file or directory path; its content digest
    (``sha256:<hex>``) is stable across runs. ``context`` says how it was used
    (``training``, ``validation``, ...), ``source`` where it came from (a URI; a path's
    own location by default)."""
    return active_run().log_input(data, name, context=context, source=source)


def log_artifact(local_path: str | Path, name: str | None = None) -> str:
    """Copy a file or directory into the run's artifacts; returns where it was stored."""
    return active_run().log_artifact(local_path, name)


def log_text(text: str, name: str) -> str:
    """Write ``text`` as the run's artifact ``name``; returns where it was stored."""
    return active_run().log_text(text, name)


def log_model(
    model: Any,
    name: str = "model",
    *,
    flavor: str | None = None,
    input_example: Any = None,
    signature: dict[str, Any] | None = None,
    init_kwargs: dict[str, Any] | None = None,
) -> str:
    """Save ``model`` (an object, or the ``str``/``Path`` of files the training code
    wrote) as the run's model ``name``, atomically, in its ``flavor`` (detected when not
    given; see :mod:`sweep.flavors`). The sweep registers the best trial's model."""
    return active_run().log_model(
        model,
        name,
        flavor=flavor,
        input_example=input_example,
        signature=signature,
        init_kwargs=init_kwargs,
    )
