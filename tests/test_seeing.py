"""Seeing a sweep without a browser: `sweep report`, `sweep runs show --metric`, a
running trial's params in `sweep runs`, the live progress of `sweep launch`, `sweep
delete`, and `sweep status` on a sweep whose study was deleted behind its back.

Sweeps here are set up as a launch does (study, parent run) and their trials written
through Optuna and the tracking store, without Ray: what is tested is what the store
holds and how it is shown.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner
from rich.console import Console

from sweep.cli import cli
from sweep.cli._progress import LaunchProgress
from sweep.registry import ModelRegistry
from sweep.storage import Database
from sweep.study import RUN_ID_ATTR
from sweep.tracking import Experiment, MetricPoint, RunStatus, TrackingStore
from sweep.trials import trial_rows
from tests.helpers import sweep_context


def _sweep(url: str, root: Path, name: str = "seen", trials: int = 6) -> tuple[str, list[str]]:
    """A sweep with ``trials`` complete trials, each with a run logging ``loss`` over 30
    steps, and one RUNNING trial whose run has no params yet. Returns the parent run id
    and the complete trials' run ids."""
    ctx = sweep_context(url, root, name, "toy:no_model")
    db = Database(url)
    tracking = TrackingStore(db)
    experiment = tracking.get_experiment(ctx.experiment_id)
    study = optuna.load_study(study_name=name, storage=url)
    run_ids = []
    for i in range(trials + 1):
        trial = study.ask()
        x = trial.suggest_float("x", 0.0, 1.0)
        trial.suggest_categorical("kind", ["a", "b"])
        run = _run(tracking, experiment, ctx.parent_run_id, f"trial-{i}", i)
        trial.storage.set_trial_system_attr(trial._trial_id, RUN_ID_ATTR, run)
        if i == trials:  # the last one is still running
            trial.report(0.5, 3)
            break
        points = [MetricPoint("loss", 1.0 / (s + 1) + x, s, 0) for s in range(30)]
        tracking.log_metrics(run, [*points, MetricPoint("score", x, 0, 0)])
        tracking.log_params(run, trial.params)
        tracking.set_tags(run, {"sweep.state": "COMPLETE"})
        tracking.end_run(run, RunStatus.FINISHED)
        study.tell(trial, x)
        run_ids.append(run)
    db.dispose()
    return ctx.parent_run_id, run_ids


def _run(tracking: TrackingStore, experiment: Experiment, parent: str, name: str, i: int) -> str:
    tags = {"sweep.sweep": experiment.name, "sweep.trial_number": i}
    return tracking.create_run(experiment, name, parent_run_id=parent, tags=tags).run_id


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_runs_show_metric_prints_history_and_sparkline(sqlite_url: str, tmp_path: Path) -> None:
    _, runs = _sweep(sqlite_url, tmp_path)
    code, out = _invoke("runs", "show", runs[0], "--metric", "loss", "--storage", sqlite_url)
    assert code == 0, out
    assert "30 points" in out and "█" in out and "▁" in out
    assert "20 of 30 points shown" in out
    code, out = _invoke(
        "runs", "show", runs[0], "--metric", "loss", "--json", "--storage", sqlite_url
    )
    assert [p["step"] for p in json.loads(out)["points"]] == list(range(30))
    code, out = _invoke("runs", "show", runs[0], "--metric", "nope", "--storage", sqlite_url)
    assert code == 6 and "its metrics: loss, score" in out


def test_a_running_trials_params_show_in_sweep_runs(sqlite_url: str, tmp_path: Path) -> None:
    _sweep(sqlite_url, tmp_path)
    code, out = _invoke("runs", "seen", "--json", "--storage", sqlite_url)
    assert code == 0, out
    running = [r for r in json.loads(out) if r["status"] == "RUNNING"]
    assert len(running) == 1
    assert set(running[0]["params"]) == {"x", "kind"}  # from Optuna: the run has none yet
    code, out = _invoke("runs", "show", running[0]["run_id"], "--storage", sqlite_url)
    assert "x = 0." in out and "kind = " in out


def test_the_report_is_one_offline_html_file(postgres_url: str, tmp_path: Path) -> None:
    _sweep(postgres_url, tmp_path)
    out = tmp_path / "report.html"
    code, text = _invoke("report", "seen", "-o", str(out), "--storage", postgres_url)
    assert code == 0, text
    html = out.read_text()
    assert "<script src=" not in html and "cdn." not in html.split("<script>", 2)[0]
    assert len(html) > 3_000_000  # plotly.js is inside
    for chart in ("history", "curves", "parallel", "slice", "contour", "importances"):
        assert f'id="fig-{chart}"' in html, chart
    assert "Optimization history" in html and "Best trials" in html


