"""The store: one database (SQLite by default, PostgreSQL for teams) holding Optuna's
study tables and sweep's own tracking and registry tables."""

from sweep.storage._database import Database
from sweep.storage._study_storage import StudyStorage
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
    "StudyStorage",
    "default_home",
    "mask_url",
    "normalise_url",
    "redact",
    "resolve_storage_url",
]
