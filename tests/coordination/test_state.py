"""The control state and the claim lock: a sweep that is not there is reported with what
to do, wherever it is looked up."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweep.control import stop, sweep_status
from sweep.coordination import ClaimLock, SweepState, read_state
from sweep.errors import NotFoundError
from sweep.storage import Database
from sweep.study import set_sweep_status
from tests.coordination.helpers import coordinator, make_sweep


def test_the_state_and_budget_are_read_from_the_sweeps_row(
    storage_url: str, tmp_path: Path
) -> None:
    make_sweep(storage_url, tmp_path, n_trials=7)
    coord = coordinator(storage_url)
    assert coord.state() == (SweepState.RUNNING, 7)
    set_sweep_status(coord.db, "slots", SweepState.PAUSED.value)
    assert read_state(coord.db, "slots") == (SweepState.PAUSED, 7)
    with coord.lock.held() as (_, state, n_trials):
        assert (state, n_trials) == (SweepState.PAUSED, 7)
    coord.db.dispose()


def test_a_missing_sweep_is_reported_with_what_to_do(storage_url: str, tmp_path: Path) -> None:
    make_sweep(storage_url, tmp_path)
    db = Database(storage_url)
    lookups = [
        lambda: read_state(db, "nope"),
        lambda: ClaimLock(db, "nope").held().__enter__(),
        lambda: sweep_status("nope", storage=storage_url),
        lambda: stop("nope", storage=storage_url),
    ]
    for lookup in lookups:
        with pytest.raises(NotFoundError) as raised:
            lookup()
        message = str(raised.value)
        assert message.startswith("no sweep called 'nope' in ")
        assert "`sweep status` lists the sweeps" in message and "--storage" in message
    db.dispose()
