"""Pruning: the latency of ``should_prune()`` on a large study (the issue's scenario 3)
and whether Hyperband pays on a real learning curve (scenario 4).

Latency: a study of ``trials`` trials, each with ``steps`` reported values and the rung
records Hyperband leaves (it is built in memory with Hyperband's ``should_prune`` called
at every possible rung step, the result ignored so that every trial reports every step,
then copied into the study storage of a fresh PostgreSQL database; the in-memory study
has the same name, so Hyperband puts each trial in the same bracket). Then new trials
run on the storage a sweep's workers use (``StudyStorage`` over
``Database.optuna_storage()``, built as ``TrialRunner`` builds it), and then on Optuna's
RDB storage alone: each reports a value per step and calls ``should_prune()``, which
alone is timed, until it is pruned or reaches ``steps``, until ``calls`` calls have been
timed.

Pays: two workloads of real training on the digits, each launched with Hyperband (the
spec's) and without pruning, for each seed: the best validation accuracy and the
training steps (epochs) spent in all trials. The same four runs on Optuna alone (the
peer) tell whether a shortfall is ours or Hyperband's on that workload. ``quickstart`` is
``sweeps/quickstart.yaml`` (a linear model, SGDClassifier, 30 epochs; its curves level
off within a few epochs); ``mlp`` is ``sweeps/mlp.yaml`` (a one-hidden-layer network,
50 epochs).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any
from unittest import mock

import optuna
import yaml

import sweep
from sweep.spec import load_spec_from_dict, resolve_objective
from sweep.storage import Database, StudyStorage
from tests.benchmarks.report import median, percentile, row
from tests.benchmarks.sweeps import launch_fresh
from tests.helpers import fresh_postgres_database

STUDY = "bench-pruning"
SWEEPS = Path(__file__).resolve().parents[2] / "sweeps"
WORKLOADS = {"quickstart": SWEEPS / "quickstart.yaml", "mlp": SWEEPS / "mlp.yaml"}


def _curve(x: float, step: int, steps: int) -> float:
    """A learning curve whose ceiling depends on x (maximize)."""
    return (1.0 - (x - 0.3) ** 2) * (1.0 - math.exp(-5.0 * step / steps))


def _hyperband(steps: int) -> optuna.pruners.HyperbandPruner:
    return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=steps, reduction_factor=3)


def _history(trials: int, steps: int) -> list[optuna.trial.FrozenTrial]:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=STUDY,
        direction="maximize",
        sampler=optuna.samplers.RandomSampler(seed=0),
        pruner=_hyperband(steps),
    )
    # With min_resource 1 and reduction factor 3 every bracket's rungs are powers of 3.
    rungs = {3**k for k in range(int(math.log(steps, 3)) + 1)}
    for _ in range(trials):
        trial = study.ask()
        x = trial.suggest_float("x", 0.0, 1.0)
        for step in range(1, steps + 1):
            trial.report(_curve(x, step, steps), step)
            if step in rungs:
                trial.should_prune()  # records the rung; the trial goes on regardless
        study.tell(trial, _curve(x, steps, steps))
    return study.get_trials(deepcopy=False)


def _time_should_prune(
    storage: optuna.storages.BaseStorage, steps: int, calls: int
) -> tuple[list[float], int, int]:
    """New trials on the study in ``storage``, each reporting a value per step and asking
    ``should_prune()`` (alone timed) until pruned or at ``steps``, until ``calls`` calls
    are timed; returns the durations, the trials run and how many were pruned."""
    # Random params, so that some trials are pruned and some promoted (TPE, knowing the
    # whole history, would sample near the best every time and every trial would go on).
    study = optuna.load_study(
        study_name=STUDY,
        storage=storage,
        sampler=optuna.samplers.RandomSampler(seed=1),
        pruner=_hyperband(steps),
    )
    durations: list[float] = []
    pruned = new_trials = 0
    clock = time.perf_counter
    while len(durations) < calls:
        trial = study.ask()
        new_trials += 1
        x = trial.suggest_float("x", 0.0, 1.0)
        state = optuna.trial.TrialState.COMPLETE
        for step in range(1, steps + 1):
            trial.report(_curve(x, step, steps), step)
            started = clock()
            stop = trial.should_prune()
            durations.append(clock() - started)
            if stop:
                state = optuna.trial.TrialState.PRUNED
                pruned += 1
                break
        study.tell(trial, None if state == optuna.trial.TrialState.PRUNED else 0.0, state=state)
    return durations, new_trials, pruned


def latency(trials: int = 1000, steps: int = 100, calls: int = 1000) -> dict[str, Any]:
    """Timed twice on one database: on the study storage a sweep's workers use
    (``StudyStorage`` over ``Database.optuna_storage()``, as ``TrialRunner`` builds it;
    the judged row) and on Optuna's RDB storage under it."""
    history = _history(trials, steps)
    results: dict[str, dict[str, Any]] = {}
    with fresh_postgres_database() as url:
        db = Database(url)
        db.ensure_schema()
        backend = db.optuna_storage()
        optuna.create_study(study_name=STUDY, storage=backend, direction="maximize").add_trials(
            history
        )
        for name, storage in (
            ("StudyStorage", StudyStorage(db, backend)),
            ("RDBStorage", backend),
        ):
            durations, new_trials, pruned = _time_should_prune(storage, steps, calls)
            ordered = sorted(durations)
            results[name] = {
                "calls": len(ordered),
                "new_trials": new_trials,
                "pruned": pruned,
                "p50_ms": round(percentile(ordered, 0.5) * 1000, 3),
                "p95_ms": round(percentile(ordered, 0.95) * 1000, 3),
                "max_ms": round(ordered[-1] * 1000, 3),
            }
        db.dispose()
    ours, rdb = results["StudyStorage"], results["RDBStorage"]
    return {
        "scenario": "pruning latency",
        "trials": trials,
        "steps": steps,
        **ours,
        "storages": results,
        "rows": [
            row(
                f"should_prune() with Hyperband, {trials:,} trials x {steps} steps, p50, "
                "on a sweep worker's study storage",
                "ms",
                "lower",
                ours["p50_ms"],
                target="≤10 ms",
                met=ours["p50_ms"] <= 10,
                judged=trials >= 1000 and steps >= 100,
                note=f"p95 {ours['p95_ms']:.2f} ms; {ours['new_trials']} trials, "
                f"{ours['pruned']} pruned",
            ),
            row(
                f"should_prune() with Hyperband, {trials:,} trials x {steps} steps, p50, "
                "on Optuna's RDB storage under it",
                "ms",
                "lower",
                rdb["p50_ms"],
                note=f"p95 {rdb['p95_ms']:.2f} ms",
            ),
        ],
    }


