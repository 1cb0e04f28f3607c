"""Logging speed against a fresh PostgreSQL database:

- ``log_metric``: the cost of one ``sweep.log_metric`` call inside an active run, each
  call timed alone, while the background writer flushes (every second, or every 5,000
  points): back to back, and with some microseconds of (untimed) work between calls as
  in a training loop, which spreads the calls over several of the writer's passes;
- ``ingest``: sustained metric points per second through ``TrackingStore.write_points``
  (the writer's path: COPY plus the latest-metric upsert, one transaction per batch),
  with 1 writer and with 2 concurrent writers (two workers' flushers), and end to end
  (``sweep.log_metric`` as fast as possible until the run's end has written them all);
- ``nested_run``: ``sweep.start_run(..., parent_run_id=...)`` with 3 params and 1 metric,
  from opening to closing.
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from typing import Any

import sqlalchemy

import sweep
from sweep.storage import Database
from sweep.tracking import TrackingStore
from tests.benchmarks.report import percentile
from tests.helpers import fresh_postgres_database

EXPERIMENT = "bench-logging"


def _count_points(url: str, run_id: str) -> int:
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    sqlalchemy.text("SELECT count(*) FROM sweep_metrics WHERE run_id = :r"),
                    {"r": run_id},
                ).scalar_one()
            )
    finally:
        engine.dispose()


def log_metric_cost(url: str, root: str, calls: int, work_us: float) -> dict[str, Any]:
    clock = time.perf_counter_ns
    work_ns = int(work_us * 1000)
    overhead = []
    for _ in range(10_000):
        start = clock()
        overhead.append(clock() - start)
    durations = [0] * calls
    log = sweep.log_metric
    with sweep.start_run(EXPERIMENT, storage=url, artifact_root=root, name="log-metric") as run:
        started = time.perf_counter()
        for step in range(calls):
            start = clock()
            log("loss", 1.0 / (step + 1), step)
            end = clock()
            durations[step] = end - start
            while clock() - end < work_ns:  # the training step between two calls
                pass
        loop_s = time.perf_counter() - started
        written_before_end = _count_points(url, run.run_id)
        ending = time.perf_counter()
    end_ms = (time.perf_counter() - ending) * 1000
    assert _count_points(url, run.run_id) == calls, "points were lost"
    ordered = sorted(durations)
    return {
        "calls": calls,
        "work_between_calls_us": work_us,
        "loop_s": round(loop_s, 2),
        "median_ns": ordered[len(ordered) // 2],
        "p99_ns": int(percentile(ordered, 0.99)),
        "p999_ns": int(percentile(ordered, 0.999)),
        "max_ns": ordered[-1],
        "mean_ns": round(statistics.fmean(ordered)),
        "clock_overhead_ns": sorted(overhead)[len(overhead) // 2],
        "written_in_background": written_before_end,
        "final_flush_ms": round(end_ms, 2),
    }


def ingest_rate(url: str, root: str, points: int, batch: int, writers: int) -> dict[str, Any]:
    """``points`` in all, split over ``writers`` threads, each with its own run and
    database connection, in batches of ``batch`` points (one transaction each)."""
    database = Database(url)
    store = TrackingStore(database)
    experiment = store.get_or_create_experiment(EXPERIMENT, root)
    runs = [store.create_run(experiment, f"ingest-{writers}-{i}") for i in range(writers)]
    per_writer = points // writers
    keys = ("loss", "accuracy", "lr", "grad_norm")
    stamp = int(time.time() * 1000)

    def batches(offset: int) -> list[list[tuple[str, float, int, int]]]:
        data = [
            (keys[i % 4], (offset + i) * 1e-6, i // 4, stamp + i // 4) for i in range(per_writer)
        ]
        return [data[i : i + batch] for i in range(0, len(data), batch)]

    prepared = [batches(i) for i in range(writers)]
    barrier = threading.Barrier(writers + 1)

    def write(run_id: str, chunks: list[list[tuple[str, float, int, int]]]) -> None:
        barrier.wait()
        for chunk in chunks:
            store.write_points(run_id, chunk)

    threads = [
        threading.Thread(target=write, args=(run.run_id, chunks))
        for run, chunks in zip(runs, prepared, strict=True)
    ]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    database.dispose()
    written = sum(_count_points(url, run.run_id) for run in runs)
    assert written == per_writer * writers, "points were lost"
    return {
        "writers": writers,
        "points": written,
        "batch": batch,
        "seconds": round(elapsed, 2),
        "points_per_s": round(written / elapsed),
    }


def end_to_end_rate(url: str, root: str, points: int) -> dict[str, Any]:
    """``sweep.log_metric`` as fast as it goes, until the run's end wrote every point."""
    log = sweep.log_metric
    started = time.perf_counter()
    with sweep.start_run(EXPERIMENT, storage=url, artifact_root=root, name="end-to-end") as run:
        for step in range(points):
            log("loss", step * 1e-6, step)
    elapsed = time.perf_counter() - started
    assert _count_points(url, run.run_id) == points, "points were lost"
    return {"points": points, "seconds": round(elapsed, 2), "points_per_s": round(points / elapsed)}


def nested_run_cost(url: str, root: str, runs: int) -> dict[str, Any]:
    with sweep.start_run(EXPERIMENT, storage=url, artifact_root=root, name="parent") as parent:
        durations = []
        for i in range(runs + 10):  # the first 10 warm up connections and caches
            started = time.perf_counter()
            with sweep.start_run(
                EXPERIMENT, storage=url, parent_run_id=parent.run_id, name=f"child-{i}"
            ):
                sweep.log_params({"lr": 0.01 * (i + 1), "depth": i % 7, "optimizer": "adam"})
                sweep.log_metric("val_acc", 0.5 + i / (runs + 10))
            durations.append((time.perf_counter() - started) * 1000)
    ordered = sorted(durations[10:])
    return {
        "runs": runs,
        "median_ms": round(ordered[len(ordered) // 2], 3),
        "p95_ms": round(percentile(ordered, 0.95), 3),
        "p99_ms": round(percentile(ordered, 0.99), 3),
    }


def run(
    calls: int = 200_000,
    work_us: tuple[float, ...] = (0.0, 10.0),
    points: int = 2_000_000,
    batch: int = 50_000,
    writers: tuple[int, ...] = (1, 2),
    end_to_end_points: int = 1_000_000,
    nested_runs: int = 300,
) -> dict[str, Any]:
    with fresh_postgres_database() as url, tempfile.TemporaryDirectory() as root:
        return {
            "scenario": "logging",
            "backend": "postgresql",
            "log_metric": [log_metric_cost(url, root, calls, w) for w in work_us],
            "ingest": [ingest_rate(url, root, points, batch, w) for w in writers],
            "end_to_end": end_to_end_rate(url, root, end_to_end_points),
            "nested_run": nested_run_cost(url, root, nested_runs),
        }
