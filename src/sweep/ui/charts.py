"""Plotly figures for the UI and the report, as plain figure dicts (``{"data", "layout"}``).

Plain dicts rather than ``plotly.graph_objects``: the figures are the same JSON that
plotly.js draws, built without the validation that costs tens of milliseconds per
figure. Every builder bounds its payload: the caller passes at most a few thousand
points (see :mod:`sweep.ui.queries`), and the builders thin what could grow.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sweep.trials import TrialRow

if TYPE_CHECKING:
    from sweep.ui.queries import SweepView

Figure = dict[str, Any]

STATE_COLOURS = {
    "COMPLETE": "#2ca02c",
    "PRUNED": "#ff7f0e",
    "FAIL": "#d62728",
    "RUNNING": "#1f77b4",
    "WAITING": "#7f7f7f",
}
#: Trials drawn in the parallel-coordinate and slice plots (the best ones).
MAX_PLOTTED_TRIALS = 1000
_MARGIN = {"l": 60, "r": 20, "t": 40, "b": 50}


def _layout(title: str, **extra: Any) -> dict[str, Any]:
    layout = {"title": {"text": title, "x": 0.01}, "margin": _MARGIN, "height": 380, **extra}
    layout["xaxis"] = {"zeroline": False, **extra.get("xaxis", {})}
    return layout


def _scatter(points: int) -> str:
    """WebGL for many points; SVG otherwise (cheaper where WebGL is emulated)."""
    return "scattergl" if points > 1000 else "scatter"


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def history(rows: Sequence[TrialRow], direction: str, metric: str) -> Figure:
    """Each complete trial's value by trial number (at most ``MAX_PLOTTED_TRIALS``,
    evenly spaced, the improvements always kept), and the best so far as a step line
    drawn through its improvements only."""
    done = [r for r in rows if r.state == "COMPLETE" and _finite(r.value)]
    better = (lambda a, b: a > b) if direction == "maximize" else (lambda a, b: a < b)
    steps: list[TrialRow] = []
    for row in done:
        if not steps or better(row.value, steps[-1].value):
            steps.append(row)
    shown = _thin_rows(done, MAX_PLOTTED_TRIALS, keep={r.trial_id for r in steps})
    line_x = [r.number for r in steps] + ([done[-1].number] if done else [])
    line_y = [r.value for r in steps] + ([steps[-1].value] if steps else [])
    data = [
        {
            "type": _scatter(len(shown)),
            "mode": "markers",
            "name": metric,
            "x": [r.number for r in shown],
            "y": [r.value for r in shown],
            "marker": {"size": 5, "color": STATE_COLOURS["COMPLETE"], "opacity": 0.6},
        },
        {
            "type": "scatter",
            "mode": "lines",
            "name": "best so far",
            "x": line_x,
            "y": line_y,
            "line": {"shape": "hv", "color": "#111"},
        },
    ]
    title = "Optimization history" + (
        f" ({len(shown)} of {len(done)} trials shown)" if len(shown) < len(done) else ""
    )
    return {
        "data": data,
        "layout": _layout(
            title, xaxis={"title": {"text": "trial"}}, yaxis={"title": {"text": metric}}
        ),
    }


def _thin_rows(rows: list[TrialRow], limit: int, keep: set[int]) -> list[TrialRow]:
    if len(rows) <= limit:
        return rows
    stride = len(rows) / limit
    chosen = {rows[int(i * stride)].trial_id for i in range(limit)} | keep
    return [r for r in rows if r.trial_id in chosen]


def learning_curves(
    rows: Sequence[TrialRow], curves: Mapping[int, Sequence[tuple[int, float]]]
) -> Figure:
    """The intermediate values of the trials in ``curves``, coloured by state."""
    seen: set[str] = set()
    data = []
    for row in rows:
        points = curves.get(row.trial_id)
        if not points:
            continue
        data.append(
            {
                "type": "scatter",
                "mode": "lines",
                "name": row.state.lower(),
                "legendgroup": row.state,
                "showlegend": row.state not in seen,
                "x": [p[0] for p in points],
                "y": [p[1] for p in points],
                "line": {"width": 1, "color": STATE_COLOURS.get(row.state, "#7f7f7f")},
                "opacity": 0.7,
                "hovertemplate": f"trial {row.number}<br>step %{{x}}: %{{y:.4g}}<extra></extra>",
            }
        )
        seen.add(row.state)
    return {
        "data": data,
        "layout": _layout(
            "Intermediate values",
            xaxis={"title": {"text": "step"}},
            yaxis={"title": {"text": "reported value"}},
        ),
    }


def best_rows(rows: Sequence[TrialRow], direction: str, limit: int) -> list[TrialRow]:
    """The best ``limit`` complete trials, in number order (what the charts of params
    draw)."""
    done = [r for r in rows if r.state == "COMPLETE" and _finite(r.value)]
    done.sort(key=lambda r: r.value or 0.0, reverse=direction == "maximize")
    return sorted(done[:limit], key=lambda r: r.number)


def _dimension(label: str, values: list[Any]) -> dict[str, Any]:
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return {"label": label, "values": values}
    choices = sorted({str(v) for v in values})
    index = {c: i for i, c in enumerate(choices)}
    return {
        "label": label,
        "values": [index[str(v)] for v in values],
        "tickvals": list(range(len(choices))),
        "ticktext": choices,
    }


def parallel_coordinates(
    rows: Sequence[TrialRow], params: Sequence[str], direction: str, metric: str
) -> Figure:
    """The best complete trials' params and value, one axis each."""
    best = [
        r for r in best_rows(rows, direction, MAX_PLOTTED_TRIALS) if set(params) <= set(r.params)
    ]
    values = [r.value for r in best]
    dimensions = [_dimension(p, [r.params[p] for r in best]) for p in params]
    dimensions.append({"label": metric, "values": values})
    data = [
        {
            "type": "parcoords",
            "dimensions": dimensions,
            "line": {"color": values, "colorscale": "Viridis", "showscale": True},
        }
    ]
    layout = _layout("Parallel coordinates", margin={**_MARGIN, "t": 90})
    return {"data": data if best else [], "layout": layout}


