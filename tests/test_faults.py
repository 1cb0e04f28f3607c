"""Fault injection: the machine, the process, the Ray node or the database dies mid-sweep,
and the sweep still ends with its exact budget, nothing lost, nothing run twice and
nothing left RUNNING. Real processes, real PostgreSQL, real Ray.

Each scenario prints what it measured (trials lost, duplicated, left running, recovery
time); run with ``-s`` to see it:

    python -m pytest tests/test_faults.py -s
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from sqlalchemy import delete, select

import sweep
from sweep.storage import Database
from sweep.storage.schema import TrialLeaseRow, WorkerRow
from sweep.tracking import RunStatus, TrackingStore
from sweep.trial_counts import TrialCounts
from tests.helpers import sweep_invariants, write_toy_spec
from tests.objectives import toy
from tests.test_agents import FAST_LEASE, finished, start, trials, wait_for

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def report(scenario: str, counts: dict[str, int], n_trials: int, recovery_s: list[float]) -> None:
    lost = n_trials - counts["counted"]
    worst = f"{max(recovery_s):.1f} s" if recovery_s else "n/a"
    print(
        f"\n[fault] {scenario}: lost {lost}, duplicated 0, left RUNNING 0, "
        f"retried {counts['retried']}, recovery {worst} "
        f"({', '.join(f'{r:.1f}' for r in recovery_s)})"
    )


def running_ids(url: str, name: str) -> set[int]:
    return {t._trial_id for t in trials(url, name) if t.state == TrialState.RUNNING}


def worker_pids(url: str, kind: str) -> list[int]:
    """The pids of the sweep's workers of ``kind`` that have not stopped."""
    database = Database(url)
    try:
        with database.session() as session:
            return list(
                session.scalars(
                    select(WorkerRow.pid).where(
                        WorkerRow.kind == kind, WorkerRow.stopped_at.is_(None)
                    )
                )
            )
    finally:
        database.dispose()


def under_way(url: str, name: str) -> set[int]:
    """Running trials that have started their work (their params are suggested)."""
    return {t._trial_id for t in trials(url, name) if t.state == TrialState.RUNNING and t.params}


def wait_recovered(url: str, name: str, orphans: set[int], timeout: float) -> float:
    """Seconds until none of ``orphans`` is RUNNING any more."""
    began = time.monotonic()
    wait_for(
        lambda: not (orphans & running_ids(url, name)), timeout, f"recovery of trials {orphans}"
    )
    return time.monotonic() - began


