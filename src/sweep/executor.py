"""Which executor runs a sweep's trials (:func:`executor_for`), and the local workers'
fork server, started as early as the spec is known (:func:`warm_local_workers`).

Light on imports on purpose: `sweep launch` calls it before it imports the controller
(Optuna, SQLAlchemy, the store), so that the fork server's own imports of the trial
code run on another core meanwhile, instead of after them.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
from collections.abc import Iterator
from multiprocessing import forkserver
from typing import TYPE_CHECKING, Any

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
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    with main_left_alone(), environment(OMP_NUM_THREADS=threads_for(spec.resources.cpu)):
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
