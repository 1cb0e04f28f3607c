"""``sweep.search_runs``: search the runs of a sweep or an experiment by name."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select

from sweep.errors import NotFoundError
from sweep.storage import Database, resolve_storage_url
from sweep.storage.schema import SweepRow
from sweep.tracking._entities import Run
from sweep.tracking._filter import parse_filter, parse_order_by
from sweep.tracking._search import check_max_results, search_timeout_s
from sweep.tracking._store import TrackingStore


def search_runs(
    name: str | None = None,
    filter: str | None = None,
    order_by: Sequence[str] | None = None,
    *,
    storage: str | None = None,
    max_results: int = 1000,
    timeout_s: float | None = None,
) -> list[Run]:
    """Runs matching ``filter``, sorted by ``order_by``, at most ``max_results``.

    ``name`` is a sweep (its trial runs are searched) or an experiment (all its runs);
    ``None`` searches every run in the store. The store is ``storage`` if given, else
    ``SWEEP_DATABASE_URL``, else the embedded default under ``.sweep/``. Example::

        sweep.search_runs(
            "quickstart",
            "params.alpha < 0.01 and metrics.val_accuracy > 0.9",
            ["metrics.val_accuracy desc"],
        )

    Raises :class:`~sweep.errors.FilterError` for a malformed filter or order-by,
    :class:`~sweep.errors.NotFoundError` when no sweep or experiment is called ``name`` and
    :class:`~sweep.errors.SearchTimeoutError` when the database spends more than
    ``timeout_s`` seconds on the search (default: ``SWEEP_SEARCH_TIMEOUT``, else 30 s;
    the server cancels it, also when the caller is gone).
    """
    # Bad input is refused before the store is opened or the name looked up.
    parse_filter(filter)
    parse_order_by(order_by)
    check_max_results(max_results)
    search_timeout_s(timeout_s)
    db = Database(resolve_storage_url(storage))
    try:
        db.ensure_schema()
        store = TrackingStore(db)
        scope = run_scope(store, name) if name is not None else {}
        return store.search_runs(
            filter, order_by, max_results=max_results, timeout_s=timeout_s, **scope
        )
    finally:
        db.dispose()


def run_scope(store: TrackingStore, name: str) -> dict[str, Any]:
    """The ``search_runs`` arguments that narrow a search to sweep or experiment ``name``:
    a sweep's trial runs (the children of its parent run), or an experiment's runs."""
    with store.db.session() as session:
        parent_run_id = session.scalar(select(SweepRow.parent_run_id).where(SweepRow.name == name))
    if parent_run_id is not None:
        return {"parent_run_id": parent_run_id}
    experiment = store.find_experiment(name)
    if experiment is None:
        raise NotFoundError(
            f"no sweep or experiment called {name!r} in {store.db.display_url}; "
            "`sweep status` lists the sweeps"
        )
    return {"experiment_ids": [experiment.experiment_id]}
