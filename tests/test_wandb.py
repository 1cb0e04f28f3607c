"""W&B sweep configs read unchanged: every documented key honoured or refused by name
(checked against W&B's own schema in tests/assets), every distribution sampled through
Optuna within its range and on its quantisation, errors located in the W&B file, the
CLI's detection message, `sweep convert`, and the shipped example run for real."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from click.testing import CliRunner
from scipy import stats

from sweep.cli import cli
from sweep.collector import MetricCollector
from sweep.errors import SpecError, SpecErrors
from sweep.spec import WANDB, build_argv, load_spec, load_spec_from_dict, native_yaml

optuna.logging.set_verbosity(optuna.logging.WARNING)

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((ROOT / "tests/assets/wandb_sweep_schema.json").read_text())


def wandb(**overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "program": "train.py",
        "method": "random",
        "metric": {"name": "val_loss", "goal": "minimize"},
        "parameters": {"lr": {"min": 0.001, "max": 0.1}},
        "run_cap": 10,
    }
    config.update(overrides)
    return {k: v for k, v in config.items() if v is not None}


def error_of(config: dict[str, Any]) -> SpecError:
    with pytest.raises(SpecError) as info:
        load_spec_from_dict(config)
    return info.value


def errors_of(config: dict[str, Any]) -> list[SpecError]:
    err = error_of(config)
    return err.errors if isinstance(err, SpecErrors) else [err]


# ---------------------------------------------------------------------------------------
# Keys: W&B's schema, every key honoured or refused by name
# ---------------------------------------------------------------------------------------

HONOURED = {
    "program", "command", "method", "metric", "parameters", "early_terminate", "run_cap",
    "name", "description", "project", "entity", "apiVersion", "kind",
}  # fmt: skip
REFUSED = {"controller", "job", "image_uri", "scheduler", "metrics"}


def test_every_top_level_key_of_the_schema_is_honoured_or_refused() -> None:
    assert set(SCHEMA["properties"]) == HONOURED | REFUSED


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("controller", {"type": "local"}),
        ("job", "entity/project/job:v0"),
        ("image_uri", "docker.io/me/train:1"),
        ("scheduler", {"engine": "optuna"}),
        ("metrics", [{"name": "a"}, {"name": "b"}]),
    ],
)
def test_refused_keys_are_errors_naming_them(key: str, value: Any) -> None:
    [err] = errors_of(wandb(**{key: value}))
    assert err.key_path == key
    assert f"{key} cannot be honoured" in err.reason


def test_honoured_top_level_keys_reach_the_native_spec() -> None:
    spec = load_spec_from_dict(
        wandb(
            name="My sweep #1",
            description="lr search",
            project="proj",
            entity="team",
            apiVersion="v1",
            kind="sweep",
            command=["${env}", "${interpreter}", "${program}", "--epochs", 5, "${args}"],
            run_cap=7,
            method="bayes",
        )
    )
    assert spec.dialect == WANDB
    assert spec.name == "My-sweep-1"
    assert spec.description == "lr search"
    assert spec.tags == {"wandb.project": "proj", "wandb.entity": "team", "wandb.apiVersion": "v1"}
    assert spec.program == "train.py"
    assert spec.command == ["${env}", "${interpreter}", "${program}", "--epochs", "5", "${args}"]
    assert spec.budget.n_trials == 7
    assert spec.sampler.name == "tpe"
    assert spec.pruner.name == "none"  # no early_terminate: W&B stops no run
    assert [e.key_path for e in errors_of(wandb(kind="job"))] == ["kind"]


@pytest.mark.parametrize(("method", "sampler"), [("bayes", "tpe"), ("random", "random")])
def test_methods_map_to_samplers(method: str, sampler: str) -> None:
    assert load_spec_from_dict(wandb(method=method)).sampler.name == sampler


def test_grid_method_runs_the_grid_with_run_cap_as_a_cap() -> None:
    params = {"a": {"values": [1, 2, 3]}, "b": {"min": 1, "max": 2}}
    spec = load_spec_from_dict(wandb(method="grid", parameters=params, run_cap=None))
    assert spec.sampler.is_grid and spec.budget.n_trials == 6
    assert len(spec.grid_points()) == 6
    capped = load_spec_from_dict(wandb(method="grid", parameters=params, run_cap=4))
    assert capped.budget.n_trials == 4
    larger = load_spec_from_dict(wandb(method="grid", parameters=params, run_cap=100))
    assert larger.budget.n_trials == 6


def test_a_config_without_method_is_still_recognised_by_its_parameters() -> None:
    [err] = errors_of(wandb(method=None))
    assert err.key_path == "method" and "bayes, random or grid, got None" in err.reason


def test_custom_method_and_missing_run_cap_are_named() -> None:
    [err] = errors_of(wandb(method="custom"))
    assert err.key_path == "method" and "custom needs a W&B scheduler" in err.reason
    [err] = errors_of(wandb(run_cap=None))
    assert err.key_path == "run_cap" and "add run_cap" in err.reason


def test_metric_keys_of_the_schema() -> None:
    assert set(SCHEMA["definitions"]["metric"]["properties"]) == {
        "name", "goal", "target", "impute", "impute_while_running",
    }  # fmt: skip
    spec = load_spec_from_dict(wandb(metric={"name": "acc", "goal": "maximize", "target": 0.9}))
    assert (spec.metric.name, spec.metric.direction, spec.metric.target) == ("acc", "maximize", 0.9)
    # W&B's metric.target is the native budget.target.
    assert spec.budget.target == 0.9 and spec.budget.reached(0.95, "maximize")
    assert not spec.budget.reached(0.85, "maximize")
    assert load_spec_from_dict(wandb(metric={"name": "l"})).metric.direction == "minimize"
    for key in ("impute", "impute_while_running"):
        [err] = errors_of(wandb(metric={"name": "l", key: "worst"}))
        assert err.key_path == f"metric.{key}" and "cannot be honoured" in err.reason
    [err] = errors_of(wandb(metric=None))
    assert err.key_path == "metric" and "metric is required" in err.reason


def test_early_terminate_keys_of_the_schema_map_to_hyperband() -> None:
    properties = SCHEMA["definitions"]["hyperband_stopping"]["properties"]
    assert set(properties) == {"type", "max_iter", "min_iter", "s", "eta", "strict"}
    spec = load_spec_from_dict(
        wandb(early_terminate={"type": "hyperband", "min_iter": 3, "eta": 2, "strict": True})
    )
    assert spec.pruner.name == "hyperband"
    assert spec.pruner.options == {"reduction_factor": 2, "min_resource": 3}
    # W&B's bands for max_iter 27, s 2, eta 3 are 9 and 3: the first is min_resource.
    spec = load_spec_from_dict(
        wandb(early_terminate={"type": "hyperband", "max_iter": 27, "s": 2, "eta": 3})
    )
    assert spec.pruner.options == {"reduction_factor": 3, "max_resource": 27, "min_resource": 3}
    assert isinstance(spec.pruner.build(), optuna.pruners.HyperbandPruner)


@pytest.mark.parametrize(
    ("early_terminate", "key", "needle"),
    [
        ({"type": "hyperband", "min_iter": 3, "strict": False}, "early_terminate.strict", "false"),
        ({"type": "hyperband", "min_iter": 3, "eta": 2.5}, "early_terminate.eta", "integer"),
        ({"type": "envelope", "min_iter": 3}, "early_terminate.type", "hyperband"),
        ({"type": "hyperband"}, "early_terminate", "min_iter, or max_iter and s"),
        ({"type": "hyperband", "max_iter": 9}, "early_terminate", "needs s"),
        ({"type": "hyperband", "min_iter": 3, "bands": 2}, "early_terminate.bands", "unknown"),
    ],
)
def test_early_terminate_problems_are_named(
    early_terminate: dict[str, Any], key: str, needle: str
) -> None:
    errors = errors_of(wandb(early_terminate=early_terminate))
    assert key in [e.key_path for e in errors]
    assert any(needle in e.reason for e in errors if e.key_path == key)


def test_nested_parameters_become_dotted_names() -> None:
    spec = load_spec_from_dict(
        wandb(
            parameters={
                "batch_size": {"values": [32, 64]},
                "optimizer": {
                    "parameters": {
                        "lr": {"values": [0.001, 0.0001]},
                        "nadam": {"parameters": {"beta": {"values": [0.9, 0.95]}}},
                    }
                },
            }
        )
    )
    assert list(spec.parameters) == ["batch_size", "optimizer.lr", "optimizer.nadam.beta"]
    params = {"batch_size": 32, "optimizer.lr": 0.001, "optimizer.nadam.beta": 0.9}
    argv = build_argv(["${args}", "${args_json}"], params)
    assert argv[:3] == ["--batch_size=32", "--optimizer.lr=0.001", "--optimizer.nadam.beta=0.9"]
    assert json.loads(argv[3]) == {
        "batch_size": 32,
        "optimizer": {"lr": 0.001, "nadam": {"beta": 0.9}},
    }


def test_unknown_keys_and_distributions_are_named_with_their_lines(tmp_path: Path) -> None:
    path = tmp_path / "wandb.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            program: train.py
            method: random
            metric: {name: loss}
            run_cap: 5
            budget: {n_trials: 5}
            parameters:
              lr:
                distribution: gaussian
              wd:
                min: 0.1
                max: 1.0
                mu: 3
            """
        )
    )
    with pytest.raises(SpecErrors) as info:
        load_spec(path, check_objective=False)
    by_key = {e.key_path: e for e in info.value.errors}
    assert by_key["budget"].line == 5
    assert "read as one because it has method" in by_key["budget"].reason
    assert by_key["parameters.lr.distribution"].line == 8
    assert "unknown distribution 'gaussian'" in by_key["parameters.lr.distribution"].reason
    assert by_key["parameters.wd.mu"].line == 12
    assert "'mu' is not a key of distribution uniform" in by_key["parameters.wd.mu"].reason


