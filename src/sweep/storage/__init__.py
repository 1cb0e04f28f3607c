"""The store: one database (SQLite by default, PostgreSQL for teams) holding Optuna's
study tables and sweep's own tracking and registry tables."""

from sweep.storage._database import Database
from sweep.storage._own_trials import TrialWrites
from sweep.storage._retrying import retry_transient
from sweep.storage._schema import TrialLeaseRow
from sweep.storage._study_storage import StudyStorage
from sweep.storage._study_writer import EndSink, write_trials
from sweep.storage._url import (
    DATABASE_URL_ENV,
    default_home,
    mask_url,
    normalise_url,
    redact,
    resolve_storage_url,
)

__all__ = [
    "DATABASE_URL_ENV",
    "Database",
    "EndSink",
    "StudyStorage",
    "TrialLeaseRow",
    "TrialWrites",
    "default_home",
    "mask_url",
    "normalise_url",
    "redact",
    "resolve_storage_url",
    "retry_transient",
    "write_trials",
]
