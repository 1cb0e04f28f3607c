"""Lineage every run records without being asked: the environment tags, plus two files,
``lineage/packages.txt`` (every installed package) and, when the code has uncommitted
changes, ``lineage/git.diff``.

The files are written once per process and experiment, as artifacts of the first run
that process opens there; every run (that one included) gets a tag with the file's
location (``sweep.lineage.packages``, ``sweep.lineage.git_diff``). A worker's
environment cannot change under its trials, so the copy is exact, and a sweep of 1,000
trials on 4 workers stores 4 package lists instead of 1,000: the list is some 10-100 KB,
the diff unbounded, and writing them per trial would cost a file write (an S3 request on
a bucket) on every trial. Each process keeps its own copy, so workers on hosts with
different packages are each recorded truthfully.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections.abc import Mapping
from typing import Any

from sweep.tracking._entities import Experiment, Run, RunStatus
from sweep.tracking._environment import git_diff, installed_packages
from sweep.tracking._store import TrackingStore
from sweep.tracking.artifacts import artifact_location, write_bytes

PACKAGES_ARTIFACT = "lineage/packages.txt"
DIFF_ARTIFACT = "lineage/git.diff"
#: Artifact name -> the tag that holds its location on every run.
LINEAGE_TAGS = {
    PACKAGES_ARTIFACT: "sweep.lineage.packages",
    DIFF_ARTIFACT: "sweep.lineage.git_diff",
}

# (database URL, experiment id, artifact name, sha256 of the content) -> location.
_written: dict[tuple[str, int, str, str], str] = {}
_lock = threading.Lock()


@functools.lru_cache(maxsize=8)
def lineage_files(code_dir: str) -> dict[str, tuple[bytes, str]]:
    """This process's lineage files, name -> (content, sha256): the package list, and
    the diff when the code is dirty. Computed once per process and code directory."""
    files = {PACKAGES_ARTIFACT: installed_packages().encode()}
    diff = git_diff(code_dir)
    if diff:
        files[DIFF_ARTIFACT] = diff.encode()
    return {name: (data, hashlib.sha256(data).hexdigest()) for name, data in files.items()}


def reference_tags(store: TrackingStore, experiment: Experiment, code_dir: str) -> dict[str, str]:
    """Tags pointing at the lineage files this process already wrote in ``experiment``;
    cheap (no I/O after the first call), so they go into the run's creation."""
    tags = {}
    for name, (_data, sha) in lineage_files(code_dir).items():
        location = _written.get((store.db.url, experiment.experiment_id, name, sha))
        if location is not None:
            tags[LINEAGE_TAGS[name]] = location
    return tags


def write_lineage(store: TrackingStore, run: Run, code_dir: str) -> None:
    """Write the lineage files this process has not yet written in the run's experiment
    as artifacts of ``run``, and tag ``run`` with their locations."""
    tags = {}
    for name, (data, sha) in lineage_files(code_dir).items():
        key = (store.db.url, run.experiment_id, name, sha)
        with _lock:
            if key in _written:
                continue
            location = artifact_location(run.artifact_uri, name)
            size = write_bytes(location, data)
            store.record_artifact(run.run_id, name, "file", size)
            _written[key] = location
        tags[LINEAGE_TAGS[name]] = location
    if tags:
        store.set_tags(run.run_id, tags)


def open_run(
    store: TrackingStore,
    experiment: Experiment,
    name: str,
    *,
    code_dir: str,
    parent_run_id: str | None = None,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
    run_id: str | None = None,
) -> Run:
    """Create a RUNNING run that records the lineage of ``code_dir``: ``tags`` should
    hold :func:`~sweep.tracking.environment_tags`; the lineage file tags are added."""
    run = store.create_run(
        experiment,
        name,
        run_id=run_id,
        parent_run_id=parent_run_id,
        params=params,
        tags={**(tags or {}), **reference_tags(store, experiment, code_dir)},
    )
    try:
        write_lineage(store, run, code_dir)
    except BaseException:
        store.end_run(run.run_id, RunStatus.FAILED)
        raise
    return run


def forget_written() -> None:
    """Forget the lineage files and where they were written (tests; changed code)."""
    with _lock:
        _written.clear()
    lineage_files.cache_clear()
