"""The local executor: a sweep that names no Ray cluster runs on worker processes of
this machine, which honour what Ray's workers honour (trial_timeout, memory_mb, a
worker's death retried by policy). No Ray is started in this module: ``auto`` picks
the local processes."""

from __future__ import annotations

import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from sqlalchemy import select

import sweep
from sweep import executor as executor_module
from sweep.executor import executor_for
from sweep.spec import load_spec, load_spec_from_dict
from sweep.storage import Database
from sweep.storage.schema import WorkerRow
from tests.helpers import sweep_invariants, write_toy_spec
from tests.objectives import toy


def test_a_hung_a_hungry_and_a_dying_trial_fail_alone_on_local_workers(
    postgres_url: str, tmp_path: Path
) -> None:
    assert "ray" not in sys.modules or not sys.modules["ray"].is_initialized()
    n_trials = 8
    spec = write_toy_spec(
        tmp_path,
        name="local-faults",
        objective="toy:hang_hog_or_die",
        parameters={},
        pruner="none",
        budget={"n_trials": n_trials},
        parallelism=2,
        trial_timeout=3,
        resources={"cpu": 1, "memory_mb": 512},
        registry=None,
    )
    assert executor_for(load_spec(spec), None) == "local"
    marker = toy.marker("dies-once", "local-faults")
    marker.unlink(missing_ok=True)
    try:
        result = sweep.launch(spec, storage=postgres_url)
    finally:
        died = marker.exists()
        marker.unlink(missing_ok=True)
    assert died
    # The hung trial is killed and failed, the hog fails with a MemoryError, the dead
    # worker's trial is retried on a fresh worker: the budget is exact.
    assert result.counts.complete == n_trials - 2 and result.counts.failed == 2
    study = optuna.load_study(study_name="local-faults", storage=postgres_url)
    errors = {t.number: t.system_attrs.get("sweep:error", "") for t in study.trials}
    assert "trial_timeout" in errors[1]
    assert "MemoryError" in errors[2] and "512 MiB" in errors[2]
    lost = next(t for t in study.trials if t.number == 4)
    assert lost.state == TrialState.FAIL and lost.system_attrs.get("sweep:superseded")
    assert "worker died during the trial" in errors[4]
    assert sweep_invariants(postgres_url, "local-faults")["counted"] == n_trials
    database = Database(postgres_url)
    with database.session() as session:
        kinds = set(session.scalars(select(WorkerRow.kind)))
    database.dispose()
    # Two workers, a replacement for the hung one and one for the dead one.
    assert kinds == {"controller", "local"}


def test_auto_picks_ray_only_where_ray_is_needed(tmp_path: Path) -> None:
    def executor(ray_address: str | None = None, **more: object) -> str:
        data = {
            "name": "pick",
            "objective": "toy:trivial",
            "metric": {"name": "v", "direction": "minimize"},
            "budget": {"n_trials": 1},
            **more,
        }
        return executor_for(load_spec_from_dict(data), ray_address)

    assert executor() == "local"
    assert executor(ray_address="ray://head:10001") == "ray"
    assert executor(ray={"address": "auto"}) == "ray"
    assert executor(ray={"num_cpus": 2}) == "ray"
    assert executor(resources={"gpu": 1}) == "ray"
    assert executor(executor="ray") == "ray"
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: bad\nobjective: toy:trivial\nmetric: {name: v, direction: minimize}\n"
        "budget: {n_trials: 1}\nresources: {gpu: 1}\nexecutor: local\n"
    )
    with pytest.raises(sweep.SpecError, match="executor local runs no GPU trials") as info:
        load_spec(bad, check_objective=False)
    assert "bad.yaml:6" in str(info.value)


def test_the_fork_server_starts_before_validation_only_where_the_spec_must_run_locally(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `sweep launch` starts it on a first look at the file; where it guessed wrong,
    # workers would get the wrong BLAS threads or a Ray sweep an idle server.
    started: list[str] = []
    monkeypatch.setattr(executor_module, "_start_fork_server", started.append)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    base = (
        "name: pick\nobjective: toy:trivial\nmetric: {name: v, direction: minimize}\n"
        "budget: {n_trials: 1}\n"
    )

    def warmed(more: str = "", ray_address: str | None = None, *overrides: str) -> list[str]:
        started.clear()
        path = tmp_path / "spec.yaml"
        path.write_text(base + more)
        assert executor_module.warm_from_file(str(path), ray_address, overrides) == bool(started)
        if started:  # the validated spec agrees: local, with these threads
            spec = load_spec(path, check_objective=False, overrides=list(overrides))
            assert executor_for(spec, ray_address) == "local"
            assert started == [executor_module.threads_for(spec.resources.cpu)]
        return started

    assert warmed() == ["1"]
    assert warmed("resources: {cpu: 3}\n") == ["3"]
    assert warmed("executor: local\n", None, "budget.n_trials=5") == ["1"]
    assert warmed("", "local") == ["1"]
    assert warmed("executor: ray\n") == []
    assert warmed("ray: {num_cpus: 2}\n") == []
    assert warmed("resources: {gpu: 1}\n") == []
    assert warmed("", "ray://head:10001") == []
    assert warmed("", None, "resources.cpu=4") == []  # overridden: validation decides
    assert warmed("resources: {cpu: ${CPUS}}\n") == []  # interpolated: validation decides
    assert warmed("name: [unclosed\n") == []  # broken: validation says what is wrong