def test_errors_found_by_the_native_model_point_at_the_wandb_key(tmp_path: Path) -> None:
    path = tmp_path / "wandb.yaml"
    path.write_text(
        "program: train.py\nmethod: random\nmetric: {name: loss, goal: lower}\nrun_cap: 5\n"
        "parameters:\n  x:\n    distribution: normal\n    sigma: -1\n"
    )
    with pytest.raises(SpecErrors) as info:
        load_spec(path, check_objective=False)
    by_key = {e.key_path: e for e in info.value.errors}
    assert by_key["metric.goal"].line == 3 and "minimize" in by_key["metric.goal"].reason
    sigma = by_key["parameters.x.sigma"]  # a key W&B and sweep share keeps its own line
    assert sigma.line == 8 and "greater than 0" in sigma.reason


def test_probabilities_are_checked_as_wandb_checks_them() -> None:
    [err] = errors_of(wandb(parameters={"c": {"values": [1, 2], "probabilities": [0.5, 0.4]}}))
    assert err.key_path == "parameters.c" and "summing to 1" in err.reason
    [err] = errors_of(wandb(parameters={"c": {"values": [1, 2], "probabilities": [1.0]}}))
    assert "one number per value" in err.reason


def test_native_specs_are_not_read_as_wandb() -> None:
    native = {
        "name": "n",
        "objective": "m:f",
        "parameters": {"x": {"type": "float", "low": 0, "high": 1}},
        "metric": {"name": "l", "direction": "minimize"},
        "budget": {"n_trials": 3},
    }
    assert load_spec_from_dict(native).dialect == "native"