def test_controller_sigkilled_three_times_then_resumed(postgres_url: str, tmp_path: Path) -> None:
    n_trials = 20
    spec = write_toy_spec(
        tmp_path,
        name="crashy",
        executor="ray",  # real Ray: its workers, nodes and leases
        objective="toy:steady",
        pruner="none",
        budget={"n_trials": n_trials},
        parallelism=2,
        lease=FAST_LEASE,
        registry={"model_name": "crashy-model"},
    )
    seed = int(os.environ.get("SWEEP_FAULT_SEED", random.randrange(1000)))
    rng = random.Random(seed)
    print(f"\n[fault] kill points drawn with seed {seed}")
    recovery: list[float] = []
    # Trials of about 2 s, so that kills land mid-trial.
    proc = start("launch", str(spec), "--storage", postgres_url, cwd=tmp_path, step_s=0.4)
    for _ in range(3):
        target = finished(postgres_url, "crashy") + rng.randint(1, 4)
        wait_for(lambda t=target: finished(postgres_url, "crashy") >= t, 180, f"{target} trials")
        # Kill inside a trial: wait (past a resumed controller's start-up) until one runs.
        wait_for(lambda: bool(under_way(postgres_url, "crashy")), 180, "a trial under way")
        time.sleep(rng.uniform(0.0, 0.5))
        orphans = running_ids(postgres_url, "crashy")
        assert orphans
        # The machine dies: the controller, the local Ray it started and the Ray
        # workers running the trials (Ray starts them in sessions of their own), at once.
        for pid in worker_pids(postgres_url, "ray"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        proc = start("resume", "crashy", "--storage", postgres_url, cwd=tmp_path, step_s=0.4)
        recovery.append(wait_recovered(postgres_url, "crashy", orphans, 120))
    assert proc.wait(timeout=300) == 0
    counts = sweep_invariants(postgres_url, "crashy")
    assert counts["counted"] == n_trials and counts["retried"] >= 1
    # The killed controllers' trials were retried, with the same params.
    study = optuna.load_study(study_name="crashy", storage=postgres_url)
    by_number = {t.number: t for t in study.trials}
    for t in study.trials:
        if "sweep:retry_of" in t.system_attrs:
            original = by_number[int(t.system_attrs["sweep:retry_of"])]
            assert "lease expired" in original.system_attrs["sweep:error"]
            assert t.system_attrs["fixed_params"] == original.params
            if t.state == TrialState.COMPLETE and original.params:
                assert t.params == original.params
    assert sweep.load_model("models:/crashy-model@challenger", storage=postgres_url)
    report("controller SIGKILL x3 + resume", counts, n_trials, recovery)


def leased_trial_of(url: str, agent: subprocess.Popen[str]) -> tuple[int, int] | None:
    """The trial a worker of ``agent`` (a process group) holds the lease of, and that
    worker's pid."""
    database = Database(url)
    try:
        with database.session() as session:
            rows = session.execute(
                select(TrialLeaseRow.trial_id, WorkerRow.pid).join(
                    WorkerRow, WorkerRow.worker_id == TrialLeaseRow.worker_id
                )
            ).all()
    finally:
        database.dispose()
    for trial_id, pid in rows:
        try:
            if os.getpgid(pid) == agent.pid:
                return int(trial_id), int(pid)
        except ProcessLookupError:
            continue
    return None


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` in the process tree (read from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier}
        found |= frontier
    return found


def alive(pids: set[int]) -> set[int]:
    """Those of ``pids`` still running (zombies count as gone)."""
    running = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                running.add(pid)
    return running


def kill_an_agent_mid_trial(
    url: str,
    tmp_path: Path,
    spec: Path,
    name: str,
    n_trials: int,
    step_s: float,
    script: str | None = None,
) -> tuple[set[int], set[int], set[int]]:
    """Run ``spec`` with a controller (one worker) and two agents, SIGKILL one agent's
    whole process group while it is mid-trial (with ``script``, once the worker runs
    that script), wait until its trial is recovered and the sweep ends. Returns the
    processes running ``script`` that the killed worker had started, those of them
    still alive a moment after the kill, and every process it had started that is still
    alive once the trial is recovered (past the command's grace period)."""
    controller = start("launch", str(spec), "--storage", url, cwd=tmp_path, step_s=step_s)
    wait_for(lambda: len(trials(url, name)) >= 1, 120, "the sweep to start")
    victim = start("agent", name, "--storage", url, cwd=tmp_path, step_s=step_s)
    survivor = start("agent", name, "--storage", url, cwd=tmp_path, step_s=step_s)

    def victim_mid_trial() -> bool:
        held = leased_trial_of(url, victim)
        return held is not None and any(
            t._trial_id == held[0] and t.params for t in trials(url, name)
        )

    wait_for(victim_mid_trial, 120, "a trial under way on the victim agent")
    held = leased_trial_of(url, victim)
    assert held is not None
    orphan, worker_pid = held

    def running_script() -> bool:
        return script is None or any(
            script in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
            for pid in alive(descendants(worker_pid))
        )

    wait_for(running_script, 60, f"the victim's worker to run {script}")
    started = descendants(worker_pid)
    scripts = {
        pid
        for pid in alive(started)
        if script and script in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
    }
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait(timeout=30)
    time.sleep(2 * step_s)
    scripts_running = alive(scripts)
    recovered = wait_recovered(url, name, {orphan}, 60)
    # The group shell and its watcher end the group, then wait out the grace period.
    leftovers = alive(started)
    # Failed within the lease timeout (plus one recovery pass), then retried.
    assert recovered <= FAST_LEASE["timeout"] + 2 * FAST_LEASE["heartbeat_interval"] + 3
    assert survivor.wait(timeout=300) == 0
    assert controller.wait(timeout=300) == 0
    counts = sweep_invariants(url, name)
    assert counts["counted"] == n_trials
    study = optuna.load_study(study_name=name, storage=url)
    lost = next(t for t in study.trials if t._trial_id == orphan)
    assert lost.state == TrialState.FAIL and lost.system_attrs.get("sweep:superseded")
    retry = next(t for t in study.trials if t.system_attrs.get("sweep:retry_of") == lost.number)
    assert retry.state == TrialState.COMPLETE and retry.params == lost.params
    report(f"agent SIGKILL mid-trial ({name})", counts, n_trials, [recovered])
    return scripts, scripts_running, leftovers


def test_agent_sigkilled_mid_trial_is_retried_by_the_other(
    postgres_url: str, tmp_path: Path
) -> None:
    spec = write_toy_spec(
        tmp_path,
        name="agents",
        executor="ray",  # the controller's worker on Ray (the command-mode case runs local)
        objective="toy:steady",
        pruner="none",
        budget={"n_trials": 16},
        parallelism=1,
        lease=FAST_LEASE,
        registry=None,
    )
    kill_an_agent_mid_trial(postgres_url, tmp_path, spec, "agents", 16, step_s=0.3)


def test_agent_sigkilled_mid_command_trial_ends_its_script_and_is_retried(
    postgres_url: str, tmp_path: Path
) -> None:
    """Command mode: the script of the killed agent's trial does not run on (its 8 steps
    take 4 s; it is gone within a second of the kill), and the trial is recovered from
    its lease and retried with the same params by the other agent."""
    import yaml

    spec = tmp_path / "scripts.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "name": "scripts",
                "program": "slow_steps.py",
                "code_dir": str(Path(toy.__file__).parent / "scripts"),
                "parameters": {"x": {"type": "uniform", "low": 0.0, "high": 1.0}},
                "metric": {"name": "score", "direction": "maximize"},
                "pruner": "none",
                "budget": {"n_trials": 6},
                "parallelism": 1,
                "lease": FAST_LEASE,
                "command_grace_s": 1,
            }
        )
    )
    scripts, scripts_running, leftovers = kill_an_agent_mid_trial(
        postgres_url, tmp_path, spec, "scripts", 6, step_s=0.5, script="slow_steps.py"
    )
    assert scripts and scripts_running == set() and leftovers == set()


class RayNodes:
    """A Ray cluster of separate node processes on this machine, as `ray start` makes
    them: a head that runs no trials, and worker nodes that can be killed one by one."""

    def __init__(self, temp_dir: str) -> None:
        from tests.test_ray_cluster import free_port

        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.temp_dir = temp_dir
        self.ray = str(Path(sys.executable).parent / "ray")
        self.nodes: list[subprocess.Popen[bytes]] = []
        self._logs = 0
        # The cluster's token, in $HOME/.ray/auth_token, as an operator makes it.
        subprocess.run([self.ray, "get-auth-token", "--generate"], check=True, capture_output=True)
        self.head = self._start(
            "--head", f"--port={self.port}", "--num-cpus=0", f"--temp-dir={temp_dir}"
        )
        wait_for(self._head_up, 60, "the Ray head")

    def _head_up(self) -> bool:
        import socket

        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", self.port)) == 0

    def _start(self, *args: str) -> subprocess.Popen[bytes]:
        from tests.test_ray_cluster import free_port

        # Every node of this machine needs ports of its own: Ray's defaults (52365 for
        # the dashboard agent, ...) are taken by the first Ray here (the tests' own).
        ports = [
            f"--{name}={free_port()}"
            for name in (
                "dashboard-agent-listen-port",
                "dashboard-agent-grpc-port",
                "metrics-export-port",
                "runtime-env-agent-port",
                "node-manager-port",
                "object-manager-port",
            )
        ]
        self._logs += 1
        log = open(Path(self.temp_dir) / f"node-{self._logs}.log", "wb")  # noqa: SIM115
        return subprocess.Popen(
            [self.ray, "start", *args, *ports, "--block", "--disable-usage-stats"]
            + (["--include-dashboard=false"] if "--head" in args else []),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # The head requires the token under $HOME (the fixture's own); the nodes
            # present it, and so does `sweep launch`, which finds it without
            # RAY_AUTH_MODE. Trials on the nodes take their step time from the
            # environment: 5 steps of 0.4 s, so that a node killed mid-trial kills a trial.
            env={**os.environ, "RAY_AUTH_MODE": "token", "SWEEP_TEST_STEP_S": "0.4"},
        )

    def add_worker_node(self, *, wait_for_cpus: int | None = None) -> subprocess.Popen[bytes]:
        """Start a one-CPU worker node; with ``wait_for_cpus``, block until the cluster
        has that many CPUs, starting the node again once if it did not join (a busy
        machine can make a raylet miss Ray's start-up deadline)."""
        for _attempt in range(2):
            node = self._start(f"--address={self.address}", "--num-cpus=1")
            self.nodes.append(node)
            if wait_for_cpus is None or self._cpus_reach(wait_for_cpus):
                return node
            self.kill(node)
            self.nodes.remove(node)
        logs = "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}"
            for path in sorted(Path(self.temp_dir).glob("node-*.log"))
        )
        raise AssertionError(f"a Ray worker node did not join, twice:\n{logs}")

    def _cpus_reach(self, count: int) -> bool:
        probe = (
            "import ray, sys, time\n"
            "from sweep.worker import _use_cluster_token\n"
            "_use_cluster_token()\n"
            f"ray.init(address={self.address!r}, logging_level='ERROR')\n"
            "deadline = time.monotonic() + 60\n"
            f"while ray.cluster_resources().get('CPU', 0) < {count}:\n"
            "    if time.monotonic() > deadline: sys.exit(1)\n"
            "    time.sleep(0.5)\n"
        )
        return subprocess.run([sys.executable, "-c", probe], timeout=120).returncode == 0

    def kill(self, node: subprocess.Popen[bytes]) -> None:
        os.killpg(node.pid, signal.SIGKILL)
        node.wait(timeout=30)

    def shutdown(self) -> None:
        for process in [*self.nodes, self.head]:
            if process.poll() is None:
                self.kill(process)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


@pytest.fixture
def ray_nodes(monkeypatch: pytest.MonkeyPatch) -> Iterator[RayNodes]:
    # Ray's socket paths live under the temp dir and must stay short (107 bytes).
    temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    # A home of its own, so the cluster's token (~/.ray/auth_token) is made here and
    # found by `sweep launch` without RAY_AUTH_MODE, whatever this machine's home holds.
    monkeypatch.setenv("HOME", temp_dir)
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    cluster = RayNodes(temp_dir)
    try:
        cluster.add_worker_node(wait_for_cpus=1)
        cluster.add_worker_node(wait_for_cpus=2)
        yield cluster
    finally:
        cluster.shutdown()


def test_ray_worker_node_dying_mid_trial_is_retried_elsewhere(
    postgres_url: str, tmp_path: Path, ray_nodes: RayNodes
) -> None:
    n_trials = 12
    spec = write_toy_spec(
        tmp_path,
        name="nodes",
        executor="ray",  # real Ray: its workers, nodes and leases
        objective="toy:steady",
        pruner="none",
        budget={"n_trials": n_trials},
        parallelism=2,
        lease=FAST_LEASE,
        registry=None,
    )
    controller = start(
        "launch",
        str(spec),
        "--storage",
        postgres_url,
        "--ray-address",
        ray_nodes.address,
        cwd=tmp_path,
        step_s=0.4,
    )
    wait_for(lambda: len(under_way(postgres_url, "nodes")) == 2, 180, "two trials under way")
    orphans = under_way(postgres_url, "nodes")
    ray_nodes.kill(ray_nodes.nodes[-1])
    ray_nodes.add_worker_node()  # the replacement worker needs a place to run
    recovered = wait_recovered(postgres_url, "nodes", orphans, 120)
    assert controller.wait(timeout=300) == 0, controller.log_path.read_text()  # type: ignore[attr-defined]
    counts = sweep_invariants(postgres_url, "nodes")
    assert counts["counted"] == n_trials and counts["retried"] >= 1
    errors = [
        t.system_attrs["sweep:error"]
        for t in optuna.load_study(study_name="nodes", storage=postgres_url).trials
        if t.system_attrs.get("sweep:superseded")
    ]
    assert any("worker died" in e or "lease expired" in e for e in errors), errors
    report("Ray worker node killed mid-trial", counts, n_trials, [recovered])


def _postgres_restart_command() -> list[str]:
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    tool = shutil.which("pg_ctlcluster")
    if not versions or tool is None:
        message = "this test restarts the local PostgreSQL with pg_ctlcluster, which is missing"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return [tool, "--skip-systemctl-redirect", versions[-1], "main", "restart"]


def test_postgres_restarting_mid_sweep_loses_nothing(postgres_url: str, tmp_path: Path) -> None:
    restart = _postgres_restart_command()
    n_trials = 16
    spec = write_toy_spec(
        tmp_path,
        name="pgdown",
        executor="ray",  # real Ray: its workers, nodes and leases
        objective="toy:steady",
        pruner="none",
        budget={"n_trials": n_trials},
        parallelism=2,
        # Longer than the outage: a restart must not look like dead workers.
        lease={"heartbeat_interval": 1, "timeout": 20},
        registry={"model_name": "pgdown-model"},
    )
    controller = start("launch", str(spec), "--storage", postgres_url, cwd=tmp_path, step_s=0.2)
    wait_for(lambda: finished(postgres_url, "pgdown") >= 4, 180, "four trials")
    began = time.monotonic()
    subprocess.run(restart, check=True, capture_output=True, timeout=120)
    outage = time.monotonic() - began
    assert controller.wait(timeout=300) == 0, Path(controller.log_path).read_text()  # type: ignore[attr-defined]
    counts = sweep_invariants(postgres_url, "pgdown")
    assert counts["counted"] == n_trials and counts["retried"] == 0
    study = optuna.load_study(study_name="pgdown", storage=postgres_url)
    assert len([t for t in study.trials if t.state == TrialState.COMPLETE]) == n_trials
    report("PostgreSQL restart mid-sweep", counts, n_trials, [outage])


def test_a_hung_and_a_memory_hungry_trial_fail_alone(
    postgres_url: str, tmp_path: Path, local_ray: None
) -> None:
    n_trials = 8
    spec = write_toy_spec(
        tmp_path,
        name="hogs",
        objective="toy:hang_or_hog",
        parameters={},
        pruner="none",
        budget={"n_trials": n_trials},
        parallelism=2,
        trial_timeout=6,
        resources={"cpu": 1, "memory_mb": 512},
        registry=None,
    )
    result = sweep.launch(spec, storage=postgres_url)
    assert result.counts.complete == n_trials - 2 and result.counts.failed == 2
    study = optuna.load_study(study_name="hogs", storage=postgres_url)
    errors = {t.number: t.system_attrs.get("sweep:error", "") for t in study.trials}
    assert "trial_timeout" in errors[1]
    assert "MemoryError" in errors[2] and "512 MiB" in errors[2]
    counts = sweep_invariants(postgres_url, "hogs")
    assert counts["counted"] == n_trials
    report("hung trial + memory hog", counts, n_trials, [])


def test_a_worker_dying_among_quick_trials_loses_only_its_own(
    postgres_url: str, tmp_path: Path, local_ray: None
) -> None:
    # Quick trials are sent a few at a time: the worker that dies runs one and holds
    # the next ones in its queue (and a result it just sent may die with it). Each of
    # these is retried; the trials claimed for it and not sent end as killed (no
    # budget); the budget is still met exactly.
    name = f"quick-deaths-{uuid.uuid4().hex[:8]}"
    n_trials = 40
    spec = write_toy_spec(
        tmp_path,
        name=name,
        objective="toy:dies_once",
        parameters={},
        pruner="none",
        budget={"n_trials": n_trials},
        parallelism=2,
        registry=None,
    )
    marker = toy.marker("dies-once", name)
    try:
        result = sweep.launch(spec, storage=postgres_url)
    finally:
        died = marker.exists()
        marker.unlink(missing_ok=True)
    assert died
    assert result.counts.complete == n_trials and result.counts.failed == 0
    counts = sweep_invariants(postgres_url, name)
    assert counts["counted"] == n_trials and counts["retried"] >= 1
    study = optuna.load_study(study_name=name, storage=postgres_url)
    lost = next(t for t in study.trials if t.number == 6)
    assert lost.state == TrialState.FAIL and lost.system_attrs.get("sweep:superseded")
    for trial in study.trials:
        if trial.system_attrs.get("sweep:superseded"):
            assert "worker died during the trial" in trial.system_attrs["sweep:error"]
            retry = next(
                t for t in study.trials if t.system_attrs.get("sweep:retry_of") == trial.number
            )
            # Retried with fresh params: a trial that reports nothing writes its
            # params with its end, which died with the worker.
            assert retry.state == TrialState.COMPLETE
        elif trial.system_attrs.get("sweep:killed"):
            assert "not started: its worker was replaced" in trial.system_attrs["sweep:error"]
    report("Ray worker dying among quick trials", counts, n_trials, [])


def test_a_trial_recovered_while_its_attempt_ran_is_counted_as_recovered(
    postgres_url: str, tmp_path: Path, local_ray: None
) -> None:
    # Trial 0's lease vanishes while it runs (as when its heartbeats stop reaching the
    # database): the controller's recovery fails it and queues a retry. Then the
    # attempt comes back. Its result is discarded, and the live counts (what the
    # progress line shows) say what the database says: a retried trial, not an extra
    # complete one.
    name = f"held-{uuid.uuid4().hex[:8]}"
    n_trials = 4
    spec = write_toy_spec(
        tmp_path,
        name=name,
        objective="toy:held_first",
        parameters={},
        pruner="none",
        budget={"n_trials": n_trials},
        parallelism=2,
        lease=FAST_LEASE,
        registry=None,
    )
    marker = toy.marker("release", name)
    live: list[TrialCounts] = []

    def trial_zero() -> optuna.trial.FrozenTrial | None:
        return next((t for t in trials(postgres_url, name) if t.number == 0), None)

    def state_of_zero() -> TrialState | None:
        zero = trial_zero()
        return None if zero is None else zero.state

    def interfere() -> None:
        try:
            wait_for(lambda: state_of_zero() == TrialState.RUNNING, 120, "trial 0 to run")
            zero = trial_zero()
            assert zero is not None
            database = Database(postgres_url)
            with database.session() as session:
                session.execute(
                    delete(TrialLeaseRow).where(TrialLeaseRow.trial_id == zero._trial_id)
                )
            database.dispose()
            wait_for(lambda: state_of_zero() == TrialState.FAIL, 30, "trial 0 to be recovered")
        finally:
            marker.touch()  # trial 0's attempt returns

    helper = threading.Thread(target=interfere, daemon=True)
    helper.start()
    try:
        result = sweep.launch(spec, storage=postgres_url, on_trial=lambda _o, c: live.append(c))
    finally:
        helper.join(timeout=60)
        marker.unlink(missing_ok=True)
    zero = trial_zero()
    assert zero is not None and zero.state == TrialState.FAIL
    assert zero.system_attrs.get("sweep:superseded")
    counts = sweep_invariants(postgres_url, name)
    assert counts["counted"] == n_trials and counts["retried"] == 1
    assert result.counts.complete == n_trials and result.counts.retried == 1
    assert live[-1].complete == n_trials and live[-1].retried == 1
    # Its run was ended by the recovery, saying why; the attempt's end left it so.
    database = Database(postgres_url)
    run = TrackingStore(database).get_run(zero.system_attrs["sweep:run_id"])
    database.dispose()
    assert run.status is RunStatus.FAILED and run.end_time is not None
    assert run.tags["sweep.error"].startswith("lost")
