"""Command-mode trials: scripts run as trials through the one trial path, with real
processes against the real store. Metrics by printed lines and by the sweep client,
pruning by both, failures, and no process outliving its trial."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from sweep.storage import Database
from sweep.tracking import RunStatus, TrackingStore
from sweep.trial import TrialRunner
from tests.helpers import OBJECTIVES_DIR, run_one_trial, sweep_context

SCRIPTS = OBJECTIVES_DIR / "scripts"
X_IS_HALF = {"x": {"type": "categorical", "choices": [0.5]}}


def runner_for(url: str, tmp_path: Path, program: str, **spec_keys: Any) -> TrialRunner:
    """The trial runner of an agent's worker for a command-mode sweep of ``program``."""
    spec_keys.setdefault("parameters", X_IS_HALF)
    context = sweep_context(
        url,
        tmp_path / "artifacts",
        f"cmd-{Path(program).stem}",
        None,  # type: ignore[arg-type]
        program=program,
        code_dir=str(SCRIPTS),
        command_grace_s=1,
        **spec_keys,
    )
    return TrialRunner(context, 0)


def artifact_text(url: str, run_id: str, name: str) -> str:
    tracking = TrackingStore(Database(url))
    run = tracking.get_run(run_id)
    assert name in {a.path for a in tracking.list_artifacts(run_id)}
    return (Path(run.artifact_uri) / name).read_text()


def history(url: str, run_id: str, key: str) -> list[tuple[int, float]]:
    points = TrackingStore(Database(url)).metric_history(run_id, key)
    return [(p.step, p.value) for p in points]


def test_printed_lines_are_step_metrics_and_the_last_value_counts(
    storage_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")  # an agent worker pinned to GPU 3
    outcome = run_one_trial(runner_for(storage_url, tmp_path, "prints.py"))
    assert (outcome.state, outcome.value) == ("COMPLETE", 2.5)  # score at step 5
    assert history(storage_url, outcome.run_id, "score") == [(s, 0.5 * s) for s in range(1, 6)]
    assert [v for _, v in history(storage_url, outcome.run_id, "loss")][-1] == 0.2
    stdout = artifact_text(storage_url, outcome.run_id, "logs/stdout.txt")
    seen = json.loads(stdout.splitlines()[0])
    assert seen["argv"] == ["--x=0.5"] and seen["params"] == {"x": 0.5}
    assert seen["trial"] == "0" and seen["url_in_env"] and seen["cuda"] == "3"
    assert "step=5 score=2.5000" in stdout


def test_carriage_returns_split_lines_and_characters_survive_split_writes(
    sqlite_url: str, tmp_path: Path
) -> None:
    """Output is read in chunks as it comes: a progress bar's ``\\r`` updates are lines
    (each a report), a character split across writes is decoded whole, and a last line
    without a newline still counts."""
    outcome = run_one_trial(runner_for(sqlite_url, tmp_path, "progress.py"))
    assert (outcome.state, outcome.value) == ("COMPLETE", 0.3)
    assert history(sqlite_url, outcome.run_id, "score") == [(1, 0.1), (2, 0.2), (3, 0.3)]
    stdout = artifact_text(sqlite_url, outcome.run_id, "logs/stdout.txt")
    assert stdout.endswith("validated: caf\u00e9 ok")


def test_a_script_that_exits_non_zero_fails_with_its_stderr(
    storage_url: str, tmp_path: Path
) -> None:
    command = ["${interpreter}", "${program}", "${args}", "--code=3"]
    outcome = run_one_trial(runner_for(storage_url, tmp_path, "prints.py", command=command))
    assert outcome.state == "FAIL" and outcome.error is not None
    assert "exited with code 3" in outcome.error and "the data is gone" in outcome.error
    run = TrackingStore(Database(storage_url)).get_run(outcome.run_id)
    assert run.status is RunStatus.FAILED and "the data is gone" in run.tags["sweep.error"]
    assert "the data is gone" in artifact_text(storage_url, outcome.run_id, "logs/stderr.txt")


def test_printed_reports_are_pruned(storage_url: str, tmp_path: Path) -> None:
    # score = 0.5 * step passes the threshold at step 3: pruned then, not at step 5.
    command = ["${interpreter}", "${program}", "${args}", "--pause=0.3", "--steps=20"]
    runner = runner_for(
        storage_url,
        tmp_path,
        "prints.py",
        command=command,
        pruner={"name": "threshold", "upper": 1.2},
    )
    started = time.monotonic()
    outcome = run_one_trial(runner)
    assert outcome.state == "PRUNED"
    assert time.monotonic() - started < 5  # 20 steps would take 6 s
    assert [s for s, _ in history(storage_url, outcome.run_id, "score")] == [1, 2, 3]


def test_a_script_importing_sweep_reports_and_is_pruned(storage_url: str, tmp_path: Path) -> None:
    runner = runner_for(
        storage_url, tmp_path, "reports.py", pruner={"name": "threshold", "upper": 2.2}
    )
    started = time.monotonic()
    outcome = run_one_trial(runner)
    # Pruned at step 5 (2.5 > 2.2); the script then sleeps 30 s: its group is ended.
    assert outcome.state == "PRUNED" and time.monotonic() - started < 10
    assert [s for s, _ in history(storage_url, outcome.run_id, "score")] == [1, 2, 3, 4, 5]
    assert history(storage_url, outcome.run_id, "aux")[:2] == [(1, 2.0), (2, 4.0)]


def test_a_script_importing_sweep_sets_its_result(storage_url: str, tmp_path: Path) -> None:
    outcome = run_one_trial(runner_for(storage_url, tmp_path, "reports.py"))
    assert (outcome.state, outcome.value) == ("COMPLETE", 50.0)  # sweep.result(x * 100)
    run = TrackingStore(Database(storage_url)).get_run(outcome.run_id)
    assert run.tags["reported"] == "yes" and run.status is RunStatus.FINISHED
    assert len(history(storage_url, outcome.run_id, "aux")) == 10


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting to be reaped does not)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    return [p for p in pids if alive(p)]