# ---------------------------------------------------------------------------------------
# Distributions: sampled through Optuna, in range and on their quantisation
# ---------------------------------------------------------------------------------------


def _schema_distributions() -> set[str]:
    names: set[str] = set()
    for ref in SCHEMA["definitions"]["parameter"]["anyOf"]:
        definition = SCHEMA["definitions"][ref["$ref"].split("/")[-1]]
        for variant in definition.get("anyOf", [definition]):
            names.update(variant.get("properties", {}).get("distribution", {}).get("enum", []))
    return names


def _on_grid(value: float, q: float) -> bool:
    return abs(value / q - round(value / q)) < 1e-9


E = math.e
# name -> (W&B parameter config, check(values), scipy distribution for a KS test or None)
CASES: dict[str, tuple[dict[str, Any], Callable[[list[Any]], bool], Any]] = {
    "constant": ({"value": [64, 64]}, lambda v: all(x == [64, 64] for x in v), None),
    "categorical": (
        {"values": ["a", [1, 2], {"k": 1}]},
        lambda v: {json.dumps(x) for x in v} == {'"a"', "[1, 2]", '{"k": 1}'},
        None,
    ),
    "categorical_w_probabilities": (
        {"values": ["x", "y", "z"], "probabilities": [0.7, 0.2, 0.1]},
        lambda v: (
            abs(Counter(v)["x"] / len(v) - 0.7) < 0.05
            and abs(Counter(v)["z"] / len(v) - 0.1) < 0.03
        ),
        None,
    ),
    "int_uniform": (
        {"min": -2, "max": 3},
        lambda v: all(type(x) is int for x in v) and set(v) == set(range(-2, 4)),
        None,
    ),
    "uniform": (
        {"min": -1.0, "max": 2.0},
        lambda v: all(-1 <= x <= 2 for x in v),
        stats.uniform(-1, 3),
    ),
    "q_uniform": (
        {"min": 0.05, "max": 1.0, "q": 0.25},
        lambda v: (
            all(0.05 <= x <= 1.0 and _on_grid(x, 0.25) for x in v)
            and set(v) == {0.25, 0.5, 0.75, 1.0}
        ),
        None,
    ),
    "log_uniform": (
        {"min": -5, "max": 0},
        lambda v: all(math.exp(-5) <= x <= 1 for x in v),
        stats.loguniform(math.exp(-5), 1),
    ),
    "log_uniform_values": (
        {"min": 1e-4, "max": 1e-1},
        lambda v: all(1e-4 <= x <= 1e-1 for x in v),
        stats.loguniform(1e-4, 1e-1),
    ),
    "inv_log_uniform": (
        {"min": 0, "max": 5},
        lambda v: all(math.exp(-5) <= x <= 1 for x in v),
        stats.loguniform(math.exp(-5), 1),
    ),
    "inv_log_uniform_values": (
        {"min": 0.01, "max": 10},
        lambda v: all(0.01 <= x <= 10 for x in v),
        stats.loguniform(0.01, 10),
    ),
    "q_log_uniform": (
        {"min": 0, "max": math.log(1000), "q": 10},
        lambda v: all(type(x) is int and 10 <= x <= 1000 and x % 10 == 0 for x in v),
        None,
    ),
    "q_log_uniform_values": (
        {"min": 0.001, "max": 1.0, "q": 0.05},
        lambda v: all(0.05 <= x <= 1.0 and _on_grid(x, 0.05) for x in v),
        None,
    ),
    "normal": ({"mu": 2.0, "sigma": 3.0}, lambda v: True, stats.norm(2.0, 3.0)),
    "q_normal": (
        {"mu": 0, "sigma": 5, "q": 2},
        lambda v: all(type(x) is int and x % 2 == 0 for x in v) and abs(sum(v) / len(v)) < 0.5,
        None,
    ),
    "log_normal": (
        {"mu": 1.0, "sigma": 0.5},
        lambda v: all(x > 0 for x in v),
        stats.lognorm(s=0.5, scale=E),
    ),
    "q_log_normal": (
        {"mu": 1.0, "sigma": 0.5, "q": 0.5},
        lambda v: all(x >= 0 and _on_grid(x, 0.5) for x in v),
        None,
    ),
    "beta": ({"a": 2.0, "b": 5.0}, lambda v: all(0 <= x <= 1 for x in v), stats.beta(2.0, 5.0)),
    "q_beta": (
        {"a": 0.5, "b": 0.5, "q": 0.3},
        lambda v: all(0 <= x <= 0.9 + 1e-12 and _on_grid(x, 0.3) for x in v),
        None,
    ),
}


