"""Workers and their heartbeats, on every backend: registered workers as `sweep status`
lists them, and a heartbeat that keeps its trials' leases until it stops."""

from __future__ import annotations

import time
from pathlib import Path

from sweep.coordination import Heartbeat, RegisteredWorker
from sweep.storage import WorkerRow
from tests.coordination.helpers import coordinator, make_sweep


def test_registered_workers_are_listed_and_only_live_ones_are_alive(
    storage_url: str, tmp_path: Path
) -> None:
    make_sweep(storage_url, tmp_path)
    coord = coordinator(storage_url, timeout=5.0)
    controller = coord.register_worker("controller")
    agent = coord.register_worker("agent", gpus="0,1")
    gone = coord.register_worker("agent", worker_id="gone-worker")
    silent = coord.register_worker("agent")
    coord.unregister_worker(gone)
    with coord.db.session() as session:  # it last beat a minute ago
        session.get(WorkerRow, silent).heartbeat_at -= 60_000  # type: ignore[union-attr]
    listed = coord.workers()
    assert [w.worker_id for w in listed] == [controller, agent, "gone-worker", silent]
    assert all(isinstance(w, RegisteredWorker) for w in listed)
    assert listed[1].kind == "agent" and listed[1].gpus == "0,1" and listed[1].stopped_at is None
    assert listed[2].stopped_at is not None
    assert [w.worker_id for w in coord.workers(alive_only=True)] == [controller, agent]
    coord.beat(silent)  # a beat brings it back
    assert silent in [w.worker_id for w in coord.workers(alive_only=True)]
    coord.db.dispose()


def test_a_heartbeat_keeps_its_trials_leases_until_it_stops(
    storage_url: str, tmp_path: Path
) -> None:
    make_sweep(storage_url, tmp_path, n_trials=1)
    coord = coordinator(storage_url, heartbeat_interval=0.1, timeout=0.6)
    worker = coord.register_worker("agent")
    claim = coord.claim(worker)
    assert claim is not None
    heartbeat = Heartbeat(coord, worker).start()
    try:
        time.sleep(1.2)  # twice the lease timeout
        assert coord.recover_stale() == []
        assert heartbeat.state.claims  # it read the sweep's state: RUNNING
    finally:
        heartbeat.stop()
    time.sleep(1.0)
    (lost,) = coord.recover_stale()
    assert lost.trial_id == claim.trial_id and "lease expired" in lost.reason
    coord.db.dispose()