def test_live_progress_shows_running_trials_params(sqlite_url: str, tmp_path: Path) -> None:
    _sweep(sqlite_url, tmp_path)
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=140)
    progress = LaunchProgress(
        console, name="seen", url=sqlite_url, metric="score", direction="maximize"
    )
    from sweep.trial_counts import TrialCounts

    progress.on_start("store", TrialCounts(complete=6), 4)
    progress.close()
    console.print(progress)  # one frame, as Live draws it
    frame = buffer.getvalue()
    assert "6/10 trials" in frame
    assert "trial 6" in frame and "x=" in frame and "kind=" in frame
    assert "step 3: 0.5" in frame


def test_status_survives_a_study_deleted_behind_its_back(sqlite_url: str, tmp_path: Path) -> None:
    _sweep(sqlite_url, tmp_path, "kept", trials=1)
    _sweep(sqlite_url, tmp_path / "b", "gone", trials=1)
    optuna.delete_study(study_name="gone", storage=sqlite_url)
    code, out = _invoke("status", "--storage", sqlite_url)
    assert code == 0, out
    assert "gone STUDY DELETED" in out and "kept RUNNING" in out
    code, out = _invoke("status", "--json", "--storage", sqlite_url)
    assert [s["state"] for s in json.loads(out)] == ["RUNNING", "STUDY DELETED"]


def test_delete_removes_the_sweep_but_keeps_registered_versions(
    postgres_url: str, tmp_path: Path
) -> None:
    parent, runs = _sweep(postgres_url, tmp_path)
    db = Database(postgres_url)
    registry = ModelRegistry(db)
    version = registry.create_model_version("seen-model", "/nowhere", run_id=runs[2])
    artifacts = [Path(TrackingStore(db).get_run(r).artifact_uri) for r in runs]
    for folder in artifacts:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "x.txt").write_text("x")

    code, out = _invoke("delete", "seen", "--storage", postgres_url)  # no --yes, no answer
    assert code != 0 and TrackingStore(db).run_exists(parent)
    code, out = _invoke("delete", "seen", "--yes", "--storage", postgres_url)
    assert code == 0, out
    assert "keeps models:/seen-model/1" in out

    tracking = TrackingStore(db)
    assert not tracking.run_exists(parent) and not tracking.run_exists(runs[0])
    assert tracking.run_exists(runs[2]) and tracking.get_run(runs[2]).parent_run_id is None
    assert not artifacts[0].exists() and artifacts[2].exists()
    kept = registry.get_version("seen-model", version.version)
    assert kept.tags["sweep.deleted_sweep"].startswith("seen (deleted ")
    with pytest.raises(KeyError):
        optuna.load_study(study_name="seen", storage=postgres_url)
    code, out = _invoke("status", "--storage", postgres_url)
    assert "seen" not in out
    code, out = _invoke("delete", "seen", "--yes", "--storage", postgres_url)
    assert code == 6
    db.dispose()


def test_trials_are_read_as_columns(sqlite_url: str, tmp_path: Path) -> None:
    _sweep(sqlite_url, tmp_path)
    db = Database(sqlite_url)
    study_id = optuna.load_study(study_name="seen", storage=sqlite_url)._study_id
    rows = trial_rows(db, study_id)
    db.dispose()
    assert [r.state for r in rows] == ["COMPLETE"] * 6 + ["RUNNING"]
    assert all(r.value == r.params["x"] for r in rows[:6])
    assert rows[-1].params["kind"] in ("a", "b")


def test_long_metric_series_are_bucketed_by_the_database(storage_url: str, tmp_path: Path) -> None:
    from sweep.ui.queries import metric_series

    _, runs = _sweep(storage_url, tmp_path, trials=1)
    db = Database(storage_url)
    TrackingStore(db).log_metrics(
        runs[0], [MetricPoint("long", float(s % 10), s, 0) for s in range(5000)]
    )
    series = metric_series(db, runs[0], "long", points=500)
    db.dispose()
    assert series.points == 5000 and len(series.steps) == 500
    assert series.low is not None and series.high is not None
    assert series.steps[0] == 4.5 and series.values[0] == 4.5  # steps 0..9: values 0..9
    assert (series.low[0], series.high[0]) == (0.0, 9.0)
    short = metric_series(Database(storage_url), runs[0], "loss")
    assert short.low is None and short.steps == list(range(30))