def test_every_distribution_of_the_schema_is_covered() -> None:
    assert _schema_distributions() == set(CASES)


def _sample(config: dict[str, Any], sampler: optuna.samplers.BaseSampler, n: int) -> list[Any]:
    spec = load_spec_from_dict(wandb(parameters={"p": config}))
    study = optuna.create_study(sampler=sampler)
    values = []
    for _ in range(n):
        trial = study.ask()
        value = spec.suggest_parameters(trial)["p"]
        # What Optuna stored decodes to the value the trial got.
        assert spec.decode_params(trial.params)["p"] == value
        study.tell(trial, float(len(str(value)) % 7))  # any value: TPE needs finished trials
        values.append(value)
    return values


@pytest.mark.parametrize("name", sorted(CASES))
def test_distribution_samples_stay_in_range_on_quantisation_and_in_law(name: str) -> None:
    config, check, law = CASES[name]
    distribution = {} if name in ("categorical_w_probabilities",) else {"distribution": name}
    values = _sample({**config, **distribution}, optuna.samplers.RandomSampler(seed=7), 1500)
    assert check(values), f"{name}: {sorted(values)[:5]} ... {sorted(values)[-5:]}"
    if law is not None:
        assert stats.kstest(values, law.cdf).pvalue > 1e-3


