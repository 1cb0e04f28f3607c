"""The compose topology rehearsed with real processes on this machine, no Docker:

- `db`: a private PostgreSQL that, like the postgres image, asks for the password
  (scram-sha-256) of the user and database the compose file names;
- `ray-head` and `ray-worker`: `ray start` with the compose commands, plus what one
  machine needs (free ports, a temp dir, one CPU for the worker); their own healthchecks
  tell when they are up;
- `controller` and `agent`: exactly the compose commands and environment, with service
  hosts replaced by 127.0.0.1 and container paths by folders here (and free ports for
  the controller's own Ray node); the controller in a PID namespace of its own, as in a
  container; the agent restarted on failure as compose's `restart: on-failure` does,
  its GPU reservation standing as CUDA_VISIBLE_DEVICES=0.

Each process gets the environment compose gives it and nothing from this one but PATH
(the image's) and HOME, so a password or token the compose file forgets is missed here
too. Then the Slurm script and the systemd unit's command join the finished sweep with
their own credential flows (~/.pgpass, PGPASSFILE) and must exit 0.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from sqlalchemy.engine import make_url

from tests.deploy import recipes
from tests.deploy.services import Process, Processes, free_port, password_postgres, wait_for
from tests.helpers import sweep_invariants

pytestmark = [pytest.mark.postgres, pytest.mark.ray, pytest.mark.timeout(400)]

PROJECT = Path(__file__).parent / "project"
BIN = str(Path(sys.executable).parent)  # the image's PATH: sweep, ray and python3
RAY_NODE_PORTS = (
    "dashboard-agent-grpc-port",
    "metrics-export-port",
    "runtime-env-agent-port",
    "node-manager-port",
    "object-manager-port",
)


class Rehearsal:
    """The compose services mapped onto this machine."""

    def __init__(self, tmp: Path, config: dict[str, Any], pg_port: int) -> None:
        self.tmp = tmp
        self.services = config["services"]
        self.ray_port = free_port()
        # Ray's socket paths live under its temp dir and must stay short (107 bytes).
        self.temp_dir = Path(tempfile.mkdtemp(prefix="raydeploy", dir="/tmp"))
        self.hosts = {
            "db:5432": f"127.0.0.1:{pg_port}",
            "ray-head:6379": f"127.0.0.1:{self.ray_port}",
            "0.0.0.0": "127.0.0.1",
        }
        self.home = tmp / "home"
        self.home.mkdir()
        (tmp / "work").mkdir()  # the image's WORKDIR

    def paths(self, name: str) -> dict[str, str]:
        """Container path -> folder here, for the service's volumes."""
        mapping = {}
        for volume in self.services[name].get("volumes", []):
            source, target = volume.split(":")[:2]
            if source.startswith((".", "/")):
                host = (recipes.COMPOSE_FILE.parent / source).resolve()
            else:  # a named volume, shared by the services that mount it
                host = self.tmp / "volumes" / source
                host.mkdir(parents=True, exist_ok=True)
            mapping[target] = str(host)
        return mapping

    def localize(self, value: str, name: str, extra: dict[str, str] | None = None) -> str:
        """Service hosts -> 127.0.0.1 (and their ports here); container paths, also
        inside a shell script, -> the folders standing for the service's volumes."""
        for old, new in {**self.hosts, **(extra or {})}.items():
            value = value.replace(old, new)
        for target, host in sorted(self.paths(name).items(), key=lambda p: -len(p[0])):
            value = re.sub(rf"(?<![\w/.]){re.escape(target)}(?=/|\s|$)", host, value)
        return value

    def environment(self, name: str) -> dict[str, str]:
        env = {
            k: self.localize(v, name)
            for k, v in recipes.service_environment(self.services[name]).items()
        }
        return {**env, "PATH": f"{BIN}:{os.environ['PATH']}", "HOME": str(self.home)}

    def command(self, name: str, extra: dict[str, str] | None = None) -> list[str]:
        return [self.localize(a, name, extra) for a in recipes.service_command(self.services[name])]

    def healthcheck(self, name: str, agent_port: int) -> list[str]:
        test = self.services[name]["healthcheck"]["test"]
        assert test[0] == "CMD"
        return [
            self.localize(a, name, {"127.0.0.1:52365": f"127.0.0.1:{agent_port}"}) for a in test[1:]
        ]


