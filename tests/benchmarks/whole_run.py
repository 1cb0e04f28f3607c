"""Whole runs as users feel them, start-up and shutdown included (issue 23), each tool
run as whole processes, side by side, in turn (the order rotated each repetition),
each against a fresh PostgreSQL database; medians over the repetitions.

- The quickstart (``sweeps/quickstart.yaml``: 60 trials of SGD on the digits, TPE +
  Hyperband, 2 workers, the registry at the end): ``sweep launch`` with the local
  executor (the default, ``ours``), and with ``executor: ray`` (the engine before the
  local executor; ``ours (Ray)``), against Optuna alone in 2 processes on the same
  objective, sampler, pruner and database (each process ``study.optimize`` of half
  the trials; the objective's ``sweep.log_*`` calls do nothing there, as Optuna has no
  tracking). The objective stamps the time each trial starts
  (``stamped/quickstart_stamped.py``): the first stamp minus the moment the command
  was started is the time from the command to the first trial running.
- 500 trivial trials (``toy:trivial``, TPE, 2 workers): ``sweep launch`` as a whole
  process (local and Ray), Optuna alone in 2 processes and Ray Tune, as the
  orchestration scenario runs them (Ray Tune in this process: its Python start-up
  and imports are not counted; ``ray.init`` is).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from tests.benchmarks import orchestration
from tests.benchmarks.report import median, row
from tests.benchmarks.sweeps import trivial_spec
from tests.helpers import fresh_postgres_database

REPO = Path(__file__).resolve().parents[2]
STAMPED = Path(__file__).resolve().parent / "stamped"
QUICKSTART = REPO / "sweeps" / "quickstart.yaml"
OURS, OURS_RAY = "ours", "ours (Ray)"


def _env(stamps: Path | None = None) -> dict[str, str]:
    path = os.pathsep.join([str(REPO / "src"), str(REPO), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    if stamps is not None:
        env["SWEEP_BENCH_STAMPS"] = str(stamps)
    return env


def _first_stamp(stamps: Path) -> float | None:
    if not stamps.exists():
        return None
    values = [float(v) for v in stamps.read_text().split()]
    return min(values) if values else None


def _sweep_launch(spec: dict[str, Any], folder: Path, url: str, stamps: Path | None) -> float:
    """``sweep launch`` of ``spec`` as a whole process; returns its wall time."""
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    command = [sys.executable, "-m", "sweep.cli", "launch", str(path), "--storage", url]
    started = time.time()
    done = subprocess.run(
        command, cwd=folder, env=_env(stamps), capture_output=True, text=True, timeout=900
    )
    wall = time.time() - started
    if done.returncode != 0:
        raise RuntimeError(f"sweep launch failed ({done.returncode}): {done.stderr[-2000:]}")
    return wall


def quickstart_spec(folder: Path, executor: str, trials: int) -> dict[str, Any]:
    spec = yaml.safe_load(QUICKSTART.read_text())
    spec.update(
        objective="quickstart_stamped:objective",
        code_dir=str(STAMPED),
        executor=executor,
        budget={"n_trials": trials},
        tracking={**spec.get("tracking", {}), "artifact_root": str(folder / "artifacts")},
    )
    return spec


def ours_quickstart(executor: str, trials: int) -> dict[str, Any]:
    with fresh_postgres_database() as url, tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        stamps = folder / "stamps"
        started = time.time()
        wall = _sweep_launch(quickstart_spec(folder, executor, trials), folder, url, stamps)
        first = _first_stamp(stamps)
    return {"wall_s": round(wall, 2), "first_trial_s": _since(first, started)}


def _since(stamp: float | None, started: float) -> float | None:
    return round(stamp - started, 2) if stamp is not None else None


def optuna_quickstart(trials: int, workers: int = 2) -> dict[str, Any]:
    """Optuna alone: ``workers`` processes started together, each creating (or loading)
    the study and optimizing its share of the trials."""
    with fresh_postgres_database() as url, tempfile.TemporaryDirectory() as tmp:
        stamps = Path(tmp) / "stamps"
        shares = [trials // workers + (1 if i < trials % workers else 0) for i in range(workers)]
        started = time.time()
        processes = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    "from tests.benchmarks.whole_run import optuna_process as p; "
                    f"p({url!r}, {share}, {index})",
                ],
                cwd=tmp,
                env=_env(stamps),
            )
            for index, share in enumerate(shares)
        ]
        codes = [p.wait(timeout=900) for p in processes]
        wall = time.time() - started
        if any(codes):
            raise RuntimeError(f"an Optuna process failed: exit codes {codes}")
        first = _first_stamp(stamps)
    return {"wall_s": round(wall, 2), "first_trial_s": _since(first, started)}


def optuna_process(url: str, n_trials: int, index: int) -> None:
    """One of Optuna's processes on the quickstart: the spec's parameters, TPE (its
    seed plus the process's index, as our workers' offsets), Hyperband."""
    import types

    # The objective's sweep.log_* calls do nothing: Optuna alone has no tracking, and
    # a user of Optuna alone would not import sweep.
    stub = types.ModuleType("sweep")
    stub.log_metric = stub.log_model = lambda *a, **k: None  # type: ignore[attr-defined]
    sys.modules["sweep"] = stub
    sys.path.insert(0, str(STAMPED))
    import optuna
    from quickstart_stamped import objective

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = yaml.safe_load(QUICKSTART.read_text())
    sampler = optuna.samplers.TPESampler(seed=spec["sampler"]["seed"] + index, n_startup_trials=5)
    options = {k: v for k, v in spec["pruner"].items() if k != "name"}
    pruner = optuna.pruners.HyperbandPruner(**options)
    for attempt in range(50):  # both processes create it at once: one wins, one loads
        try:
            study = optuna.create_study(
                study_name="quickstart",
                storage=optuna.storages.RDBStorage(url),
                direction="maximize",
                sampler=sampler,
                pruner=pruner,
                load_if_exists=True,
            )
            break
        except Exception:
            if attempt == 49:
                raise
            time.sleep(0.1)

    def suggested(trial: optuna.Trial) -> float:
        for name, p in spec["parameters"].items():
            if p["type"] == "log_uniform":
                trial.suggest_float(name, p["low"], p["high"], log=True)
            else:
                trial.suggest_categorical(name, p["choices"])
        return float(objective(trial))

    study.optimize(suggested, n_trials=n_trials)


def ours_trivial(executor: str, trials: int, workers: int) -> dict[str, Any]:
    spec = trivial_spec("whole-run-trivial", trials, workers, 0, executor)
    with fresh_postgres_database() as url, tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        spec["tracking"] = {"artifact_root": str(folder / "artifacts")}
        wall = _sweep_launch(spec, folder, url, None)
    return {"wall_s": round(wall, 2)}


def run(quickstart_trials: int = 60, trivial_trials: int = 500, repeat: int = 3) -> dict[str, Any]:
    quick = {
        OURS: lambda: ours_quickstart("local", quickstart_trials),
        OURS_RAY: lambda: ours_quickstart("ray", quickstart_trials),
        "Optuna": lambda: optuna_quickstart(quickstart_trials),
    }
    trivial = {
        OURS: lambda: ours_trivial("local", trivial_trials, 2),
        OURS_RAY: lambda: ours_trivial("ray", trivial_trials, 2),
        "Optuna": lambda: orchestration.optuna_alone(trivial_trials, 2),
        "Ray Tune": lambda: orchestration.ray_tune(trivial_trials, 2),
    }
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        "quickstart": {n: [] for n in quick},
        "trivial": {n: [] for n in trivial},
    }
    for rep in range(repeat):
        for part, tools in (("quickstart", quick), ("trivial", trivial)):
            names = list(tools)
            for name in names[rep % len(names) :] + names[: rep % len(names)]:
                result = tools[name]()
                runs[part][name].append(result)
                print(f"  whole-run rep {rep + 1}/{repeat} {part} {name}: {result}", flush=True)

    def wall(part: str, name: str) -> float:
        return round(median(r["wall_s"] for r in runs[part][name]), 2)

    def first(name: str) -> float | None:
        values = [r["first_trial_s"] for r in runs["quickstart"][name] if r["first_trial_s"]]
        return round(median(values), 2) if values else None

    judged = quickstart_trials >= 60 and repeat >= 3
    q_ours, q_optuna = wall("quickstart", OURS), wall("quickstart", "Optuna")
    first_ours = first(OURS)
    rows = [
        row(
            f"Quickstart whole `sweep launch` ({quickstart_trials} trials, 2 workers, "
            "PostgreSQL), median of whole processes",
            "s",
            "lower",
            q_ours,
            {"Optuna": q_optuna},
            "≤0.5x Optuna's wall time",
            q_ours <= 0.5 * q_optuna,
            judged=judged,
            note=f"with executor: ray {wall('quickstart', OURS_RAY)} s; "
            f"{q_ours / q_optuna:.2f}x Optuna's time",
        ),
        row(
            "Quickstart: from the command to the first trial running",
            "s",
            "lower",
            first_ours,
            {"Optuna": first("Optuna")} if first("Optuna") else {},
            "≤1.5 s",
            first_ours is not None and first_ours <= 1.5,
            judged=judged,
            note=f"with executor: ray {first(OURS_RAY)} s",
        ),
        row(
            f"{trivial_trials} trivial trials, whole run with start-up (whole processes; "
            "Ray Tune in-process)",
            "s",
            "lower",
            wall("trivial", OURS),
            {n: wall("trivial", n) for n in ("Optuna", "Ray Tune")},
            note=f"with executor: ray {wall('trivial', OURS_RAY)} s",
        ),
    ]
    return {
        "scenario": "whole run",
        "quickstart_trials": quickstart_trials,
        "trivial_trials": trivial_trials,
        "repeat": repeat,
        "runs": runs,
        "rows": rows,
    }
