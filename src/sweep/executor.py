"""Which executor runs a sweep's trials (:func:`executor_for`), and the local workers'
fork server, started as early as the spec file can be read (:func:`warm_from_file`) or
the spec is known (:func:`warm_local_workers`).

Light on imports on purpose: `sweep launch` calls it before it imports the controller
(Optuna, SQLAlchemy, the store), so that the fork server's own imports of the trial
code run on another core meanwhile, instead of after them.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
from collections.abc import Iterator, Sequence
from multiprocessing import forkserver
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from sweep.spec import SweepSpec

#: What the fork server imports once for every worker it forks (see sweep.preload).
PRELOAD = ["sweep.preload"]


def executor_for(spec: SweepSpec, ray_address: str | None) -> str:
    """``ray`` or ``local``: what runs the trials of ``spec``. ``auto`` picks Ray where
    it is needed or already there (a cluster named, a local Ray configured with
    ``ray.num_cpus`` / ``num_gpus``, GPUs asked for, or Ray initialized in this process),
    and local processes otherwise: a local run then starts in a second, not in Ray's
    several."""
    if spec.executor != "auto":
        return spec.executor
    ray = sys.modules.get("ray")
    wants_ray = (
        (ray_address or spec.ray.address) not in (None, "", "local")
        or spec.ray.num_cpus is not None
        or spec.ray.num_gpus is not None
        or spec.resources.gpu > 0
        or (ray is not None and ray.is_initialized())
    )
    return "ray" if wants_ray else "local"


def threads_for(cpu: float) -> str:
    """Threads per worker for OpenMP/BLAS, as Ray gives an actor (its CPUs), unless the
    user set them: parallel workers each using every core would crowd them."""
    return os.environ.get("OMP_NUM_THREADS") or str(max(1, int(cpu)))


def warm_local_workers(spec: SweepSpec) -> None:
    """Start the fork server that local workers are forked from, now; it imports the
    trial code while the caller goes on (the pool started later shares it)."""
    _start_fork_server(threads_for(spec.resources.cpu))


def warm_from_file(spec_path: str, ray_address: str | None, overrides: Sequence[str]) -> bool:
    """Start the fork server on a first look at the spec file, before the spec is
    validated (which imports pydantic and Optuna: a third of a second on a small
    machine, while the server's own imports are the longest wait before the first
    trial). Only where the validated spec can but run locally, with the threads per
    worker its ``resources.cpu`` gives: a plain spec that names no executor other than
    local, no ``ray`` section, no GPUs, and that ``overrides`` leave those alone.
    Returns whether it started the server."""
    if ray_address not in (None, "", "local") or any(
        o.split("=", 1)[0].split(".", 1)[0].strip() in _EXECUTOR_KEYS for o in overrides
    ):
        return False
    try:
        raw = yaml.load(Path(spec_path).read_text(), Loader=_YAML_LOADER)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False  # the validation says what is wrong
    if not isinstance(raw, dict) or "ray" in raw or raw.get("executor", "auto") not in _LOCAL:
        return False
    resources = raw.get("resources", {})
    if not isinstance(resources, dict) or resources.get("gpu", 0) != 0:
        return False
    cpu = resources.get("cpu", 1)
    if isinstance(cpu, bool) or not isinstance(cpu, (int, float)) or cpu <= 0:
        return False
    _start_fork_server(threads_for(cpu))
    return True


#: The spec's keys that decide the executor or a worker's threads.
_EXECUTOR_KEYS = frozenset({"executor", "ray", "resources"})
_LOCAL = ("auto", "local")
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _start_fork_server(threads: str) -> None:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    with main_left_alone(), environment(OMP_NUM_THREADS=threads):
        forkserver.ensure_running()


@contextlib.contextmanager
def main_left_alone() -> Iterator[None]:
    """Start a process without it importing this process's ``__main__`` first (which
    multiprocessing does, as spawn would): a worker needs nothing of it, and a script
    calling ``sweep.launch`` unguarded by ``if __name__ == "__main__"`` would launch
    again in every worker. Multiprocessing finds ``__main__`` by these two names."""
    main = sys.modules["__main__"]
    saved: dict[str, Any] = {
        k: main.__dict__[k] for k in ("__file__", "__spec__") if k in main.__dict__
    }
    main.__dict__.pop("__file__", None)
    main.__dict__["__spec__"] = None
    try:
        yield
    finally:
        main.__dict__.pop("__spec__", None)
        main.__dict__.update(saved)


@contextlib.contextmanager
def environment(**values: str) -> Iterator[None]:
    """``values`` in this process's environment for the processes started inside."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