def importances(values: Mapping[str, float], complete: int | None = None) -> Figure:
    """Optuna's param importances as horizontal bars, most important on top (over
    ``complete`` complete trials, when told)."""
    ordered = sorted(values.items(), key=lambda kv: kv[1])
    data = [
        {
            "type": "bar",
            "orientation": "h",
            "x": [v for _, v in ordered],
            "y": [k for k, _ in ordered],
            "marker": {"color": "#1f77b4"},
        }
    ]
    return {
        "data": data,
        "layout": _layout(
            "Param importances (Optuna)"
            + (f", over {complete} complete trials" if complete is not None else ""),
            xaxis={"title": {"text": "importance"}},
        ),
    }


def slices(rows: Sequence[TrialRow], params: Sequence[str], direction: str, metric: str) -> Figure:
    """The value against each param (one panel per param), trials coloured by number."""
    best = best_rows(rows, direction, MAX_PLOTTED_TRIALS)
    shown = list(params)[:6]
    gap = 0.04
    width = (1 - gap * (len(shown) - 1)) / max(1, len(shown))
    data: list[dict[str, Any]] = []
    layout = _layout("Slice", showlegend=False, yaxis={"title": {"text": metric}})
    for i, param in enumerate(shown, start=1):
        have = [r for r in best if param in r.params]
        data.append(
            {
                "type": _scatter(len(have)),
                "mode": "markers",
                "name": param,
                "x": [r.params[param] for r in have],
                "y": [r.value for r in have],
                "xaxis": f"x{i}" if i > 1 else "x",
                "yaxis": "y",
                "marker": {
                    "size": 5,
                    "color": [r.number for r in have],
                    "colorscale": "Viridis",
                    "opacity": 0.7,
                },
            }
        )
        start = (i - 1) * (width + gap)
        layout[f"xaxis{i}" if i > 1 else "xaxis"] = {
            "domain": [start, start + width],
            "title": {"text": param},
            "anchor": "y",
        }
    return {"data": data, "layout": layout}