def ray_node(rehearsal: Rehearsal, processes: Processes, name: str, *extra: str) -> Process:
    """A Ray node from its compose command, on ports of its own; waits for its healthcheck.
    Started again once if it gives up (a busy machine can make a raylet miss Ray's 30 s
    start-up deadline), as compose's `restart: unless-stopped` would."""
    for attempt in range(2):
        agent_port = free_port()
        # The dashboard (for people watching) is left out: it costs this shared machine
        # a dozen processes, and nothing here needs it.
        argv = [
            a for a in rehearsal.command(name) if not a.startswith(("--port=", "--dashboard-host="))
        ]
        if "--head" in argv:
            argv += [
                f"--port={rehearsal.ray_port}",
                "--include-dashboard=false",
                f"--temp-dir={rehearsal.temp_dir}",
            ]
        argv += [f"--dashboard-agent-listen-port={agent_port}", *extra]
        argv += [f"--{flag}={free_port()}" for flag in RAY_NODE_PORTS]
        env = rehearsal.environment(name)
        node = processes.start(name, argv, env, rehearsal.tmp / "work")
        check = rehearsal.healthcheck(name, agent_port)

        def up(node: Process = node, check: list[str] = check, env: dict = env) -> bool:
            if node.popen.poll() is not None:
                return True  # gave up: see below
            return subprocess.run(check, env=env, capture_output=True, timeout=30).returncode == 0

        wait_for(up, 120, f"the {name} healthcheck", interval=1.0)
        if node.popen.poll() is None:
            return node
        assert attempt == 0, f"{name} exited twice:\n{node.output()[-3000:]}"
        node.kill()  # what it left behind holds its ports
    raise AssertionError("unreachable")


def controller_command(rehearsal: Rehearsal) -> list[str]:
    """The controller's `sh -c` script, its `ray start` on ports of its own, in a PID
    namespace when this machine allows one: like a container, it then sees no Ray
    process but its own, so `sweep launch` finds the Ray node it needs only if the
    script starts one (a driver without a local node cannot connect)."""
    argv = rehearsal.command("controller")
    assert argv[:2] == ["sh", "-c"] and argv[2].startswith("ray start ")
    ports = " ".join(
        f"--{flag}={free_port()}" for flag in (*RAY_NODE_PORTS, "dashboard-agent-listen-port")
    )
    argv[2] = argv[2].replace("ray start ", f"ray start {ports} ", 1)
    if os.geteuid() == 0 and shutil.which("unshare"):
        return ["unshare", "--pid", "--fork", "--mount-proc", *argv]
    return argv


def run_agent_with_restarts(
    rehearsal: Rehearsal, processes: Processes, env: dict[str, str], until: float
) -> Process:
    """compose's `restart: on-failure`: start again after a non-zero exit (here: 6, the
    controller has not created the sweep yet), stay down after exit 0."""
    assert rehearsal.services["agent"]["restart"] == "on-failure"
    while True:
        agent = processes.start("agent", rehearsal.command("agent"), env, rehearsal.tmp / "work")
        code = agent.wait(until - time.monotonic())
        if code == 0:
            return agent
        assert code == 6, f"agent exited {code}:\n{agent.output()[-3000:]}"
        time.sleep(0.5)


def test_the_compose_topology_runs_a_sweep_to_its_registered_challenger(tmp_path: Path) -> None:
    project = tmp_path / "project"  # mounted read-only at /app: a copy keeps caches out
    shutil.copytree(PROJECT, project)
    dotenv = {
        "POSTGRES_PASSWORD": secrets.token_urlsafe(16),
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
        "SWEEP_PROJECT_DIR": str(project),
        "SWEEP_SPEC": "rehearsal.yaml",
        "SWEEP_NAME": "deploy-rehearsal",
    }
    config = recipes.compose_config(dotenv)
    db = recipes.service_environment(config["services"]["db"])
    password = dotenv["POSTGRES_PASSWORD"]
    processes = Processes(tmp_path)
    started = time.monotonic()

    def phase(what: str) -> None:  # shown with the logs when the test fails
        print(f"[{time.monotonic() - started:5.1f}s] {what}")

    with password_postgres(db["POSTGRES_USER"], db["POSTGRES_DB"], password) as pg_port:
        rehearsal = Rehearsal(tmp_path, config, pg_port)
        url = make_url(rehearsal.environment("controller")["SWEEP_DATABASE_URL"])
        assert url.password is None
        _assert_the_server_wants_the_password(url.render_as_string())
        phase("db up")
        try:
            ray_node(rehearsal, processes, "ray-head")
            phase("ray-head healthy")
            ray_node(rehearsal, processes, "ray-worker", "--num-cpus=1")
            phase("ray-worker healthy")
            controller = processes.start(
                "controller",
                controller_command(rehearsal),
                rehearsal.environment("controller"),
                tmp_path / "work",
            )
            agent_env = {**rehearsal.environment("agent"), "CUDA_VISIBLE_DEVICES": "0"}
            deadline = time.monotonic() + 240
            agent = run_agent_with_restarts(rehearsal, processes, agent_env, deadline)
            phase("agent done")
            assert controller.wait(deadline - time.monotonic()) == 0, controller.output()
            phase("controller done")
            _assert_finished_with_challenger(rehearsal, controller, agent, url, password)
            _assert_slurm_and_systemd_agents_join(rehearsal, processes, url, password)
            phase("slurm and systemd agents done")
        except BaseException:
            print(processes.logs_text())
            raise
        finally:
            processes.kill_all()
            shutil.rmtree(rehearsal.temp_dir, ignore_errors=True)