@pytest.mark.parametrize("name", sorted(CASES))
def test_tpe_samples_every_distribution_within_its_range(name: str) -> None:
    config, check, _ = CASES[name]
    values = _sample(
        {**config, "distribution": name},
        optuna.samplers.TPESampler(seed=1, n_startup_trials=5),
        20,
    )
    # The other checks need many draws (every value seen, a mean).
    if name not in ("categorical", "categorical_w_probabilities", "int_uniform", "q_uniform",
                    "q_normal"):  # fmt: skip
        assert check(values)


# ---------------------------------------------------------------------------------------
# Command and macros
# ---------------------------------------------------------------------------------------


def test_every_macro_expands_as_wandb_expands_it() -> None:
    params = {"lr": 0.01, "deep": True, "wide": False, "act": "relu"}
    expand = lambda macro: build_argv([macro], params, json_file="/tmp/p.json")  # noqa: E731
    assert expand("${args}") == ["--lr=0.01", "--deep=True", "--wide=False", "--act=relu"]
    assert expand("${args_no_equals}") == [
        "--lr", "0.01", "--deep", "True", "--wide", "False", "--act", "relu",
    ]  # fmt: skip
    assert expand("${args_no_hyphens}") == ["lr=0.01", "deep=True", "wide=False", "act=relu"]
    assert expand("${args_no_boolean_flags}") == ["--lr=0.01", "--deep", "--act=relu"]
    assert expand("${args_append_hydra}")[0] == "+lr=0.01"
    assert expand("${args_override_hydra}")[0] == "++lr=0.01"
    for macro in ("${args_json}", "${json}"):
        assert json.loads(expand(macro)[0]) == params
    for macro in ("${args_json_file}", "${json_file}"):
        assert expand(macro) == ["/tmp/p.json"]
    argv = build_argv(
        None, {"lr": 0.5}, program="train.py", interpreter="/venv/bin/python", platform="linux"
    )
    assert argv == ["/usr/bin/env", "/venv/bin/python", "train.py", "--lr=0.5"]
    assert build_argv(["${env}", "x"], {}, platform="win32") == ["x"]
    assert build_argv(["--data=${envvar:DATA}/x"], {}, environ={"DATA": "/d"}) == ["--data=/d/x"]
    with pytest.raises(ValueError, match="DATA is not set"):
        build_argv(["${envvar:DATA}"], {}, environ={})


