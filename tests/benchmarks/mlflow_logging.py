"""Metric logging next to MLflow, both against the test PostgreSQL server (the issue's
scenario 6; the tracking issue's figures).

Ours is measured by the functions of ``tests/benchmarks/logging.py``; MLflow through its
own API with its SQLAlchemy tracking store on a fresh database of the same server:

- ``log_metric`` call cost inside an active run, each call timed alone: ours (buffered,
  a background writer) against MLflow's default (synchronous: one write per call) and
  MLflow's ``synchronous=False`` (a queue and a background thread, like ours);
- ingest rate in batches of 1,000 points (MLflow's most per ``log_batch``): ours through
  ``TrackingStore.write_points``, MLflow through ``MlflowClient.log_batch``; 4 keys;
- end to end: ``log_metric`` as fast as it goes until the run's end has stored every
  point: ours against MLflow with ``synchronous=False``;
- a nested run with 3 params and 1 metric, opening to closing.

Each repetition uses fresh databases and runs ours and MLflow in turn, the order
swapped every repetition; medians over the repetitions.
"""

from __future__ import annotations

import logging
import tempfile
import time
from typing import Any

from tests.benchmarks import logging as ours_logging
from tests.benchmarks.report import median, percentile, row
from tests.helpers import fresh_postgres_database

EXPERIMENT = "bench-mlflow"
KEYS = ("loss", "accuracy", "lr", "grad_norm")


def _mlflow(url: str, root: str) -> tuple[Any, Any, str]:
    import mlflow

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    mlflow.set_tracking_uri(url)
    client = mlflow.MlflowClient(url)
    experiment_id = client.create_experiment(EXPERIMENT, artifact_location=root)
    mlflow.set_experiment(experiment_id=experiment_id)
    return mlflow, client, experiment_id


def _count(client: Any, run_id: str, key: str) -> int:
    return len(client.get_metric_history(run_id, key))


