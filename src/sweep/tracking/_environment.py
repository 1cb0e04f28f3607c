"""What produced a run: code version, interpreter, packages, host."""

from __future__ import annotations

import contextlib
import functools
import getpass
import os
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from sweep.storage import redact

KEY_PACKAGES = ("sweep", "optuna", "ray", "sqlalchemy", "numpy", "scikit-learn", "torch")


def command_line() -> str:
    """This process's command line, with any password in a URL masked."""
    return redact(" ".join(sys.argv))[:1000]


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


@functools.lru_cache(maxsize=8)
def environment_tags(code_dir: str) -> dict[str, str]:
    """Tags describing the environment; computed once per process and code directory."""
    tags = {
        "sweep.host": socket.gethostname(),
        "sweep.pid": str(os.getpid()),
        "sweep.python": platform.python_version(),
        "sweep.platform": platform.platform(terse=True),
    }
    with contextlib.suppress(KeyError, OSError):
        tags["sweep.user"] = getpass.getuser()
    for package in KEY_PACKAGES:
        try:
            tags[f"sweep.version.{package}"] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    commit = _git(["rev-parse", "HEAD"], Path(code_dir))
    if commit:
        tags["sweep.git.commit"] = commit
        status = _git(["status", "--porcelain", "--untracked-files=no"], Path(code_dir))
        tags["sweep.git.dirty"] = str(bool(status)).lower()
        branch = _git(["rev-parse", "--abbrev-ref", "HEAD"], Path(code_dir))
        if branch:
            tags["sweep.git.branch"] = branch
    return tags
