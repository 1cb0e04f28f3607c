"""Run search speed: filtered and ordered searches over a large sweep on PostgreSQL.

A fresh database gets ``runs`` trial runs under one parent run, each with ``params``
params (numbers, and an ``optimizer`` text param), 6 tags and ``points`` metric points
spread over 4 metrics (val_acc, val_loss, train_acc, train_loss); everything is written
with psycopg ``COPY``, with ``value_num`` and ``sweep_latest_metrics`` filled exactly as
``TrackingStore`` fills them (the latest point is the highest step). After ``ANALYZE``
each search runs once to warm up, then ``repeat`` times through
``TrackingStore.search_runs``, end to end: parsing, the query, and loading the params,
tags and latest metrics of the returned page. ``sql_*`` figures time the search query
alone (the page of run rows), for comparison.
"""

from __future__ import annotations

import math
import statistics
import time
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import psycopg
from sqlalchemy import text
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import make_url

from sweep.storage import Database
from sweep.tracking import TrackingStore
from sweep.tracking._filter import parse_filter, parse_order_by
from sweep.tracking._search import build_search, statement_deadline
from tests.helpers import fresh_postgres_database

METRICS = ("val_acc", "val_loss", "train_acc", "train_loss")
NAMED_PARAMS = ("learning_rate", "optimizer", "batch_size", "layers", "dropout", "momentum")
OPTIMIZERS = ("sgd", "adam", "rmsprop")
MODEL_TYPES = ("sgd", "mlp", "rf")
STATUSES = (("FINISHED", "COMPLETE"), ("FAILED", "FAIL"), ("KILLED", "FAIL"))
BLOCK = 100  # runs per COPY chunk of metric points

#: (name, filter, order_by, max_results) of each timed search.
SEARCHES: list[tuple[str, str | None, list[str], int]] = [
    (
        "issue example",
        "params.learning_rate < 0.01 and metrics.val_acc > 0.9 and tags.model_type = 'sgd'",
        ["metrics.val_acc desc"],
        1000,
    ),
    (
        "two metrics, top 100",
        "metrics.val_acc > 0.95 and metrics.val_loss < 0.5",
        ["metrics.val_loss asc"],
        100,
    ),
    (
        "params text + numeric, status",
        "params.optimizer in ('sgd', 'adam') and params.batch_size >= 64 "
        "and attributes.status = 'FINISHED'",
        ["params.learning_rate desc"],
        1000,
    ),
    ("leaderboard, top 10", None, ["metrics.val_acc desc"], 10),
    (
        "like + not-equal tag",
        "attributes.name like 'trial-1%' and tags.model_type != 'rf'",
        ["attributes.start_time desc"],
        1000,
    ),
    ("first 1000, no filter", None, [], 1000),
]


def fifty_conditions(params: int = 20) -> str:
    """A filter of 50 ``and`` conditions over params (ranges, several per key), the 4
    latest metrics and the tags, which a good share of the runs meet (issue 18: about 90
    such conditions kept PostgreSQL's planner busy for minutes, one EXISTS each)."""
    conditions = [
        "params.learning_rate > 0.0002",
        "params.learning_rate < 0.05",
        "params.optimizer in ('sgd', 'adam')",
        "params.batch_size >= 16",
        "params.layers >= 2",
        "params.dropout < 0.45",
        "params.momentum > 0.81",
        "metrics.val_acc > 0.5",
        "metrics.val_loss < 0.9",
        "metrics.train_acc > 0.4",
        "metrics.train_loss < 1",
        "tags.model_type != 'rf'",
        "tags.sweep.state = 'COMPLETE'",
        "tags.sweep.sweep = 'bench-query'",
        "tags.sweep.host like 'worker-%'",
        "attributes.status = 'FINISHED'",
    ]
    extra = [f"p{j:02d}" for j in range(len(NAMED_PARAMS), params)] or ["dropout"]
    bounds = iter(range(1_000))
    while len(conditions) < 50:
        for key in extra:
            k = next(bounds)
            conditions.append(f"params.{key} {'>' if k % 2 else '<'} {'-' if k % 2 else ''}4.{k}")
            if len(conditions) == 50:
                break
    return " and ".join(conditions)


SEARCHES.append(("50 conditions", fifty_conditions(), ["metrics.val_acc desc"], 100))


