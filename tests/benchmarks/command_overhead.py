"""What a command-mode trial costs over running its command by hand.

``python -m tests.benchmarks.command_overhead [--trials 50] [--backend sqlite]``

The same command, ``python -c pass``, run ``trials`` times three ways, in turn: a bare
``subprocess.run``; :class:`sweep.command.CommandObjective` alone (the process group,
the socket, reading its output, the log artifacts); and whole trials through an
agent's :class:`~sweep.trial.TrialRunner` (claim, run, the end written with the next
claim, as an agent's worker does: what a trial of the sweep costs). Medians per trial,
and the ratios to the bare run. The target is at most 1.5x for a whole trial.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna

from sweep.command import CommandObjective
from sweep.trial import TrialRunner
from tests.helpers import OBJECTIVES_DIR, fresh_postgres_database, sweep_context

COMMAND = [sys.executable, "-c", "pass"]
TARGET = 1.5


def _median_ms(times: list[float]) -> float:
    return statistics.median(times) * 1000


def run(trials: int = 50, backend: str = "sqlite") -> dict[str, Any]:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as scratch:
        if backend == "sqlite":
            return _measure(f"sqlite:///{scratch}/store.db", Path(scratch), trials)
        with fresh_postgres_database() as url:
            return _measure(url, Path(scratch), trials)


def _measure(url: str, scratch: Path, trials: int) -> dict[str, Any]:
    context = sweep_context(
        url,
        scratch / "artifacts",
        "command-overhead",
        None,  # type: ignore[arg-type]
        command=COMMAND,
        code_dir=str(OBJECTIVES_DIR),
        parameters={"x": {"type": "uniform", "low": 0.0, "high": 1.0}},
        budget={"n_trials": 3 * trials},
    )
    runner = TrialRunner(context, 0, defer_ends=True)  # as an agent's worker runs it
    coordinator = runner.coordinator
    worker = coordinator.register_worker("agent")
    objective = runner.objective
    assert isinstance(objective, CommandObjective)

    def timed_objective(trial: optuna.Trial) -> Any:
        # The objective's share of each whole trial, timed inside it.
        started = time.perf_counter()
        try:
            return objective(trial)
        finally:
            timings["objective"].append(time.perf_counter() - started)

    runner.objective = timed_objective

    def bare() -> None:
        subprocess.run(COMMAND, check=True)

    def whole_trial() -> None:
        claim = runner.claim(worker)  # with the end of the trial before
        assert claim is not None
        outcome = runner.run(claim)
        assert outcome.state in ("COMPLETE", "FAIL"), outcome.error

    timings: dict[str, list[float]] = {"bare": [], "objective": [], "trial": []}
    ways: dict[str, Callable[[], None]] = {"bare": bare, "trial": whole_trial}
    for _ in range(trials):  # in turn, so that load on the machine falls on each alike
        for name, way in ways.items():
            started = time.perf_counter()
            way()
            timings[name].append(time.perf_counter() - started)
    runner.write_ends()
    runner.close()
    bare_ms = _median_ms(timings["bare"])
    result = {name: round(_median_ms(times), 2) for name, times in timings.items()}
    result.update(
        {
            "trials": trials,
            "backend": url.split(":", 1)[0],
            "objective_ratio": round(_median_ms(timings["objective"]) / bare_ms, 2),
            "trial_ratio": round(_median_ms(timings["trial"]) / bare_ms, 2),
            # What a trial costs beyond its objective (claim, study read, end), paired
            # per trial, so that load on the machine cancels out more than in medians.
            "beyond_objective": round(
                _median_ms(
                    [t - o for t, o in zip(timings["trial"], timings["objective"], strict=True)]
                ),
                2,
            ),
            "target_ratio": TARGET,
        }
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()
    result = run(args.trials, args.backend)
    print(
        f"python -c pass, median of {result['trials']} ({result['backend']}): "
        f"bare {result['bare']} ms, CommandObjective {result['objective']} ms "
        f"({result['objective_ratio']}x), whole trial {result['trial']} ms "
        f"({result['trial_ratio']}x; target <= {TARGET}x); beyond the objective "
        f"{result['beyond_objective']} ms"
    )
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
