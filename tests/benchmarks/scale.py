"""Scale past one machine, simulated on this one (``python -m tests.benchmarks scale``).

- **Agents**: ``agents`` concurrent agent workers (threads of this process, each with its
  own :class:`~sweep.trial.TrialRunner`: its own database engine and connections, its
  own heartbeat) claim and end trivial trials (``toy:trivial``, random sampler) against
  one fresh PostgreSQL database, through the code path of ``sweep agent``'s workers
  (``Coordinator.claim`` with the run seed, then ``TrialRunner.run``: the run, the
  objective, the end written at once). Claims per second over the whole run, the
  claim's latency (p50, p99), and whether the budget held exactly: ``trials`` finished,
  numbers 0 to ``trials - 1`` each once, one run per trial.
- **Flat claims**: one sweep without a budget whose study is pre-filled (``COPY``) with
  1,000, then 10,000, then 100,000 finished trials; at each size ``claims`` claims in
  turn from one coordinator, their median and p99 latency.
- **Controller memory**: the dispatcher's view of a study (its study storage, TPE
  sampler and planner) as the study grows to ``memory`` finished trials, read a few
  thousand at a time: the process's RSS growth, then (a second pass) Python's traced
  memory and its largest holders.

The agents share this process's interpreter (2 cores here): claims per second is bounded
by Python's CPU more than by PostgreSQL; the latencies include waiting for the GIL. Each
agent holds 2-3 connections (its sessions, Optuna's storage, its heartbeat): 64 agents
need more than PostgreSQL's default ``max_connections`` (100); point
``SWEEP_TEST_POSTGRES_URL`` at a server that allows them.
"""

from __future__ import annotations

import io
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import optuna
from sqlalchemy import select, text

from sweep.coordination import Coordinator, Heartbeat, LeaseSettings
from sweep.storage import TRIALS, VALUES, Database
from sweep.trial import TrialRunner
from tests.benchmarks.report import median, percentile
from tests.helpers import fresh_postgres_database, sweep_context

NAME = "bench-scale"


def agents(n_agents: int, trials: int) -> dict[str, Any]:
    """``n_agents`` agent workers claiming and ending ``trials`` trivial trials."""
    with fresh_postgres_database() as url, tempfile.TemporaryDirectory() as root:
        context = sweep_context(
            url,
            Path(root),
            NAME,
            "toy:trivial",
            sampler={"name": "random", "seed": 1},
            metric={"name": "value", "direction": "minimize"},
            budget={"n_trials": trials},
        )
        runners = [TrialRunner(context, index) for index in range(n_agents)]
        latencies: list[list[float]] = [[] for _ in runners]
        run_ids: list[list[str]] = [[] for _ in runners]
        start = threading.Barrier(n_agents + 1)
        errors: list[BaseException] = []

        def agent(index: int) -> None:
            runner = runners[index]
            coordinator = runner.coordinator
            worker = coordinator.register_worker("agent")
            heartbeat = Heartbeat(coordinator, worker).start()
            try:
                start.wait()
                while True:
                    began = time.perf_counter()
                    claim = coordinator.claim(worker, runner.run_seed)
                    latencies[index].append(time.perf_counter() - began)
                    if claim is None:
                        return
                    run_ids[index].append(claim.run_id)
                    runner.run(claim)
            except BaseException as exc:  # reported below, with the figures
                errors.append(exc)
            finally:
                heartbeat.stop()

        threads = [threading.Thread(target=agent, args=(i,)) for i in range(n_agents)]
        for t in threads:
            t.start()
        start.wait()
        began = time.perf_counter()
        connections = _peak_connections(url, threads)
        wall = time.perf_counter() - began
        for runner in runners:
            runner.close()
        if errors:
            raise errors[0]
        study = optuna.load_study(study_name=NAME, storage=url)
        done = study.get_trials(deepcopy=False)
    every = sorted(x for per in latencies for x in per)
    numbers = sorted(t.number for t in done)
    finished = sum(1 for t in done if t.state == optuna.trial.TrialState.COMPLETE)
    claimed = sum(len(r) for r in run_ids)
    return {
        "agents": n_agents,
        "trials": trials,
        "wall_s": round(wall, 2),
        "claims_per_s": round(claimed / wall, 1),
        "trials_per_s": round(finished / wall, 1),
        "claim_ms": {
            "p50": round(percentile(every, 0.5) * 1000, 2),
            "p99": round(percentile(every, 0.99) * 1000, 2),
            "max": round(every[-1] * 1000, 2),
            "calls": len(every),
        },
        "peak_connections": connections,
        "budget_exact": finished == trials
        and numbers == list(range(trials))
        and claimed == trials
        and len({r for per in run_ids for r in per}) == trials,
        "finished": finished,
        "claimed": claimed,
    }


