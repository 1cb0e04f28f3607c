"""Agents joining a running sweep, and sweep control (status, pause, resume, stop,
cancel): real `sweep` processes against a real store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import optuna
from optuna.trial import TrialState

from sweep.storage import Database
from sweep.tracking import RunStatus, TrackingStore
from tests.helpers import sweep_invariants, write_toy_spec

SWEEP = [sys.executable, "-m", "sweep.cli"]
FAST_LEASE = {"heartbeat_interval": 0.5, "timeout": 3}


def start(*args: str, cwd: Path, step_s: float = 0.1) -> subprocess.Popen[str]:
    """A `sweep` command in its own process group, output to a log file beside it."""
    log_path = cwd / f"{args[0]}-{time.monotonic_ns()}.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [*SWEEP, *args],
            cwd=cwd,
            env={**os.environ, "SWEEP_TEST_STEP_S": str(step_s)},
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    proc.log_path = log_path  # type: ignore[attr-defined]
    return proc


def output_of(proc: subprocess.Popen[str]) -> str:
    return proc.log_path.read_text()  # type: ignore[attr-defined]


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SWEEP, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def trials(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    # Through our Database: it opens Optuna's storage while a launch creates its tables.
    database = Database(url)
    storage = database.optuna_storage()
    try:
        return optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
    except KeyError:
        return []  # not created yet
    finally:
        storage.engine.dispose()
        database.dispose()


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def finished(url: str, name: str) -> int:
    return sum(t.state.is_finished() for t in trials(url, name))


def status_json(url: str, name: str, cwd: Path) -> dict:
    result = cli("status", name, "--storage", url, "--json", cwd=cwd)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)[0]


def test_a_controller_and_two_agents_share_an_exact_budget(
    postgres_url: str, tmp_path: Path
) -> None:
    spec = write_toy_spec(
        tmp_path,
        name="shared",
        objective="toy:steady",
        pruner="none",
        budget={"n_trials": 40},
        parallelism=1,
        lease=FAST_LEASE,
        registry={"model_name": "shared-model"},
    )
    controller = start("launch", str(spec), "--storage", postgres_url, cwd=tmp_path)
    wait_for(lambda: finished(postgres_url, "shared") >= 1, 120, "the controller's first trial")
    # One agent with two GPUs (two workers, pinned), one without GPUs for 3 trials.
    gpu_agent = start("agent", "shared", "--storage", postgres_url, "--gpus", "0,1", cwd=tmp_path)
    cpu_agent = start("agent", "shared", "--storage", postgres_url, "--count", "3", cwd=tmp_path)

    def four_workers_beat() -> bool:
        alive = [w for w in status_json(postgres_url, "shared", tmp_path)["workers"] if w["alive"]]
        return sum(w["kind"] == "agent" for w in alive) >= 2 and any(
            w["kind"] == "controller" for w in alive
        )

    wait_for(four_workers_beat, 120, "the agents' workers to show in sweep status")
    assert cpu_agent.wait(timeout=300) == 0
    assert gpu_agent.wait(timeout=300) == 0
    assert controller.wait(timeout=300) == 0

    counts = sweep_invariants(postgres_url, "shared")
    assert counts["counted"] == 40 and counts["retried"] == 0
    all_trials = trials(postgres_url, "shared")
    assert len(all_trials) == 40
    assert "3 trials" in output_of(cpu_agent)
    database = Database(postgres_url)
    runs = TrackingStore(database).list_runs()
    database.dispose()
    devices = {r.tags.get("devices") for r in runs if r.parent_run_id}
    # The controller's workers and the CPU agent see no GPU; the GPU agent's workers one
    # GPU each.
    assert {"0", "1"} <= devices <= {"0", "1", "unset"}
    status = status_json(postgres_url, "shared", tmp_path)
    assert status["state"] == "FINISHED" and status["counts"]["complete"] == 40
    assert not [w for w in status["workers"] if w["alive"]]
    assert "models:/shared-model/1 @challenger" in output_of(controller)


def test_pause_resume_stop_and_cancel_reach_the_controller(tmp_path: Path) -> None:
    """On the embedded SQLite store: the claim lock is a file lock there."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    spec = write_toy_spec(
        tmp_path,
        name="ctl",
        objective="toy:steady",
        pruner="none",
        # About 10 trials are counted before the last resume: 20 leaves the stop phase
        # room to spare, and the last resume a short run to the budget.
        budget={"n_trials": 20},
        parallelism=2,
        lease=FAST_LEASE,
        registry={"model_name": "ctl-model"},
    )
    # Trials of 2 s: the pause and the cancel land while trials run.
    controller = start("launch", str(spec), "--storage", url, cwd=tmp_path, step_s=0.4)
    wait_for(lambda: finished(url, "ctl") >= 2, 120, "two trials")

    assert cli("pause", "ctl", "--storage", url, cwd=tmp_path).returncode == 0
    # Running trials finish; no new one starts while paused.
    wait_for(
        lambda: not [t for t in trials(url, "ctl") if t.state == TrialState.RUNNING],
        30,
        "running trials to finish after pause",
    )
    started = len(trials(url, "ctl"))
    # The controller reads the sweep's state every heartbeat (0.5 s): three of them.
    time.sleep(1.5)
    assert len(trials(url, "ctl")) == started
    assert status_json(url, "ctl", tmp_path)["state"] == "PAUSED"

    resumed = cli("resume", "ctl", "--storage", url, cwd=tmp_path)
    assert resumed.returncode == 0 and "claims trials again" in resumed.stdout
    wait_for(lambda: len(trials(url, "ctl")) > started, 30, "trials after resume")

    # Cancel kills the running trials: their runs end KILLED, they use no budget.
    wait_for(
        lambda: any(t.state == TrialState.RUNNING for t in trials(url, "ctl")),
        30,
        "a running trial",
    )
    assert cli("cancel", "ctl", "--storage", url, cwd=tmp_path).returncode == 0
    assert controller.wait(timeout=60) == 0
    assert "cancelled" in output_of(controller)
    after_cancel = trials(url, "ctl")
    killed = [t for t in after_cancel if t.system_attrs.get("sweep:killed")]
    assert killed and all(t.state == TrialState.FAIL for t in killed)
    database = Database(url)
    killed_runs = TrackingStore(database).list_runs(statuses=[RunStatus.KILLED])
    database.dispose()
    assert {r.run_id for r in killed_runs} >= {t.system_attrs["sweep:run_id"] for t in killed}

    # With no controller left, resume becomes the controller; stop lets trials finish.
    controller = start("resume", "ctl", "--storage", url, cwd=tmp_path, step_s=0.2)
    done_before = finished(url, "ctl")
    wait_for(lambda: finished(url, "ctl") >= done_before + 2, 120, "trials after resume")
    assert cli("stop", "ctl", "--storage", url, cwd=tmp_path).returncode == 0
    assert controller.wait(timeout=60) == 0
    stopped = trials(url, "ctl")
    assert not [t for t in stopped if t.state == TrialState.RUNNING]
    # Trials running at the stop were allowed to finish, not killed.
    assert len([t for t in stopped if t.system_attrs.get("sweep:killed")]) == len(killed)
    assert "stopped" in output_of(controller)
    assert status_json(url, "ctl", tmp_path)["state"] == "STOPPED"

    final = cli("resume", "ctl", "--storage", url, cwd=tmp_path)
    assert final.returncode == 0, final.stdout + final.stderr
    counts = sweep_invariants(url, "ctl")
    assert counts["counted"] == 20 and counts["killed"] == len(killed)
    assert status_json(url, "ctl", tmp_path)["state"] == "FINISHED"


