"""A live mirror of a running sweep into MLflow (``tracking: {mirror: mlflow,
mlflow_uri: ...}``), off the trial path.

A thread of the controller exports what finished since its last pass (the export is
idempotent: runs already there are skipped) every ``interval_s`` seconds, and once
more when the sweep ends. A failure to mirror never fails a trial or the sweep: it is
logged, retried on the next pass, and reported on the parent run
(``sweep.mirror.error``) if the last pass failed too.
"""

from __future__ import annotations

import logging
import threading

from sweep.errors import summary
from sweep.storage import redact

logger = logging.getLogger(__name__)

#: Seconds between passes while the sweep runs.
MIRROR_EVERY_S = 5.0


class MlflowMirror:
    """Mirrors sweep ``sweep_name`` of the store ``storage`` to ``tracking_uri``."""

    def __init__(
        self, sweep_name: str, tracking_uri: str, storage: str, interval_s: float = MIRROR_EVERY_S
    ) -> None:
        self.sweep_name = sweep_name
        self.tracking_uri = tracking_uri
        self.storage = storage
        self.interval_s = interval_s
        self.error: str | None = None  # the last pass's failure, if it failed
        self.runs_added = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sweep-mlflow-mirror", daemon=True)

    def start(self) -> MlflowMirror:
        self._thread.start()
        return self

    def stop(self) -> str | None:
        """End the thread, mirror what is left, and return the error if that failed."""
        self._stop.set()
        self._thread.join(timeout=60)
        self.mirror()
        return self.error

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.mirror()

    def mirror(self) -> None:
        """One pass: export what finished since the last one."""
        from sweep.export._mlflow import export_to_mlflow

        try:
            report = export_to_mlflow(self.sweep_name, self.tracking_uri, storage=self.storage)
        except Exception as exc:  # never the trials' problem: said, and tried again
            self.error = redact(summary(exc))
            logger.warning("mirroring sweep %s to MLflow failed: %s", self.sweep_name, self.error)
            return
        self.error = None
        self.runs_added += report.runs_added
