"""The native parameter types added for W&B's distributions, written as native specs:
their checks, their values through Optuna, and decoding what Optuna stores."""

from __future__ import annotations

import math
from typing import Any

import optuna
import pytest
from scipy import stats

from sweep.errors import SpecError
from sweep.spec import load_spec_from_dict
from sweep.spec._quantile import beta_cdf, beta_ppf

optuna.logging.set_verbosity(optuna.logging.WARNING)


def spec_with(**parameters: Any) -> Any:
    return load_spec_from_dict(
        {
            "name": "p",
            "objective": "m:f",
            "parameters": parameters,
            "metric": {"name": "l", "direction": "minimize"},
            "budget": {"n_trials": 1},
        }
    )


def draws(spec: Any, n: int = 400, seed: int = 0) -> list[dict[str, Any]]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(n):
        trial = study.ask()
        values = spec.suggest_parameters(trial)
        assert spec.decode_params(trial.params) == values
        out.append(values)
    return out


@pytest.mark.parametrize(
    ("param", "key", "needle"),
    [
        ({"type": "normal", "sigma": 0}, "parameters.x.sigma", "greater than 0"),
        ({"type": "normal", "step": -1}, "parameters.x.step", "step must be > 0"),
        ({"type": "beta", "a": 0}, "parameters.x.a", "greater than 0"),
        ({"type": "beta", "step": 2}, "parameters.x.step", "at most 1"),
        ({"type": "q_log_uniform", "low": 0, "high": 5, "step": 1}, "parameters.x.low", "> 0"),
        ({"type": "q_log_uniform", "low": 1, "high": 2, "step": 5}, "parameters.x.step", "no mult"),
        ({"type": "categorical", "choices": [1, 2], "weights": [1]}, "parameters.x.weights", "one"),
        (
            {"type": "categorical", "choices": [1, 2], "weights": [0, 0]},
            "parameters.x.weights",
            ">=",
        ),
        ({"type": "categorical", "choices": ["[1]", "[1]"]}, "parameters.x.choices", "twice"),
        ({"type": "constant"}, "parameters.x.value", "missing"),
    ],
)
def test_new_types_check_their_keys(param: dict[str, Any], key: str, needle: str) -> None:
    with pytest.raises(SpecError) as info:
        spec_with(x=param)
    assert info.value.key_path == key
    assert needle in info.value.reason


def test_quantised_types_keep_int_steps_ints_and_bounds() -> None:
    spec = spec_with(
        n={"type": "normal", "mu": 10, "sigma": 4, "step": 3},
        ln={"type": "log_normal", "step": 0.25},
        b={"type": "beta", "a": 2, "b": 2, "step": 0.4},
        q={"type": "q_log_uniform", "low": 3, "high": 70, "step": 8},
    )
    values = draws(spec)
    assert all(type(v["n"]) is int and v["n"] % 3 == 0 for v in values)
    assert all(v["ln"] >= 0 and (v["ln"] / 0.25).is_integer() for v in values)
    assert {v["b"] for v in values} <= {0.0, 0.4, 0.8}  # 1.2 would leave [0, 1]
    assert {v["q"] for v in values} <= set(range(8, 65, 8)) and type(values[0]["q"]) is int


def test_weighted_and_structured_choices() -> None:
    spec = spec_with(
        c={"type": "categorical", "choices": ["a", "b", "c"], "weights": [0, 3, 1]},
        layers={"type": "categorical", "choices": [[64, 64], [128], {"w": 1}]},
        k={"type": "constant", "value": {"nested": [1, 2]}},
    )
    values = draws(spec, 800)
    share = sum(v["c"] == "b" for v in values) / len(values)
    assert abs(share - 0.75) < 0.05 and all(v["c"] != "a" for v in values)
    assert {str(v["layers"]) for v in values} == {"[64, 64]", "[128]", "{'w': 1}"}
    assert all(v["k"] == {"nested": [1, 2]} for v in values)


def test_beta_inverse_cdf_matches_scipy() -> None:
    for a, b in [(0.5, 0.5), (2.0, 5.0), (10.0, 1.5)]:
        for u in (1e-6, 0.01, 0.3, 0.5, 0.77, 0.999):
            assert beta_ppf(u, a, b) == pytest.approx(stats.beta.ppf(u, a, b), abs=1e-9)
            assert beta_cdf(stats.beta.ppf(u, a, b), a, b) == pytest.approx(u, abs=1e-9)


def test_a_normal_is_normal_and_native_specs_round_trip() -> None:
    spec = spec_with(x={"type": "normal", "mu": -3, "sigma": 0.5})
    xs = [v["x"] for v in draws(spec, 1000, seed=5)]
    assert stats.kstest(xs, stats.norm(-3, 0.5).cdf).pvalue > 1e-3
    assert not any(math.isinf(x) for x in xs)
    again = load_spec_from_dict(spec.model_dump(mode="json"))
    assert again.model_dump() == spec.model_dump()


def test_launch_refuses_what_the_trial_path_cannot_hand_an_objective_yet(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from sweep.cli import cli

    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.py").write_text("def f(trial):\n    return 0.0\n")
    base = "name: n\nobjective: m:f\nbudget: {n_trials: 2}\n"
    metric = "metric: {name: l, direction: minimize}\n"
    cases = {
        metric + "parameters:\n  x: {type: normal}\n": "parameters.x: parameter(s) x reach",
        metric + "parameters:\n  x: {type: categorical, choices: [[1], [2]]}\n": "stored form",
        "metric: {name: l, direction: minimize, target: 0.1}\n": "metric.target is not enforced",
    }
    for extra, needle in cases.items():
        (tmp_path / "spec.yaml").write_text(base + extra)
        validated = CliRunner().invoke(cli, ["validate", "spec.yaml"])
        assert validated.exit_code == 0, validated.output  # a valid spec...
        result = CliRunner().invoke(cli, ["launch", "spec.yaml"])
        assert result.exit_code == 2 and needle in result.output, result.output  # ...not run yet
        assert sorted(p.name for p in tmp_path.iterdir()) == ["m.py", "spec.yaml"]
