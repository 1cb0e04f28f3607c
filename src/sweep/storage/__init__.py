"""The store: one database (SQLite by default, PostgreSQL for teams) holding Optuna's
study tables and sweep's own tracking and registry tables."""

from sweep.storage._database import Database
from sweep.storage._optuna_tables import (
    INTERMEDIATE_VALUES,
    PARAMS,
    STUDIES,
    STUDY_DIRECTIONS,
    SYSTEM_ATTRS,
    TRIALS,
    VALUES,
    insert_running_trials,
    insert_system_attrs,
    local_time,
    progress_since_best,
    queue_waiting_trial,
    start_waiting_trials,
    system_attr_by_number,
    system_attrs_of,
    unfinished_trials,
    utc_now,
)
from sweep.storage._own_trials import TrialWrites
from sweep.storage._retrying import retry_transient
from sweep.storage._slots import StudySlots, save_slots, study_slots
from sweep.storage._study_storage import StudyStorage
from sweep.storage._study_writer import EndSink, write_trials
from sweep.storage._url import (
    DATABASE_URL_ENV,
    check_url,
    default_home,
    mask_url,
    normalise_url,
    redact,
    resolve_storage_url,
)
from sweep.storage.schema import LEASE_TABLE, SweepRow, TrialLeaseRow, WorkerRow
from sweep.storage.sql import insert_rows

__all__ = [
    "INTERMEDIATE_VALUES",
    "LEASE_TABLE",
    "PARAMS",
    "STUDIES",
    "STUDY_DIRECTIONS",
    "SYSTEM_ATTRS",
    "TRIALS",
    "VALUES",
    "check_url",
    "DATABASE_URL_ENV",
    "Database",
    "EndSink",
    "StudySlots",
    "StudyStorage",
    "SweepRow",
    "TrialLeaseRow",
    "TrialWrites",
    "WorkerRow",
    "default_home",
    "insert_rows",
    "insert_running_trials",
    "insert_system_attrs",
    "local_time",
    "mask_url",
    "normalise_url",
    "progress_since_best",
    "queue_waiting_trial",
    "redact",
    "resolve_storage_url",
    "retry_transient",
    "save_slots",
    "start_waiting_trials",
    "study_slots",
    "system_attr_by_number",
    "system_attrs_of",
    "unfinished_trials",
    "utc_now",
    "write_trials",
]
