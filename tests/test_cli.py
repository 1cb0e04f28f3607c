"""The `sweep` command, run as a user runs it: real subprocesses, real Ray, real stores."""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from click.testing import Result
from optuna.trial import TrialState

import sweep
from sweep.registry import ModelRegistry
from sweep.storage import Database
from sweep.storage.schema import RunInputRow
from sweep.tracking import RunStatus, TrackingStore
from tests.helpers import write_toy_spec
from tests.test_cli_flow import in_process

REPO = Path(__file__).parent.parent
SWEEP = [sys.executable, "-m", "sweep.cli"]


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: int = 300):
    return subprocess.run(
        [*SWEEP, *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def toy_spec(tmp_path: Path, **overrides: object) -> Path:
    defaults = {
        "name": "cli-toy",
        "budget": {"n_trials": 8},
        "registry": {"model_name": "cli-model"},
    }
    return write_toy_spec(tmp_path, **{**defaults, **overrides})


def test_validate_accepts_the_quickstart_and_names_the_line_of_a_mistake(tmp_path: Path) -> None:
    ok = run_cli("validate", str(REPO / "sweeps" / "quickstart.yaml"), cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "ok" in ok.stdout

    bad = tmp_path / "bad.yaml"
    bad.write_text(
        (REPO / "sweeps" / "quickstart.yaml").read_text().replace("n_trials:", "n_trails:")
    )
    result = run_cli("validate", str(bad), cwd=tmp_path)
    assert result.returncode == 2
    line = next(i for i, text in enumerate(bad.read_text().splitlines(), 1) if "n_trails" in text)
    assert f"bad.yaml:{line}" in result.stderr
    assert "n_trails" in result.stderr and "n_trials" in result.stderr


def test_launch_on_postgres_from_the_environment(postgres_url: str, tmp_path: Path) -> None:
    result = run_cli(
        "launch", str(toy_spec(tmp_path)), cwd=tmp_path, env={"SWEEP_DATABASE_URL": postgres_url}
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "models:/cli-model/1 @challenger" in result.stdout
    assert not (tmp_path / ".sweep" / "sweep.db").exists()  # the shared store was used
    study = optuna.load_study(study_name="cli-toy", storage=postgres_url)
    assert len(study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))) == 8


def test_unreachable_store_exits_3_without_leaking_the_password(tmp_path: Path) -> None:
    result = run_cli(
        "launch",
        str(toy_spec(tmp_path)),
        "--storage",
        "postgresql+psycopg://alice:hunter2-secret@127.0.0.1:1/db",
        cwd=tmp_path,
    )
    assert result.returncode == 3
    assert "cannot connect" in result.stderr
    assert "hunter2-secret" not in result.stdout + result.stderr


def test_more_workers_than_the_local_ray_can_hold_exits_5(tmp_path: Path) -> None:
    spec = toy_spec(tmp_path, parallelism=3, ray={"num_cpus": 2})
    result = run_cli("launch", str(spec), cwd=tmp_path)
    assert result.returncode == 5, result.stdout + result.stderr
    assert "parallelism 3 with cpu: 1 per trial needs 3 CPUs but the local Ray has 2" in (
        result.stderr
    )


def test_quickstart_registers_a_working_challenger(tmp_path: Path) -> None:
    """The README's main command, on the embedded default store."""
    env = {"SWEEP_HOME": str(tmp_path / ".sweep")}
    result = run_cli(
        "launch", str(REPO / "sweeps" / "quickstart.yaml"), cwd=tmp_path, env=env, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "60 trials" in result.stdout
    assert "models:/digits-sgd/1 @challenger" in result.stdout

    url = f"sqlite:///{tmp_path / '.sweep' / 'sweep.db'}"
    model = sweep.load_model("models:/digits-sgd@challenger", storage=url)
    sys.path.insert(0, str(REPO / "sweeps"))
    from digits import load_data

    _, x_val, _, y_val = load_data()
    assert model.score(x_val, y_val) > 0.9


def test_the_mlp_example_trains_and_registers_a_network(tmp_path: Path) -> None:
    """sweeps/mlp.yaml as a user runs it, with a budget of 4 trials."""
    spec = yaml.safe_load((REPO / "sweeps" / "mlp.yaml").read_text())
    spec.update(budget={"n_trials": 4}, code_dir=str(REPO / "sweeps"))
    path = tmp_path / "mlp.yaml"
    path.write_text(yaml.safe_dump(spec))
    env = {"SWEEP_HOME": str(tmp_path / ".sweep")}
    result = run_cli("launch", str(path), cwd=tmp_path, env=env, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "models:/digits-mlp/1 @challenger" in result.stdout
    url = f"sqlite:///{tmp_path / '.sweep' / 'sweep.db'}"
    model = sweep.load_model("models:/digits-mlp@challenger", storage=url)
    assert model.hidden_layer_sizes[0] in (16, 32, 64, 128)
    study = optuna.load_study(study_name="digits-mlp", storage=url)
    # The first trials reach the full 50 epochs (Hyperband has nothing to compare yet).
    assert max(len(t.intermediate_values) for t in study.trials) == 50


def test_ctrl_c_ends_running_trials_killed_and_nothing_running(tmp_path: Path) -> None:
    spec = toy_spec(
        tmp_path,
        objective="toy:slow",
        parameters={},
        pruner="none",
        registry=None,
        budget={"n_trials": 10},
    )
    env = {**os.environ, "SWEEP_HOME": str(tmp_path / ".sweep")}
    proc = subprocess.Popen(
        [*SWEEP, "launch", str(spec)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"sqlite:///{tmp_path / '.sweep' / 'sweep.db'}"
    deadline = time.monotonic() + 120
    running: list = []
    while time.monotonic() < deadline and len(running) < 2:
        time.sleep(0.5)
        if (tmp_path / ".sweep" / "sweep.db").exists():
            try:
                running = TrackingStore(Database(url)).list_runs(statuses=[RunStatus.RUNNING])
            except sweep.StorageError:
                running = []  # tables not created yet
            running = [r for r in running if r.parent_run_id]
    assert len(running) == 2, "the trials never started"
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output
    assert "interrupted" in output

    runs = TrackingStore(Database(url)).list_runs()
    assert not [r for r in runs if r.status is RunStatus.RUNNING]
    killed = [r for r in runs if r.status is RunStatus.KILLED]
    assert len(killed) >= 3  # the two trials and the parent
    study = optuna.load_study(study_name="cli-toy", storage=url)
    assert not study.get_trials(states=(TrialState.RUNNING,))
    assert all(
        t.system_attrs.get("sweep:killed") for t in study.get_trials(states=(TrialState.FAIL,))
    )


def test_models_commands_promote_roll_back_and_show_history(tmp_path: Path) -> None:
    # On local workers (no Ray): the registry commands see what any sweep registers.
    url = f"sqlite:///{tmp_path / 'store.db'}"
    result = sweep.launch(write_toy_spec(tmp_path, budget={"n_trials": 4}), storage=url)
    assert result.model_version is not None

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return run_cli("models", *args, "--storage", url, cwd=tmp_path)

    assert cli("promote", "toy-model", "--reason", "first").returncode == 0
    assert cli("alias", "toy-model", "challenger", "1").returncode == 0
    again = cli("promote", "toy-model")  # nothing to do: done, not an error
    assert again.returncode == 0 and "already @champion" in again.stdout, again.stderr
    listed = json.loads(cli("list", "--json").stdout)
    assert listed[0]["name"] == "toy-model" and listed[0]["aliases"] == {
        "champion": 1,
        "challenger": 1,
    }
    shown = json.loads(cli("show", "toy-model", "--json").stdout)
    version = shown["versions"][0]
    assert version["sweep_name"] == "toy" and version["run_id"] == result.model_version.run_id
    lineage = version["lineage"]  # recorded by the launch itself, in this git checkout
    assert lineage["trial_number"] == result.best_trial_number
    assert float(lineage["params"]["x"]) == pytest.approx(result.best_params["x"])
    assert len(lineage["git_commit"]) == 40 and lineage["git_dirty"] in (True, False)
    assert lineage["parent_run_id"] == result.parent_run_id
    history = json.loads(cli("history", "toy-model", "--json").stdout)
    assert [(e["action"], e["alias"], e["reason"]) for e in history][-3:] == [
        ("set_alias", "champion", "first"),
        ("delete_alias", "challenger", "first"),
        ("set_alias", "challenger", None),
    ]
    missing = cli("rollback", "toy-model")
    assert missing.returncode == 6 and "no @rollback" in missing.stderr


def test_runs_list_show_and_describe(tmp_path: Path) -> None:
    # On local workers (no Ray): the runs commands see what any sweep logs.
    url = f"sqlite:///{tmp_path / 'store.db'}"
    result = sweep.launch(write_toy_spec(tmp_path, budget={"n_trials": 3}), storage=url)

    listed = run_cli("runs", "toy", "--storage", url, "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    trial_runs = json.loads(listed.stdout)
    assert len(trial_runs) == 3
    assert {r["parent_run_id"] for r in trial_runs} == {result.parent_run_id}
    run_id = trial_runs[0]["run_id"]

    note = run_cli("runs", "describe", run_id, "lr too high", "--storage", url, cwd=tmp_path)
    assert note.returncode == 0, note.stderr
    shown = run_cli("runs", "show", run_id, "--storage", url, "--json", cwd=tmp_path)
    data = json.loads(shown.stdout)
    assert data["run"]["description"] == "lr too high"
    assert data["run"]["params"]["x"] and "score" in data["run"]["metrics"]
    assert data["run"]["tags"]["sweep.trial_number"] in {"0", "1", "2"}
    assert any(a["kind"] == "model" for a in data["artifacts"]) or (
        data["run"]["tags"]["sweep.state"] == "PRUNED"
    )
    text = run_cli("runs", "show", run_id, "--storage", url, cwd=tmp_path).stdout
    assert "note: lr too high" in text and "params:" in text

    everything = run_cli("runs", "toy", "--storage", url, cwd=tmp_path)
    assert everything.returncode == 0 and "trial-0" in everything.stdout
    unknown = run_cli("runs", "nope", "--storage", url, cwd=tmp_path)
    assert unknown.returncode == 6 and "no sweep or experiment called 'nope'" in unknown.stderr


def test_models_tags_descriptions_lineage_and_history(tmp_path: Path) -> None:
    """The registry's everyday commands on a version made the direct way (no sweep).

    In this process (click's runner): some thirty commands that start no trial, each a
    second of start-up as a process of its own. The text of `show` is read from a real
    `sweep` process, as a user sees it."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    database = Database(url)
    database.ensure_schema()
    tracking = TrackingStore(database)
    experiment = tracking.get_or_create_experiment("digits", tmp_path / "artifacts")
    parent = tracking.create_run(experiment, "digits")
    run = tracking.create_run(
        experiment,
        "trial-5",
        parent_run_id=parent.run_id,
        params={"alpha": 0.001, "loss": "hinge"},
        tags={
            "sweep.git.commit": "c0ffee12",
            "sweep.git.branch": "exp/l2",
            "sweep.git.dirty": "false",
        },
    )
    with database.session() as session:
        session.add(
            RunInputRow(
                run_id=run.run_id,
                name="digits",
                context="training",
                digest="sha256:5eed",
                source="file:///data/digits.npz",
                created_at=1,
            )
        )
    registry = ModelRegistry(database)
    registry.create_model_version(
        "digits-sgd",
        str(tmp_path / "model"),
        run_id=run.run_id,
        metric_name="val_acc",
        metric_value=0.95,
        sweep_name="digits",
        trial_number=5,
    )
    database.dispose()

    def cli(*args: str) -> Result:
        result = in_process("models", *args, "--storage", url)
        assert result.exit_code == 0, result.stdout + result.stderr
        return result

    cli("tag", "digits-sgd", "1", "stage", "qa", "--reason", "handed to QA")
    cli("tag", "digits-sgd", "1", "owner", "ml-team")
    cli("untag", "digits-sgd", "1", "owner")
    cli("describe", "digits-sgd", "1", "l2, alpha 1e-3", "--reason", "notes")
    cli("describe", "digits-sgd", "Digits classifier for the scanner")
    cli("alias", "digits-sgd", "staging", "1", "--reason", "canary")
    cli("alias", "digits-sgd", "shadow", "1")
    cli("unalias", "digits-sgd", "shadow", "--reason", "done")

    shown = json.loads(cli("show", "digits-sgd", "--json").stdout)
    assert shown["description"] == "Digits classifier for the scanner"
    assert shown["aliases"] == {"staging": 1}
    [version] = shown["versions"]
    assert version["tags"] == {"stage": "qa"} and version["aliases"] == ["staging"]
    assert version["description"] == "l2, alpha 1e-3"
    assert version["lineage"] == {
        "run_id": run.run_id,
        "parent_run_id": parent.run_id,
        "sweep_name": "digits",
        "trial_number": 5,
        "metric_name": "val_acc",
        "metric_value": 0.95,
        "params": {"alpha": "0.001", "loss": "hinge"},
        "git_commit": "c0ffee12",
        "git_branch": "exp/l2",
        "git_dirty": False,
        "datasets": [
            {
                "name": "digits",
                "context": "training",
                "digest": "sha256:5eed",
                "source": "file:///data/digits.npz",
            }
        ],
    }
    shown_text = run_cli("models", "show", "digits-sgd", "--storage", url, cwd=tmp_path)
    assert shown_text.returncode == 0, shown_text.stdout + shown_text.stderr
    text = shown_text.stdout
    for expected in (
        "version 1  @staging",
        "val_acc=0.95",
        "sweep digits, trial 5, run " + run.run_id,
        "alpha=0.001, loss=hinge",
        "c0ffee12 on exp/l2",
        "digits (training) sha256:5eed from file:///data/digits.npz",
        "stage=qa",
        "l2, alpha 1e-3",
    ):
        assert expected in text, (expected, text)

    history = json.loads(cli("history", "digits-sgd", "--json").stdout)
    assert [
        (e["action"], e["alias"] or e["tag"], e["from_version"], e["to_version"], e["reason"])
        for e in history
    ] == [
        ("register", None, None, 1, None),
        ("set_tag", "stage", None, 1, "handed to QA"),
        ("set_tag", "owner", None, 1, None),
        ("delete_tag", "owner", None, 1, None),
        ("set_description", None, None, 1, "notes"),
        ("set_description", None, None, None, None),
        ("set_alias", "staging", None, 1, "canary"),
        ("set_alias", "shadow", None, 1, None),
        ("delete_alias", "shadow", 1, None, "done"),
    ]
    for event in history:
        assert event["user"] and event["host"]
        assert datetime.datetime.fromisoformat(event["time"]).tzinfo is not None
    lines = cli("history", "digits-sgd").stdout.splitlines()
    assert len(lines) == len(history)
    user_host = f"{history[0]['user']}@{history[0]['host']}"
    assert all(
        line.startswith(e["time"]) and user_host in line
        for line, e in zip(lines, history, strict=True)
    )
    assert "version 1 tag stage set" in lines[1] and "reason: handed to QA" in lines[1]
    assert "@shadow 1 -> none" in lines[-1] and "reason: done" in lines[-1]

    for args, message in (
        (("show", "nope"), "no registered model 'nope'; list them with: sweep models list"),
        (("tag", "nope", "1", "k", "v"), "list them with: sweep models list"),
        (
            ("tag", "digits-sgd", "9", "k", "v"),
            "no version 9; list versions with: sweep models show digits-sgd",
        ),
        (
            ("untag", "digits-sgd", "1", "owner"),
            "no tag 'owner'; see its tags with: sweep models show digits-sgd",
        ),
        (("describe", "digits-sgd", "9", "x"), "list versions with: sweep models show digits-sgd"),
        (
            ("unalias", "digits-sgd", "shadow"),
            "no alias 'shadow'; see its aliases with: sweep models show",
        ),
        (("history", "nope"), "list them with: sweep models list"),
    ):
        failed = in_process("models", *args, "--storage", url)
        assert failed.exit_code == 6, (args, failed.stdout + failed.stderr)
        assert message in failed.stderr, (args, failed.stderr)


def test_the_collector_is_off_while_a_command_starts_and_on_again_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import gc

    import sweep.cli

    seen: list[bool] = []

    def long_command(prog_name: str) -> None:  # a launch, an agent, the UI
        seen.append(gc.isenabled())
        deadline = time.monotonic() + 5
        while not gc.isenabled() and time.monotonic() < deadline:
            time.sleep(0.05)
        seen.append(gc.isenabled())

    monkeypatch.setattr(sweep.cli, "COLLECTOR_OFF_AT_START_S", 0.2)
    monkeypatch.setattr(sweep.cli, "cli", long_command)
    try:
        sweep.cli.main()
        assert seen == [False, True]
        gc.disable()
        monkeypatch.setattr(sweep.cli, "cli", lambda prog_name: None)  # a short one
        sweep.cli.main()
        assert gc.isenabled()
    finally:
        gc.enable()
        gc.unfreeze()
