"""The logging API an objective calls: ``sweep.log_metric(...)`` and friends.

Calls go to the *active run*: the trial's child run while a sweep runs the objective,
or a run opened with :func:`start_run`. A metric point costs the caller an append to
the run's buffer (about a microsecond); the process's background writer
(:mod:`sweep.tracking._flusher`) writes buffers in batches every second or sooner when
one fills, and the run's end writes the rest on the caller's thread, so that nothing
logged is lost on a clean end or a failure. The buffer is thread-safe.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sweep.errors import InvalidValueError, MetricFlushError, NoActiveRunError, SweepError
from sweep.storage.schema import KEY_LENGTH
from sweep.tracking._datasets import digest_dataset
from sweep.tracking._entities import Experiment, Run, RunInput, RunStatus
from sweep.tracking._environment import command_line, environment_tags
from sweep.tracking._flusher import FLUSH_EVERY, flusher
from sweep.tracking._ingest import PointTuple
from sweep.tracking._lineage import open_run
from sweep.tracking._store import TrackingStore
from sweep.tracking.artifacts import (
    copy_artifact,
    resolve_artifact_root,
    user_artifact_location,
    write_bytes,
)

logger = logging.getLogger(__name__)

#: Longest dataset context (the column's width).
CONTEXT_LENGTH = 64

_active: contextvars.ContextVar[ActiveRun | None] = contextvars.ContextVar(
    "sweep_active_run", default=None
)


class ActiveRun:
    """A run being written to; holds its metric buffer."""

    def __init__(self, store: TrackingStore, run: Run) -> None:
        self.store = store
        self.run = run
        self.run_id = run.run_id
        self.model_path: str | None = None
        self._lock = threading.Lock()  # guards _buffer and _next_step
        self._write_lock = threading.Lock()  # one write at a time, in logging order
        self._buffer: list[PointTuple] = []
        self._unwritten: list[PointTuple] = []  # left by a failed write; written first
        self._next_step: dict[str, int] = {}
        self._registered = False
        self._failing = False

    # -- metrics ----------------------------------------------------------------------

    def log_metric(self, key: str, value: float, step: int | None = None) -> None:
        value = float(value)
        timestamp = int(time.time() * 1000)
        with self._lock:
            next_step = self._next_step.get(key)
            if next_step is None:
                _check_key(key)
                next_step = 0
            step = next_step if step is None else int(step)
            if step >= next_step:
                self._next_step[key] = step + 1
            buffer = self._buffer
            buffer.append((key, value, step, timestamp))
            size = len(buffer)
        if not self._registered:
            self._registered = True
            flusher().register(self)
        if size % FLUSH_EVERY == 0:
            flusher().wake()

    def flush(self) -> None:
        """Write every buffered point now, on this thread. Raises
        :class:`~sweep.errors.StorageError` if the database refuses them; they stay
        buffered and the next flush writes them first."""
        self._write(None)

    def _write(self, end: RunStatus | None) -> None:
        """Write the buffered points; with ``end``, close the run in the same transaction."""
        isnan = math.isnan
        with self._write_lock:
            with self._lock:
                batch, self._buffer = self._buffer, []
            # NaN is kept out (SQLite stores it as NULL); infinities are stored as they are.
            points = [p for p in batch if not isnan(p[1])]
            if self._unwritten:
                points = self._unwritten + points
            try:
                if end is not None:
                    self.store.end_run(self.run_id, end, points=points)
                elif points:
                    self.store.write_points(self.run_id, points)
            except BaseException:
                self._unwritten = points
                raise
            self._unwritten = []

    def take_points(self) -> list[PointTuple]:
        """The points not yet written (the buffer, and any a failed write left), for the
        caller to write in its own transaction; the background writer forgets the run."""
        if self._registered:
            flusher().unregister(self)
            self._registered = False
        with self._write_lock:
            with self._lock:
                batch, self._buffer = self._buffer, []
            isnan = math.isnan
            points = self._unwritten + [p for p in batch if not isnan(p[1])]
            self._unwritten = []
        return points

    def flush_in_background(self) -> None:
        """A flush by the background writer: a failure is logged and retried later."""
        try:
            self.flush()
        except Exception as exc:
            if not self._failing:
                logger.warning(
                    "could not write %d metric points of run %s (%s); keeping them and "
                    "retrying on the next flush",
                    len(self._unwritten),
                    self.run_id,
                    exc,
                )
            self._failing = True
        else:
            if self._failing:
                logger.warning("metric points of run %s are being written again", self.run_id)
            self._failing = False

    def close(self, end: RunStatus | None = None) -> None:
        """The end of the run's logging: write what is buffered on this thread, retrying
        while the database is briefly unreachable, and with ``end`` close the run in the
        same transaction. Raises :class:`~sweep.errors.MetricFlushError` if the points
        still cannot be written (the run is then closed FAILED, if it can be)."""
        if self._registered:
            flusher().unregister(self)
            self._registered = False
        try:
            self.store.db.retrying(
                lambda: self._write(end), f"writing the metrics of run {self.run_id}"
            )
        except Exception as exc:
            lost, self._unwritten = len(self._unwritten), []
            if end is not None:
                with contextlib.suppress(Exception):
                    self.store.end_run(self.run_id, RunStatus.FAILED)
            raise MetricFlushError(
                f"{lost} metric points of run {self.run_id} could not be written to "
                f"{self.store.db.display_url} ({exc}); the run's metric history is "
                "incomplete: check that the database is up and writable, then re-run"
            ) from exc

    # -- params, tags, datasets, artifacts --------------------------------------------

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.store.log_params(self.run_id, params)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self.store.set_tags(self.run_id, tags)

    def log_input(
        self, data: Any, name: str, *, context: str = "training", source: str | None = None
    ) -> RunInput:
        """Record a dataset the run used, with a digest of its content (see
        :mod:`sweep.tracking._datasets`); returns what was recorded."""
        _check_key(name, what="dataset name")
        _check_key(context, what="dataset context", length=CONTEXT_LENGTH)
        found = digest_dataset(data)
        recorded = RunInput(name, context, found.digest, source or found.source, found.profile)
        self.store.log_input(
            self.run_id,
            name,
            context=context,
            digest=recorded.digest,
            source=recorded.source,
            profile=recorded.profile,
        )
        return recorded

    def log_artifact(self, local_path: str | Path, name: str | None = None) -> str:
        source = Path(local_path)
        name = source.name if name is None else name
        target = user_artifact_location(self.run.artifact_uri, name)
        kind, size = copy_artifact(source, target)
        self.store.record_artifact(self.run_id, name, kind, size)
        return target

    def log_text(self, text: str, name: str) -> str:
        target = user_artifact_location(self.run.artifact_uri, name)
        size = write_bytes(target, text.encode())
        self.store.record_artifact(self.run_id, name, "file", size)
        return target

    def log_model(self, model: Any, name: str = "model", **options: Any) -> str:
        from sweep.flavors import save_model

        target = user_artifact_location(self.run.artifact_uri, name)
        info = save_model(model, target, **options)
        self.store.record_artifact(self.run_id, name, "model", info.size)
        self.model_path = name
        return target


def _check_key(key: Any, *, what: str = "metric key", length: int = KEY_LENGTH) -> None:
    if not isinstance(key, str) or not key or len(key) > length:
        raise InvalidValueError(
            f"{what} {key!r:.80} is not allowed: use a non-empty string of at most "
            f"{length} characters"
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
