"""Tests of sweep.spec: loading, validating and using a YAML sweep spec."""

from __future__ import annotations

import math
import pickle
import sys
import textwrap
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
import pytest
from pydantic import ValidationError

from sweep.errors import ObjectiveImportError, SpecError, SpecErrors
from sweep.spec import (
    PRUNERS,
    SAMPLERS,
    CategoricalParam,
    FloatParam,
    IntParam,
    SweepSpec,
    interpolate_env,
    load_spec,
    load_spec_from_dict,
    resolve_objective,
)
from sweep.spec._grid import GridSampler
from sweep.tpe import CachingTPESampler

optuna.logging.set_verbosity(optuna.logging.WARNING)

MODULE_PREFIX = "sweep_spec_test_objective_"

OBJECTIVE_SOURCE = """\
def objective(trial, params):
    return 0.5


def helper():
    return None
"""


# ---------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _restore_import_state() -> Iterator[None]:
    """resolve_objective edits sys.path and imports modules; undo both after each test.

    Only this file's own objective modules are forgotten: dropping a library submodule
    imported meanwhile would re-import it later with new class objects.
    """
    path = list(sys.path)
    yield
    sys.path[:] = path
    for name in [n for n in sys.modules if n.startswith(MODULE_PREFIX)]:
        del sys.modules[name]


@pytest.fixture
def module_name() -> str:
    """A module name no other test uses, so that sys.modules never serves a stale one."""
    return f"{MODULE_PREFIX}{uuid.uuid4().hex[:12]}"


def write_module(directory: Path, name: str, source: str = OBJECTIVE_SOURCE) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.py"
    path.write_text(source)
    return path


def write_spec(directory: Path, text: str, name: str = "spec.yaml") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(textwrap.dedent(text))
    return path


def line_containing(path: Path, needle: str) -> int:
    """1-based number of the first line of ``path`` that contains ``needle``."""
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in {path}")


def minimal(module: str = "mod", extra: str = "") -> str:
    """A valid spec with only the required keys, plus ``extra`` lines at the end."""
    return (
        "name: demo\n"
        f"objective: {module}:objective\n"
        "metric: {name: loss, direction: minimize}\n"
        "budget: {n_trials: 5}\n"
        f"{textwrap.dedent(extra)}"
    )


def load_error(path: Path, **kwargs: bool) -> SpecError:
    with pytest.raises(SpecError) as info:
        load_spec(path, **kwargs)
    return info.value


def single_error(path: Path, **kwargs: bool) -> SpecError:
    err = load_error(path, **kwargs)
    assert not isinstance(err, SpecErrors), str(err)
    return err


FULL_SPEC = """\
name: quickstart                    # letters, digits, . _ - only
objective: {module}:objective
code_dir: .
parameters:
  alpha: {{type: log_uniform, low: 1.0e-6, high: 1.0e-1}}
  eta0: {{type: uniform, low: 0.001, high: 0.5}}
  hidden: {{type: int, low: 8, high: 128, log: true}}
  width: {{type: float, low: 0.0, high: 1.0, step: 0.1}}
  loss: {{type: categorical, choices: [hinge, log_loss, modified_huber]}}
metric: {{name: val_accuracy, direction: maximize}}
sampler: {{name: tpe, seed: 42, multivariate: true, n_startup_trials: 10}}
pruner: {{name: hyperband, min_resource: 1, max_resource: 20, reduction_factor: 3}}
budget: {{n_trials: 40, timeout: 600}}
parallelism: 2
resources: {{cpu: 1, gpu: 0.5}}
ray: {{address: null, num_cpus: null, num_gpus: null}}
storage: ${{SWEEP_DATABASE_URL}}
tracking: {{experiment: quickstart-exp, artifact_root: null}}
registry: {{model_name: digits-sgd, alias: champion, required: true}}
"""


@pytest.fixture
def full_spec(
    tmp_path: Path, module_name: str, monkeypatch: pytest.MonkeyPatch
) -> Callable[[], SweepSpec]:
    monkeypatch.setenv("SWEEP_DATABASE_URL", "sqlite:///sweep.db")
    write_module(tmp_path, module_name)
    path = write_spec(tmp_path, FULL_SPEC.format(module=module_name))
    return lambda: load_spec(path)


# ---------------------------------------------------------------------------------------
# A valid spec
# ---------------------------------------------------------------------------------------


