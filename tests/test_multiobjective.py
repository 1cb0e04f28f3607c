"""Sweeps with several objectives: the spec (metrics, refusals, registry.select), the
values an objective or a script gives, and a real 3-objective sweep on PostgreSQL whose
Pareto front is Optuna's and whose registered version follows the select rule."""

from __future__ import annotations

import json
import math
import textwrap
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from click.testing import CliRunner

import sweep
from sweep.cli import cli
from sweep.control import sweep_status
from sweep.errors import SpecError
from sweep.objective_values import check_objective_values
from sweep.registry import ModelRegistry
from sweep.spec import load_spec, load_spec_from_dict
from sweep.storage import Database
from sweep.study import RUN_ID_ATTR, open_study
from sweep.tracking import TrackingStore
from sweep.trial import TrialRunner
from tests.helpers import OBJECTIVES_DIR, run_one_trial, sweep_context

METRICS = [
    {"name": "acc", "direction": "maximize"},
    {"name": "latency_ms", "direction": "minimize"},
    {"name": "size_mb", "direction": "minimize"},
]
WEIGHTS = {"acc": 1.0, "latency_ms": -0.01}


def spec_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def spec_error(tmp_path: Path, text: str) -> SpecError:
    with pytest.raises(SpecError) as info:
        load_spec(spec_file(tmp_path, text), check_objective=False)
    return info.value


TWO = """\
name: two
objective: m:f
budget: {n_trials: 4}
metric:
  - {name: acc, direction: maximize}
  - {name: latency_ms, direction: minimize}
"""

# -- the spec ---------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["metric", "metrics"])
def test_objectives_as_a_list_and_the_first_is_the_metric(tmp_path: Path, key: str) -> None:
    spec = load_spec(spec_file(tmp_path, TWO.replace("metric:", f"{key}:")), check_objective=False)
    assert spec.multi_objective and spec.metric_names == ["acc", "latency_ms"]
    assert spec.directions == ["maximize", "minimize"]
    assert spec.metric.name == "acc"
    assert spec.pruner.name == "none"  # Optuna prunes no multi-objective study
    # A dumped spec (what agents get) reads back as the same spec.
    dumped = spec.model_dump(mode="json")
    assert load_spec_from_dict(dumped).model_dump(mode="json") == dumped
    one = load_spec_from_dict(
        {
            "name": "one",
            "objective": "m:f",
            "budget": {"n_trials": 2},
            "metric": {"name": "acc", "direction": "maximize"},
        }
    )
    assert not one.multi_objective and one.metric_names == ["acc"]
    assert one.pruner.name == "hyperband"


@pytest.mark.parametrize(
    ("extra", "key", "line", "needle"),
    [
        ("", "metric.1.direction", 6, "'minimize' or 'maximize'"),
        ("pruner: median\n", "pruner", 7, "set pruner: none"),
        ("sampler: cmaes\n", "sampler", 7, "tpe, nsgaii, nsgaiii"),
        ("registry: {model_name: m}\n", "registry", 7, "registry.select"),
        (
            "registry: {model_name: m, select: {metric: loss}}\n",
            "registry.select.metric",
            7,
            "not one of the spec's metrics (acc, latency_ms)",
        ),
        (
            "registry: {model_name: m, select: {weights: {acc: 1, lat: -1}}}\n",
            "registry.select.weights.lat",
            7,
            "'lat'",
        ),
        (
            "registry: {model_name: m, threshold: 0.9, select: {weights: {acc: 1}}}\n",
            "registry.threshold",
            7,
            "weighted sum",
        ),
        ("registry: {model_name: m, select: {}}\n", "registry.select", 7, "exactly one rule"),
    ],
)
def test_what_several_objectives_rule_out_is_refused_at_its_line(
    tmp_path: Path, extra: str, key: str, line: int, needle: str
) -> None:
    text = TWO + extra
    if not extra:
        text = text.replace("direction: minimize}", "direction: min}")
    err = spec_error(tmp_path, text)
    assert (err.key_path, err.line) == (key, line), err
    assert needle in err.reason
    assert str(err).startswith(f"{tmp_path / 'spec.yaml'}:{line}: {key}: ")


