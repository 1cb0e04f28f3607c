"""Real processes standing in for the compose services on this machine: a PostgreSQL that
asks for a password, as the postgres image does, and background commands in their own
process groups, killed as a whole."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import IN_CI


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(
    condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.3
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def _postgres_bin() -> Path:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True)
    found = shutil.which("initdb") or (str(candidates[0]) if candidates else None)
    if found is None:
        message = "PostgreSQL's initdb is not installed (apt-get install postgresql)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return Path(found).parent


@contextmanager
def password_postgres(user: str, database: str, password: str) -> Iterator[int]:
    """A private PostgreSQL on a free port of 127.0.0.1 whose only login is ``user`` with
    ``password`` (scram-sha-256, as the postgres image sets up), holding ``database``.
    Yields the port. As root, the server runs as the postgres user (it refuses root)."""
    import psycopg

    bindir = _postgres_bin()
    root = Path(tempfile.mkdtemp(prefix="pgdeploy", dir="/tmp"))
    (root / "pw").write_text(password + "\n")
    as_user: list[str] = []
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(root, owner.pw_uid, owner.pw_gid)
        os.chown(root / "pw", owner.pw_uid, owner.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    data = root / "data"
    ctl = [*as_user, str(bindir / "pg_ctl"), "-D", str(data)]
    try:
        subprocess.run(
            [
                *as_user,
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                user,
                f"--pwfile={root / 'pw'}",
                "--auth=scram-sha-256",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(
            [*ctl, "-o", options, "-l", str(root / "log"), "-w", "start"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        with psycopg.connect(
            host="127.0.0.1",
            port=port,
            user=user,
            password=password,
            dbname="postgres",
            autocommit=True,
        ) as conn:
            conn.execute(f'CREATE DATABASE "{database}"')
        yield port
    finally:
        subprocess.run([*ctl, "-m", "immediate", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class Process:
    """A command started in the background, its output in a log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL its process group, also when the leader has exited and children
        (a raylet, a GCS) live on."""
        with suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=30)

    def wait(self, timeout: float) -> int:
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.name} still running after {timeout:.0f}s:\n{self.output()[-4000:]}"
            ) from None


class Processes:
    """Every process of a rehearsal; ``kill_all`` ends each one's process group."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.started: list[Process] = []

    def start(self, name: str, argv: list[str], env: dict[str, str], cwd: Path) -> Process:
        log = self.logs / f"{name}-{len(self.started)}.log"
        with open(log, "wb") as out:
            popen = subprocess.Popen(
                argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        process = Process(name, popen, log)
        self.started.append(process)
        return process

    def kill_all(self) -> None:
        # Not `ray stop`: it would stop every Ray on this machine, other tests' too.
        for process in reversed(self.started):
            process.kill()

    def logs_text(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.output()[-3000:]}" for p in self.started)