def test_no_child_survives_a_prune(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid_file = tmp_path / "pids"
    monkeypatch.setenv("SWEEP_TEST_PIDS", str(pid_file))
    runner = runner_for(
        sqlite_url, tmp_path, "spawns.py", pruner={"name": "threshold", "upper": 0.3}
    )
    assert run_one_trial(runner).state == "PRUNED"
    pids = [int(p) for p in pid_file.read_text().split()]
    assert len(pids) == 2 and wait_gone(pids, timeout=5) == []


def _run_in_worker(url: str, tmp_path: Path, ready: Any) -> None:
    runner = runner_for(url, tmp_path, "spawns.py")
    ready.set()
    run_one_trial(runner)


def test_no_child_survives_its_worker_being_killed(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What an agent's supervisor does on trial_timeout or cancel, and what Ray does to
    an actor it kills: SIGKILL to the process running the trial."""
    pid_file = tmp_path / "pids"
    monkeypatch.setenv("SWEEP_TEST_PIDS", str(pid_file))
    ready = multiprocessing.get_context("spawn").Event()
    worker = multiprocessing.get_context("spawn").Process(
        target=_run_in_worker, args=(sqlite_url, tmp_path, ready)
    )
    worker.start()
    deadline = time.monotonic() + 60
    while not (pid_file.exists() and len(pid_file.read_text().split()) == 2):
        assert time.monotonic() < deadline and worker.is_alive(), "the script never started"
        time.sleep(0.1)
    pids = [int(p) for p in pid_file.read_text().split()]
    assert all(alive(p) for p in pids)
    os.kill(worker.pid, signal.SIGKILL)  # type: ignore[arg-type]
    worker.join()
    # SIGTERM to the group at once, SIGKILL after command_grace_s (1 s).
    assert wait_gone(pids, timeout=10) == []


def test_a_wandb_config_runs_its_program_on_ray_workers(
    sqlite_url: str, tmp_path: Path, local_ray: None
) -> None:
    """sweeps/wandb-sweep.yaml as W&B documents it, its train.py beside it, launched."""
    import shutil

    import yaml

    from sweep.controller import launch
    from sweep.spec import load_spec

    examples = Path(__file__).parents[1] / "sweeps"
    shutil.copy(examples / "train.py", tmp_path / "train.py")
    config = yaml.safe_load((examples / "wandb-sweep.yaml").read_text())
    config["run_cap"] = 6
    (tmp_path / "wandb.yaml").write_text(yaml.safe_dump(config))
    spec = load_spec(tmp_path / "wandb.yaml")
    assert spec.dialect == "wandb" and spec.is_command
    result = launch(spec, storage=sqlite_url)
    assert result.counts.complete + result.counts.pruned == 6 and result.counts.failed == 0
    tracking = TrackingStore(Database(sqlite_url))
    runs = tracking.list_runs(parent_run_id=result.parent_run_id)
    assert len(runs) == 6
    for run in runs:
        assert history(sqlite_url, run.run_id, "val_loss"), run.name
        assert "epoch=1 val_loss=" in artifact_text(sqlite_url, run.run_id, "logs/stdout.txt")
    assert result.best_value is not None and result.best_value < 1.5


def command_spec(tmp_path: Path, pid_file: Path, **keys: Any) -> Path:
    """A command-mode sweep of tests/objectives/scripts/spawns.py, as a YAML file; the
    scripts write their pids to ``pid_file`` (named in the command: Ray's workers do not
    see this process's environment)."""
    import yaml

    spec: dict[str, Any] = {
        "name": "spawning",
        "program": "spawns.py",
        "command": [
            "${env}",
            f"SWEEP_TEST_PIDS={pid_file}",
            "${interpreter}",
            "${program}",
            "${args}",
        ],
        "code_dir": str(SCRIPTS),
        "parameters": {"x": {"type": "uniform", "low": 0.0, "high": 1.0}},
        "metric": {"name": "score", "direction": "maximize"},
        "pruner": "none",
        "budget": {"n_trials": 2},
        "parallelism": 2,
        "command_grace_s": 1,
        **keys,
    }
    path = tmp_path / "spawning.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def started_pids(pid_file: Path, count: int, timeout: float = 120) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pid_file.exists() and len(pid_file.read_text().split()) >= count:
            return [int(p) for p in pid_file.read_text().split()]
        time.sleep(0.2)
    raise AssertionError(f"{count // 2} scripts did not start within {timeout:g} s")


def test_a_hung_script_is_ended_at_its_trial_timeout(
    sqlite_url: str, tmp_path: Path, local_ray: None
) -> None:
    """The controller kills the Ray worker of a trial past trial_timeout: the script's
    whole process group goes with it, and the trial fails without a retry."""
    from sweep.controller import launch
    from sweep.spec import load_spec

    pid_file = tmp_path / "pids"
    spec = load_spec(command_spec(tmp_path, pid_file, trial_timeout=3))
    result = launch(spec, storage=sqlite_url)
    assert (result.counts.failed, result.counts.complete) == (2, 0)
    pids = started_pids(pid_file, 4, timeout=1)
    assert wait_gone(pids, timeout=10) == []
    tracking = TrackingStore(Database(sqlite_url))
    for run in tracking.list_runs(parent_run_id=result.parent_run_id):
        assert "trial_timeout" in run.tags["sweep.error"]


def test_ctrl_c_of_the_controller_ends_every_script(tmp_path: Path) -> None:
    import subprocess

    pid_file = tmp_path / "pids"
    spec = command_spec(tmp_path, pid_file, budget={"n_trials": 4})
    env = {**os.environ, "SWEEP_HOME": str(tmp_path / "h")}
    controller = subprocess.Popen(
        [sys.executable, "-m", "sweep.cli", "launch", str(spec)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        pids = started_pids(pid_file, 4)  # both workers' scripts and their children
        controller.send_signal(signal.SIGINT)
        output, _ = controller.communicate(timeout=120)
    finally:
        if controller.poll() is None:
            os.killpg(controller.pid, signal.SIGKILL)
    assert controller.returncode == 130, output
    assert wait_gone(pids, timeout=15) == []


def test_an_agent_runs_a_scripts_sweep_to_its_budget_with_every_end_written(
    postgres_url: str, tmp_path: Path
) -> None:
    """An agent's workers write each script trial's end with their next claim: when the
    agent returns, every trial is ended in the store, with its run, once each, and the
    agent heard of each trial's end exactly once."""
    import yaml

    from sweep.agent import run_agent
    from sweep.create import create
    from sweep.storage import TrialLeaseRow

    spec = {
        "name": "cmd-by-agents",
        "program": "prints.py",
        "code_dir": str(SCRIPTS),
        "parameters": {"x": {"type": "uniform", "low": 0.0, "high": 1.0}},
        "metric": {"name": "score", "direction": "maximize"},
        "pruner": "none",
        "budget": {"n_trials": 7},
    }
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    created = create(str(tmp_path / "spec.yaml"), storage=postgres_url)
    heard: list[int] = []
    result = run_agent(
        "cmd-by-agents",
        storage=postgres_url,
        gpus=["0", "1"],  # two workers
        on_trial=lambda outcome: heard.append(outcome.number),
    )
    assert result.trials == 7 and sorted(heard) == list(range(7))
    database = Database(postgres_url)
    study = database.optuna_storage()
    study_id = study.get_study_id_from_name("cmd-by-agents")
    trials = study.get_all_trials(study_id)
    assert [t.state.name for t in trials] == ["COMPLETE"] * 7
    assert all(t.value == pytest.approx(t.params["x"] * 5, abs=1e-4) for t in trials)
    runs = TrackingStore(database).list_runs(parent_run_id=created.parent_run_id)
    assert sorted(r.status for r in runs) == [RunStatus.FINISHED] * 7
    with database.session() as session:
        assert session.query(TrialLeaseRow).count() == 0
    database.dispose()
