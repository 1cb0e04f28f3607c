"""What produced a run: code version, interpreter, packages, host, GPUs.

Everything here is computed once per process (and code directory): a worker pays for
``git``, ``nvidia-smi`` and the package scan on its first trial only.
"""

from __future__ import annotations

import contextlib
import functools
import getpass
import os
import platform
import re
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from sweep.storage import redact

KEY_PACKAGES = ("sweep", "optuna", "ray", "sqlalchemy", "numpy", "scikit-learn", "torch")
#: Longest uncommitted diff kept as an artifact; a bigger one is cut with a marker.
MAX_DIFF_BYTES = 10 * 1024 * 1024


def command_line() -> str:
    """This process's command line, with any password in a URL masked."""
    return redact(" ".join(sys.argv))[:1000]


def _run(args: list[str], cwd: Path | None = None) -> str | None:
    try:
        out = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=20, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout


def _git(args: list[str], cwd: Path) -> str | None:
    out = _run(["git", *args], cwd)
    return None if out is None else out.strip()


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
    tags.update(gpu_tags(os.environ.get("CUDA_VISIBLE_DEVICES")))
    return tags


@functools.lru_cache(maxsize=8)
def git_diff(code_dir: str) -> str | None:
    """``git diff HEAD`` (staged and unstaged changes to tracked files) of the repository
    holding ``code_dir``; None when it is clean or not in a repository."""
    if _git(["rev-parse", "HEAD"], Path(code_dir)) is None:
        return None
    diff = _run(["git", "diff", "HEAD", "--no-color", "--no-ext-diff"], Path(code_dir))
    if not diff:
        return None
    if len(diff) > MAX_DIFF_BYTES:
        diff = diff[:MAX_DIFF_BYTES] + "\n... [diff truncated by sweep]\n"
    return diff


@functools.lru_cache(maxsize=1)
def installed_packages() -> str:
    """Every installed distribution as sorted ``name==version`` lines."""
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name, version = _name_and_version(dist)
        if name and name.lower() not in found:
            found[name.lower()] = f"{name}=={version}"
    return "".join(f"{found[key]}\n" for key in sorted(found))


def _name_and_version(dist: metadata.Distribution) -> tuple[str | None, str | None]:
    """A distribution's ``Name`` and ``Version`` headers, read from the top of its
    metadata: ``dist.metadata`` parses the whole file as an e-mail message (a package's
    long description included), ten times slower over a machine's packages."""
    text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
    name = version = None
    for line in text.splitlines():
        if not line:  # the headers end at the first blank line
            break
        if name is None and line.startswith("Name:"):
            name = line[len("Name:") :].strip()
        elif version is None and line.startswith("Version:"):
            version = line[len("Version:") :].strip()
        if name is not None and version is not None:
            break
    return name, version


def gpu_indices() -> list[str] | None:
    """The indices of the GPUs ``nvidia-smi`` lists, or None when it cannot run."""
    listing = _run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"])
    if listing is None:
        return None
    return [line.strip() for line in listing.splitlines() if line.strip()]


@functools.lru_cache(maxsize=8)
def gpu_tags(visible_devices: str | None) -> dict[str, str]:
    """Model, count, driver and CUDA version of the GPUs this process may use
    (``visible_devices`` is ``CUDA_VISIBLE_DEVICES``); empty without ``nvidia-smi``."""
    listing = _run(
        ["nvidia-smi", "--query-gpu=index,uuid,name,driver_version", "--format=csv,noheader"]
    )
    if not listing:
        return {}
    gpus = [
        [field.strip() for field in line.split(",")]
        for line in listing.splitlines()
        if line.count(",") >= 3
    ]
    gpus = _visible(gpus, visible_devices)
    if not gpus:
        return {}
    tags = {
        "sweep.gpu.count": str(len(gpus)),
        "sweep.gpu.model": ", ".join(dict.fromkeys(gpu[2] for gpu in gpus)),
        "sweep.gpu.driver": gpus[0][3],
    }
    cuda = re.search(r"CUDA Version:\s*([\d.]+)", _run(["nvidia-smi"]) or "")
    if cuda:
        tags["sweep.gpu.cuda"] = cuda.group(1)
    return tags


def _visible(gpus: list[list[str]], visible_devices: str | None) -> list[list[str]]:
    """The GPUs ``CUDA_VISIBLE_DEVICES`` lets CUDA see, in its order: indices or GPU UUID
    prefixes; like CUDA, the list stops at the first entry that matches no GPU (MIG
    instance UUIDs are not resolved: nvidia-smi's GPU query does not list them)."""
    if visible_devices is None:
        return gpus
    chosen: list[list[str]] = []
    for entry in (e.strip() for e in visible_devices.split(",")):
        match = [
            gpu
            for gpu in gpus
            if (entry.isdigit() and gpu[0] == entry)
            or (entry.startswith("GPU-") and gpu[1].startswith(entry))
        ]
        if not match:
            break
        chosen.append(match[0])
    return chosen


def clear_caches() -> None:
    """Forget what was computed (for tests, or after the code directory changed)."""
    for cached in (environment_tags, git_diff, installed_packages, gpu_tags):
        cached.cache_clear()
