"""Budgets and overrides from the command line (`--n-trials`, `--set`, `--dry-run`), and a
sweep created before its workers (`sweep create`, then agents, then `sweep launch`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner, Result

from sweep.cli import cli
from sweep.errors import SpecError
from sweep.spec import load_spec
from sweep.storage import Database
from sweep.study import get_sweep_record
from sweep.tracking import RunStatus, TrackingStore
from tests.helpers import sweep_invariants, write_toy_spec

SWEEP = [sys.executable, "-m", "sweep.cli"]


def in_process(*args: str) -> Result:
    """A `sweep` command run in this process (for those that start no trial)."""
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SWEEP, *args],
        cwd=cwd,
        env={**os.environ, "SWEEP_TEST_STEP_S": "0.01"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_set_overrides_are_typed_validated_and_name_the_override(tmp_path: Path) -> None:
    spec_path = write_toy_spec(tmp_path, sampler="tpe")
    spec = load_spec(
        spec_path,
        check_objective=False,
        overrides=["sampler.seed=3", "resources.gpu=1", "budget.n_trials=200", "tags.team=ml"],
    )
    # `sampler: tpe` (a bare name) takes the option; values are read as YAML.
    assert spec.sampler.name == "tpe" and spec.sampler.seed == 3
    assert spec.resources.gpu == 1.0 and spec.budget.n_trials == 200
    assert spec.tags == {"team": "ml"}
    assert spec.overrides == (
        "sampler.seed=3",
        "resources.gpu=1",
        "budget.n_trials=200",
        "tags.team=ml",
    )

    def error(*overrides: str) -> str:
        with pytest.raises(SpecError) as caught:
            load_spec(spec_path, check_objective=False, overrides=overrides)
        return str(caught.value)

    assert error("sampler.seed=abc").startswith("--set sampler.seed=abc: sampler.seed: ")
    assert error("resources.gpu=-1").startswith("--set resources.gpu=-1: resources.gpu: ")
    assert "did you mean 'parallelism'" in error("paralelism=2")
    assert error("budget").startswith("--set budget: expected KEY.PATH=VALUE")
    assert "metric.name" in error("metric.name.x=1")
    # A problem of the file itself still names its line.
    bad = tmp_path / "bad.yaml"
    bad.write_text(spec_path.read_text().replace("parallelism: 2", "parallelism: 0"))
    assert error_of(bad, "sampler.seed=3").startswith(f"{bad}:")

    # The CLI: a non-zero exit and the override named.
    result = in_process("validate", str(spec_path), "--set", "budget.n_trials=zero")
    assert result.exit_code == 2
    assert "--set budget.n_trials=zero: budget.n_trials:" in result.stderr


def error_of(path: Path, *overrides: str) -> str:
    with pytest.raises(SpecError) as caught:
        load_spec(path, check_objective=False, overrides=overrides)
    return str(caught.value)


def test_dry_run_prints_the_resolved_spec_and_first_params_and_writes_nothing(
    tmp_path: Path,
) -> None:
    spec_path = write_toy_spec(tmp_path, name="dry")
    store = tmp_path / "store.db"
    args = ["launch", str(spec_path), "--storage", f"sqlite:///{store}", "--dry-run"]
    result = in_process(*args, "--n-trials", "5", "--set", "sampler.seed=7")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "seed: 7" in out and "n_trials: 5" in out
    samples = [line for line in out.splitlines() if line.startswith("#   trial ")]
    assert len(samples) == 3
    xs = [float(line.split("x=")[1]) for line in samples]
    assert all(0.0 <= x <= 1.0 for x in xs) and len(set(xs)) == 3
    assert "nothing was written" in out
    assert not store.exists()
    # Seeded: the same draws again.
    again = in_process(*args, "--n-trials", "5", "--set", "sampler.seed=7")
    assert again.stdout == out
    assert not store.exists()
    # Enqueued configs come first; several objectives sample as well.
    enqueued = in_process(*args, "--set", "enqueue=[{x: 0.25}]")
    assert enqueued.exit_code == 0, enqueued.output
    first = next(line for line in enqueued.stdout.splitlines() if line.startswith("#   trial "))
    assert first.endswith("x=0.25")
    two = ["--set", "metric=[{name: a, direction: maximize}, {name: b, direction: minimize}]"]
    multi = in_process(*args, *two, "--set", "pruner=none", "--set", "registry=null")
    assert multi.exit_code == 0, multi.output
    assert len([line for line in multi.stdout.splitlines() if line.startswith("#   trial ")]) == 3
    assert not store.exists()


def test_create_then_agents_alone_then_launch_continue_one_sweep(
    postgres_url: str, tmp_path: Path
) -> None:
    spec_path = write_toy_spec(
        tmp_path,
        name="made-first",
        objective="toy:steady",
        pruner="none",
        budget={"n_trials": 3},
        parallelism=1,
        lease={"heartbeat_interval": 0.5, "timeout": 3},
        registry={"model_name": "made-first-model", "required": True},
    )
    created = run_cli("create", str(spec_path), "--storage", postgres_url, cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip() == "made-first"  # the name alone, for scripts
    assert "sweep agent made-first" in created.stderr
    again = in_process("create", str(spec_path), "--storage", postgres_url)
    assert again.exit_code == 0 and "already exists" in again.stderr
    assert again.stdout.strip() == "made-first"

    # Agents alone, no controller: one stops after its --count, the next runs the rest
    # of the budget and ends by itself.
    one = run_cli("agent", "made-first", "--storage", postgres_url, "--count", "1", cwd=tmp_path)
    assert one.returncode == 0 and "1 trials" in one.stdout, one.stdout + one.stderr
    rest = run_cli("agent", "made-first", "--storage", postgres_url, cwd=tmp_path)
    assert rest.returncode == 0 and "2 trials" in rest.stdout, rest.stdout + rest.stderr
    assert sweep_invariants(postgres_url, "made-first")["counted"] == 3
    # Agents seed their samplers apart: the seeded sampler's first draws differ per agent.
    study = optuna.load_study(study_name="made-first", storage=postgres_url)
    assert len({t.params["x"] for t in study.get_trials()}) == 3

    # A launch of the same spec, with a larger budget from the CLI, adds a controller to
    # the same sweep: the same study and parent run, the overrides recorded on it.
    database = Database(postgres_url)
    record = get_sweep_record(database, "made-first")
    assert record is not None
    launched = run_cli(
        "launch", str(spec_path), "--storage", postgres_url,
        "--n-trials", "5", "--set", "sampler.seed=9", cwd=tmp_path,
    )  # fmt: skip
    assert launched.returncode == 0, launched.stdout + launched.stderr
    assert "continuing: 3 trials already finished" in launched.stdout
    assert "models:/made-first-model/1 @challenger" in launched.stdout
    assert sweep_invariants(postgres_url, "made-first")["counted"] == 5
    after = get_sweep_record(database, "made-first")
    assert after is not None and after.parent_run_id == record.parent_run_id
    assert after.status == "FINISHED"
    parent = TrackingStore(database).get_run(record.parent_run_id)
    database.dispose()
    assert parent.status is RunStatus.FINISHED
    assert parent.tags["sweep.overrides"] == "--set sampler.seed=9 --set budget.n_trials=5"