def contour(
    rows: Sequence[TrialRow], x: str, y: str, direction: str, metric: str, bins: int = 20
) -> Figure:
    """The value over two params: the mean of each cell of a grid as a contour (numeric
    params), with the trials on top."""
    best = [
        r for r in best_rows(rows, direction, MAX_PLOTTED_TRIALS) if x in r.params and y in r.params
    ]
    xs = [r.params[x] for r in best]
    ys = [r.params[y] for r in best]
    data: list[dict[str, Any]] = []
    if best and all(isinstance(v, (int, float)) for v in xs + ys):
        data.append(_grid(xs, ys, [float(r.value or 0.0) for r in best], bins))
    data.append(
        {
            "type": "scatter",
            "mode": "markers",
            "x": xs,
            "y": ys,
            "text": [f"trial {r.number}: {r.value:.4g}" for r in best],
            "marker": {"size": 5, "color": "#111", "opacity": 0.5},
            "showlegend": False,
        }
    )
    return {
        "data": data,
        "layout": _layout(
            f"Contour: {metric} over {x} and {y}",
            xaxis={"title": {"text": x}},
            yaxis={"title": {"text": y}},
        ),
    }


def _grid(xs: list[float], ys: list[float], zs: list[float], bins: int) -> dict[str, Any]:
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    dx, dy = (x1 - x0) / bins or 1.0, (y1 - y0) / bins or 1.0
    sums = [[0.0] * bins for _ in range(bins)]
    counts = [[0] * bins for _ in range(bins)]
    for x, y, z in zip(xs, ys, zs, strict=True):
        i, j = min(int((y - y0) / dy), bins - 1), min(int((x - x0) / dx), bins - 1)
        sums[i][j] += z
        counts[i][j] += 1
    z_grid = [
        [s / c if c else None for s, c in zip(srow, crow, strict=True)]
        for srow, crow in zip(sums, counts, strict=True)
    ]
    return {
        "type": "contour",
        "x": [x0 + (j + 0.5) * dx for j in range(bins)],
        "y": [y0 + (i + 0.5) * dy for i in range(bins)],
        "z": z_grid,
        "connectgaps": True,
        "colorscale": "Viridis",
    }


def metric(
    series_key: str,
    steps: Sequence[float],
    values: Sequence[float],
    low: Sequence[float] | None = None,
    high: Sequence[float] | None = None,
) -> Figure:
    """One metric over steps; a downsampled series shows its buckets' min-max band."""
    data: list[dict[str, Any]] = []
    if low is not None and high is not None:
        data.append(
            {
                "type": "scatter",
                "x": list(steps) + list(steps)[::-1],
                "y": list(high) + list(low)[::-1],
                "fill": "toself",
                "fillcolor": "rgba(31,119,180,0.15)",
                "line": {"width": 0},
                "name": "min-max",
                "hoverinfo": "skip",
            }
        )
    data.append(
        {
            "type": "scatter",
            "mode": "lines" if len(steps) > 30 else "lines+markers",
            "name": series_key,
            "x": list(steps),
            "y": list(values),
        }
    )
    layout = _layout(series_key, height=300, showlegend=False, xaxis={"title": {"text": "step"}})
    return {"data": data, "layout": layout}


def overlay(title: str, series: Sequence[tuple[str, Sequence[float], Sequence[float]]]) -> Figure:
    """Several runs' series of one metric on one chart (the compare page)."""
    data = [
        {
            "type": "scatter",
            "mode": "lines+markers",
            "name": name,
            "x": list(x),
            "y": list(y),
            "marker": {"size": 4},
        }
        for name, x, y in series
    ]
    return {"data": data, "layout": _layout(title, height=320, xaxis={"title": {"text": "step"}})}


def sweep_figures(
    view: SweepView, x: str | None = None, y: str | None = None
) -> tuple[dict[str, Figure], str, str]:
    """A sweep page's figures (the report's too), and the contour's two params: ``x``
    and ``y`` if given, else the first two numeric params."""
    params = view.params
    direction = view.study.direction if view.study else "minimize"
    ranked = list(dict.fromkeys([p for p in params if _numeric(view.rows, p)] + params))
    x = x or (ranked[0] if ranked else "")
    y = y or (ranked[1] if len(ranked) > 1 else x)
    figures = {
        "history": history(view.rows, direction, view.metric),
        "curves": learning_curves(view.rows, view.curves),
        "parallel": parallel_coordinates(view.rows, params, direction, view.metric),
        "slice": slices(view.rows, params, direction, view.metric),
    }
    if x and y:
        figures["contour"] = contour(view.rows, x, y, direction, view.metric)
    return figures, x, y


def _numeric(rows: Sequence[TrialRow], param: str) -> bool:
    values = [r.params[param] for r in rows[-200:] if param in r.params]
    return bool(values) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
    )
