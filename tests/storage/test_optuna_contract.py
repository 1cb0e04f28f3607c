"""Optuna's storage contract, as Optuna ships it (``optuna.testing.pytest_storages``), run
against the study storage on every backend: a process's study storage is an Optuna
storage like any other to the samplers, pruners and scripts that use it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from optuna.testing.pytest_storages import StorageTestCase

from sweep.storage import Database, StudyStorage


@pytest.fixture
def storage(storage_url: str) -> Iterator[StudyStorage]:
    """A study storage on an empty database: Optuna's tables only (the contract counts
    the studies; the storage needs no table of sweep's own)."""
    db = Database(storage_url)
    backend = db.optuna_storage()
    yield StudyStorage(db, backend)
    backend.engine.dispose()
    db.dispose()


class TestStudyStorage(StorageTestCase):
    """Every case of Optuna's contract, unchanged."""
