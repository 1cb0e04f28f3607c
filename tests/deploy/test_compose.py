"""deploy/compose/docker-compose.yml read as Compose reads it: the services the topology
needs, wired as it needs them, with the defaults of env.example naming a real sweep."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest

from tests.deploy import recipes


@pytest.fixture
def services() -> dict[str, Any]:
    return recipes.compose_config(recipes.example_env())["services"]


def test_postgres_keeps_its_data_and_reports_health(services: dict[str, Any]) -> None:
    db = services["db"]
    assert db["image"].startswith("postgres:")
    assert any(
        v.endswith(":/var/lib/postgresql/data") and not v.startswith((".", "/"))
        for v in db["volumes"]
    )  # a named volume
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])
    env = recipes.service_environment(db)
    assert env["POSTGRES_PASSWORD"] == recipes.example_env()["POSTGRES_PASSWORD"]


def test_the_ray_worker_and_the_agent_reserve_the_gpus(services: dict[str, Any]) -> None:
    for name in ("ray-worker", "agent"):
        (device,) = services[name]["deploy"]["resources"]["reservations"]["devices"]
        assert device["driver"] == "nvidia" and "gpu" in device["capabilities"], name
    assert "--num-cpus=0" in services["ray-head"]["command"]  # the head runs no trials


def test_services_start_in_order_and_restart_by_their_exit_code(services: dict) -> None:
    controller, agent = services["controller"], services["agent"]
    assert controller["depends_on"] == {
        "db": {"condition": "service_healthy"},
        "ray-head": {"condition": "service_healthy"},
        "ray-worker": {"condition": "service_healthy"},
    }
    assert services["ray-worker"]["depends_on"]["ray-head"]["condition"] == "service_healthy"
    assert controller["restart"] == "no"  # one-shot: a finished sweep is not relaunched
    assert agent["restart"] == "on-failure"  # exit 0 = the sweep is finished
    assert agent["profiles"] == ["agents"]
    for name in ("controller", "agent"):
        assert services[name].get("init") is True and services[name]["stop_grace_period"]


def test_every_sweep_service_runs_the_image_the_dockerfile_builds(services: dict) -> None:
    sweep_services = [n for n, s in services.items() if recipes.runs_sweep_image(s)]
    assert set(sweep_services) == {"ray-head", "ray-worker", "controller", "agent", "ui"}
    for name in sweep_services:
        build = services[name]["build"]
        dockerfile = recipes.COMPOSE_FILE.parent / build["context"] / build["dockerfile"]
        assert dockerfile.resolve() == recipes.DOCKERFILE, name


def test_env_example_names_every_variable_the_compose_file_uses() -> None:
    used = set(re.findall(r"\$\{(\w+)", _values_text(recipes.COMPOSE_FILE)))
    assert used == set(recipes.dotenv(recipes.COMPOSE_ENV_EXAMPLE))
    assert ".env" in (recipes.COMPOSE_FILE.parent / ".gitignore").read_text().split()


def _values_text(path: Path) -> str:
    return "\n".join(line.split("#")[0] for line in path.read_text().splitlines())


def test_the_default_project_is_a_valid_sweep_that_the_agent_joins(services: dict) -> None:
    from sweep.spec import load_spec

    controller = services["controller"]
    script = controller["command"][2]
    launch = shlex.split(script.split("exec ", 1)[1])
    assert launch[:2] == ["sweep", "launch"]
    mounts = dict(v.split(":")[:2][::-1] for v in controller["volumes"])
    spec_path = Path(launch[2])
    source = recipes.COMPOSE_FILE.parent / mounts[str(spec_path.parent)]
    spec = load_spec(str(source / spec_path.name))
    assert services["agent"]["command"][:3] == ["sweep", "agent", spec.name]
    assert mounts == dict(v.split(":")[:2][::-1] for v in services["agent"]["volumes"])
    for name in ("controller", "agent", "ui"):
        env = recipes.service_environment(services[name])
        assert env["SWEEP_DATABASE_URL"].startswith("postgresql+psycopg://sweep@db:5432/")
        assert env["SWEEP_ARTIFACT_ROOT"] == "/artifacts"
        assert any(v.startswith("artifacts:/artifacts") for v in services[name]["volumes"])
    assert any(v.startswith("artifacts:/artifacts") for v in services["ray-worker"]["volumes"])