def _peak_connections(url: str, threads: list[threading.Thread]) -> int:
    """Wait for ``threads``; the most connections to the database seen meanwhile."""
    db = Database(url)
    peak = 0
    query = text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
    while any(t.is_alive() for t in threads):
        with db.engine.connect() as conn:
            peak = max(peak, int(conn.execute(query).scalar_one()) - 1)  # less this one
        threads[0].join(timeout=0.25)
    for t in threads:
        t.join()
    db.dispose()
    return peak


def flat_claims(sizes: list[int], claims: int) -> dict[str, Any]:
    """Claim latency with ``sizes`` finished trials in the study (ascending)."""
    with fresh_postgres_database() as url, tempfile.TemporaryDirectory() as root:
        sweep_context(url, Path(root), NAME, "toy:trivial", budget={"n_trials": 1_000_000_000})
        db = Database(url)
        coordinator = Coordinator(db, db.optuna_storage(), NAME, LeaseSettings())
        worker = coordinator.register_worker("agent")
        out = []
        for size in sizes:
            _prefill(db, coordinator.study_id, size)
            coordinator.claim(worker)  # the first claim after the fill counts it once
            times = []
            for _ in range(claims):
                began = time.perf_counter()
                coordinator.claim(worker)
                times.append(time.perf_counter() - began)
            times.sort()
            out.append(
                {
                    "finished_trials": size,
                    "claim_p50_ms": round(median(times) * 1000, 2),
                    "claim_p99_ms": round(percentile(times, 0.99) * 1000, 2),
                }
            )
            print(out[-1], flush=True)
        db.dispose()
    return {"claims_per_size": claims, "sizes": out}


def _prefill(db: Database, study_id: int, total: int, *, params: bool = False) -> None:
    """Add COMPLETE trials (with a value) to the study until it holds ``total`` trials,
    numbered after those it holds, with ``COPY``; then ``ANALYZE``. With ``params``,
    each also gets the trivial objective's three params and a run id, as a sweep's
    trial has them."""
    with db.session() as session:
        have = session.scalar(
            select(TRIALS.c.number)
            .where(TRIALS.c.study_id == study_id)
            .order_by(TRIALS.c.number.desc())
            .limit(1)
        )
    first = 0 if have is None else have + 1
    if first >= total:
        return
    raw = db.engine.raw_connection()
    try:
        cursor = raw.cursor()
        rows = io.StringIO()
        for number in range(first, total):
            rows.write(
                f"{number}\t{study_id}\tCOMPLETE\t2026-01-01 00:00:00\t2026-01-01 00:00:01\n"
            )
        with cursor.copy(
            f"COPY {TRIALS.name} (number, study_id, state, datetime_start, datetime_complete) "
            "FROM STDIN"
        ) as copy:
            copy.write(rows.getvalue())
        cursor.execute(
            f"INSERT INTO {VALUES.name} (trial_id, objective, value, value_type) "
            f"SELECT trial_id, 0, number, 'FINITE' FROM {TRIALS.name} "
            "WHERE study_id = %s AND number >= %s",
            (study_id, first),
        )
        if params:
            _prefill_params(cursor, study_id, first)
        raw.commit()
        cursor.execute(f"ANALYZE {TRIALS.name}")
        cursor.execute(f"ANALYZE {VALUES.name}")
        raw.commit()
    finally:
        raw.close()