def run(
    runs: int = 10_000,
    params: int = 20,
    points: int = 1000,
    repeat: int = 20,
    explain: bool = False,
) -> dict:
    """Load the data, time every search in :data:`SEARCHES`; with ``explain`` also keep
    PostgreSQL's ``EXPLAIN ANALYZE`` of each search query."""
    with fresh_postgres_database() as url:
        db = Database(url)
        try:
            db.ensure_schema()
            store = TrackingStore(db)
            experiment = store.get_or_create_experiment("bench-query", "/tmp/bench-artifacts")
            parent = store.create_run(experiment, "bench-query")
            started = time.perf_counter()
            counts = _load(url, experiment.experiment_id, parent.run_id, runs, params, points)
            load_s = time.perf_counter() - started
            with psycopg.connect(_conninfo(url), autocommit=True) as conn:
                conn.execute("ANALYZE")
                server = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
            timings = [
                _time_search(store, parent.run_id, *search, repeat=repeat, explain=explain)
                for search in SEARCHES
            ]
        finally:
            db.dispose()
    worst_p95 = max(t["p95_ms"] for t in timings)
    return {
        "scenario": "query",
        "backend": "postgresql",
        "postgresql": server,
        "runs": runs,
        "params_per_run": params,
        "points_per_run": points,
        "rows": counts,
        "load_s": round(load_s, 1),
        "repeat": repeat,
        "searches": timings,
        "worst_p95_ms": worst_p95,
        "under_1s": worst_p95 < 1000,
    }


def _time_search(
    store: TrackingStore,
    parent_run_id: str,
    name: str,
    filter: str | None,
    order_by: list[str],
    max_results: int,
    *,
    repeat: int,
    explain: bool = False,
) -> dict[str, Any]:
    def search() -> int:
        found = store.search_runs(
            filter, order_by, parent_run_id=parent_run_id, max_results=max_results
        )
        return len(found)

    stmt = build_search(
        parse_filter(filter),
        parse_order_by(order_by),
        dialect="postgresql",
        parent_run_id=parent_run_id,
        max_results=max_results,
    )

    def query_only() -> int:
        # With the settings every search runs under (statement timeout, no nested loops).
        with store.db.session() as session, statement_deadline(session, 600):
            return len(session.execute(stmt).all())

    returned = search()  # warm-up
    query_only()
    total = [_timed(search) for _ in range(repeat)]
    sql = [_timed(query_only) for _ in range(repeat)]
    result: dict[str, Any] = {
        "name": name,
        "filter": filter,
        "order_by": order_by,
        "max_results": max_results,
        "returned": returned,
        "median_ms": _ms(statistics.median(total)),
        "p95_ms": _ms(_p95(total)),
        "sql_median_ms": _ms(statistics.median(sql)),
        "sql_p95_ms": _ms(_p95(sql)),
    }
    if explain:
        compiled = stmt.compile(
            dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}
        )
        with store.db.session() as session, statement_deadline(session, 600):
            plan = session.execute(text(f"EXPLAIN (ANALYZE, BUFFERS) {compiled}")).scalars()
            result["plan"] = list(plan)
    return result


def _timed(operation: Any) -> float:
    started = time.perf_counter()
    operation()
    return time.perf_counter() - started