def _assert_the_server_wants_the_password(url: str) -> None:
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    with pytest.raises(sqlalchemy.exc.OperationalError, match="password"):
        engine.connect().close()


def _assert_finished_with_challenger(
    rehearsal: Rehearsal, controller: Process, agent: Process, url: sqlalchemy.URL, password: str
) -> None:
    import sweep

    full_url = url.set(password=password).render_as_string(hide_password=False)
    spec = (rehearsal.tmp / "project" / "rehearsal.yaml").read_text()
    n_trials = int(re.search(r"n_trials: (\d+)", spec).group(1))  # type: ignore[union-attr]
    counts = sweep_invariants(full_url, "deploy-rehearsal")
    assert counts["counted"] == n_trials and counts["retried"] == 0
    agent_trials = int(re.search(r"agent done: (\d+) trials", agent.output()).group(1))  # type: ignore[union-attr]
    assert agent_trials >= 1, agent.output()
    assert "models:/rehearsal-model/1 @challenger" in controller.output()
    assert password not in controller.output() + agent.output()
    # The model came back from the shared artifacts volume.
    model = sweep.load_model("models:/rehearsal-model@challenger", storage=full_url)
    assert 0.0 <= model["x"] <= 1.0
    artifacts = rehearsal.tmp / "volumes" / "artifacts"
    assert any(artifacts.rglob("*")), "no artifact reached the artifacts volume"


def _assert_slurm_and_systemd_agents_join(
    rehearsal: Rehearsal, processes: Processes, url: sqlalchemy.URL, password: str
) -> None:
    """Against the finished sweep, each exits 0 at once: it connected with the password
    from its own credential flow, found the sweep and nothing left to run."""
    host = f"{url.host}:{url.port}:*:{url.username}:{password}\n"
    base = {"PATH": f"{BIN}:{os.environ['PATH']}", "CUDA_VISIBLE_DEVICES": "0"}
    # Slurm: the submitter's environment and ~/.pgpass on the shared home.
    home = rehearsal.tmp / "slurm-home"
    home.mkdir()
    (home / ".pgpass").write_text(host)
    (home / ".pgpass").chmod(0o600)
    env = {**base, "HOME": str(home), "SWEEP_DATABASE_URL": url.render_as_string()}
    slurm = processes.start(
        "slurm", ["bash", str(recipes.SBATCH), "deploy-rehearsal"], env, rehearsal.tmp / "work"
    )
    # systemd: EnvironmentFile, and the password file as a credential (PGPASSFILE=%d/pgpass).
    unit = recipes.systemd_unit()["Service"]
    credentials = rehearsal.tmp / "credentials"
    credentials.mkdir()
    (credentials / "pgpass").write_text(host)
    (credentials / "pgpass").chmod(0o400)
    env = {**base, "HOME": str(rehearsal.home)}
    for key, value in recipes.dotenv(recipes.SYSTEMD_ENV_EXAMPLE).items():
        env[key] = value.replace("db.example.internal:5432", f"{url.host}:{url.port}")
    env["SWEEP_ARTIFACT_ROOT"] = str(rehearsal.tmp / "volumes" / "artifacts")
    key, value = unit["environment"].split("=", 1)
    env[key] = value.replace("%d", str(credentials))
    argv = unit["execstart"].replace("%i", "deploy-rehearsal").split()
    argv[0] = Path(argv[0]).name  # /opt/sweep/bin/sweep: the installed one, on PATH here
    systemd = processes.start("systemd", argv, env, rehearsal.tmp / "work")
    for agent in (slurm, systemd):
        assert agent.wait(120) == 0 and "agent done: 0 trials" in agent.output(), agent.output()