def controller_memory(sizes: list[int], *, trace: bool) -> dict[str, Any]:
    """What the controller's view of a study holds as it grows to ``sizes`` finished
    trials (ascending): the dispatcher's study storage, its TPE sampler (the trivial
    sweep's, as the spec builds it) and planner, after reading the study and planning a
    claimed trial at each size: the process's RSS growth; with ``trace``, Python's traced
    memory instead (after a collection; tracing inflates RSS), and the largest holders
    by allocation site."""
    import gc
    import tracemalloc

    from sweep.planner import Planner
    from sweep.storage import StudyStorage

    with fresh_postgres_database() as url, tempfile.TemporaryDirectory() as root:
        context = sweep_context(
            url,
            Path(root),
            NAME,
            "toy:trivial",
            sampler={"name": "tpe", "seed": 1},
            budget={"n_trials": 1_000_000_000},
        )
        db = Database(url)
        coordinator = Coordinator(db, db.optuna_storage(), NAME, LeaseSettings())
        worker = coordinator.register_worker("controller")
        if trace:
            tracemalloc.start(4)
        storage = StudyStorage(db, coordinator.storage)  # type: ignore[arg-type]
        study = optuna.load_study(
            study_name=NAME, storage=storage, sampler=context.spec.sampler.build()
        )
        planner = Planner(study, storage)
        gc.collect()
        base = tracemalloc.get_traced_memory()[0]
        base_rss = _rss()
        out = []
        for size in sizes:
            # A few thousand at a time, as a controller reads the trials that ended
            # since its last read (one big read would leave the heap fragmented).
            before = out[-1]["finished_trials"] if out else 0
            for step in [*range(before + 2000, size, 2000), size]:
                _prefill(db, coordinator.study_id, step, params=True)
                storage.get_all_trials(coordinator.study_id, deepcopy=False)
            claim = coordinator.claim(worker)
            assert claim is not None
            planner.plan(claim)
            gc.collect()
            if trace:
                traced = tracemalloc.get_traced_memory()[0] - base
                figures = {"traced_mb": round(traced / 2**20, 1)}
            else:
                traced = _rss() - base_rss
                figures = {"rss_growth_mb": round(traced / 2**20, 1)}
            out.append(
                {"finished_trials": size, **figures, "bytes_per_trial": round(traced / size)}
            )
            print(out[-1], flush=True)
        top = tracemalloc.take_snapshot().statistics("lineno")[:8] if trace else []
        tracemalloc.stop()
        db.dispose()
    result: dict[str, Any] = {"sizes": out}
    if trace:
        result["top"] = [f"{round(s.size / 2**20, 1)} MB {s.traceback[0]}" for s in top]
    return result


def _rss() -> int:
    """This process's resident memory, in bytes (Linux)."""
    import os

    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _prefill_params(cursor: Any, study_id: int, first: int) -> None:
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        distribution_to_json,
    )

    x, y, c = (  # toy:trivial's
        distribution_to_json(FloatDistribution(-10.0, 10.0)),
        distribution_to_json(FloatDistribution(1e-3, 1.0, log=True)),
        distribution_to_json(CategoricalDistribution(["a", "b", "c"])),
    )
    new = f"FROM {TRIALS.name} WHERE study_id = %s AND number >= %s"
    for name, value, dist in (
        ("x", "random() * 20 - 10", x),
        ("y", "exp(random() * 6.9 - 6.9)", y),
        ("c", "floor(random() * 3)", c),
    ):
        cursor.execute(
            "INSERT INTO trial_params (trial_id, param_name, param_value, distribution_json) "
            f"SELECT trial_id, %s, {value}, %s {new}",
            (name, dist, study_id, first),
        )
    cursor.execute(
        "INSERT INTO trial_system_attributes (trial_id, key, value_json) "
        f"SELECT trial_id, 'sweep:run_id', '\"' || md5(trial_id::text) || '\"' {new}",
        (study_id, first),
    )


def run(
    n_agents: int, trials: int, sizes: list[int], claims: int, memory: list[int]
) -> dict[str, Any]:
    result: dict[str, Any] = {}
    if n_agents and trials:
        result["agents"] = agents(n_agents, trials)
        print(result["agents"], flush=True)
    if sizes:
        result["flat_claims"] = flat_claims(sizes, claims)
    if memory:
        result["controller_rss"] = controller_memory(memory, trace=False)
        result["controller_traced"] = controller_memory(memory, trace=True)
    return result
