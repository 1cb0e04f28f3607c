"""deploy/kubernetes: `kubectl kustomize` builds it (offline), every object it yields is
valid (core objects by the `kubernetes` client's models, KubeRay's by its CRD schemas,
both strict about unknown fields), and the objects agree with each other and with sweep."""

from __future__ import annotations

import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy.engine import make_url

from tests.deploy import kube, recipes
from tests.deploy.recipes import KUBERNETES, REPO
from tests.deploy.test_recipes import need_tool

EXPECTED = {
    ("Namespace", "sweep"),
    ("ConfigMap", "sweep-spec"),
    ("Service", "sweep-postgres"),
    ("StatefulSet", "sweep-postgres"),
    ("PersistentVolumeClaim", "sweep-artifacts"),
    ("RayCluster", "sweep"),
    ("RayJob", "sweep-launch"),
    ("Job", "sweep-agents"),
}


@cache
def _built() -> tuple[dict[str, Any], ...]:
    kubectl = need_tool("kubectl")
    result = subprocess.run(
        [kubectl, "kustomize", str(KUBERNETES)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


@pytest.fixture
def built() -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o for o in _built()}


def test_kustomize_builds_every_object_into_the_namespace(built: dict) -> None:
    assert set(built) == EXPECTED
    for (kind, name), obj in built.items():
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "sweep"
        if kind != "Namespace":
            assert obj["metadata"]["namespace"] == "sweep", (kind, name)
    # One image for every sweep role, retargeted by kustomize also inside the custom resources.
    images = {c["image"] for o in built.values() for _, c in recipes.containers(o)}
    assert images == {"registry.example.com/ml/sweep:0.1.0", "postgres:16"}


@pytest.mark.parametrize("key", sorted(EXPECTED), ids=lambda k: f"{k[0]}-{k[1]}")
def test_every_object_is_valid_for_the_api_server(key: tuple[str, str], built: dict) -> None:
    assert kube.problems(built[key]) == []


def test_the_validation_refuses_unknown_and_missing_fields(built: dict) -> None:
    cluster = yaml.safe_load(yaml.safe_dump(built[("RayCluster", "sweep")]))
    cluster["spec"]["workerGroupSpecs"][0]["maxReplica"] = 8
    assert any("maxReplica" in p for p in kube.problems(cluster))
    job = yaml.safe_load(yaml.safe_dump(built[("Job", "sweep-agents")]))
    job["spec"]["template"]["spec"]["containers"][0]["envs"] = []
    assert any("envs" in p for p in kube.problems(job))
    del job["spec"]["template"]["spec"]["containers"][0]["envs"]
    del job["spec"]["template"]["spec"]["containers"][0]["name"]
    assert kube.problems(job)
    rayjob = yaml.safe_load(yaml.safe_dump(built[("RayJob", "sweep-launch")]))
    rayjob["spec"]["backoffLimit"] = "none"
    assert kube.problems(rayjob)


def test_the_gpu_worker_group_autoscales_within_bounds_sweep_can_start_on(built: dict) -> None:
    cluster = built[("RayCluster", "sweep")]["spec"]
    assert cluster["enableInTreeAutoscaling"] is True
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"  # no trials on head
    (group,) = cluster["workerGroupSpecs"]
    # sweep refuses at start a cluster without a GPU for one trial: never scale to zero.
    assert 1 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    (worker,) = group["template"]["spec"]["containers"]
    gpus = worker["resources"]["limits"]["nvidia.com/gpu"]
    spec = _spec(built)
    assert float(gpus) >= spec["resources"]["gpu"]
    assert spec["parallelism"] * spec["resources"]["gpu"] <= group["maxReplicas"] * float(gpus)


def test_the_rayjob_launches_the_configmaps_spec_on_the_cluster(built: dict) -> None:
    job = built[("RayJob", "sweep-launch")]["spec"]
    assert job["clusterSelector"] == {"ray.io/cluster": "sweep"}
    (args,) = [c.args for c in recipes.sweep_commands() if "RayJob" in c.source]
    assert args[0] == "launch" and args[args.index("--ray-address") + 1] == "auto"
    head = built[("RayCluster", "sweep")]["spec"]["headGroupSpec"]["template"]["spec"]
    mounts = {m["mountPath"]: m["name"] for m in head["containers"][0]["volumeMounts"]}
    volumes = {v["name"]: v for v in head["volumes"]}
    spec_path = Path(args[1])
    volume = volumes[mounts[str(spec_path.parent)]]
    assert volume["configMap"]["name"] == "sweep-spec"
    assert spec_path.name in built[("ConfigMap", "sweep-spec")]["data"]


def test_the_configmaps_spec_is_a_valid_sweep_that_the_agents_join(
    built: dict, tmp_path: Path
) -> None:
    from sweep.spec import load_spec

    spec = _spec(built)
    assert spec["code_dir"] == "/app"  # the image's code (deploy/docker/Dockerfile)
    # Validated with the same code from this checkout (the objective must import).
    spec["code_dir"] = str(REPO / "sweeps")
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec))
    loaded = load_spec(str(path))
    agents = built[("Job", "sweep-agents")]
    (container,) = agents["spec"]["template"]["spec"]["containers"]
    assert container["command"][:3] == ["sweep", "agent", loaded.name]
    assert agents["spec"]["completionMode"] == "Indexed"
    assert container["resources"]["limits"]["nvidia.com/gpu"]
    assert agents["spec"]["template"]["spec"]["restartPolicy"] == "OnFailure"


def test_every_reference_names_an_object_or_the_documented_secret(built: dict) -> None:
    readme = recipes.DEPLOY_README.read_text() + (KUBERNETES / "kustomization.yaml").read_text()
    service = built[("Service", "sweep-postgres")]
    for obj in built.values():
        for _, pod in recipes.pod_specs(obj):
            for volume in pod.get("volumes", []):
                if "configMap" in volume:
                    assert ("ConfigMap", volume["configMap"]["name"]) in built
                if "persistentVolumeClaim" in volume:
                    claim = volume["persistentVolumeClaim"]["claimName"]
                    assert ("PersistentVolumeClaim", claim) in built
        for where, container in recipes.containers(obj):
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    command = f"create secret generic {ref['name']} --from-literal={ref['key']}="
                    assert command in " ".join(readme.replace("\\\n", " ").split()), where
                if env["name"] == "SWEEP_DATABASE_URL":
                    url = make_url(env["value"])
                    assert url.password is None
                    assert (url.host, url.port) == (
                        service["metadata"]["name"],
                        service["spec"]["ports"][0]["port"],
                    )
                    names = {e["name"] for e in container["env"]}
                    assert "PGPASSWORD" in names, where
    postgres = built[("StatefulSet", "sweep-postgres")]["spec"]["template"]["spec"]
    env = {e["name"]: e for e in postgres["containers"][0]["env"]}
    url = make_url(_first_database_url(built))
    assert (url.username, url.database) == (
        env["POSTGRES_USER"]["value"],
        env["POSTGRES_DB"]["value"],
    )


def _first_database_url(built: dict) -> str:
    for obj in built.values():
        for _, container in recipes.containers(obj):
            for env in container.get("env", []):
                if env["name"] == "SWEEP_DATABASE_URL":
                    return env["value"]
    raise AssertionError("no SWEEP_DATABASE_URL")


def _spec(built: dict) -> dict[str, Any]:
    return yaml.safe_load(built[("ConfigMap", "sweep-spec")]["data"]["sweep.yaml"])