def test_full_spec_loads_every_field_as_written(full_spec: Callable[[], SweepSpec]) -> None:
    spec = full_spec()

    assert spec.name == "quickstart"
    assert spec.objective_function == "objective"
    assert list(spec.parameters) == ["alpha", "eta0", "hidden", "width", "loss"]
    alpha = spec.parameters["alpha"]
    assert isinstance(alpha, FloatParam)
    assert (alpha.low, alpha.high, alpha.log) == (1e-6, 0.1, True)
    eta0 = spec.parameters["eta0"]
    assert isinstance(eta0, FloatParam) and not eta0.log
    hidden = spec.parameters["hidden"]
    assert isinstance(hidden, IntParam)
    assert (hidden.low, hidden.high, hidden.log, hidden.step) == (8, 128, True, 1)
    width = spec.parameters["width"]
    assert isinstance(width, FloatParam) and width.step == 0.1
    loss = spec.parameters["loss"]
    assert isinstance(loss, CategoricalParam)
    assert loss.choices == ["hinge", "log_loss", "modified_huber"]

    assert (spec.metric.name, spec.metric.direction) == ("val_accuracy", "maximize")
    assert spec.sampler.name == "tpe"
    assert spec.sampler.options == {"seed": 42, "multivariate": True, "n_startup_trials": 10}
    assert spec.sampler.seed == 42
    assert spec.pruner.name == "hyperband"
    assert spec.pruner.options == {"min_resource": 1, "max_resource": 20, "reduction_factor": 3}
    assert (spec.budget.n_trials, spec.budget.timeout) == (40, 600)
    assert spec.parallelism == 2
    assert (spec.resources.cpu, spec.resources.gpu) == (1, 0.5)
    assert (spec.ray.address, spec.ray.num_cpus, spec.ray.num_gpus) == (None, None, None)
    assert spec.storage == "sqlite:///sweep.db"
    assert spec.tracking.experiment == "quickstart-exp"
    assert spec.experiment_name == "quickstart-exp"
    assert spec.registry is not None
    assert (spec.registry.model_name, spec.registry.alias, spec.registry.required) == (
        "digits-sgd",
        "champion",
        True,
    )


def test_loaded_spec_knows_its_file_and_lines(
    full_spec: Callable[[], SweepSpec], tmp_path: Path, module_name: str
) -> None:
    spec = full_spec()
    path = tmp_path / "spec.yaml"

    assert spec.source_path == path.resolve()
    assert spec.source_path.is_absolute()
    assert spec.objective_module == module_name
    assert spec.code_path == tmp_path.resolve()
    assert spec.line_of("budget.n_trials") == line_containing(path, "budget:")
    assert spec.line_of("parameters.hidden.log") == line_containing(path, "hidden:")
    assert spec.line_of("storage") == line_containing(path, "storage:")
    # A key that is not written points at its nearest written parent.
    assert spec.line_of("resources.missing") == line_containing(path, "resources:")
    assert spec.line_of("resources.missing", nearest=False) is None


def test_defaults_apply_when_keys_are_omitted(tmp_path: Path, module_name: str) -> None:
    write_module(tmp_path, module_name)
    spec = load_spec(write_spec(tmp_path, minimal(module_name)))

    assert spec.code_dir == "."
    assert spec.code_path == tmp_path.resolve()
    assert spec.parameters == {}
    assert spec.sampler.name == "tpe" and spec.sampler.options == {}
    assert spec.sampler.seed is None
    assert spec.pruner.name == "hyperband" and spec.pruner.options == {}
    assert (spec.budget.n_trials, spec.budget.timeout) == (5, None)
    assert spec.parallelism == 1
    assert (spec.resources.cpu, spec.resources.gpu) == (1.0, 0.0)
    assert (spec.ray.address, spec.ray.num_cpus, spec.ray.num_gpus) == (None, None, None)
    assert spec.storage is None
    assert spec.tracking.experiment is None and spec.tracking.artifact_root is None
    assert spec.experiment_name == "demo"
    assert spec.registry is None
    assert isinstance(spec.sampler.build(), optuna.samplers.TPESampler)
    assert isinstance(spec.pruner.build(), optuna.pruners.HyperbandPruner)


def test_registry_alias_and_required_have_defaults(tmp_path: Path) -> None:
    path = write_spec(tmp_path, minimal(extra="registry: {model_name: m}\n"))
    spec = load_spec(path, check_objective=False)
    assert spec.registry is not None
    assert (spec.registry.alias, spec.registry.required) == ("challenger", False)


def test_null_section_means_default(tmp_path: Path) -> None:
    path = write_spec(tmp_path, minimal(extra="parameters:\nray:\nsampler:\n"))
    spec = load_spec(path, check_objective=False)
    assert spec.parameters == {}
    assert spec.sampler.name == "tpe"
    assert spec.ray.address is None


