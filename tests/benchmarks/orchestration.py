"""Orchestration throughput next to Optuna alone and Ray Tune (the issue's scenario 1).

The trivial objective (x float, y log-float, c categorical), TPE, ``trials`` trials,
2 workers, each tool against a fresh database on the test PostgreSQL server:

- ours: ``sweep.launch`` of the ``throughput`` scenario's spec, tracking on, on the
  default executor (local worker processes), and again on Ray (``ours (Ray)``, the
  engine before the local executor) for comparison;
- Optuna: ``study.optimize`` in 2 processes on the same ``RDBStorage`` study, the trials
  split between them (Optuna's ``n_trials`` is per process);
- Ray Tune: ``Tuner`` with ``OptunaSearch`` (TPE), ``max_concurrent_trials=2``,
  ``reuse_actors=True``, a function trainable that reports one result; OptunaSearch keeps
  its study in memory (``--tune-storage postgresql`` puts it in the database instead).

With actor reuse, Ray Tune sometimes runs every trial on one of its two actors, at about
half the trials per second of a run that uses both; each repetition records how many of
its actors ran trials (``actors``); the row says in how many repetitions both did, and
a second row compares ours with those repetitions alone.

Steady state is measured from the first to the last finished trial, on each tool's own
clock of trial completions (ours: the launch's ``on_trial``; Optuna: the trials'
``datetime_complete``; Ray Tune: a ``Callback.on_trial_complete`` in the driver), so
start-up is left out; the whole run, start-up included, is reported beside it. The
three run in turn, the order rotated each repetition; medians over the repetitions.
"""

from __future__ import annotations

import multiprocessing
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna

from tests.benchmarks import peer_objectives
from tests.benchmarks.report import median, row
from tests.benchmarks.sweeps import database_stats, launch_fresh, trivial_spec
from tests.helpers import fresh_postgres_database

REPO = Path(__file__).resolve().parents[2]
STUDY = "bench-orchestration"


def _per_trial(stats: dict[str, int], trials: int) -> dict[str, float]:
    """PostgreSQL's counts per trial: commits and rows written, read."""
    return {
        "commits": round(stats["xact_commit"] / trials, 1),
        "rows_written": round(
            (stats["tup_inserted"] + stats["tup_updated"] + stats["tup_deleted"]) / trials, 1
        ),
        "rows_read": round((stats["tup_returned"] + stats["tup_fetched"]) / trials, 1),
    }


def ours(trials: int, workers: int, executor: str = "auto") -> dict[str, Any]:
    """The throughput scenario's spec (``toy:trivial``, TPE seed 0, no pruner), on the
    default executor (local processes) or on Ray."""
    finished: list[float] = []
    launched = launch_fresh(
        trivial_spec(STUDY, trials, workers, 0, executor),
        on_trial=lambda _o, _c: finished.append(time.perf_counter()),
    )
    span = finished[-1] - finished[0] if len(finished) > 1 else 0.0
    return {
        "trials": launched.result.counts.finished,
        "failed": launched.result.counts.failed,
        "trials_per_s": round((len(finished) - 1) / span, 2) if span else 0.0,
        "wall_s": round(launched.wall_s, 2),
        "database_per_trial": _per_trial(launched.database, trials),
    }


