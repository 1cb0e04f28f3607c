"""The live progress of `sweep launch` on a terminal: trials done of the budget with an
ETA, the best value so far, failures, and the running trials with their params and
latest report (read from Optuna's tables every couple of seconds). Built from the
controller's ``on_start`` and ``on_trial`` callbacks; when output is not a terminal
(CI logs) only the plain one-line-per-trial output remains.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from sweep.storage import Database
from sweep.trial_counts import TrialCounts

if TYPE_CHECKING:  # the CLI imports these lazily: they pull in SQLAlchemy, Ray
    from sweep.trial import TrialOutcome


#: Seconds between two reads of the running trials from the store.
POLL_S = 2.0
#: Running trials listed (the latest ones).
SHOWN_RUNNING = 8


class LaunchProgress:
    """A rich ``Live`` display fed by the launch callbacks; ``close()`` ends it."""

    def __init__(
        self, console: Console, *, name: str, url: str, metric: str, direction: str
    ) -> None:
        self.console = console
        self.name, self.url, self.metric, self.direction = name, url, metric, direction
        self.counts = TrialCounts()
        self.remaining: int | None = None
        self.done_here = 0
        self.best: tuple[int, float] | None = None
        self.failures: list[str] = []
        self.started = time.monotonic()
        self._running: list[tuple[int, dict[str, Any], tuple[int, float] | None]] = []
        self._polled = 0.0
        self._lock = threading.Lock()
        self._db: Database | None = None
        self._live = Live(self, console=console, refresh_per_second=2, transient=True)

    def on_start(self, storage: str, counts: TrialCounts, remaining: int | None) -> None:
        self.counts, self.remaining = counts, remaining
        self.started = time.monotonic()
        self._live.start()

    def on_trial(self, outcome: TrialOutcome, counts: TrialCounts) -> None:
        with self._lock:
            self.counts = counts
            self.done_here += 1
            if outcome.state == "COMPLETE" and outcome.value is not None:
                better = (
                    self.best is None
                    or (self.direction == "maximize" and outcome.value > self.best[1])
                    or (self.direction == "minimize" and outcome.value < self.best[1])
                )
                if better:
                    self.best = (outcome.number, outcome.value)
            if outcome.state == "FAIL":
                self.failures.append(f"trial {outcome.number}: {outcome.error or 'failed'}")
            self._polled = 0.0  # a trial ended: the running set changed

    def close(self) -> None:
        self._live.stop()
        if self._db is not None:
            self._db.dispose()

    # -- rendering ------------------------------------------------------------------------

    def __rich__(self) -> RenderableType:
        with self._lock:
            self._poll()
            return Group(self._header(), *self._tables())

    def _header(self) -> RenderableType:
        c = self.counts
        total = None if self.remaining is None else c.finished - self.done_here + self.remaining
        elapsed = time.monotonic() - self.started
        line = Text()
        if total:
            line.append(f"{c.finished}/{total} trials ", style="bold")
        else:
            line.append(f"{c.finished} trials (until the timeout) ", style="bold")
        line.append(f"· {c.complete} complete, {c.pruned} pruned, ")
        line.append(f"{c.failed} failed", style="red" if c.failed else "")
        line.append(f" · {elapsed:.0f}s")
        if total and self.done_here and c.finished < total:
            eta = elapsed / self.done_here * (total - c.finished)
            line.append(f" · ETA {eta:.0f}s")
        if self.best is not None:
            line.append(f" · best {self.metric}={self.best[1]:.5g} (trial {self.best[0]})")
        parts: list[RenderableType] = [line]
        if total:
            parts.insert(0, ProgressBar(total=total, completed=c.finished, width=40))
        return Group(*parts)

    def _tables(self) -> list[RenderableType]:
        out: list[RenderableType] = []
        if self._running:
            table = Table("running", "params", "latest report", box=None, padding=(0, 1))
            for number, params, report in self._running[-SHOWN_RUNNING:]:
                shown = ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(params.items()))
                latest = f"step {report[0]}: {report[1]:.5g}" if report else ""
                table.add_row(f"trial {number}", escape(shown), latest)
            out.append(table)
        for failure in self.failures[-3:]:
            out.append(Text(f"  {failure}"[:200], style="red"))
        return out

    def _poll(self) -> None:
        """Refresh the running trials from the store, at most every ``POLL_S``."""
        now = time.monotonic()
        if now - self._polled < POLL_S:
            return
        self._polled = now
        from sweep import trials

        try:
            if self._db is None:
                self._db = Database(self.url)
            study = trials.find_study(self._db, self.name)
            if study is None:
                return
            rows = trials.trial_rows(self._db, study.study_id, states=["RUNNING"])
            reports = trials.latest_reports(self._db, [r.trial_id for r in rows])
            self._running = [(r.number, r.params, reports.get(r.trial_id)) for r in rows]
        except Exception:  # noqa: BLE001 - the display must never stop the sweep
            self._running = []


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
