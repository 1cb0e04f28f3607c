"""The memory a trial may take: ``resources.memory_mb``, enforced in the worker."""

from __future__ import annotations

import contextlib
import resource
from collections.abc import Iterator


@contextlib.contextmanager
def memory_cap(limit_mb: int | None) -> Iterator[None]:
    """Let the code inside allocate at most ``limit_mb`` MiB more than this process
    holds now: past it, allocations raise MemoryError in this trial alone, instead of
    the kernel killing the worker (or a neighbour)."""
    if not limit_mb:
        yield
        return
    previous = resource.getrlimit(resource.RLIMIT_DATA)
    cap = _data_segment_bytes() + limit_mb * 1024 * 1024
    hard = previous[1]
    resource.setrlimit(
        resource.RLIMIT_DATA, (cap if hard == resource.RLIM_INFINITY else min(cap, hard), hard)
    )
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_DATA, previous)


def _data_segment_bytes() -> int:
    """This process's data segment (VmData: heap and private writable mappings)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmData:"):
                return int(line.split()[1]) * 1024
    return 0
