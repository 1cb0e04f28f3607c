"""`sweep report NAME -o report.html`: one self-contained HTML file of a sweep.

The sweep's summary, the charts of its UI page (the same builders, :mod:`sweep.ui.charts`),
its best trials and its registered versions, with plotly.js embedded from the installed
``plotly`` package: the file opens offline, attached to a pull request or an email.
Needs the ``ui`` extra (plotly, jinja2).
"""

from __future__ import annotations

import datetime
from pathlib import Path

from sweep.registry import ModelRegistry, ModelVersion
from sweep.storage import Database, resolve_storage_url
from sweep.tracking import Run, TrackingStore
from sweep.ui import charts, queries
from sweep.ui.app import plotly_js
from sweep.ui.importances import param_importances
from sweep.ui.render import dumps_figure, render

#: Trial runs listed in the report's best-trials table.
BEST_TRIALS = 10


def write_report(name: str, output: str | Path, *, storage: str | None = None) -> Path:
    """Write the report of sweep (or study) ``name`` to ``output``; returns its path.
    Raises :class:`~sweep.errors.NotFoundError` when the store has neither."""
    db = Database(resolve_storage_url(storage))
    try:
        db.ensure_schema()
        html = report_html(db, name)
    finally:
        db.dispose()
    path = Path(output)
    path.write_text(html, encoding="utf-8")
    return path


def report_html(db: Database, name: str) -> str:
    """The report of ``name`` as one HTML document."""
    view = queries.sweep_view(db, name)
    figures, _, _ = charts.sweep_figures(view)
    importances, _ = param_importances(db, name)
    if importances:
        figures["importances"] = charts.importances(importances)
    best = _best_runs(db, view)
    return render(
        "report.html",
        view=view,
        figures={k: dumps_figure(v) for k, v in figures.items()},
        best=best,
        best_params=best[0].params if best else {},
        params=view.params[:8],
        versions=_versions(db, name),
        store=db.display_url,
        written=datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        plotly_js=plotly_js(),
    )


def _best_runs(db: Database, view: queries.SweepView) -> list[Run]:
    if view.record is None:
        return []
    direction = view.study.direction if view.study else "minimize"
    order = f"metrics.{view.metric}" + (" desc" if direction == "maximize" else "")
    return TrackingStore(db).search_runs(
        "tags.sweep.state = 'COMPLETE'",
        [order],
        parent_run_id=view.record.parent_run_id,
        max_results=BEST_TRIALS,
    )


def _versions(db: Database, name: str) -> list[ModelVersion]:
    registry = ModelRegistry(db)
    return [
        version
        for model in registry.list_models()
        for version in registry.list_versions(model.name)
        if version.sweep_name == name
    ]
