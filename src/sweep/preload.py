"""What the local workers' fork server loads once, before it forks any worker
(:data:`sweep.executor.PRELOAD`): each worker starts with it done.

The trial code's imports; PostgreSQL's driver (a worker would import it on its first
connection); and the installed package list that each trial run's lineage files hold
(reading every package's metadata takes a tenth of a second, which a worker would
otherwise spend before its first trial).
"""

from __future__ import annotations

import contextlib
import gc

# What this loads lives as long as the workers: the collector's passes over it while it
# loads cost their start about a tenth of a second. Frozen once loaded, it is never
# scanned again (nor are the pages that hold it copied into each forked worker).
gc.disable()

import sweep.trial  # noqa: E402, F401
import sweep.worker  # noqa: E402, F401
from sweep.tracking import installed_packages  # noqa: E402

with contextlib.suppress(ImportError):  # psycopg is a dependency; its binary part may not be
    import psycopg  # noqa: F401
    import sqlalchemy.dialects.postgresql.psycopg  # noqa: F401

installed_packages()
gc.freeze()
gc.enable()
