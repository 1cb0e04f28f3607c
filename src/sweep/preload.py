"""What the local workers' fork server loads once, before it forks any worker
(:data:`sweep.executor.PRELOAD`): each worker starts with it done.

The trial code's imports; PostgreSQL's driver (a worker would import it on its first
connection); and the installed package list that each trial run's lineage files hold
(reading every package's metadata takes a tenth of a second, which a worker would
otherwise spend before its first trial).
"""

from __future__ import annotations

import contextlib

import sweep.trial  # noqa: F401
import sweep.worker  # noqa: F401
from sweep.tracking import installed_packages

with contextlib.suppress(ImportError):  # psycopg is a dependency; its binary part may not be
    import psycopg  # noqa: F401
    import sqlalchemy.dialects.postgresql.psycopg  # noqa: F401

installed_packages()
