"""Param importances for the sweep page: Optuna's fANOVA, worked out once per count of
complete trials, off the request path, and stored in the study.

fANOVA over a few hundred trials takes a second or more, and importing scikit-learn for
it several more on a loaded machine: longer than a page may take, and, in a thread, it
would hold the interpreter's lock while other pages wait. So it runs in a worker process
(started on first need, kept for the next sweeps), and the UI asks :func:`lookup`,
which answers at once: the importances for the study's current count of complete trials
if they were worked out (by this process, or by an earlier one: they are stored as a
system attribute of the study, so a restarted UI is not cold), else the latest known
ones while the worker works out the new ones, else None (the page shows a placeholder
and asks again). ``sweep report`` calls :func:`param_importances` directly.
"""

from __future__ import annotations

import contextlib
import functools
import json
import multiprocessing
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from sweep import trials as trial_reads
from sweep.storage import Database
from sweep.study import get_sweep_record
from sweep.ui.status import optuna_storage, trial_counts

#: Complete trials Optuna's importance evaluator sees (the latest ones).
IMPORTANCE_TRIALS = 300
#: Study system attribute holding the last importances worked out, with their count.
IMPORTANCES_ATTR = "sweep:importances"


@dataclass(frozen=True)
class Importances:
    """Importances by param name, over ``complete`` complete trials; ``current`` is
    False while newer ones are being worked out."""

    values: dict[str, float]
    complete: int
    current: bool = True


_lock = threading.Lock()
_known: dict[tuple[str, int], Importances] = {}  # (url, study id) -> latest
_running: set[tuple[str, int, int]] = set()  # (url, study id, complete) being worked out
_pool: ProcessPoolExecutor | None = None


def lookup(db: Database, name: str) -> Importances | None:
    """The importances of sweep (or study) ``name`` as they are known now, without
    waiting; has the worker process work them out when they are not current.
    Returns None when none are known yet (nor for a sweep whose study is gone)."""
    study = _study(db, name)
    if study is None:
        return Importances({}, 0)
    complete = trial_counts(db, study.study_id).complete
    key = (db.url, study.study_id)
    known = _known.get(key) or _stored(db, study.study_id)
    if known is not None and known.complete == complete:
        _known[key] = known
        return known
    job = (db.url, study.study_id, complete)
    with _lock:
        start = job not in _running
        _running.add(job)
    if start:
        try:
            future = _executor().submit(_work_out, db.url, name)
        except RuntimeError:  # the pool is shutting down with the app
            with _lock:
                _running.discard(job)
        else:
            future.add_done_callback(functools.partial(_done, db, job))
    return Importances(known.values, known.complete, current=False) if known else None


def shutdown() -> None:
    """Stop the worker process (the app's shutdown)."""
    global _pool
    with _lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown(wait=False, cancel_futures=True)


def _executor() -> ProcessPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            # spawn: a fork of a threaded server could inherit a held lock.
            context = multiprocessing.get_context("spawn")
            _pool = ProcessPoolExecutor(max_workers=1, mp_context=context)
        return _pool


def _work_out(url: str, name: str) -> tuple[dict[str, float], int]:
    """In the worker process: the importances of ``name`` and their count."""
    db = Database(url)
    try:
        return param_importances(db, name)
    finally:
        db.dispose()


def _done(db: Database, job: tuple[str, int, int], future: Future[Any]) -> None:
    global _pool
    try:
        values, complete = future.result()
    except BrokenProcessPool:
        with _lock:
            _pool = None  # the worker died (killed, out of memory): a new one next time
    except Exception:
        # Not asked again until another trial completes (else every poll would retry).
        _known[(job[0], job[1])] = Importances({}, job[2])
    else:
        _known[(job[0], job[1])] = Importances(values, complete)
        with contextlib.suppress(Exception):
            # Best effort: a UI on a read-only database role keeps them in memory only.
            payload = json.dumps({"complete": complete, "values": values})
            optuna_storage(db).set_study_system_attr(job[1], IMPORTANCES_ATTR, payload)
    with _lock:
        _running.discard(job)


def _stored(db: Database, study_id: int) -> Importances | None:
    with contextlib.suppress(Exception):
        attrs = optuna_storage(db).get_study_system_attrs(study_id)
        data: Any = json.loads(attrs[IMPORTANCES_ATTR]) if IMPORTANCES_ATTR in attrs else None
        if isinstance(data, dict):
            values = {str(k): float(v) for k, v in data["values"].items()}
            return Importances(values, int(data["complete"]))
    return None


def _study(db: Database, name: str) -> trial_reads.StudyInfo | None:
    record = get_sweep_record(db, name)
    return trial_reads.find_study(db, record.study_name if record else name)


def param_importances(db: Database, name: str) -> tuple[dict[str, float], int]:
    """Optuna's fANOVA param importances over the latest complete trials of sweep (or
    study) ``name``, and the count of complete trials they are for ({} when there are
    too few trials or params to tell)."""
    import optuna

    study_info = _study(db, name)
    if study_info is None:
        return {}, 0
    complete = trial_counts(db, study_info.study_id).complete
    done = trial_reads.trial_rows(db, study_info.study_id, states=["COMPLETE"])
    done = [r for r in done if r.value is not None][-IMPORTANCE_TRIALS:]
    dists = trial_reads.distributions(db, study_info.study_id)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "new study created" line
    try:
        study = optuna.create_study(
            direction="maximize" if study_info.direction == "maximize" else "minimize"
        )
    finally:
        optuna.logging.set_verbosity(verbosity)
    for row in done:
        try:
            study.add_trial(
                optuna.trial.create_trial(
                    params=row.params,
                    distributions={k: dists[k] for k in row.params},
                    value=row.value,
                )
            )
        except (KeyError, ValueError):
            continue  # a param whose distribution changed between launches
    try:
        evaluator = optuna.importance.FanovaImportanceEvaluator(n_trees=16, seed=0)
        values = optuna.importance.get_param_importances(study, evaluator=evaluator)
        return {k: float(v) for k, v in values.items()}, complete
    except (ValueError, RuntimeError):
        return {}, complete  # too few trials, or a single distinct value