@pytest.mark.parametrize(
    ("command", "key", "needle"),
    [
        (["python", "${argz}"], "command.1", "unknown macro ${argz}"),
        (["python", "--cfg=${args_json}"], "command.1", "must be a whole item"),
        ([], "command", "must not be empty"),
    ],
)
def test_bad_commands_are_named(command: list[str], key: str, needle: str) -> None:
    [err] = errors_of(wandb(command=command))
    assert err.key_path == key and needle in err.reason


def test_program_macro_needs_a_program_and_objective_excludes_both() -> None:
    [err] = errors_of(wandb(program=None, command=["python", "${program}"]))
    assert err.key_path == "command.1" and "needs the spec's program" in err.reason
    native = {
        "name": "n",
        "objective": "m:f",
        "program": "train.py",
        "metric": {"name": "l", "direction": "minimize"},
        "budget": {"n_trials": 3},
    }
    [err] = errors_of(native)
    assert err.key_path == "program" and "mutually exclusive" in err.reason
    del native["objective"], native["program"]
    [err] = errors_of(native)
    assert err.key_path == "objective" and "program (a script)" in err.reason


def test_yaml_keeps_macros_in_command_and_substitutes_environment_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATA_DIR", "/data")
    path = tmp_path / "spec.yaml"
    path.write_text(
        "name: n\nprogram: train.py\nmetric: {name: l, direction: minimize}\n"
        "budget: {n_trials: 2}\ncommand: [python, '${program}', '--data=${DATA_DIR}', "
        "'--out=${envvar:OUT}', '${args_no_boolean_flags}']\n"
    )
    spec = load_spec(path, check_objective=False)
    assert spec.command == [
        "python", "${program}", "--data=/data", "--out=${envvar:OUT}", "${args_no_boolean_flags}",
    ]  # fmt: skip


# ---------------------------------------------------------------------------------------
# CLI, convert, and the shipped example
# ---------------------------------------------------------------------------------------

EXAMPLE = ROOT / "sweeps" / "wandb-sweep.yaml"


def test_validate_says_the_file_was_read_as_a_wandb_config() -> None:
    result = CliRunner().invoke(cli, ["validate", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    assert "read as a W&B sweep config" in result.output
    assert "5 declared parameters" in result.output


def test_convert_prints_a_native_spec_that_loads_as_the_same_sweep(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["convert", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    converted = yaml.safe_load(result.output)
    assert "method" not in converted and converted["sampler"] == {"name": "tpe"}
    (tmp_path / "train.py").write_text("")
    native_path = tmp_path / "native.yaml"
    native_path.write_text(result.output)
    native = load_spec(native_path)
    original = load_spec(EXAMPLE)
    assert native.dialect == "native" and original.dialect == WANDB
    assert native.model_dump() == original.model_dump()
    assert native_yaml(native_path)[0] == result.output  # a native spec prints as written


def test_the_example_script_runs_with_the_example_config_and_its_lines_are_metrics() -> None:
    spec = load_spec(EXAMPLE)  # check_objective: the program exists
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    params = spec.suggest_parameters(study.ask())
    assert params["epochs"] == 10 and params["batch_size"] % 16 == 0
    argv = build_argv(spec.command, params, program=str(spec.code_path / str(spec.program)))
    output = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60).stdout
    points = MetricCollector.from_spec(spec).feed_all(output.splitlines())
    assert [p.step for p in points] == list(range(1, 11))
    assert {p.name for p in points} == {spec.metric.name}
    assert all(0 < p.value < 10 for p in points)


def test_agents_get_a_spec_that_round_trips() -> None:
    spec = load_spec(EXAMPLE, check_objective=False)
    again = load_spec_from_dict(json.loads(json.dumps(spec.model_dump(mode="json"))))
    assert again.model_dump() == spec.model_dump()
    assert sys.executable  # the interpreter ${interpreter} expands to by default