def test_agent_for_an_unknown_sweep_says_what_to_do(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    result = cli("agent", "nope", "--storage", url, cwd=tmp_path)
    assert result.returncode == 6
    assert "no sweep called 'nope'" in result.stderr and "sweep launch" in result.stderr
    bad = cli("agent", "nope", "--storage", url, "--gpus", "0,,1", cwd=tmp_path)
    assert bad.returncode == 5 and "--gpus" in bad.stderr


def test_ctrl_c_on_an_agent_kills_its_trial_and_leaves_nothing_running(
    postgres_url: str, tmp_path: Path
) -> None:
    spec = write_toy_spec(
        tmp_path,
        name="agent-int",
        objective="toy:steady",
        pruner="none",
        budget={"n_trials": 4},
        parallelism=1,
        lease=FAST_LEASE,
        registry=None,
    )
    # The controller's trials take 5 s: its sweep (15 s before it claims its last trial)
    # outlasts the agent's start on a busy machine (a spawned worker imports
    # everything; here the agent held a trial 3 s after the sweep began), so the agent
    # gets a trial to run.
    controller = start("launch", str(spec), "--storage", postgres_url, cwd=tmp_path, step_s=1.0)
    wait_for(lambda: len(trials(postgres_url, "agent-int")) >= 1, 120, "the sweep to start")
    agent = start("agent", "agent-int", "--storage", postgres_url, cwd=tmp_path, step_s=0.4)

    def agent_running() -> bool:
        workers = status_json(postgres_url, "agent-int", tmp_path)["workers"]
        return any(w["kind"] == "agent" and w["alive"] for w in workers) and (
            sum(t.state == TrialState.RUNNING for t in trials(postgres_url, "agent-int")) >= 2
        )

    wait_for(agent_running, 120, "the agent's trial")
    os.killpg(agent.pid, signal.SIGINT)
    assert agent.wait(timeout=60) == 130
    assert controller.wait(timeout=300) == 0
    counts = sweep_invariants(postgres_url, "agent-int")
    assert counts["counted"] == 4 and counts["killed"] == 1


def test_two_launches_of_one_spec_at_once_share_the_budget(
    postgres_url: str, tmp_path: Path
) -> None:
    spec = write_toy_spec(
        tmp_path,
        name="twice",
        objective="toy:steady",
        pruner="none",
        budget={"n_trials": 12},
        parallelism=1,
        lease=FAST_LEASE,
        registry={"model_name": "twice-model"},
    )
    first = start("launch", str(spec), "--storage", postgres_url, cwd=tmp_path)
    second = start("launch", str(spec), "--storage", postgres_url, cwd=tmp_path)
    assert first.wait(timeout=300) == 0, output_of(first)
    assert second.wait(timeout=300) == 0, output_of(second)
    counts = sweep_invariants(postgres_url, "twice")
    assert counts["counted"] == 12 and len(trials(postgres_url, "twice")) == 12
    # Both launches logged under the sweep's one parent run.
    database = Database(postgres_url)
    parents = [r for r in TrackingStore(database).list_runs() if r.parent_run_id is None]
    database.dispose()
    assert [p.status for p in parents if p.name == "twice"].count(RunStatus.FINISHED) == 1
