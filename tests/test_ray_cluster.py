"""Joining an existing Ray cluster (`ray start --head`) with --ray-address."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import yaml

from tests.helpers import OBJECTIVES_DIR


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def ray_head() -> Iterator[str]:
    """A one-node Ray cluster of its own, killed with its process group afterwards."""
    port = free_port()
    # Ray's socket paths live under the temp dir and must stay short (107 bytes).
    temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    ray_cli = Path(sys.executable).parent / "ray"
    head = subprocess.Popen(
        [
            str(ray_cli),
            "start",
            "--head",
            f"--port={port}",
            "--num-cpus=2",
            "--include-dashboard=false",
            "--disable-usage-stats",
            "--block",
            f"--temp-dir={temp_dir}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.5)
    else:
        os.killpg(head.pid, signal.SIGKILL)
        pytest.fail("ray start --head did not open its port")
    try:
        yield address
    finally:
        # A SIGTERM makes Ray drain for 30 s; this cluster holds nothing worth draining.
        os.killpg(head.pid, signal.SIGKILL)
        head.wait(timeout=30)
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_launch_joins_a_cluster_and_ships_the_objective(ray_head: str, tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.mkdir()
    shutil.copy(OBJECTIVES_DIR / "toy.py", code / "toy.py")
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "name": "on-cluster",
                "objective": "toy:learning_curve",
                "code_dir": "code",
                "parameters": {"x": {"type": "uniform", "low": 0.0, "high": 1.0}},
                "metric": {"name": "score", "direction": "maximize"},
                "budget": {"n_trials": 4},
                "parallelism": 2,
            }
        )
    )
    url = f"sqlite:///{tmp_path / 'sweep.db'}"
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sweep.cli",
            "launch",
            str(spec),
            "--storage",
            url,
            "--ray-address",
            ray_head,
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    study = optuna.load_study(study_name="on-cluster", storage=url)
    assert len(study.get_trials()) == 4
    assert all(t.state.is_finished() for t in study.get_trials())
