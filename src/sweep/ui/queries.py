"""What the UI's pages and the report show, read through sweep's Python API.

Every function takes an open :class:`~sweep.storage.Database` and returns plain
records; nothing here knows HTTP or HTML. Reads are bounded whatever the sweep's size:
trials come as columns (:mod:`sweep.trials`), the trials table a page at a time,
learning curves for a chosen subset of trials, long metric series downsampled in SQL.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import yaml
from sqlalchemy import func, select

from sweep import trials as trial_reads
from sweep.control import STUDY_DELETED, SweepStatus
from sweep.errors import NotFoundError, SweepError
from sweep.registry import ModelRegistry, ModelVersion, RegisteredModel, RegistryEvent
from sweep.storage import Database, redact
from sweep.storage.schema import MetricRow, RunRow, SweepRow
from sweep.study import SweepRecord, get_sweep_record
from sweep.tracking import (
    ArtifactInfo,
    Run,
    TrackingStore,
    build_search,
    load_runs,
    parse_filter,
    parse_order_by,
)
from sweep.trials import StudyInfo, TrialRow
from sweep.ui.charts import MAX_PLOTTED_TRIALS, best_rows
from sweep.ui.status import sweep_status

#: Trials per page of the trials table.
PAGE_SIZE = 50
#: Trials whose learning curves the sweep page draws (the best and the latest).
CURVE_TRIALS = 100
#: Points per metric series on a run's page; longer series are bucketed.
SERIES_POINTS = 500


@dataclass(frozen=True)
class SweepView:
    name: str
    record: SweepRecord | None
    status: SweepStatus | None
    study: StudyInfo | None
    metric: str
    rows: list[TrialRow] = field(default_factory=list)
    curves: dict[int, list[tuple[int, float]]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    #: Changes whenever a trial starts or ends (see :func:`sweep.trials.fingerprint`).
    fingerprint: tuple[Any, ...] = ()

    @property
    def params(self) -> list[str]:
        names: dict[str, None] = {}
        for row in self.rows[-2000:]:
            names.update(dict.fromkeys(row.params))
        return sorted(names)


@dataclass(frozen=True)
class TrialsPage:
    runs: list[Run]
    total: int
    page: int
    pages: int
    error: str | None = None


@dataclass(frozen=True)
class Series:
    key: str
    steps: list[float]
    values: list[float]
    low: list[float] | None = None  # bucket minima when downsampled
    high: list[float] | None = None
    points: int = 0  # points in the full series


@dataclass(frozen=True)
class RunView:
    run: Run
    artifacts: list[ArtifactInfo]
    series: list[Series]
    sweep_name: str | None
    live_params: dict[str, Any]


@dataclass(frozen=True)
class ModelView:
    model: RegisteredModel
    versions: list[ModelVersion]
    history: list[RegistryEvent]


def sweep_view(db: Database, name: str, *, curves: bool = True) -> SweepView:
    """The sweep page's data: whatever exists of the sweep's record, study and status."""
    record = get_sweep_record(db, name)
    study = trial_reads.find_study(db, record.study_name if record else name)
    if record is None and study is None:
        raise NotFoundError(f"no sweep or study called {name!r} in {db.display_url}")
    problems: list[str] = []
    status = None
    if record is not None:
        try:
            status = sweep_status(db, name, record.study_name, record.status, _budget(db, name))
        except SweepError as exc:
            problems.append(f"status unavailable: {redact(str(exc))}")
    if study is None:
        problems.append(
            f"the Optuna study {record.study_name if record else name!r} is gone "
            f"({STUDY_DELETED.lower()}): no trials to show"
        )
    elif record is None:
        problems.append(
            "no sweep record: a plain Optuna study, or a sweep whose launch stopped "
            "half-way; trials are shown, runs are not"
        )
    fingerprint, rows = _trial_rows(db, study.study_id, study.direction) if study else ((), [])
    chosen = curve_trials(rows, study.direction if study else "minimize") if curves else []
    return SweepView(
        name=name,
        record=record,
        status=status,
        study=study,
        metric=_metric_name(db, name),
        rows=rows,
        curves=trial_reads.reports(db, chosen) if chosen else {},
        problems=problems,
        fingerprint=fingerprint,
    )


#: Studies whose trial rows are kept between requests.
CACHED_STUDIES = 8
_lock = threading.Lock()
_rows_cache: dict[tuple[str, int], tuple[tuple[Any, ...], list[TrialRow]]] = {}


def _trial_rows(
    db: Database, study_id: int, direction: str
) -> tuple[tuple[Any, ...], list[TrialRow]]:
    """The study's trial rows, read again only when a trial started or ended since the
    last read, and then only the trials that can have changed (a running trial's newly
    suggested params reach the charts when it ends; the trials table shows them at once)."""
    key = (db.url, study_id)
    current = trial_reads.fingerprint(db, study_id)
    cached = _rows_cache.get(key)
    if cached is not None and cached[0] == current:
        return cached
    rows = _reread(db, study_id, cached[1]) if cached else _first_read(db, study_id, direction)
    with _lock:
        _rows_cache.pop(key, None)
        while len(_rows_cache) >= CACHED_STUDIES:
            _rows_cache.pop(next(iter(_rows_cache)))
        _rows_cache[key] = (current, rows)
    return current, rows


_FINISHED = frozenset({"COMPLETE", "PRUNED", "FAIL"})
#: The latest trials whose params are read (the page's param names come from them).
PARAMS_OF_LATEST = 2000


def _first_read(db: Database, study_id: int, direction: str) -> list[TrialRow]:
    """Every trial's row, with params only where the charts use them: the latest
    ``PARAMS_OF_LATEST`` trials and the best that the charts of params draw. Later reads
    (:func:`_reread`) read every new or unfinished trial with its params, and an older
    finished trial never joins either set, so the charts lose nothing; a cold sweep page
    of 10,000 trials reads a third of their params."""
    rows = trial_reads.trial_rows(db, study_id, params=False)
    wanted = {r.trial_id for r in rows[-PARAMS_OF_LATEST:]}
    wanted.update(r.trial_id for r in best_rows(rows, direction, MAX_PLOTTED_TRIALS))
    by_trial = trial_reads.trial_params(db, study_id, sorted(wanted))
    for row in rows:
        row.params = by_trial.get(row.trial_id, {})
    return rows


def _reread(db: Database, study_id: int, old: list[TrialRow]) -> list[TrialRow]:
    """``old`` brought up to date: finished trials never change, so only the trials
    unfinished in ``old`` and those created since are read."""
    kept = [r for r in old if r.state in _FINISHED]
    pending = [r.trial_id for r in old if r.state not in _FINISHED]
    last = max((r.trial_id for r in old), default=0)
    fresh = trial_reads.trial_rows(db, study_id, after_trial_id=last)
    if pending:
        fresh += trial_reads.trial_rows(db, study_id, trial_ids=pending)
    return sorted(kept + fresh, key=lambda r: r.number)


def curve_trials(rows: list[TrialRow], direction: str, limit: int = CURVE_TRIALS) -> list[int]:
    """The trials whose learning curves are drawn: the best half of ``limit`` by value,
    the rest the latest trials (running ones included)."""
    scored = [r for r in rows if r.value is not None and r.state == "COMPLETE"]
    scored.sort(key=lambda r: r.value or 0.0, reverse=direction == "maximize")
    chosen = dict.fromkeys(r.trial_id for r in scored[: limit // 2])
    for row in reversed(rows):
        if len(chosen) >= limit:
            break
        chosen.setdefault(row.trial_id)
    return list(chosen)


def trials_page(
    db: Database,
    name: str,
    *,
    filter: str | None = None,
    order_by: str | None = None,
    page: int = 1,
    page_size: int = PAGE_SIZE,
) -> TrialsPage:
    """A page of the sweep's trial runs, filtered and sorted with the grammar of
    ``sweep runs --filter`` / ``--order-by``; a malformed filter comes back as ``error``."""
    record = get_sweep_record(db, name)
    if record is None:
        return TrialsPage([], 0, 1, 1)
    try:
        stmt = build_search(
            parse_filter(filter or None),
            parse_order_by([order_by] if order_by else None),
            dialect=db.engine.dialect.name,
            parent_run_id=record.parent_run_id,
        )
    except SweepError as exc:
        return TrialsPage([], 0, 1, 1, error=str(exc))
    counted = stmt.order_by(None).limit(None).with_only_columns(RunRow.run_id).subquery()
    with db.session() as session:
        total = int(session.scalar(select(func.count()).select_from(counted)) or 0)
        pages = max(1, -(-total // page_size))
        page = min(max(1, page), pages)
        rows = list(session.scalars(stmt.limit(page_size).offset((page - 1) * page_size)))
        runs = load_runs(session, rows)
    return TrialsPage(trial_reads.with_live_params(db, runs), total, page, pages)


def run_view(db: Database, run_id: str) -> RunView:
    tracking = TrackingStore(db)
    run = tracking.get_run(run_id)
    live = trial_reads.params_of_runs(db, [run_id]) if run.status.value == "RUNNING" else {}
    series = [metric_series(db, run_id, key) for key in sorted(run.metrics)]
    return RunView(
        run=run,
        artifacts=tracking.list_artifacts(run_id),
        series=series,
        sweep_name=run.tags.get("sweep.sweep"),
        live_params=live.get(run_id, {}),
    )


def metric_series(db: Database, run_id: str, key: str, points: int = SERIES_POINTS) -> Series:
    """Metric ``key`` of ``run_id`` by step; beyond ``points`` points, step buckets with
    their mean (the line) and their min and max (the band), computed by the database."""
    where = (MetricRow.run_id == run_id, MetricRow.key == key)
    with db.session() as session:
        n, lo, hi = session.execute(
            select(func.count(), func.min(MetricRow.step), func.max(MetricRow.step)).where(*where)
        ).one()
        if n <= points:
            rows = session.execute(
                select(MetricRow.step, MetricRow.value).where(*where).order_by(MetricRow.step)
            ).all()
            return Series(key, [r[0] for r in rows], [r[1] for r in rows], points=int(n))
        width = max(1, -(-(hi - lo + 1) // points))
        bucket = ((MetricRow.step - lo) // width).label("bucket")
        rows = session.execute(
            select(
                func.avg(MetricRow.step),
                func.avg(MetricRow.value),
                func.min(MetricRow.value),
                func.max(MetricRow.value),
            )
            .where(*where)
            .group_by(bucket)
            .order_by(func.min(MetricRow.step))
        ).all()
    steps, means, lows, highs = ([float(v) for v in column] for column in zip(*rows, strict=True))
    return Series(
        key,
        steps,
        means,
        lows,
        highs,
        points=int(n),
    )


def compare_runs(db: Database, run_ids: list[str]) -> tuple[list[Run], list[Series]]:
    """Runs side by side, and every metric of theirs as one series per run."""
    tracking = TrackingStore(db)
    runs = trial_reads.with_live_params(db, [tracking.get_run(r) for r in run_ids])
    keys = sorted({k for run in runs for k in run.metrics})
    series = [
        Series(f"{key}|{run.run_id}", *_xy(metric_series(db, run.run_id, key)))
        for key in keys
        for run in runs
        if key in run.metrics
    ]
    return runs, series


def _xy(series: Series) -> tuple[list[float], list[float]]:
    return series.steps, series.values


def model_views(db: Database) -> list[ModelView]:
    registry = ModelRegistry(db)
    return [
        ModelView(m, registry.list_versions(m.name), registry.history(m.name))
        for m in registry.list_models()
    ]


def _budget(db: Database, name: str) -> int | None:
    with db.session() as session:
        return session.scalar(select(SweepRow.n_trials).where(SweepRow.name == name))


def _metric_name(db: Database, name: str) -> str:
    """The metric the sweep optimises, from its stored spec ("value" if unknown)."""
    with db.session() as session:
        text = session.scalar(select(SweepRow.spec_yaml).where(SweepRow.name == name))
    try:
        data: Any = yaml.safe_load(text) if text else None
        metric = data.get("metric") or data.get("metrics")
        # Several objectives: the first (the UI's charts show the first objective's values).
        return str((metric[0] if isinstance(metric, list) else metric)["name"])
    except (yaml.YAMLError, KeyError, TypeError, IndexError, AttributeError):
        return "value"