def mlflow_log_metric_cost(url: str, root: str, calls: int, synchronous: bool) -> dict[str, Any]:
    mlflow, client, _ = _mlflow(url, root)
    clock = time.perf_counter_ns
    log = mlflow.log_metric
    durations = [0] * calls
    with mlflow.start_run(run_name="log-metric") as run:
        for step in range(10):  # warm up the connection and the queue
            log("warmup", 0.0, step=step, synchronous=synchronous)
        started = time.perf_counter()
        for step in range(calls):
            start = clock()
            log("loss", 1.0 / (step + 1), step=step, synchronous=synchronous)
            durations[step] = clock() - start
        loop_s = time.perf_counter() - started
        ending = time.perf_counter()
    end_ms = (time.perf_counter() - ending) * 1000
    assert _count(client, run.info.run_id, "loss") == calls, "MLflow lost points"
    ordered = sorted(durations)
    return {
        "calls": calls,
        "synchronous": synchronous,
        "loop_s": round(loop_s, 2),
        "median_ns": ordered[len(ordered) // 2],
        "p99_ns": percentile(ordered, 0.99),
        "final_flush_ms": round(end_ms, 2),
    }


def mlflow_ingest_rate(url: str, root: str, points: int, batch: int = 1000) -> dict[str, Any]:
    from mlflow.entities import Metric

    _, client, experiment_id = _mlflow(url, root)
    run_id = client.create_run(experiment_id, run_name="ingest").info.run_id
    stamp = int(time.time() * 1000)
    data = [Metric(KEYS[i % 4], i * 1e-6, stamp + i // 4, i // 4) for i in range(points)]
    chunks = [data[i : i + batch] for i in range(0, len(data), batch)]
    started = time.perf_counter()
    for chunk in chunks:
        client.log_batch(run_id, metrics=chunk)
    elapsed = time.perf_counter() - started
    written = sum(_count(client, run_id, key) for key in KEYS)
    assert written == points, "MLflow lost points"
    return {
        "points": points,
        "batch": batch,
        "seconds": round(elapsed, 2),
        "points_per_s": round(points / elapsed),
    }


def mlflow_end_to_end_rate(url: str, root: str, points: int) -> dict[str, Any]:
    mlflow, client, _ = _mlflow(url, root)
    log = mlflow.log_metric
    started = time.perf_counter()
    with mlflow.start_run(run_name="end-to-end") as run:
        for step in range(points):
            log("loss", step * 1e-6, step=step, synchronous=False)
    elapsed = time.perf_counter() - started
    assert _count(client, run.info.run_id, "loss") == points, "MLflow lost points"
    return {"points": points, "seconds": round(elapsed, 2), "points_per_s": round(points / elapsed)}


def mlflow_nested_run_cost(url: str, root: str, runs: int) -> dict[str, Any]:
    mlflow, _, _ = _mlflow(url, root)
    durations = []
    with mlflow.start_run(run_name="parent"):
        for i in range(runs + 10):  # the first 10 warm up, as ours
            started = time.perf_counter()
            with mlflow.start_run(run_name=f"child-{i}", nested=True):
                mlflow.log_params({"lr": 0.01 * (i + 1), "depth": i % 7, "optimizer": "adam"})
                mlflow.log_metric("val_acc", 0.5 + i / (runs + 10))
            durations.append((time.perf_counter() - started) * 1000)
    ordered = sorted(durations[10:])
    return {
        "runs": runs,
        "median_ms": round(ordered[len(ordered) // 2], 3),
        "p95_ms": round(percentile(ordered, 0.95), 3),
    }


def _ours(sizes: dict[str, int]) -> dict[str, Any]:
    with fresh_postgres_database() as url, tempfile.TemporaryDirectory() as root:
        return {
            "log_metric": ours_logging.log_metric_cost(url, root, sizes["calls"], 0.0),
            "ingest": ours_logging.ingest_rate(url, root, sizes["points"], 1000, 1),
            "end_to_end": ours_logging.end_to_end_rate(url, root, sizes["end_to_end"]),
            "nested_run": ours_logging.nested_run_cost(url, root, sizes["nested_runs"]),
        }


def _theirs(sizes: dict[str, int]) -> dict[str, Any]:
    # One database per measurement: MLflow's fluent API keeps one active run stack.
    def fresh(measure: Any, *args: Any) -> dict[str, Any]:
        with fresh_postgres_database() as url, tempfile.TemporaryDirectory() as root:
            return measure(url, root, *args)

    return {
        "log_metric": fresh(mlflow_log_metric_cost, sizes["mlflow_calls"], True),
        "log_metric_async": fresh(mlflow_log_metric_cost, sizes["mlflow_async_calls"], False),
        "ingest": fresh(mlflow_ingest_rate, sizes["mlflow_points"]),
        "end_to_end": fresh(mlflow_end_to_end_rate, sizes["mlflow_end_to_end"]),
        "nested_run": fresh(mlflow_nested_run_cost, sizes["mlflow_nested_runs"]),
    }


def run(
    calls: int = 200_000,
    points: int = 500_000,
    end_to_end: int = 500_000,
    nested_runs: int = 300,
    mlflow_calls: int = 2_000,
    mlflow_async_calls: int = 20_000,
    mlflow_points: int = 100_000,
    mlflow_end_to_end: int = 50_000,
    mlflow_nested_runs: int = 100,
    repeat: int = 3,
) -> dict[str, Any]:
    sizes = dict(locals())
    del sizes["repeat"]
    ours_runs: list[dict[str, Any]] = []
    mlflow_runs: list[dict[str, Any]] = []
    for rep in range(repeat):
        steps = [("ours", _ours, ours_runs), ("MLflow", _theirs, mlflow_runs)]
        for name, measure, into in steps if rep % 2 == 0 else steps[::-1]:
            into.append(measure(sizes))
            print(f"  metric logging rep {rep + 1}/{repeat} {name}: done", flush=True)

    def mid(runs: list[dict[str, Any]], part: str, key: str) -> float:
        return median(r[part][key] for r in runs)

    call_ours = mid(ours_runs, "log_metric", "median_ns") / 1000
    call_sync = mid(mlflow_runs, "log_metric", "median_ns") / 1000
    call_async = mid(mlflow_runs, "log_metric_async", "median_ns") / 1000
    nested_ours = mid(ours_runs, "nested_run", "median_ms")
    nested_mlflow = mid(mlflow_runs, "nested_run", "median_ms")
    ingest_ours = mid(ours_runs, "ingest", "points_per_s")
    ingest_mlflow = mid(mlflow_runs, "ingest", "points_per_s")
    e2e_ours = mid(ours_runs, "end_to_end", "points_per_s")
    e2e_mlflow = mid(mlflow_runs, "end_to_end", "points_per_s")
    return {
        "scenario": "metric logging",
        "sizes": sizes,
        "repeat": repeat,
        "runs": {"ours": ours_runs, "MLflow": mlflow_runs},
        "rows": [
            row(
                "log_metric call, median",
                "µs",
                "lower",
                round(call_ours, 3),
                {"MLflow": round(call_sync, 1)},
                "≤20 µs",
                call_ours <= 20,
                "MLflow synchronous, its default",
            ),
            row(
                "log_metric call, median",
                "µs",
                "lower",
                round(call_ours, 3),
                {"MLflow": round(call_async, 1)},
                "≤20 µs",
                call_ours <= 20,
                "MLflow synchronous=False",
            ),
            row(
                "Metric ingest, 1,000-point batches, 1 writer",
                "points/s",
                "higher",
                round(ingest_ours),
                {"MLflow": round(ingest_mlflow)},
                note="MLflow log_batch; 1,000 points is its most per call (our own writer "
                "sends up to 5,000 a batch: the end-to-end row)",
            ),
            row(
                "Sustained ingest: log_metric end to end, all points stored",
                "points/s",
                "higher",
                round(e2e_ours),
                {"MLflow": round(e2e_mlflow)},
                "≥200,000 points/s",
                e2e_ours >= 200_000,
                note="MLflow synchronous=False",
            ),
            row(
                "Nested run with 3 params + 1 metric, median",
                "ms",
                "lower",
                round(nested_ours, 2),
                {"MLflow": round(nested_mlflow, 2)},
                "≤5 ms",
                nested_ours <= 5,
            ),
        ],
    }
