"""`sweep runs show RUN_ID --metric NAME`: a metric's history, with a sparkline."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from sweep.cli import _print_json, console
from sweep.errors import NotFoundError
from sweep.trials import thin

SPARKS = "▁▂▃▄▅▆▇█"
#: Characters of the sparkline; rows of the printed table.
SPARK_WIDTH = 60
TABLE_ROWS = 20


def sparkline(values: list[float], width: int = SPARK_WIDTH) -> str:
    """``values`` as a line of block characters, at most ``width`` of them (each the
    mean of its share of the series)."""
    if not values:
        return ""
    if len(values) > width:
        chunk = len(values) / width
        values = [
            sum(part) / len(part)
            for part in (
                values[int(i * chunk) : int((i + 1) * chunk) or None] for i in range(width)
            )
            if part
        ]
    low, high = min(values), max(values)
    span = high - low or 1.0
    return "".join(SPARKS[min(7, int((v - low) / span * 8))] for v in values)


def print_history(tracking: Any, run_id: str, metric: str, *, as_json: bool) -> None:
    run = tracking.get_run(run_id)
    points = tracking.metric_history(run_id, metric)
    if not points:
        known = ", ".join(sorted(run.metrics)) or "none"
        raise NotFoundError(f"run {run_id} has no metric {metric!r}; its metrics: {known}")
    if as_json:
        _print_json({"run_id": run_id, "metric": metric, "points": points})
        return
    values = [p.value for p in points]
    console.print(f"[bold]{run.name}[/] {run_id}  {metric}: {len(points)} points")
    console.print(
        f"  first {values[0]:.6g} · last {values[-1]:.6g} · min {min(values):.6g} "
        f"· max {max(values):.6g}"
    )
    console.print(f"  {sparkline(values)}")
    shown = thin([(p.step, p.value) for p in points], TABLE_ROWS)
    table = Table("step", metric)
    for step, value in shown:
        table.add_row(str(step), f"{value:.6g}")
    console.print(table)
    if len(shown) < len(points):
        console.print(f"  [dim]{len(shown)} of {len(points)} points shown; --json prints all[/]")
