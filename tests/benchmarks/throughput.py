"""Orchestration throughput: trials per second on a trivial objective (3 params: float,
log-float, categorical), TPE, tracking on, N Ray workers.

Throughput is measured between the first and the last finished trial, so Ray's start-up
is not counted; the whole launch time is reported beside it.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sweep
from sweep.spec import load_spec_from_dict
from tests.helpers import OBJECTIVES_DIR, fresh_postgres_database


@contextmanager
def fresh_store(backend: str) -> Iterator[str]:
    if backend == "postgresql":
        with fresh_postgres_database() as url:
            yield url
    else:
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite:///{folder}/bench.db"


def run(backend: str = "postgresql", trials: int = 200, workers: int = 2) -> dict[str, Any]:
    spec = load_spec_from_dict(
        {
            "name": "bench-throughput",
            "objective": "toy:trivial",
            "code_dir": str(OBJECTIVES_DIR),
            "metric": {"name": "value", "direction": "minimize"},
            "sampler": {"name": "tpe", "seed": 0},
            "pruner": "none",
            "budget": {"n_trials": trials},
            "parallelism": workers,
            # Logical CPUs: the benchmark may ask for more workers than there are cores.
            "ray": {"num_cpus": max(workers, 2)},
        },
        check_objective=True,
    )
    finished: list[float] = []
    with fresh_store(backend) as url:
        started = time.perf_counter()
        result = sweep.launch(
            spec, storage=url, on_trial=lambda _o, _c: finished.append(time.perf_counter())
        )
        total = time.perf_counter() - started
    steady = (len(finished) - 1) / (finished[-1] - finished[0]) if len(finished) > 1 else 0.0
    return {
        "scenario": "throughput",
        "backend": backend,
        "trials": result.counts.finished,
        "failed_trials": result.counts.failed,
        "workers": workers,
        "trials_per_s": round(steady, 2),
        "launch_wall_s": round(total, 2),
    }