def _workload(
    spec_path: Path, name: str, seed: int, trials: int, workers: int, prune: bool
) -> dict[str, Any]:
    data = yaml.safe_load(spec_path.read_text())
    data.update(
        name=name,
        code_dir=str(spec_path.parent),
        budget={"n_trials": trials},
        parallelism=workers,
        ray={"num_cpus": max(workers, 2)},
        tracking={"experiment": name},
        registry=None,
    )
    data["sampler"] = {**data["sampler"], "seed": seed}
    if not prune:
        data["pruner"] = "none"
    return data


def optuna_alone(data: dict[str, Any]) -> list[optuna.trial.FrozenTrial]:
    """The workload of spec ``data`` on Optuna alone, parallel as its users run it on one
    machine: an in-memory study, ``optimize(n_jobs=parallelism)``, Optuna's own sampler
    with the spec's options and the spec's pruner. Optuna has no tracking, so the
    objective's ``sweep.log_*`` calls do nothing here."""
    spec = load_spec_from_dict(data, check_objective=True)
    function = resolve_objective(spec)
    study = optuna.create_study(
        direction=spec.metric.direction,
        sampler=spec.sampler.optuna_class(**spec.sampler.options),
        pruner=spec.pruner.build(),
    )

    def objective(trial: optuna.Trial) -> Any:
        spec.suggest_parameters(trial)  # as a sweep does before the objective runs
        return function(trial)

    def nothing(*args: Any, **kwargs: Any) -> None:
        return None

    with mock.patch.multiple(sweep, log_metric=nothing, log_model=nothing):
        study.optimize(objective, n_trials=spec.budget.n_trials, n_jobs=spec.parallelism)
    return study.get_trials(deepcopy=False)


