"""Stop rules (budget.target, on_target, patience), enqueued configs, warm starts and
callbacks: their spec errors, and real sweeps on PostgreSQL."""

from __future__ import annotations

import json
import logging
import textwrap
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

import sweep
from sweep.agent import run_agent
from sweep.control import sweep_status
from sweep.controller import agent_spec_json
from sweep.errors import ObjectiveImportError, SpecError
from sweep.spec import load_spec, load_spec_from_dict
from sweep.storage import Database
from sweep.study import SPEC_ATTR, get_sweep_record, open_study
from tests.helpers import OBJECTIVES_DIR, sweep_context, sweep_invariants

# -- the spec ---------------------------------------------------------------------------


def spec_file(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(
        "name: s\n"
        "objective: early:echo\n"
        f"code_dir: {OBJECTIVES_DIR}\n"
        "parameters:\n"
        "  x: {type: float, low: 0.0, high: 1.0}\n"
        "  y: {type: categorical, choices: [0.0, 0.5]}\n"
        "metric: {name: score, direction: maximize}\n" + textwrap.dedent(extra)
    )
    return path


@pytest.mark.parametrize(
    ("extra", "where", "says"),
    [
        (
            "budget: {n_trials: 5, on_target: cancel}\n",
            "sweep.yaml:8: budget.on_target:",
            "set budget.target too",
        ),
        (
            "budget: {n_trials: 5, patience: 0}\n",
            "sweep.yaml:8: budget.patience:",
            "greater than or equal to 1",
        ),
        (
            "budget: {n_trials: 5, target: 0.9}\nenqueue:\n  - {x: 0.5, y: 0.5}\n  - {x: 2}\n",
            "sweep.yaml:11: enqueue.1.x:",
            "outside [0, 1]",
        ),
        (
            "budget: {n_trials: 5}\nenqueue:\n  - {x: 0.5, y: 0.7}\n",
            "sweep.yaml:10: enqueue.0.y:",
            "not one of the choices [0.0, 0.5]",
        ),
        ("budget: {n_trials: 5}\nenqueue:\n  - {xx: 0.5}\n", "enqueue.0.xx:", "did you mean 'x'"),
        (
            "budget: {n_trials: 1}\nenqueue:\n  - {x: 0.1}\n  - {x: 0.2}\n",
            "sweep.yaml:9: enqueue:",
            "2 enqueued configs do not fit budget.n_trials 1",
        ),
        (
            "budget: {n_trials: 5}\nwarm_start: {from_sweep: s}\n",
            "sweep.yaml:9: warm_start.from_sweep:",
            "cannot warm-start from itself",
        ),
        (
            "budget: {n_trials: 5}\ncallbacks: [notify]\n",
            "sweep.yaml:9: callbacks.0:",
            "'module.path:function'",
        ),
    ],
)
def test_bad_stop_rules_enqueues_and_callbacks_name_their_line(
    tmp_path: Path, extra: str, where: str, says: str
) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(spec_file(tmp_path, extra), check_objective=False)
    assert where in str(info.value) and says in str(info.value)


def test_metric_target_is_budget_target_and_the_two_must_agree(tmp_path: Path) -> None:
    extra = "budget: {n_trials: 5}\n"
    path = spec_file(tmp_path, extra)
    path.write_text(path.read_text().replace("maximize}", "maximize, target: 0.9}"))
    spec = load_spec(path, check_objective=False)
    assert spec.budget.target == 0.9 and spec.budget.on_target == "finish"
    # The stored spec agents read back is the same spec.
    assert load_spec_from_dict(json.loads(agent_spec_json(spec))).budget.target == 0.9
    path.write_text(path.read_text().replace("n_trials: 5", "n_trials: 5, target: 0.95"))
    with pytest.raises(SpecError, match=r"sweep.yaml:7: metric.target: .*disagree"):
        load_spec(path, check_objective=False)


def test_a_callback_that_does_not_import_is_refused_at_its_line(tmp_path: Path) -> None:
    path = spec_file(tmp_path, "budget: {n_trials: 5}\ncallbacks: [early:record, early:nope]\n")
    with pytest.raises(ObjectiveImportError, match=r"sweep.yaml:9: callbacks.1: .*no function"):
        load_spec(path)


# -- real sweeps --------------------------------------------------------------------------


def write(tmp_path: Path, name: str, **keys: object) -> Path:
    spec: dict[str, object] = {
        "name": name,
        "objective": "early:by_number",
        "code_dir": str(OBJECTIVES_DIR),
        "parameters": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
        "metric": {"name": "score", "direction": "maximize"},
        "sampler": {"name": "random", "seed": 3},
        "pruner": "none",
        "parallelism": 1,
        **keys,
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def study_of(url: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=url)


@pytest.mark.ray
@pytest.mark.usefixtures("local_ray")
def test_a_target_reached_by_the_third_trial_ends_the_sweep_and_callbacks_hear_it(
    postgres_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    events = tmp_path / "events.jsonl"
    monkeypatch.setenv("SWEEP_TEST_EVENTS", str(events))
    path = write(
        tmp_path,
        "target",
        budget={"n_trials": 8, "target": 0.2},
        callbacks=["early:explode", "early:record"],  # the first always raises
    )
    with caplog.at_level(logging.WARNING, logger="sweep.callbacks"):
        result = sweep.launch(sweep.load_spec(path), storage=postgres_url)
    # Trials 0, 1, 2 return 0.0, 0.1, 0.2: the third reaches the target.
    assert result.state == "STOPPED" and result.counts.complete == 3
    assert result.counts.finished == 3 and result.best_trial_number == 2
    assert "budget.target 0.2 reached by trial 2" in result.stopped_by
    database = Database(postgres_url)
    record = get_sweep_record(database, "target")
    database.dispose()
    assert record is not None and record.status == "STOPPED"
    sweep_invariants(postgres_url, "target")

    # Every trial's end and the sweep's end reached the recording callback, in order,
    # although the callback before it raised each time (logged, the sweep went on).
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    assert [(e["kind"], e["trial_number"]) for e in lines] == [
        ("trial_end", 0),
        ("trial_end", 1),
        ("trial_end", 2),
        ("sweep_end", None),
    ]
    assert lines[-1]["state"] == "STOPPED" and lines[-1]["best_value"] == 0.2
    assert [e["value"] for e in lines[:3]] == [0.0, 0.1, 0.2]
    assert all(0.0 <= e["params"]["x"] <= 1.0 for e in lines[:3])
    failures = [r for r in caplog.records if "callback early:explode raised" in r.getMessage()]
    assert len(failures) == 4 and failures[0].exc_info is not None

    # A relaunch finds the target reached: nothing runs.
    again = sweep.launch(sweep.load_spec(path), storage=postgres_url)
    assert again.trials_this_launch == 0 and again.state == "STOPPED"
    assert again.counts.complete == 3


@pytest.mark.ray
@pytest.mark.usefixtures("local_ray")
def test_on_target_cancel_kills_the_running_trials(postgres_url: str, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "cancel",
        objective="early:first_wins",
        budget={"n_trials": 6, "target": 1.0, "on_target": "cancel"},
        parallelism=2,
    )
    result = sweep.launch(sweep.load_spec(path), storage=postgres_url)
    # Trial 0 reached the target; the trial running beside it (a minute long) was
    # killed: it uses no budget, and nothing else started.
    assert result.state == "CANCELLED" and "reached by trial 0" in result.stopped_by
    assert result.counts.complete == 1 and result.counts.finished == 1
    assert result.counts.killed >= 1 and result.elapsed_s < 30
    running = study_of(postgres_url, "cancel").trials[1]
    assert running.state == TrialState.FAIL and running.system_attrs["sweep:killed"]
    assert (
        running.system_attrs["sweep:error"] == "cancelled: budget.target 1 reached by trial 0 (1)"
    )
    sweep_invariants(postgres_url, "cancel")


@pytest.mark.ray
@pytest.mark.usefixtures("local_ray")
def test_enqueued_configs_run_first_and_once_with_four_workers_and_seed_a_warm_start(
    postgres_url: str, tmp_path: Path
) -> None:
    configs = [{"x": 0.1, "y": 0.0}, {"x": 0.2, "y": 0.5}, {"x": 0.9, "y": 0.5}, {"x": 0.4}]
    space = {
        "x": {"type": "float", "low": 0.0, "high": 1.0},
        "y": {"type": "categorical", "choices": [0.0, 0.5]},
    }
    keys = {"objective": "early:echo", "parameters": space, "parallelism": 4}
    path = write(tmp_path, "queued", budget={"n_trials": 6}, enqueue=configs, **keys)
    result = sweep.launch(sweep.load_spec(path), storage=postgres_url)
    assert result.counts.complete == 6

    def runs_of_each_config() -> list[int]:
        trials = study_of(postgres_url, "queued").trials
        return [sum(t.params.items() >= c.items() for t in trials) for c in configs]

    trials = study_of(postgres_url, "queued").trials
    assert runs_of_each_config() == [1, 1, 1, 1]
    # Enqueued first: they are the study's first four trials.
    assert all("sweep:enqueued" in t.system_attrs for t in trials[:4])
    assert not any("sweep:enqueued" in t.system_attrs for t in trials[4:])
    # A relaunch with a larger budget (which opens the study first) does not enqueue
    # them again: they ran.
    path = write(tmp_path, "queued", budget={"n_trials": 8}, enqueue=configs, **keys)
    database = Database(postgres_url)
    open_study(sweep.load_spec(path), database, database.optuna_storage())
    database.dispose()
    assert len(study_of(postgres_url, "queued").trials) == 6

    # Warm start from it, on a narrower x: the 6 complete trials seed the sampler (x
    # kept where it fits), use no budget and are never this sweep's best.
    narrow = {**space, "x": {"type": "float", "low": 0.0, "high": 0.5}}
    warm = write(
        tmp_path,
        "warm",
        objective="early:echo",
        parameters=narrow,
        budget={"n_trials": 2},
        warm_start={"from_sweep": "queued"},
        # With 6 startup trials, TPE models from the first trial on the 6 copies.
        sampler={"name": "tpe", "seed": 1, "multivariate": True, "n_startup_trials": 6},
        registry=None,
    )
    result = sweep.launch(sweep.load_spec(warm), storage=postgres_url)
    assert result.counts.complete == 2 and result.counts.seeded == 6
    study = study_of(postgres_url, "warm")
    seeds = [t for t in study.trials if "sweep:warm_start" in t.system_attrs]
    assert len(seeds) == 6 and all(t.state == TrialState.COMPLETE for t in seeds)
    assert all(t.params.get("x", 0.0) <= 0.5 and "y" in t.params for t in seeds)
    assert any("x" not in t.params for t in seeds)  # x = 0.9 lies outside the new space
    own = {t.number for t in study.trials if t not in seeds}
    # The source's 0.9 + 0.5 is out of this sweep's reach (x <= 0.5): Optuna's best is
    # that copy, the sweep's best (its result, its status, what it would register) is
    # its own.
    assert study.best_trial in seeds and result.best_trial_number in own
    assert sweep_status("warm", storage=postgres_url)[0].best_trial in own
    # Launched again, it is not seeded twice.
    sweep.launch(sweep.load_spec(warm), storage=postgres_url)
    assert (
        sum("sweep:warm_start" in t.system_attrs for t in study_of(postgres_url, "warm").trials)
        == 6
    )

    # A missing source is refused before anything is created.
    missing = write(tmp_path, "cold", budget={"n_trials": 2}, warm_start={"from_sweep": "nope"})
    with pytest.raises(
        SpecError, match=r"warm_start.from_sweep: no sweep called 'nope'.*sweep status"
    ):
        sweep.launch(sweep.load_spec(missing), storage=postgres_url)
    with pytest.raises(KeyError):
        study_of(postgres_url, "cold")


def agent_only_sweep(url: str, root: Path, name: str, objective: str, budget: dict) -> None:
    """The study and the sweep's record as a launch leaves them, with no controller."""
    context = sweep_context(
        url,
        root,
        name,
        objective,
        budget=budget,
        parameters={"x": {"type": "float", "low": 0.0, "high": 1.0}},
    )
    database = Database(url)
    storage = database.optuna_storage()
    study_id = storage.get_study_id_from_name(name)
    storage.set_study_system_attr(study_id, SPEC_ATTR, agent_spec_json(context.spec))
    database.dispose()


def stop_record(url: str, name: str) -> tuple[str | None, dict]:
    database = Database(url)
    record = get_sweep_record(database, name)
    database.dispose()
    study = study_of(url, name)
    return (record.status if record else None), study._storage.get_study_system_attrs(
        study._study_id
    )["sweep:stopped_by"]


def test_target_and_patience_end_sweeps_run_by_agents_alone(
    postgres_url: str, tmp_path: Path
) -> None:
    agent_only_sweep(
        postgres_url, tmp_path, "aimed", "early:by_number", {"n_trials": 8, "target": 0.2}
    )
    result = run_agent("aimed", storage=postgres_url, code_dir=str(OBJECTIVES_DIR))
    assert result.trials == 3  # values 0.0, 0.1, 0.2
    status, why = stop_record(postgres_url, "aimed")
    assert status == "STOPPED" and why["rule"] == "target"

    agent_only_sweep(
        postgres_url, tmp_path, "patient", "early:plateau", {"n_trials": 10, "patience": 4}
    )
    result = run_agent("patient", storage=postgres_url, code_dir=str(OBJECTIVES_DIR))
    # Values 0.5, 0.7 (the best), then 0.6, 0.65, 0.6, 0.62: four without improving.
    assert result.trials == 6
    study = study_of(postgres_url, "patient")
    assert [t.value for t in study.trials] == [0.5, 0.7, 0.6, 0.65, 0.6, 0.62]
    status, why = stop_record(postgres_url, "patient")
    assert status == "STOPPED" and why["rule"] == "patience"
    assert "none improved on the best (0.7)" in why["message"]
