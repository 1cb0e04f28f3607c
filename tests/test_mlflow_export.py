"""`sweep export mlflow`: a real sweep copied into an MLflow store that MLflow owns
(SQLite), then opened with MLflow's own client: runs, nesting, params, metric
histories, artifacts, registered versions and aliases; exporting again duplicates
nothing and adds the trials that finished since.

The sweeps run on local workers (no Ray here): what they log, and so what is exported
or mirrored, is the same on either executor."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import sweep
from sweep.cli import cli
from sweep.errors import NotFoundError
from sweep.export import export_to_mlflow
from sweep.flavors import load_model_dir
from sweep.registry import ModelRegistry
from sweep.storage import Database
from sweep.study import get_sweep_record
from sweep.tracking import TrackingStore
from tests.helpers import write_toy_spec

if os.environ.get("CI"):
    import mlflow  # CI installs sweep[test], which has it: never skip there
else:
    mlflow = pytest.importorskip("mlflow")


def _runs(client: Any, experiment_id: str) -> list[Any]:
    return list(client.search_runs([experiment_id], max_results=1000))


def test_a_sweep_exports_to_mlflow_and_mlflow_opens_it(sqlite_url: str, tmp_path: Path) -> None:
    spec = write_toy_spec(tmp_path, budget={"n_trials": 6})
    sweep.launch(spec, storage=sqlite_url)
    db = Database(sqlite_url)
    tracking = TrackingStore(db)
    record = get_sweep_record(db, "toy")
    assert record is not None
    # Longer than MLflow takes: cut to its limit, marked (the full text stays here).
    tracking.log_params(record.parent_run_id, {"notes": "n" * 7000})
    mlflow_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    location = (tmp_path / "mlartifacts").as_uri()
    runner = CliRunner()
    args = ["export", "mlflow", "toy", "--tracking-uri", mlflow_uri, "--registry"]
    args += ["--artifact-location", location, "--storage", sqlite_url]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "6 runs added, 0 already there" in result.output

    ours = {r.run_id: r for r in tracking.list_runs(parent_run_id=record.parent_run_id)}
    client = mlflow.MlflowClient(tracking_uri=mlflow_uri, registry_uri=mlflow_uri)
    experiment = client.get_experiment_by_name("toy")
    runs = _runs(client, experiment.experiment_id)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 6
    parent = parents[0]
    assert parent.data.tags["sweep.run_id"] == record.parent_run_id
    assert parent.info.status == "FINISHED"
    notes = parent.data.params["notes"]
    assert len(notes) == 6000 and notes.endswith("...")
    for child in children:
        run = ours[child.data.tags["sweep.run_id"]]
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.info.run_name == run.name and child.info.status == run.status.value
        assert child.data.params == run.params
        assert child.data.tags["sweep.trial_number"] == run.tags["sweep.trial_number"]
        assert child.info.start_time == run.start_time and child.info.end_time == run.end_time
        for key in run.metrics:
            theirs = client.get_metric_history(child.info.run_id, key)
            assert sorted((m.step, m.value, m.timestamp) for m in theirs) == sorted(
                (p.step, p.value, p.timestamp) for p in tracking.metric_history(run.run_id, key)
            )
        listed = {a.path for a in client.list_artifacts(child.info.run_id)}
        logged = {a.path.split("/")[0] for a in tracking.list_artifacts(run.run_id)}
        assert logged <= listed
        if "model" in logged:  # pruned trials logged none
            model_files = {a.path for a in client.list_artifacts(child.info.run_id, "model")}
            assert "model/sweep-model.json" in model_files

    # The registered model, its version on the best trial's MLflow run, and its alias.
    ours_version = ModelRegistry(db).get_by_alias("toy-model", "challenger")
    theirs = client.get_model_version_by_alias("toy-model", "challenger")
    best = next(c for c in children if c.data.tags["sweep.run_id"] == ours_version.run_id)
    assert theirs.run_id == best.info.run_id
    assert theirs.tags["sweep.version"] == str(ours_version.version)
    model_dir = mlflow.artifacts.download_artifacts(theirs.source, dst_path=str(tmp_path / "m"))
    model = load_model_dir(model_dir)
    assert model.predict([[1.0]])[0] == pytest.approx(float(best.data.params["x"]))

    # Again: nothing duplicated. Then two more trials: only they are added.
    again = export_to_mlflow("toy", mlflow_uri, storage=sqlite_url, registry=True)
    assert (again.runs_added, again.runs_skipped, again.model_versions) == (0, 6, 0)
    sweep.launch(write_toy_spec(tmp_path, budget={"n_trials": 8}), storage=sqlite_url)
    more = export_to_mlflow("toy", mlflow_uri, storage=sqlite_url, registry=True)
    assert (more.runs_added, more.runs_skipped) == (2, 6)
    assert len(_runs(client, experiment.experiment_id)) == 9
    versions = client.search_model_versions("name = 'toy-model'")
    assert len(versions) == len(ModelRegistry(db).list_versions("toy-model"))
    with pytest.raises(NotFoundError, match="no sweep called 'nope'"):
        export_to_mlflow("nope", mlflow_uri, storage=sqlite_url)
    db.dispose()


def test_a_sweep_mirrors_to_mlflow_as_it_runs(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # MLflow puts a new experiment's artifacts in ./mlruns
    mlflow_uri = f"sqlite:///{tmp_path / 'mirror.db'}"
    spec = write_toy_spec(
        tmp_path,
        budget={"n_trials": 5},
        tracking={"mirror": "mlflow", "mlflow_uri": mlflow_uri},
    )
    result = sweep.launch(spec, storage=sqlite_url)
    client = mlflow.MlflowClient(tracking_uri=mlflow_uri)
    runs = _runs(client, client.get_experiment_by_name("toy").experiment_id)
    assert len(runs) == 6  # the parent and its 5 trials, nested
    assert sum("mlflow.parentRunId" in r.data.tags for r in runs) == 5
    parent = TrackingStore(Database(sqlite_url)).get_run(result.parent_run_id)
    assert parent.tags["sweep.mirror"] == "ok"


def test_a_mirror_that_fails_never_fails_the_sweep(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a-file").write_text("")  # a directory cannot be made under it
    unwritable = f"sqlite:///{tmp_path / 'a-file' / 'mlflow.db'}"
    spec = write_toy_spec(
        tmp_path, budget={"n_trials": 3}, tracking={"mirror": "mlflow", "mlflow_uri": unwritable}
    )
    result = sweep.launch(spec, storage=sqlite_url)
    assert result.counts.complete + result.counts.pruned == 3
    parent = TrackingStore(Database(sqlite_url)).get_run(result.parent_run_id)
    assert "sweep.mirror" not in parent.tags and parent.tags["sweep.mirror.error"]