def pays(
    seeds: int = 10,
    trials: int = 60,
    workers: int = 2,
    workloads: tuple[str, ...] = ("quickstart", "mlp"),
) -> dict[str, Any]:
    per_workload = {w: _pays(w, seeds, trials, workers) for w in workloads}
    return {
        "scenario": "pruning pays",
        "seeds": seeds,
        "trials": trials,
        "workers": workers,
        "per_seed": {w: r["per_seed"] for w, r in per_workload.items()},
        "rows": [line for r in per_workload.values() for line in r["rows"]],
    }


def _pays(workload: str, seeds: int, trials: int, workers: int) -> dict[str, Any]:
    per_seed = []
    for seed in range(seeds):
        entry: dict[str, Any] = {"seed": seed}
        # Alternate which goes first, between the tools and between the pruners.
        tools = ("", "_optuna") if seed % 2 == 0 else ("_optuna", "")
        order = (True, False) if seed % 2 == 0 else (False, True)
        for tool, prune in [(tool, prune) for tool in tools for prune in order]:
            key = ("hyperband" if prune else "no_pruning") + tool
            spec = _workload(
                WORKLOADS[workload], f"bench-pays-{workload}-{key}", seed, trials, workers, prune
            )
            started = time.perf_counter()
            done = launch_fresh(spec).trials if tool == "" else optuna_alone(spec)
            finished = [t for t in done if t.state.is_finished()]
            entry[key] = {
                "best": round(max(t.value for t in finished if t.value is not None), 4),
                "steps": sum(len(t.intermediate_values) for t in finished),
                "pruned": sum(1 for t in finished if t.state == optuna.trial.TrialState.PRUNED),
                "wall_s": round(time.perf_counter() - started, 1),
            }
            print(f"  pruning pays {workload} seed {seed} {key}: {entry[key]}", flush=True)
        per_seed.append(entry)

    def medians(key: str) -> tuple[float, float]:
        """The median best value and steps of the runs under ``key``."""
        runs = [e[key] for e in per_seed]
        return median(r["best"] for r in runs), median(r["steps"] for r in runs)

    def saving(hyperband_steps: float, no_pruning_steps: float) -> float:
        return no_pruning_steps / hyperband_steps if hyperband_steps else 0.0

    best_hb, steps_hb = medians("hyperband")
    best_none, steps_none = medians("no_pruning")
    best_hb_optuna, steps_hb_optuna = medians("hyperband_optuna")
    best_none_optuna, steps_none_optuna = medians("no_pruning_optuna")
    fewer, fewer_optuna = saving(steps_hb, steps_none), saving(steps_hb_optuna, steps_none_optuna)
    judged = seeds >= 3 and trials >= 60
    return {
        "per_seed": per_seed,
        "rows": [
            row(
                f"Pruning pays ({workload}): best val. accuracy, TPE+Hyperband (ours) vs TPE "
                f"alone, {trials} trials, median of {seeds} seeds",
                "",
                "higher",
                round(best_hb, 4),
                {"Optuna": round(best_hb_optuna, 4)},
                target="≥ TPE alone",
                met=best_hb >= best_none,
                judged=judged,
                note=f"TPE alone {best_none:.4f}; on Optuna alone, TPE alone "
                f"{best_none_optuna:.4f}",
            ),
            row(
                f"Pruning pays ({workload}): training steps (epochs), TPE+Hyperband vs TPE alone",
                "epochs",
                "lower",
                steps_hb,
                {"Optuna": steps_hb_optuna},
                target="≥3x fewer",
                met=fewer >= 3,
                judged=judged,
                note=f"TPE alone {steps_none:.0f}, {fewer:.2f}x fewer; on Optuna alone, "
                f"{fewer_optuna:.2f}x fewer than its TPE alone ({steps_none_optuna:.0f})",
            ),
        ],
    }
