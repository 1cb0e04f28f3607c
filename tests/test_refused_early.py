"""Refused before the first trial, not after the last (issue 18): `sweep validate` and
the start of `sweep launch` catch what the run would trip over later."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sweep.errors import SpecError
from sweep.spec import load_spec_from_dict
from sweep.spec._common import MAX_INT32, MAX_NAME_LENGTH
from sweep.storage.schema import KEY_LENGTH
from tests.helpers import write_toy_spec
from tests.test_cli import run_cli

BASE: dict[str, Any] = {
    "name": "early",
    "objective": "toy:learning_curve",
    "metric": {"name": "score", "direction": "maximize"},
    "budget": {"n_trials": 4},
}


def refused(key_path: str, **overrides: Any) -> str:
    with pytest.raises(SpecError) as caught:
        load_spec_from_dict({**BASE, **overrides})
    assert caught.value.key_path == key_path, str(caught.value)
    return str(caught.value)


def test_the_spec_limits_are_the_store_columns() -> None:
    assert MAX_NAME_LENGTH == KEY_LENGTH
    assert MAX_INT32 == 2**31 - 1


def test_names_and_sizes_beyond_the_store_are_refused() -> None:
    assert "at most 250 characters" in refused("name", name="s" * 300)
    load_spec_from_dict({**BASE, "name": "s" * 250})
    assert "less than or equal to 2147483647" in refused(
        "budget.n_trials", budget={"n_trials": 2**31}
    )
    load_spec_from_dict({**BASE, "budget": {"n_trials": 2**31 - 1}})
    assert "at most 250" in refused("tracking.experiment", tracking={"experiment": "e" * 251})


@pytest.mark.parametrize(
    ("registry", "key"),
    [
        ({"model_name": "team/model"}, "registry.model_name"),
        ({"model_name": "model@2"}, "registry.model_name"),
        ({"model_name": " padded "}, "registry.model_name"),
        ({"model_name": "m" * 251}, "registry.model_name"),
        ({"model_name": "ok", "alias": "a/b"}, "registry.alias"),
        ({"model_name": "ok", "alias": "a@b"}, "registry.alias"),
        ({"model_name": "ok", "alias": "two words"}, "registry.alias"),
        ({"model_name": "ok", "alias": "a" * 251}, "registry.alias"),
    ],
)
def test_registry_names_that_models_uris_cannot_name_are_refused(
    registry: dict[str, str], key: str
) -> None:
    message = refused(key, registry=registry)
    assert "models:/" in message or "at most 250" in message


def test_registry_names_models_uris_accept_pass() -> None:
    spec = load_spec_from_dict(
        {**BASE, "registry": {"model_name": "churn classifier.v2", "alias": "staging-1"}}
    )
    assert spec.registry is not None and spec.registry.alias == "staging-1"


@pytest.mark.parametrize(
    ("storage", "reason"),
    [
        ("mysql://u@h/db", "unsupported database 'mysql'"),
        ("postgresql+psycopg://u@h:abc/db", "port in"),
        ("postgresql+psycopg://u@h:70000/db", "between 1 and 65535"),
        ("not a url", "not a database URL"),
    ],
)
def test_storage_urls_are_checked_at_validation(storage: str, reason: str) -> None:
    message = refused("storage", storage=storage)
    assert reason in message and "Error" not in message.split(":", 2)[-1][:20]


@pytest.mark.parametrize(
    ("pruner", "key", "reason"),
    [
        ({"name": "hyperband", "reduction_factor": 1}, "pruner.reduction_factor", "at least 2"),
        (
            {"name": "hyperband", "min_resource": 10, "max_resource": 3},
            "pruner.min_resource",
            "must not exceed max_resource",
        ),
        ({"name": "successive_halving", "reduction_factor": 1}, "pruner", "reduction_factor"),
    ],
)
def test_pruner_options_optuna_rejects_at_run_time_are_refused(
    pruner: dict[str, Any], key: str, reason: str
) -> None:
    assert reason in refused(key, pruner=pruner)


def test_a_sound_hyperband_still_validates() -> None:
    spec = load_spec_from_dict(
        {**BASE, "pruner": {"name": "hyperband", "min_resource": 3, "max_resource": 3}}
    )
    assert spec.pruner.build() is not None


def test_validate_and_launch_refuse_before_creating_anything(tmp_path: Path) -> None:
    """Exit 2 with the line and key, no traceback, no store touched."""
    store = tmp_path / "store.db"
    cases = [
        ({"name": "n" * 300}, "name"),
        ({"budget": {"n_trials": 2**31}}, "budget.n_trials"),
        ({"registry": {"model_name": "a/b"}}, "registry.model_name"),
        ({"pruner": {"name": "hyperband", "reduction_factor": 1}}, "pruner.reduction_factor"),
        ({"storage": "postgresql+psycopg://u@h:port/db"}, "storage"),
    ]
    for overrides, key in cases:
        spec = write_toy_spec(tmp_path, **overrides)
        for command in (
            ["validate", str(spec)],
            ["launch", str(spec), "--storage", f"sqlite:///{store}"],
        ):
            if key == "storage" and command[0] == "launch":
                command = command[:2]
            result = run_cli(*command, cwd=tmp_path)
            assert result.returncode == 2, (key, command[0], result.stdout + result.stderr)
            assert f": {key}: " in result.stderr and "Traceback" not in result.stderr
    assert not store.exists()