def test_cached_trial_rows_follow_trials_that_end_and_start(
    sqlite_url: str, tmp_path: Path
) -> None:
    from sweep.ui.queries import sweep_view

    _sweep(sqlite_url, tmp_path)
    db = Database(sqlite_url)
    before = sweep_view(db, "seen").rows
    assert [r.state for r in before][-1] == "RUNNING"
    study = optuna.load_study(study_name="seen", storage=sqlite_url)
    running = study.get_trials(states=[optuna.trial.TrialState.RUNNING])[0]
    study.tell(running.number, 0.25)
    new = study.ask()
    new.suggest_float("x", 0.0, 1.0)
    after = sweep_view(db, "seen").rows
    study_id = study._study_id
    assert after == trial_rows(db, study_id)  # the same as a fresh read of everything
    assert [r.state for r in after][-2:] == ["COMPLETE", "RUNNING"]
    assert after[-2].value == 0.25 and "x" in after[-1].params
    db.dispose()


def test_ui_controls_need_the_token_and_are_audited(sqlite_url: str, tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    from sweep.study import get_sweep_record
    from sweep.ui import create_app

    parent, _ = _sweep(sqlite_url, tmp_path)
    form = {"user": "bob", "token": "t0k", "reason": "GPU maintenance"}
    with TestClient(create_app(sqlite_url, write_token="t0k")) as client:
        refused = client.post(
            "/sweeps/seen/control", data={**form, "token": "no", "action": "stop"}
        )
        assert refused.status_code == 403
        paused = client.post("/sweeps/seen/control", data={**form, "action": "pause"})
        assert paused.status_code == 200 and "pause requested by bob (sweep ui)" in paused.text
        db = Database(sqlite_url)
        record = get_sweep_record(db, "seen")
        assert record is not None and record.status == "PAUSED"
        tags = TrackingStore(db).get_run(parent).tags
        assert [v for k, v in tags.items() if k.startswith("sweep.audit.")] == [
            "pause by bob (sweep ui): GPU maintenance"
        ]
        resumed = client.post("/sweeps/seen/control", data={**form, "action": "resume"})
        assert resumed.status_code == 200
        record = get_sweep_record(db, "seen")
        assert record is not None and record.status == "RUNNING"
        again = client.post("/sweeps/seen/control", data={**form, "action": "resume"})
        assert again.status_code == 400 and "sweep resume seen" in again.text
        db.dispose()


def test_importances_are_worked_out_off_the_request_and_kept_in_the_study(
    sqlite_url: str, tmp_path: Path
) -> None:
    import time

    from starlette.testclient import TestClient

    from sweep.ui import create_app, importances

    _sweep(sqlite_url, tmp_path, trials=8)
    with TestClient(create_app(sqlite_url)) as client:
        first = client.get("/sweeps/seen/importances")
        # At once: a placeholder (202) while fANOVA runs in the background.
        assert first.status_code in (200, 202)
        deadline = time.monotonic() + 60
        figure = first.json()
        while figure.get("pending") or not figure.get("data"):
            assert time.monotonic() < deadline, figure
            time.sleep(0.1)
            figure = client.get("/sweeps/seen/importances").json()
        assert sorted(figure["data"][0]["y"]) == ["kind", "x"]
        assert "over 8 complete trials" in figure["layout"]["title"]["text"]
    # A restarted UI (nothing in memory) finds them stored in the study: no recompute.
    importances._known.clear()
    with TestClient(create_app(sqlite_url)) as client:
        again = client.get("/sweeps/seen/importances")
        assert again.status_code == 200 and again.json() == figure


def test_charts_from_a_partial_first_read_equal_those_from_every_param(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cold sweep page reads params only for the latest and the best trials; the
    charts are the same as from every trial's params, also after more trials end."""
    import dataclasses

    from sweep.ui import charts, queries

    # As on a sweep of thousands: params of the 3 latest and the 2 best trials only.
    monkeypatch.setattr(queries, "PARAMS_OF_LATEST", 3)
    monkeypatch.setattr(queries, "MAX_PLOTTED_TRIALS", 2)
    monkeypatch.setattr(charts, "MAX_PLOTTED_TRIALS", 2)
    _sweep(sqlite_url, tmp_path, trials=10)
    db = Database(sqlite_url)
    study = optuna.load_study(study_name="seen", storage=sqlite_url)

    def same_charts() -> None:
        view = sweep_view(db, "seen")
        assert sum(bool(r.params) for r in view.rows) < len(view.rows)
        full = dataclasses.replace(view, rows=trial_rows(db, study._study_id))
        assert charts.sweep_figures(view) == charts.sweep_figures(full)

    from sweep.ui.queries import sweep_view

    same_charts()
    running = study.get_trials(states=[optuna.trial.TrialState.RUNNING])[0]
    study.tell(running.number, 2.0)  # the new best
    study.enqueue_trial({"x": 0.5, "kind": "a"})
    trial = study.ask()
    trial.suggest_float("x", 0.0, 1.0)
    trial.suggest_categorical("kind", ["a", "b"])
    study.tell(trial, 1.5)
    same_charts()
    db.dispose()