def optuna_alone(trials: int, workers: int) -> dict[str, Any]:
    """``workers`` processes (spawned, so each imports Optuna afresh as a user's would)."""
    context = multiprocessing.get_context("spawn")
    with fresh_postgres_database() as url:
        started = time.perf_counter()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        optuna.create_study(study_name=STUDY, storage=url, direction="minimize")
        shares = [trials // workers + (1 if i < trials % workers else 0) for i in range(workers)]
        processes = [
            context.Process(
                target=peer_objectives.optuna_process, args=(url, STUDY, share, index + 1)
            )
            for index, share in enumerate(shares)
        ]
        for process in processes:
            process.start()
        for process in processes:
            process.join()
        wall = time.perf_counter() - started
        assert all(p.exitcode == 0 for p in processes), "an Optuna process failed"
        storage = optuna.storages.RDBStorage(url)
        done = optuna.load_study(study_name=STUDY, storage=storage).get_trials(deepcopy=False)
        storage.engine.dispose()
        stats = database_stats(url)
    completed = sorted(t.datetime_complete for t in done if t.datetime_complete is not None)
    span = (completed[-1] - completed[0]).total_seconds() if len(completed) > 1 else 0.0
    return {
        "trials": len(completed),
        "failed": sum(1 for t in done if t.state != optuna.trial.TrialState.COMPLETE),
        "trials_per_s": round((len(completed) - 1) / span, 2) if span else 0.0,
        "wall_s": round(wall, 2),
        "database_per_trial": _per_trial(stats, trials),
    }


def ray_tune(trials: int, workers: int, storage: str = "memory") -> dict[str, Any]:
    import logging

    import ray
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    class Completions(tune.Callback):
        def __init__(self) -> None:
            self.times: list[float] = []
            self.pids: set[int] = set()

        def on_trial_complete(self, iteration: int, trials: Any, trial: Any, **info: Any) -> None:
            self.times.append(time.perf_counter())
            self.pids.add((trial.last_result or {}).get("pid"))

    completions = Completions()
    with fresh_postgres_database() as url, tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        ray.init(
            num_cpus=max(workers, 2),
            include_dashboard=False,
            logging_level=logging.WARNING,
            # Local Ray workers do not get the driver's sys.path.
            runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}},
        )
        try:
            search = OptunaSearch(
                space=peer_objectives.trivial_space,
                metric="value",
                mode="min",
                sampler=optuna.samplers.TPESampler(seed=0),
                **(
                    {"storage": optuna.storages.RDBStorage(url), "study_name": STUDY}
                    if storage == "postgresql"
                    else {}
                ),
            )
            tuner = tune.Tuner(
                tune.with_resources(peer_objectives.trivial_trainable, {"cpu": 1}),
                tune_config=tune.TuneConfig(
                    search_alg=search,
                    num_samples=trials,
                    max_concurrent_trials=workers,
                    reuse_actors=True,
                ),
                run_config=tune.RunConfig(
                    name="bench", storage_path=folder, verbose=0, callbacks=[completions]
                ),
            )
            grid = tuner.fit()
        finally:
            ray.shutdown()
        wall = time.perf_counter() - started
        stats = database_stats(url)  # nothing, unless OptunaSearch's study is there
    times = completions.times
    span = times[-1] - times[0] if len(times) > 1 else 0.0
    return {
        "trials": len(times),
        "failed": sum(1 for r in grid if r.error is not None),
        "trials_per_s": round((len(times) - 1) / span, 2) if span else 0.0,
        "wall_s": round(wall, 2),
        "database_per_trial": _per_trial(stats, trials),
        "actors": len(completions.pids - {None}),
    }


def run(
    trials: int = 500, workers: int = 2, repeat: int = 3, tune_storage: str = "memory"
) -> dict[str, Any]:
    tools = {
        "ours": lambda: ours(trials, workers),
        "ours (Ray)": lambda: ours(trials, workers, "ray"),
        "Optuna": lambda: optuna_alone(trials, workers),
        "Ray Tune": lambda: ray_tune(trials, workers, tune_storage),
    }
    names = list(tools)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for rep in range(repeat):
        order = names[rep % len(names) :] + names[: rep % len(names)]
        for name in order:
            result = tools[name]()
            runs[name].append(result)
            print(
                f"  orchestration rep {rep + 1}/{repeat} {name}: "
                f"{result['trials_per_s']} trials/s steady, {result['wall_s']} s whole",
                flush=True,
            )
    steady = {name: median(r["trials_per_s"] for r in runs[name]) for name in names}
    # Ray Tune's repetitions that ran trials on all its actors: it as configured.
    both = [r["trials_per_s"] for r in runs["Ray Tune"] if r["actors"] >= workers]
    tune_note = (
        f"Ray Tune ran trials on all {workers} of its actors in {len(both)} of {repeat} reps"
    )
    whole = {name: median(trials / r["wall_s"] for r in runs[name]) for name in names}
    peers = [n for n in names if not n.startswith("ours")]

    def meets(result: dict[str, Any]) -> bool:
        a = result["advantage"]
        return (a.get("Optuna") or 0) >= 3 and (a.get("Ray Tune") or 0) >= 10

    judged = trials >= 500 and workers == 2
    rows = [
        row(
            f"Orchestration throughput, {trials} trials, {workers} workers, steady",
            "trials/s",
            "higher",
            round(steady["ours"], 2),
            {n: round(steady[n], 2) for n in peers},
            "≥3x Optuna, ≥10x Ray Tune",
            meets,
            judged=judged,
            note=f"{tune_note}; ours on Ray (executor: ray) {round(steady['ours (Ray)'], 2)}",
        ),
        row(
            f"Orchestration, {trials} trials, whole run with start-up",
            "trials/s",
            "higher",
            round(whole["ours"], 2),
            {n: round(whole[n], 2) for n in peers},
            note=f"ours on Ray {round(whole['ours (Ray)'], 2)}",
        ),
    ]
    if both:
        rows.insert(
            1,
            row(
                f"Orchestration throughput, {trials} trials, {workers} workers, steady, "
                "against Ray Tune's reps on all its actors only",
                "trials/s",
                "higher",
                round(steady["ours"], 2),
                {"Ray Tune": round(median(both), 2)},
                "≥10x Ray Tune",
                lambda result: (result["advantage"].get("Ray Tune") or 0) >= 10,
                judged=judged,
                note=f"{len(both)} of {repeat} reps",
            ),
        )
    return {
        "scenario": "orchestration",
        "trials": trials,
        "workers": workers,
        "repeat": repeat,
        "tune_storage": tune_storage,
        "runs": runs,
        "rows": rows,
    }