def test_code_dir_is_relative_to_the_spec_file_not_the_cwd(
    tmp_path: Path, module_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_module(tmp_path / "code", module_name)
    path = write_spec(tmp_path / "sweeps", minimal(module_name, "code_dir: ../code\n"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    spec = load_spec(path)

    assert spec.code_path == (tmp_path / "code").resolve()
    assert resolve_objective(spec)(None, {}) == 0.5


def test_check_objective_false_does_not_import(tmp_path: Path) -> None:
    path = write_spec(tmp_path, minimal("module_that_does_not_exist_anywhere"))
    spec = load_spec(path, check_objective=False)
    assert spec.objective_module == "module_that_does_not_exist_anywhere"


def test_resolve_objective_returns_the_function(tmp_path: Path, module_name: str) -> None:
    write_module(tmp_path, module_name)
    spec = load_spec(write_spec(tmp_path, minimal(module_name)))
    objective = resolve_objective(spec)
    assert objective.__name__ == "objective"
    assert objective(None, {}) == 0.5
    assert str(tmp_path.resolve()) in sys.path


def test_spec_pickles_with_its_source(full_spec: Callable[[], SweepSpec]) -> None:
    spec = full_spec()
    copy = pickle.loads(pickle.dumps(spec))
    assert copy == spec
    assert copy.source_path == spec.source_path
    assert copy.line_of("budget") == spec.line_of("budget")


def test_spec_is_frozen(full_spec: Callable[[], SweepSpec]) -> None:
    spec = full_spec()
    with pytest.raises(ValidationError, match="frozen"):
        spec.parallelism = 3  # type: ignore[misc]


# ---------------------------------------------------------------------------------------
# Samplers and pruners
# ---------------------------------------------------------------------------------------


def test_sampler_and_pruner_build_with_the_given_options(
    full_spec: Callable[[], SweepSpec],
) -> None:
    spec = full_spec()

    sampler = spec.sampler.build()
    assert isinstance(sampler, optuna.samplers.TPESampler)
    assert sampler._n_startup_trials == 10
    assert sampler._multivariate is True

    pruner = spec.pruner.build()
    assert isinstance(pruner, optuna.pruners.HyperbandPruner)
    assert (pruner._min_resource, pruner._max_resource, pruner._reduction_factor) == (1, 20, 3)


def _draws(sampler: optuna.samplers.BaseSampler, n: int = 5) -> list[float]:
    study = optuna.create_study(sampler=sampler)
    values = []
    for _ in range(n):
        trial = study.ask()
        values.append(trial.suggest_float("x", 0.0, 1.0))
        study.tell(trial, 0.0)
    return values


def test_seed_offset_gives_each_worker_its_own_reproducible_stream(tmp_path: Path) -> None:
    path = write_spec(tmp_path, minimal(extra="sampler: {name: random, seed: 7}\n"))
    sampler = load_spec(path, check_objective=False).sampler

    assert sampler.seed == 7
    assert _draws(sampler.build()) == _draws(optuna.samplers.RandomSampler(seed=7))
    assert _draws(sampler.build(seed_offset=3)) == _draws(optuna.samplers.RandomSampler(seed=10))
    assert _draws(sampler.build(seed_offset=3)) != _draws(sampler.build(seed_offset=0))


def test_unseeded_sampler_ignores_the_offset(tmp_path: Path) -> None:
    path = write_spec(tmp_path, minimal(extra="sampler: {name: random}\n"))
    sampler = load_spec(path, check_objective=False).sampler
    assert sampler.seed is None
    assert isinstance(sampler.build(seed_offset=5), optuna.samplers.RandomSampler)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        *SAMPLERS.items(),
        ("TPE", "TPESampler"),
        ("TPESampler", "TPESampler"),
        ("RandomSampler", "RandomSampler"),
        ("CmaEs", "CmaEsSampler"),
        ("bruteforce", "GridSampler"),
        ("BruteForceSampler", "GridSampler"),
    ],
)
def test_every_sampler_name_builds_its_optuna_class(name: str, expected: str) -> None:
    spec = load_spec_from_dict(_dict_spec(sampler={"name": name, "seed": 1}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # some samplers are experimental and say so
        built = spec.sampler.build()
    if expected == "TPESampler":
        # Optuna's TPE with its per-trial work kept (tests/test_tpe.py: same draws).
        assert type(built) is CachingTPESampler
        assert isinstance(built, optuna.samplers.TPESampler)
    elif expected == "GridSampler":
        # sweep's grid: points enqueued once each (tests/test_grid.py), not Optuna's.
        assert type(built) is GridSampler
    else:
        assert type(built) is getattr(optuna.samplers, expected)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        *PRUNERS.items(),
        ("nop", "NopPruner"),
        ("NopPruner", "NopPruner"),
        ("Median", "MedianPruner"),
        ("successive-halving", "SuccessiveHalvingPruner"),
    ],
)
def test_every_pruner_name_builds_its_optuna_class(name: str, expected: str) -> None:
    # These two cannot be built without a setting of their own.
    options = {"percentile": {"percentile": 25.0}, "threshold": {"upper": 1.0}}.get(name, {})
    spec = load_spec_from_dict(_dict_spec(pruner={"name": name, **options}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # some pruners are experimental and say so
        built = spec.pruner.build()
    assert type(built) is getattr(optuna.pruners, expected)


def test_sampler_and_pruner_accept_a_bare_name() -> None:
    spec = load_spec_from_dict(_dict_spec(sampler="random", pruner="none"))
    assert spec.sampler.name == "random"
    assert isinstance(spec.pruner.build(), optuna.pruners.NopPruner)


def test_sampler_seed_from_env_is_coerced_to_int(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEED", "11")
    path = write_spec(tmp_path, minimal(extra="sampler:\n  name: random\n  seed: ${SEED}\n"))
    sampler = load_spec(path, check_objective=False).sampler
    assert sampler.seed == 11
    assert sampler.options["seed"] == 11


# ---------------------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------------------


def test_suggest_parameters_gives_values_in_range_with_the_right_types(
    full_spec: Callable[[], SweepSpec],
) -> None:
    spec = full_spec()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        trial = study.ask()
        values = spec.suggest_parameters(trial)

        assert list(values) == ["alpha", "eta0", "hidden", "width", "loss"]
        assert isinstance(values["alpha"], float) and 1e-6 <= values["alpha"] <= 0.1
        assert isinstance(values["eta0"], float) and 0.001 <= values["eta0"] <= 0.5
        assert isinstance(values["hidden"], int) and 8 <= values["hidden"] <= 128
        assert isinstance(values["width"], float) and 0.0 <= values["width"] <= 1.0
        assert math.isclose(values["width"] * 10, round(values["width"] * 10))
        assert values["loss"] in ("hinge", "log_loss", "modified_huber")

        dists = trial.distributions
        assert dists["alpha"] == optuna.distributions.FloatDistribution(1e-6, 0.1, log=True)
        assert dists["eta0"] == optuna.distributions.FloatDistribution(0.001, 0.5)
        assert dists["hidden"] == optuna.distributions.IntDistribution(8, 128, log=True)
        assert dists["width"] == optuna.distributions.FloatDistribution(0.0, 1.0, step=0.1)
        assert isinstance(dists["loss"], optuna.distributions.CategoricalDistribution)
        assert spec.distributions() == dists
        study.tell(trial, 0.0)


def test_categorical_choices_keep_their_types() -> None:
    choices = ["a", 1, 2.5, True, None]
    spec = load_spec_from_dict(
        _dict_spec(parameters={"c": {"type": "categorical", "choices": choices}})
    )
    param = spec.parameters["c"]
    assert param.choices == choices
    assert [type(c) for c in param.choices] == [str, int, float, bool, type(None)]
    trial = optuna.create_study().ask()
    assert spec.suggest_parameters(trial)["c"] in choices


def test_int_param_step_and_equal_bounds() -> None:
    parameters = {
        "n": {"type": "int", "low": 4, "high": 4},
        "k": {"type": "int", "low": 0, "high": 10, "step": 5},
    }
    spec = load_spec_from_dict(_dict_spec(parameters=parameters))
    trial = optuna.create_study().ask()
    values = spec.suggest_parameters(trial)
    assert values["n"] == 4
    assert values["k"] in (0, 5, 10)
    assert trial.distributions["k"] == optuna.distributions.IntDistribution(0, 10, step=5)


# ---------------------------------------------------------------------------------------
# Errors, each with its file, key path and line
# ---------------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    err = single_error(path)
    assert err.file == str(path)
    assert "not found" in str(err)


def test_yaml_syntax_error_reports_the_line(tmp_path: Path) -> None:
    path = write_spec(
        tmp_path,
        """\
        name: demo
        objective: mod:objective
        metric: {name: loss, direction: minimize}
        budget: {n_trials: 5
        parallelism: 2
        """,
    )
    err = single_error(path)
    assert err.file == str(path)
    assert "invalid YAML" in err.reason
    # The flow mapping opened on line 4 is found unclosed on line 5.
    assert err.line == 5
    assert "line 4" in err.reason


def test_unquoted_env_reference_in_a_flow_mapping_gets_a_hint(tmp_path: Path) -> None:
    path = write_spec(tmp_path, minimal(extra="sampler: {name: random, seed: ${SEED}}\n"))
    err = single_error(path)
    assert err.line == 5
    assert "quote" in err.reason


def test_tab_indentation_gets_a_hint(tmp_path: Path) -> None:
    path = write_spec(tmp_path, "name: demo\nmetric:\n\tname: loss\n")
    err = single_error(path)
    assert err.line == 3
    assert "tabs" in err.reason


@pytest.mark.parametrize(
    ("text", "expected"),
    [("", "empty"), ("- a\n- b\n", "got a list"), ("just text\n", "got a single value")],
)
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str, expected: str) -> None:
    err = single_error(write_spec(tmp_path, text))
    assert expected in err.reason
    assert err.line == 1


def test_unknown_top_level_key(tmp_path: Path) -> None:
    path = write_spec(
        tmp_path,
        """\
        name: demo
        objective: mod:objective
        metric: {name: loss, direction: minimize}
        budget: {n_trials: 5}
        budjet: {n_trials: 5}
        """,
    )
    err = single_error(path, check_objective=False)
    assert err.file == str(path)
    assert err.key_path == "budjet"
    assert err.line == 5
    assert "unknown key 'budjet'" in err.reason
    assert "did you mean 'budget'" in err.reason
    assert "allowed keys: name, objective, code_dir, parameters" in err.reason


def test_unknown_nested_key(tmp_path: Path) -> None:
    path = write_spec(
        tmp_path,
        """\
        name: demo
        objective: mod:objective
        metric: {name: loss, direction: minimize}
        budget:
          timeout: 60
          n_trails: 5
        """,
    )
    err = single_error(path, check_objective=False)
    assert err.key_path == "budget.n_trails"
    assert err.line == 6
    assert err.reason.startswith("unknown key 'n_trails'")
    assert "allowed keys: n_trials, timeout" in err.reason


def test_unknown_key_in_a_parameter_lists_that_types_keys(tmp_path: Path) -> None:
    path = write_spec(
        tmp_path,
        minimal(
            extra="parameters:\n  lr:\n    type: float\n    low: 0.1\n    high: 1.0\n"
            "    lgo: true\n"
        ),
    )
    err = single_error(path, check_objective=False)
    assert err.key_path == "parameters.lr.lgo"
    assert err.line == line_containing(path, "lgo")
    assert "allowed keys: type, low, high, log, step" in err.reason


def test_wrong_type(tmp_path: Path) -> None:
    path = write_spec(tmp_path, minimal(extra="parallelism: two\n"))
    err = single_error(path, check_objective=False)
    assert err.key_path == "parallelism"
    assert err.line == 5
    assert "valid integer" in err.reason
    assert "'two'" in err.reason


def test_boolean_is_not_a_number(tmp_path: Path) -> None:
    path = write_spec(tmp_path, minimal(extra="parallelism: yes\n"))
    err = single_error(path, check_objective=False)
    assert err.key_path == "parallelism"
    assert "boolean" in err.reason


@pytest.mark.parametrize("low", ["0.0", "-1.0"])
def test_log_uniform_needs_positive_low(tmp_path: Path, low: str) -> None:
    path = write_spec(
        tmp_path,
        minimal(
            extra="parameters:\n  a: {type: int, low: 1, high: 3}\n"
            f"  alpha:\n    type: log_uniform\n    low: {low}\n    high: 0.1\n"
        ),
    )
    err = single_error(path, check_objective=False)
    assert err.key_path == "parameters.alpha.low"
    assert err.line == line_containing(path, f"low: {low}")
    assert f"log-uniform needs low > 0, got {float(low)}" in err.reason


def test_int_log_needs_low_of_at_least_one(tmp_path: Path) -> None:
    path = write_spec(
        tmp_path, minimal(extra="parameters:\n  n: {type: int, low: 0, high: 8, log: true}\n")
    )
    err = single_error(path, check_objective=False)
    assert err.key_path == "parameters.n.low"
    assert "low > 0" in err.reason


@pytest.mark.parametrize(
    ("param", "needle"),
    [
        ("{type: float, low: 1.0, high: 1.0}", "low must be less than high, got low=1.0"),
        ("{type: uniform, low: 2, high: 1}", "low must be less than high"),
        ("{type: int, low: 5, high: 2}", "low must not be greater than high, got low=5"),
    ],
)
def test_low_must_be_below_high(tmp_path: Path, param: str, needle: str) -> None:
    path = write_spec(tmp_path, minimal(extra=f"parameters:\n  x: 1\n  p: {param}\n"))
    err = load_error(path, check_objective=False)
    assert isinstance(err, SpecErrors)
    p_err = next(e for e in err.errors if e.key_path == "parameters.p.low")
    assert p_err.line == line_containing(path, "  p:")
    assert needle in p_err.reason


@pytest.mark.parametrize(
    ("param", "key", "needle"),
    [
        ("{type: float, low: 0, high: 1, step: 0}", "step", "step must be > 0"),
        ("{type: int, low: 0, high: 9, step: -1}", "step", "step must be > 0"),
        ("{type: float, low: 1, high: 9, step: 1, log: true}", "step", "log scale"),
        ("{type: log_uniform, low: 1, high: 9, log: false}", "log", "always log scale"),
        ("{type: float, low: 0, high: .inf}", "high", "finite"),
        ("{type: int, low: 0.5, high: 3}", "low", "valid integer"),
    ],
)
def test_other_parameter_problems(tmp_path: Path, param: str, key: str, needle: str) -> None:
    path = write_spec(tmp_path, minimal(extra=f"parameters:\n  p: {param}\n"))
    err = single_error(path, check_objective=False)
    assert err.key_path == f"parameters.p.{key}"
    assert err.line == line_containing(path, "  p:")
    assert needle in err.reason


def test_empty_choices(tmp_path: Path) -> None:
    path = write_spec(
        tmp_path, minimal(extra="parameters:\n  loss:\n    type: categorical\n    choices: []\n")
    )
    err = single_error(path, check_objective=False)
    assert err.key_path == "parameters.loss.choices"
    assert err.line == line_containing(path, "choices: []")
    assert "choices must not be empty" in err.reason


def test_nested_choice_is_rejected_at_its_line(tmp_path: Path) -> None:
    path = write_spec(
        tmp_path,
        minimal(
            extra="parameters:\n  c:\n    type: categorical\n    choices:\n"
            "      - a\n      - 2024-01-01\n"
        ),
    )
    err = single_error(path, check_objective=False)
    assert err.key_path == "parameters.c.choices.1"
    assert err.line == line_containing(path, "2024-01-01")
    # Lists and mappings are choices (stored as JSON text); a YAML date is not.
    assert "string, number, boolean, null, or a list or mapping of those" in err.reason
    assert "a date" in err.reason


@pytest.mark.parametrize(
    ("param", "needle"),
    [
        ("{type: gaussian, low: 0, high: 1}", "unknown parameter type 'gaussian'"),
        ("{low: 0, high: 1}", "missing key 'type'"),
    ],
)
def test_parameter_type_problems(tmp_path: Path, param: str, needle: str) -> None:
    path = write_spec(tmp_path, minimal(extra=f"parameters:\n  p: {param}\n"))
    err = single_error(path, check_objective=False)
    assert err.key_path == "parameters.p.type"
    assert err.line == line_containing(path, "  p:")
    assert needle in err.reason
    assert "allowed types: float, uniform, log_uniform, int, categorical" in err.reason


def test_bad_direction(tmp_path: Path) -> None:
    path = write_spec(
        tmp_path,
        """\
        name: demo
        objective: mod:objective
        metric:
          name: acc
          direction: maximise
        budget: {n_trials: 5}
        """,
    )
    err = single_error(path, check_objective=False)
    assert err.key_path == "metric.direction"
    assert err.line == 5
    assert "'minimize' or 'maximize'" in err.reason
    assert "'maximise'" in err.reason


def test_unknown_sampler_name(tmp_path: Path) -> None:
    path = write_spec(tmp_path, minimal(extra="sampler:\n  name: annealing\n"))
    err = single_error(path, check_objective=False)
    assert err.key_path == "sampler.name"
    assert err.line == 6
    assert "unknown sampler 'annealing'" in err.reason
    assert "allowed names: tpe, random, cmaes, gp, qmc, nsgaii, nsgaiii, grid" in err.reason


def test_unknown_pruner_name(tmp_path: Path) -> None:
    path = write_spec(tmp_path, minimal(extra="pruner: {name: asha}\n"))
    err = single_error(path, check_objective=False)
    assert err.key_path == "pruner.name"
    assert err.line == 5
    assert "hyperband, median, percentile, successive_halving" in err.reason


def test_unknown_sampler_option(tmp_path: Path) -> None:
    path = write_spec(tmp_path, minimal(extra="sampler:\n  name: tpe\n  seed: 1\n  n_startup: 5\n"))
    err = single_error(path, check_objective=False)
    assert err.key_path == "sampler.n_startup"
    assert err.line == 8
    assert "unknown option 'n_startup' for sampler tpe" in err.reason
    assert "did you mean 'n_startup_trials'" in err.reason
    assert "allowed options:" in err.reason
    assert "n_ei_candidates" in err.reason and "seed" in err.reason


def test_option_that_needs_a_python_object(tmp_path: Path) -> None:
    path = write_spec(tmp_path, minimal(extra="sampler: {name: tpe, gamma: 3}\n"))
    err = single_error(path, check_objective=False)
    assert err.key_path == "sampler.gamma"
    assert "cannot be set in a spec" in err.reason


@pytest.mark.parametrize(
    ("extra", "key", "needle"),
    [
        ("sampler: {name: random, seed: abc}", "sampler.seed", "valid integer"),
        ("sampler: {name: qmc, qmc_type: foo}", "sampler", "qmc_type"),
        ("pruner: {name: percentile}", "pruner.percentile", "needs option(s): percentile"),
        ("pruner: {name: none, patience: 3}", "pruner.patience", "allowed options: (none)"),
    ],
)
def test_bad_component_options(tmp_path: Path, extra: str, key: str, needle: str) -> None:
    path = write_spec(tmp_path, minimal(extra=extra + "\n"))
    err = single_error(path, check_objective=False)
    assert err.key_path == key
    assert err.line == 5
    assert needle in err.reason


def test_missing_required_key_points_at_parent_or_line_one(tmp_path: Path) -> None:
    path = write_spec(
        tmp_path,
        """\
        name: demo
        objective: mod:objective
        budget: {n_trials: 5}
        registry:
          alias: x
        """,
    )
    err = load_error(path, check_objective=False)
    assert isinstance(err, SpecErrors)
    by_key = {e.key_path: e for e in err.errors}
    assert set(by_key) == {"metric", "registry.model_name"}
    assert by_key["metric"].line == 1
    assert "missing required key 'metric'" in by_key["metric"].reason
    assert "name and direction" in by_key["metric"].reason
    assert by_key["registry.model_name"].line == 4


def test_budget_needs_n_trials_or_timeout(tmp_path: Path) -> None:
    path = write_spec(
        tmp_path, "name: demo\nobjective: m:f\nmetric: {name: l, direction: minimize}\nbudget: {}\n"
    )
    err = single_error(path, check_objective=False)
    assert err.key_path == "budget"
    assert err.line == 4
    assert "n_trials" in err.reason and "timeout" in err.reason


@pytest.mark.parametrize(
    ("extra", "key", "needle"),
    [
        ("budget: {n_trials: 0}", "budget.n_trials", "greater than or equal to 1"),
        ("resources: {gpu: 1.5}", "resources.gpu", "whole number"),
        ("resources: {cpu: 0}", "resources.cpu", "greater than 0"),
        ("ray: {address: auto, num_gpus: 1}", "ray.num_gpus", "locally"),
        ("storage: not a url", "storage", "not a database URL"),
        ("name: my sweep", "name", "letters, digits"),
        ("lease: {heartbeat_interval: 5, timeout: 8}", "lease.timeout", "at least twice"),
        ("lease: {heartbeat_interval: 0}", "lease.heartbeat_interval", "greater than 0"),
        ("retries: {max_retries: -1}", "retries.max_retries", "greater than or equal to 0"),
        ("trial_timeout: 0", "trial_timeout", "greater than 0"),
        ("resources: {memory_mb: 0}", "resources.memory_mb", "greater than or equal to 1"),
    ],
)
def test_section_value_problems(tmp_path: Path, extra: str, key: str, needle: str) -> None:
    base = minimal().replace("budget: {n_trials: 5}\n", "") if "budget" in extra else minimal()
    if extra.startswith("name:"):
        base = base.replace("name: demo\n", "")
    path = write_spec(tmp_path, base + extra + "\n")
    err = single_error(path, check_objective=False)
    assert err.key_path == key
    assert err.line == len(path.read_text().splitlines())  # `extra` is the last line
    assert needle in err.reason


def test_duplicate_key_is_an_error(tmp_path: Path) -> None:
    path = write_spec(tmp_path, minimal(extra="parallelism: 2\nparallelism: 3\n"))
    err = single_error(path, check_objective=False)
    assert err.key_path == "parallelism"
    assert err.line == 6
    assert "duplicate key 'parallelism' (also on line 5)" in err.reason


def test_several_errors_are_all_reported(tmp_path: Path) -> None:
    path = write_spec(
        tmp_path,
        """\
        name: demo
        objective: mod:objective
        parameters:
          alpha: {type: log_uniform, low: 0, high: 1}
        metric: {name: loss, direction: sideways}
        budget: {n_trails: 5}
        parallelism: two
        """,
    )
    err = load_error(path, check_objective=False)
    assert isinstance(err, SpecErrors)
    found = [(e.key_path, e.line) for e in err.errors]
    assert found == [
        ("parameters.alpha.low", 4),
        ("metric.direction", 5),
        ("budget.n_trails", 6),
        ("parallelism", 7),
    ]
    assert all(e.file == str(path) for e in err.errors)
    text = str(err)
    assert text.count(str(path)) == 4
    assert f"{path}:6: budget.n_trails: unknown key 'n_trails'" in text
    # The aggregate itself points at the first problem.
    assert (err.key_path, err.line) == ("parameters.alpha.low", 4)


# ---------------------------------------------------------------------------------------
# Environment variables
# ---------------------------------------------------------------------------------------


def test_missing_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SWEEP_TEST_UNSET_VAR", raising=False)
    path = write_spec(
        tmp_path, minimal(extra="tracking:\n  artifact_root: /data/${SWEEP_TEST_UNSET_VAR}/x\n")
    )
    err = single_error(path, check_objective=False)
    assert err.file == str(path)
    assert err.key_path == "tracking.artifact_root"
    assert err.line == 6
    assert "SWEEP_TEST_UNSET_VAR" in err.reason
    assert "export SWEEP_TEST_UNSET_VAR=" in err.reason


def test_env_var_is_substituted_in_storage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWEEP_TEST_DB", "postgresql+psycopg://u:p@db:5432/sweeps")
    path = write_spec(tmp_path, minimal(extra="storage: ${SWEEP_TEST_DB}\n"))
    spec = load_spec(path, check_objective=False)
    assert spec.storage == "postgresql+psycopg://u:p@db:5432/sweeps"


def test_env_default_is_used_only_when_unset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = minimal(
        extra="parallelism: ${SWEEP_TEST_PAR:-3}\n"
        "tracking: {experiment: 'exp-${SWEEP_TEST_EXP:-default}'}\n"
    )
    path = write_spec(tmp_path, text)
    monkeypatch.delenv("SWEEP_TEST_PAR", raising=False)
    monkeypatch.delenv("SWEEP_TEST_EXP", raising=False)
    spec = load_spec(path, check_objective=False)
    assert spec.parallelism == 3
    assert spec.tracking.experiment == "exp-default"

    monkeypatch.setenv("SWEEP_TEST_PAR", "4")
    monkeypatch.setenv("SWEEP_TEST_EXP", "mine")
    spec = load_spec(path, check_objective=False)
    assert spec.parallelism == 4
    assert spec.tracking.experiment == "exp-mine"


def test_empty_env_default_leaves_storage_unset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SWEEP_TEST_DB", raising=False)
    path = write_spec(tmp_path, minimal(extra="storage: ${SWEEP_TEST_DB:-}\n"))
    assert load_spec(path, check_objective=False).storage is None


def test_all_missing_env_vars_are_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SWEEP_TEST_A", raising=False)
    monkeypatch.delenv("SWEEP_TEST_B", raising=False)
    path = write_spec(
        tmp_path, minimal(extra="storage: ${SWEEP_TEST_A}\nray: {address: '${SWEEP_TEST_B}'}\n")
    )
    err = load_error(path, check_objective=False)
    assert isinstance(err, SpecErrors)
    assert [(e.key_path, e.line) for e in err.errors] == [("storage", 5), ("ray.address", 6)]


def test_interpolate_env_escapes_and_malformed_references() -> None:
    env = {"A": "x", "EMPTY": ""}
    assert interpolate_env("${A}-${A:-d}-${EMPTY:-d}-${NOPE:-d}", env) == ("x-x-d-d", [])
    assert interpolate_env("cost: $$5 and $HOME", env) == ("cost: $5 and $HOME", [])
    assert interpolate_env("$${A}", env) == ("${A}", [])
    _, problems = interpolate_env("${1BAD}", env)
    assert problems and "malformed" in problems[0]
    _, problems = interpolate_env("${A", env)
    assert problems and "malformed" in problems[0]


def test_env_vars_are_not_substituted_in_keys_or_non_strings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWEEP_TEST_N", "3")
    path = write_spec(
        tmp_path,
        minimal(extra="parameters:\n  c: {type: categorical, choices: ['${SWEEP_TEST_N}', 3]}\n"),
    )
    spec = load_spec(path, check_objective=False)
    # A substituted value stays a string where the field accepts strings.
    assert spec.parameters["c"].choices == ["3", 3]


# ---------------------------------------------------------------------------------------
# The objective
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "objective", ["train", "train:", ":objective", "my-module:objective", "a..b:f", "a:b:c"]
)
def test_bad_objective_format(tmp_path: Path, objective: str) -> None:
    path = write_spec(tmp_path, minimal().replace("mod:objective", f"'{objective}'"))
    err = single_error(path)
    assert not isinstance(err, ObjectiveImportError)
    assert err.key_path == "objective"
    assert err.line == 2
    assert "'module.path:function'" in err.reason


def test_dotted_objective_in_a_package(tmp_path: Path, module_name: str) -> None:
    package = tmp_path / "src" / module_name
    write_module(package, "__init__", "")
    write_module(package, "train")
    spec = load_spec(write_spec(tmp_path, minimal(f"{module_name}.train", "code_dir: src\n")))
    assert resolve_objective(spec)(None, {}) == 0.5


def test_missing_objective_module(tmp_path: Path, module_name: str) -> None:
    path = write_spec(tmp_path, minimal(module_name))
    err = single_error(path)
    assert isinstance(err, ObjectiveImportError)
    assert err.file == str(path)
    assert err.key_path == "objective"
    assert err.line == 2
    assert f"module '{module_name}' not found" in err.reason
    assert str(tmp_path.resolve()) in err.reason
    assert "code_dir" in err.reason


def test_code_dir_that_does_not_exist(tmp_path: Path, module_name: str) -> None:
    path = write_spec(tmp_path, minimal(module_name, "code_dir: nowhere\n"))
    err = single_error(path)
    assert isinstance(err, ObjectiveImportError)
    assert (err.key_path, err.line) == ("code_dir", 5)
    assert "not a directory" in err.reason


def test_missing_objective_function(tmp_path: Path, module_name: str) -> None:
    write_module(tmp_path, module_name)
    path = write_spec(tmp_path, minimal(module_name).replace(":objective", ":objectve"))
    err = single_error(path)
    assert isinstance(err, ObjectiveImportError)
    assert (err.key_path, err.line) == ("objective", 2)
    assert "has no function 'objectve'" in err.reason
    assert "did you mean 'objective'" in err.reason
    assert "callables defined there: helper, objective" in err.reason


def test_missing_function_in_a_module_without_functions(tmp_path: Path, module_name: str) -> None:
    write_module(tmp_path, module_name, "import os\nVALUE = 3\n")
    err = single_error(write_spec(tmp_path, minimal(module_name)))
    assert isinstance(err, ObjectiveImportError)
    assert "defines no public functions" in err.reason


def test_objective_that_is_not_callable(tmp_path: Path, module_name: str) -> None:
    write_module(tmp_path, module_name, "objective = 3\n")
    err = single_error(write_spec(tmp_path, minimal(module_name)))
    assert isinstance(err, ObjectiveImportError)
    assert "not a function" in err.reason


@pytest.mark.parametrize(
    ("source", "needle"),
    [
        ("raise RuntimeError('no GPU here')\n", "RuntimeError: no GPU here"),
        ("import sweep_test_missing_dependency\n", "ModuleNotFoundError"),
        ("def objective(:\n", "SyntaxError"),
        ("import sys\nsys.exit(2)\n", "SystemExit"),
    ],
)
def test_objective_module_that_raises_on_import(
    tmp_path: Path, module_name: str, source: str, needle: str
) -> None:
    write_module(tmp_path, module_name, source)
    path = write_spec(tmp_path, minimal(module_name))
    err = single_error(path)
    assert isinstance(err, ObjectiveImportError)
    assert (err.file, err.key_path, err.line) == (str(path), "objective", 2)
    assert f"importing module '{module_name}' raised" in err.reason
    assert needle in err.reason
    assert "not found" not in err.reason


# ---------------------------------------------------------------------------------------
# The Python API
# ---------------------------------------------------------------------------------------


def _dict_spec(**overrides: object) -> dict[str, object]:
    data: dict[str, object] = {
        "name": "demo",
        "objective": "mod:objective",
        "metric": {"name": "loss", "direction": "minimize"},
        "budget": {"timeout": 30},
    }
    data.update(overrides)
    return data


def test_load_spec_from_dict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    spec = load_spec_from_dict(
        _dict_spec(code_dir="code", tracking={"artifact_root": "${NOT_SUBSTITUTED}x"})
    )
    assert spec.source_path is None
    assert spec.source == "<dict>"
    assert spec.line_of("budget") is None
    assert spec.code_path == (tmp_path / "code").resolve()
    assert spec.budget.timeout == 30
    assert spec.tracking.artifact_root == "${NOT_SUBSTITUTED}x"


def test_load_spec_from_dict_errors_name_the_source() -> None:
    with pytest.raises(SpecErrors) as info:
        load_spec_from_dict(_dict_spec(parallelism=0, budjet={}), source="api-call")
    errors = info.value.errors
    assert {e.key_path for e in errors} == {"parallelism", "budjet"}
    assert all(e.file == "api-call" and e.line is None for e in errors)


def test_load_spec_from_dict_rejects_a_non_mapping() -> None:
    with pytest.raises(SpecError, match="mapping"):
        load_spec_from_dict(["not", "a", "mapping"])  # type: ignore[arg-type]


def test_dumped_spec_loads_back_to_the_same_spec(full_spec: Callable[[], SweepSpec]) -> None:
    spec = full_spec()
    again = load_spec_from_dict(spec.model_dump())
    assert again.model_dump() == spec.model_dump()
    assert again.parameters == spec.parameters


def test_error_at_points_later_checks_at_a_line(full_spec: Callable[[], SweepSpec]) -> None:
    spec = full_spec()
    err = spec.error_at("resources.gpu", "no GPU in the cluster")
    assert isinstance(err, SpecError)
    assert err.file == str(spec.source_path)
    assert err.line == spec.line_of("resources")
    assert str(err).endswith("resources.gpu: no GPU in the cluster")