def _p95(values: list[float]) -> float:
    """Nearest-rank 95th percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


# -- data -----------------------------------------------------------------------------


def _conninfo(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _load(
    url: str, experiment_id: int, parent_run_id: str, runs: int, params: int, points: int
) -> dict[str, int]:
    rng = np.random.default_rng(0)
    ids = [uuid.uuid4().hex for _ in range(runs)]
    base = int(time.time() * 1000) - runs * 60_000
    final_acc = rng.uniform(0.5, 0.99, runs)
    with psycopg.connect(_conninfo(url)) as conn, conn.cursor() as cur:
        with cur.copy(
            "COPY sweep_runs (run_id, experiment_id, parent_run_id, name, status, start_time, "
            "end_time, artifact_uri) FROM STDIN"
        ) as copy:
            for i, run_id in enumerate(ids):
                status = STATUSES[0 if i % 20 else 1 + (i // 20) % 2][0]
                start = base + i * 60_000
                copy.write_row(
                    (run_id, experiment_id, parent_run_id, f"trial-{i}", status, start,
                     start + 55_000, f"/tmp/bench-artifacts/{run_id}")
                )  # fmt: skip
        with cur.copy("COPY sweep_params (run_id, key, value, value_num) FROM STDIN") as copy:
            for i, run_id in enumerate(ids):
                for key, value in _params(rng, i, params):
                    number = float(value) if not isinstance(value, str) else None
                    copy.write_row((run_id, key, str(value), number))
        with cur.copy("COPY sweep_tags (run_id, key, value) FROM STDIN") as copy:
            for i, run_id in enumerate(ids):
                state = STATUSES[0 if i % 20 else 1 + (i // 20) % 2][1]
                for key, value in (
                    ("model_type", MODEL_TYPES[i % 3]),
                    ("sweep.state", state),
                    ("sweep.trial_number", str(i)),
                    ("sweep.sweep", "bench-query"),
                    ("sweep.git.commit", "0123456789abcdef0123456789abcdef01234567"),
                    ("sweep.host", f"worker-{i % 8}"),
                ):
                    copy.write_row((run_id, key, value))
        latest: list[tuple[str, str, float, int, int]] = []
        with cur.copy(
            "COPY sweep_metrics (run_id, key, value, step, timestamp) FROM STDIN"
        ) as copy:
            for first in range(0, runs, BLOCK):
                block = range(first, min(first + BLOCK, runs))
                text, block_latest = _metric_block(rng, ids, block, final_acc, base, points)
                copy.write(text)
                latest += block_latest
        with cur.copy(
            "COPY sweep_latest_metrics (run_id, key, value, step, timestamp) FROM STDIN"
        ) as copy:
            for row in latest:
                copy.write_row(row)
        conn.commit()
        tables = {
            "runs": "sweep_runs",
            "params": "sweep_params",
            "tags": "sweep_tags",
            "metric_points": "sweep_metrics",
            "latest_metrics": "sweep_latest_metrics",
        }
        counts = {}
        for name, table in tables.items():
            counts[name] = cur.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # type: ignore[index]
    return counts


def _params(rng: np.random.Generator, i: int, count: int) -> Iterator[tuple[str, object]]:
    values: list[tuple[str, object]] = [
        ("learning_rate", float(10 ** rng.uniform(-4, -1))),
        ("optimizer", OPTIMIZERS[int(rng.integers(3))]),
        ("batch_size", int(2 ** rng.integers(4, 9))),
        ("layers", int(rng.integers(1, 9))),
        ("dropout", round(float(rng.uniform(0, 0.5)), 4)),
        ("momentum", round(float(rng.uniform(0.8, 0.99)), 4)),
    ]
    values += [(f"p{j:02d}", float(rng.normal())) for j in range(len(NAMED_PARAMS), count)]
    yield from values[:count]


def _metric_block(
    rng: np.random.Generator,
    ids: list[str],
    block: range,
    final_acc: np.ndarray,
    base: int,
    points: int,
) -> tuple[str, list[tuple[str, str, float, int, int]]]:
    """COPY text for the metric history of the runs in ``block``, and their latest points."""
    steps = max(1, points // len(METRICS))
    step = np.arange(steps)
    lines: list[str] = []
    latest = []
    for i in block:
        run_id, start = ids[i], base + i * 60_000
        progress = 1 - np.exp(-(step + 1) / (steps / 5))
        acc = final_acc[i] * progress
        curves = {
            "val_acc": acc + rng.normal(0, 0.01, steps),
            "val_loss": (1.1 - acc) + rng.normal(0, 0.02, steps),
            "train_acc": np.minimum(acc + 0.03, 1.0),
            "train_loss": (1.05 - acc) + rng.normal(0, 0.01, steps),
        }
        curves["val_acc"][-1] = final_acc[i]  # the value the searches see
        curves["val_loss"][-1] = 1.1 - final_acc[i]
        stamps = (start + step * 50).tolist()
        for key, values in curves.items():
            prefix = f"{run_id}\t{key}\t"
            numbers = values.tolist()
            lines += [
                f"{prefix}{v!r}\t{s}\t{t}"
                for v, s, t in zip(numbers, range(steps), stamps, strict=True)
            ]
            latest.append((run_id, key, numbers[-1], steps - 1, stamps[-1]))
    lines.append("")
    return "\n".join(lines), latest
