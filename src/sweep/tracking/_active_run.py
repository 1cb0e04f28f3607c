"""A run being written to: :class:`ActiveRun` buffers its metric points and writes its
params, tags, datasets, artifacts and models.

A metric point costs the caller an append to the run's buffer (about a microsecond); the
process's background writer (:mod:`sweep.tracking._flusher`) writes buffers in batches
every second or sooner when one fills, and the run's end writes the rest on the caller's
thread, so that nothing logged is lost on a clean end or a failure. The buffer is
thread-safe.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sweep.errors import InvalidValueError, MetricFlushError
from sweep.storage.schema import KEY_LENGTH
from sweep.tracking._datasets import digest_dataset
from sweep.tracking._entities import Run, RunInput, RunStatus
from sweep.tracking._flusher import FLUSH_EVERY, flusher
from sweep.tracking._ingest import PointTuple
from sweep.tracking._store import TrackingStore
from sweep.tracking.artifacts import copy_artifact, user_artifact_location, write_bytes

logger = logging.getLogger(__name__)

#: Longest dataset context (the column's width).
CONTEXT_LENGTH = 64


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