def test_duplicate_names_and_targets_are_refused(tmp_path: Path) -> None:
    err = spec_error(tmp_path, TWO.replace("name: latency_ms", "name: acc"))
    assert (err.key_path, err.line) == ("metric.1.name", 6) and "listed twice" in err.reason
    err = spec_error(tmp_path, TWO.replace("minimize}", "minimize, target: 3}"))
    assert (err.key_path, err.line) == ("metric.1.target", 6) and "remove target" in err.reason
    for budget, key in (("target: 0.9", "budget.target"), ("patience: 5", "budget.patience")):
        err = spec_error(tmp_path, TWO.replace("n_trials: 4}", f"n_trials: 4, {budget}}}"))
        assert (err.key_path, err.line) == (key, 3) and "Pareto front" in err.reason
    err = spec_error(tmp_path, TWO + "warm_start: {from_sweep: old}\n")
    assert (err.key_path, err.line) == ("warm_start", 7)
    err = spec_error(tmp_path, TWO + "metrics: [{name: a, direction: maximize}]\n")
    assert err.key_path == "metrics" and "once" in err.reason


@pytest.mark.parametrize(
    ("result", "values", "needle"),
    [
        ((0.5, 2.0), [0.5, 2.0], None),
        ([1, 2], [1.0, 2.0], None),
        ({"latency_ms": 2.0, "acc": 0.5}, [0.5, 2.0], None),
        ((0.5,), None, "returned 1 values; return 2 numbers (acc, latency_ms)"),
        ((0.5, math.nan), None, "latency_ms: objective returned NaN"),
        ("0.5, 2.0", None, "objective returned str"),
        (0.5, None, "objective returned float"),
        ({"acc": 0.5}, None, "dict that lacks latency_ms"),
        ({"acc": 0.5, "latency_ms": 1.0, "loss": 3.0}, None, "dict that has loss"),
    ],
)
def test_an_objective_returns_one_value_per_objective(
    result: Any, values: list[float] | None, needle: str | None
) -> None:
    got, error = check_objective_values(result, ["acc", "latency_ms"])
    assert got == values
    assert (error is None) if needle is None else (error is not None and needle in error)


# -- trials, without Ray ----------------------------------------------------------------


def test_a_function_and_a_script_give_every_objective_logged_on_the_run(
    sqlite_url: str, tmp_path: Path
) -> None:
    tracking = TrackingStore(Database(sqlite_url))
    two = [{"name": "x", "direction": "maximize"}, {"name": "y", "direction": "minimize"}]
    context = sweep_context(sqlite_url, tmp_path / "a", "tuple", "multi:two_as_tuple", metric=two)
    outcome = run_one_trial(TrialRunner(context, 0))
    assert outcome.state == "COMPLETE" and outcome.values is not None
    x = outcome.params["x"]
    assert outcome.values == pytest.approx([x, 1.0 - x])
    assert tracking.get_run(outcome.run_id).metrics == pytest.approx({"x": x, "y": 1.0 - x})
    trial = optuna.load_study(study_name="tuple", storage=sqlite_url).trials[0]
    assert trial.values == pytest.approx([x, 1.0 - x])

    # A script printing `step=N score=V loss=L`: the last value of each metric counts;
    # one calling sweep.report and sweep.result: its result, by name, counts.
    two = [{"name": "score", "direction": "maximize"}, {"name": "loss", "direction": "minimize"}]
    for program, values in (("prints.py", [2.5, 0.2]), ("results.py", [5.0, 0.5])):
        context = sweep_context(
            sqlite_url,
            tmp_path / program,
            program.replace(".", "-"),
            None,  # type: ignore[arg-type]
            program=program,
            code_dir=str(OBJECTIVES_DIR / "scripts"),
            parameters={"x": {"type": "categorical", "choices": [0.5]}},
            metric=two,
        )
        outcome = run_one_trial(TrialRunner(context, 0))
        assert (outcome.state, outcome.values) == ("COMPLETE", values), outcome.error
        run = tracking.get_run(outcome.run_id)
        assert (run.metrics["score"], run.metrics["loss"]) == tuple(values)
        history = [(p.step, p.value) for p in tracking.metric_history(outcome.run_id, "score")]
        if program == "prints.py":
            assert history[:5] == [(s, 0.5 * s) for s in range(1, 6)]
        else:  # the report is logged, and nothing is pruned
            assert history[0] == (1, 0.5)
            stdout = Path(run.artifact_uri, "logs", "stdout.txt").read_text()
            assert "pruned: False" in stdout


# -- a real sweep -----------------------------------------------------------------------


