"""Where an experiment's artifacts go when it is created: the one rule for launches
and for runs opened outside a sweep."""

from __future__ import annotations

import os
from pathlib import Path

from sweep.tracking._artifacts import is_url

#: Environment variable naming a shared artifact root (a path every worker can reach,
#: or an fsspec URL such as ``s3://bucket/prefix``).
ARTIFACT_ROOT_ENV = "SWEEP_ARTIFACT_ROOT"


def artifact_root(configured: str | None = None) -> str:
    """``configured`` (the spec's ``tracking.artifact_root``, or a caller's), else
    ``SWEEP_ARTIFACT_ROOT``, else ``artifacts/`` in the sweep home. A URL is kept as it
    is; a path is made absolute, so that every worker reads the same place."""
    from sweep.storage import default_home

    root = configured or os.environ.get(ARTIFACT_ROOT_ENV)
    if not root:
        return str(default_home() / "artifacts")
    return root if is_url(root) else str(Path(root).expanduser().resolve())