def test_a_three_objective_sweep_on_postgres_has_optunas_front_and_registers_by_the_rule(
    postgres_url: str, tmp_path: Path
) -> None:
    # On local workers (no Ray): neither the front nor the registration rule depends on
    # the executor.
    spec = {
        "name": "pareto",
        "objective": "multi:three",
        "code_dir": str(OBJECTIVES_DIR),
        "parameters": {
            "x": {"type": "int", "low": 0, "high": 3},
            "y": {"type": "uniform", "low": 0.0, "high": 1.0},
        },
        "metrics": METRICS,
        "sampler": {"name": "nsgaii", "seed": 3, "population_size": 4},
        "budget": {"n_trials": 10},
        "parallelism": 2,
        "registry": {
            "model_name": "pareto-model",
            "required": True,
            "select": {"weights": WEIGHTS},
        },
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    result = sweep.launch(path, storage=postgres_url)
    assert result.counts.complete == 10 and result.best_value is None

    study = optuna.load_study(study_name="pareto", storage=postgres_url)
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE", "MINIMIZE"]
    assert study.metric_names == ["acc", "latency_ms", "size_mb"]
    optuna_front = sorted(study.best_trials, key=lambda t: t.number)
    # Of each level x, the trial with the lowest y (multi.three).
    lowest_y = {}
    for t in sorted(study.trials, key=lambda t: -t.params["y"]):
        lowest_y[t.params["x"]] = t.number
    assert [t.number for t in optuna_front] == sorted(lowest_y.values())
    assert 2 <= len(optuna_front) < 10
    expected = [
        (t.number, dict(zip(study.metric_names, t.values, strict=True))) for t in optuna_front
    ]
    assert [(t.number, t.values) for t in result.pareto_front] == expected
    assert [
        (t.number, t.values) for t in sweep.pareto_front("pareto", storage=postgres_url)
    ] == expected
    (status,) = sweep_status("pareto", storage=postgres_url)
    assert [(t.number, t.values) for t in status.pareto_front] == expected
    assert status.best_value is None and status.metrics == ["acc", "latency_ms", "size_mb"]

    # Every objective is logged on every run, as the trial's values.
    db = Database(postgres_url)
    tracking = TrackingStore(db)
    for trial in study.trials:
        run = tracking.get_run(trial.system_attrs[RUN_ID_ATTR])
        assert {m: run.metrics[m] for m in study.metric_names} == pytest.approx(
            dict(zip(study.metric_names, trial.values, strict=True))
        )

    # The registered version is the front's highest acc - 0.01 * latency_ms.
    def score(t: optuna.trial.FrozenTrial) -> float:
        return t.values[0] - 0.01 * t.values[1]

    chosen = max(optuna_front, key=lambda t: (score(t), -t.number))
    assert chosen.number != optuna_front[0].number  # the rule decides, not the order
    version = ModelRegistry(db).get_by_alias("pareto-model", "challenger")
    assert version.trial_number == chosen.number
    assert version.run_id == chosen.system_attrs[RUN_ID_ATTR]
    assert "registry.select" in result.registration

    # The CLI shows the same front.
    runner = CliRunner()
    shown = runner.invoke(cli, ["runs", "pareto", "--pareto", "--json", "--storage", postgres_url])
    assert shown.exit_code == 0, shown.output
    front_runs = [t.system_attrs[RUN_ID_ATTR] for t in optuna_front]
    assert [r["run_id"] for r in json.loads(shown.output)] == front_runs
    shown = runner.invoke(cli, ["status", "pareto", "--storage", postgres_url])
    assert shown.exit_code == 0, shown.output
    assert (
        "Pareto front" in shown.output and f"Pareto front of {len(expected)} trials" in shown.output
    )

    # The web UI shows the front too (its charts show the first objective).
    from starlette.testclient import TestClient

    from sweep.ui import create_app

    with TestClient(create_app(postgres_url)) as client:
        for page in ("/", "/sweeps/pareto"):
            shown_page = client.get(page)
            assert shown_page.status_code == 200, (page, shown_page.text[-2000:])
        # Importances (of the first objective) are worked out in the background: 202 first.
        deadline = time.monotonic() + 60
        while (shown_page := client.get("/sweeps/pareto/importances")).status_code == 202:
            assert time.monotonic() < deadline, "importances never came"
            time.sleep(0.2)
        assert shown_page.status_code == 200 and shown_page.json()["data"], shown_page.text
        page_text = client.get("/sweeps/pareto").text
        assert f"Pareto front ({len(expected)} trials" in page_text
        for t in optuna_front:
            assert f'<a href="/runs/{t.system_attrs[RUN_ID_ATTR]}">{t.number}</a>' in page_text
        assert f"({len(expected)} trials)" in client.get("/").text

    # The same study with other objectives is refused, naming the spec's key.
    other = load_spec_from_dict({**spec, "metrics": METRICS[:2], "registry": None})
    with pytest.raises(SpecError, match="3 objectives"):
        open_study(other, db, db.optuna_storage())
    db.dispose()
