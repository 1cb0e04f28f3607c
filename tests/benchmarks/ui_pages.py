"""`sweep ui` page speed on a large sweep in PostgreSQL.

``python -m tests.benchmarks.ui_pages [--trials 10000] [--steps 100] [--repeat 10]
[--out results.json]``

A fresh database gets a sweep set up as a launch does (study, parent run), then
``trials`` finished trials written with psycopg ``COPY`` exactly as a sweep leaves them:
in Optuna's tables (state, value, 3 params, ``steps`` intermediate values, the run-id
attribute) and in sweep's (a run per trial with params, tags, ``steps`` points of
``loss`` and a final ``score``). After ``ANALYZE`` each page is fetched once (cold:
caches empty, after the app's start-up warm-up) and then ``repeat`` times through the
ASGI app in-process (Starlette's test client: routing, queries, figures and HTML,
without the network), and its median, p95 and payload size are reported. The budget is
300 ms per page. Also reported: the app's start-up, how long after their first request
the importances (worked out in the background; the endpoint answers 202 until then) are
drawn, and their first request in a restarted app (stored in the study).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from optuna.distributions import (
    CategoricalDistribution,
    FloatDistribution,
    distribution_to_json,
)
from sqlalchemy.engine import make_url

from tests.helpers import fresh_postgres_database, sweep_context

BUDGET_MS = 300.0
NAME = "bench-ui"
DISTRIBUTIONS = {
    "x": distribution_to_json(FloatDistribution(0.0, 1.0)),
    "lr": distribution_to_json(FloatDistribution(1e-5, 1e-1, log=True)),
    "kind": distribution_to_json(CategoricalDistribution(["a", "b", "c"])),
}


def run(trials: int = 10_000, steps: int = 100, repeat: int = 10) -> dict[str, Any]:
    from starlette.testclient import TestClient

    from sweep.ui import create_app

    with fresh_postgres_database() as url:
        ctx = sweep_context(url, Path("/tmp/bench-ui-artifacts"), NAME, "toy:no_model")
        started = time.perf_counter()
        run_ids = _load(url, ctx.experiment_id, ctx.parent_run_id, trials, steps)
        load_s = time.perf_counter() - started
        pages = {
            "sweeps": "/",
            "sweep": f"/sweeps/{NAME}",
            "sweep, filtered and sorted": f"/sweeps/{NAME}?filter=params.x+%3C+0.5+and+metrics."
            "score+%3E+0.5&order=metrics.score+desc",
            "sweep, page 100": f"/sweeps/{NAME}?page=100",
            "importances": f"/sweeps/{NAME}/importances",
            "run": f"/runs/{run_ids[trials // 2]}",
            "compare (2 runs)": f"/compare?run={run_ids[1]}&run={run_ids[2]}",
            "models": "/models",
        }
        results = []
        started = time.perf_counter()
        with TestClient(create_app(url)) as client:
            startup_s = time.perf_counter() - started  # the app's warm-up, before it listens
            for label, path in pages.items():
                results.append(_time_page(client, label, path, repeat))
            # Importances are worked out in the background from the first request on.
            asked = next(p["asked_at"] for p in results if p["page"] == "importances")
            _until_drawn(client, pages["importances"])
            importances_s = time.perf_counter() - asked
        # A restarted UI finds them stored in the study.
        with TestClient(create_app(url)) as client:
            t0 = time.perf_counter()
            figure = client.get(pages["importances"]).json()
            restarted_ms = (time.perf_counter() - t0) * 1000
            assert figure.get("data") and not figure.get("pending"), figure
    for page in results:
        page.pop("asked_at")
    return {
        "trials": trials,
        "steps": steps,
        "repeat": repeat,
        "load_s": round(load_s, 1),
        "budget_ms": BUDGET_MS,
        "startup_ms": round(startup_s * 1000, 1),
        "importances_drawn_ms": round(importances_s * 1000, 1),
        "importances_after_restart_ms": round(restarted_ms, 1),
        "pages": results,
    }


def _until_drawn(client: Any, path: str, timeout_s: float = 120.0) -> None:
    """Wait until ``path`` answers with a figure that is not pending."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout_s:
        figure = client.get(path).json()
        if figure.get("data") is not None and not figure.get("pending"):
            return
        time.sleep(0.05)
    raise AssertionError(f"{path} still pending after {timeout_s} s")


def _time_page(client: Any, label: str, path: str, repeat: int) -> dict[str, Any]:
    def fetch() -> tuple[float, int]:
        t0 = time.perf_counter()
        response = client.get(path)
        elapsed = time.perf_counter() - t0
        # 202: importances still being worked out (the page shows a placeholder).
        assert response.status_code in (200, 202), (path, response.status_code, response.text)
        return elapsed, len(response.content)

    first = time.perf_counter()
    cold, size = fetch()
    warm = sorted(fetch()[0] for _ in range(repeat))
    p95 = warm[min(len(warm) - 1, math.ceil(0.95 * len(warm)) - 1)]
    median = statistics.median(warm)
    return {
        "page": label,
        "path": path,
        "cold_ms": round(cold * 1000, 1),
        "median_ms": round(median * 1000, 1),
        "p95_ms": round(p95 * 1000, 1),
        "kb": round(size / 1024, 1),
        "under_budget": p95 * 1000 < BUDGET_MS,
        "asked_at": first,
    }


# -- data -------------------------------------------------------------------------------


def _load(url: str, experiment_id: int, parent_run_id: str, trials: int, steps: int) -> list[str]:
    """Write ``trials`` finished trials (Optuna's rows and their runs); returns run ids."""
    rng = np.random.default_rng(0)
    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    run_ids = [uuid.uuid4().hex for _ in range(trials)]
    with psycopg.connect(conninfo) as conn, conn.cursor() as cur:
        study_id = cur.execute(
            "SELECT study_id FROM studies WHERE study_name = %s", (NAME,)
        ).fetchone()[0]  # type: ignore[index]
        first_id = cur.execute("SELECT coalesce(max(trial_id), 0) + 1 FROM trials").fetchone()[0]  # type: ignore[index]
        xs = rng.uniform(0, 1, trials)
        lrs = 10 ** rng.uniform(-5, -1, trials)
        kinds = rng.integers(0, 3, trials)
        finals = 1 - (xs - 0.3) ** 2 - 0.05 * kinds
        states = np.where(rng.uniform(0, 1, trials) < 0.6, "PRUNED", "COMPLETE")
        states[::50] = "FAIL"
        base = datetime.datetime(2026, 1, 1)
        _copy_optuna(cur, study_id, first_id, xs, lrs, kinds, finals, states, base, steps, run_ids)
        _copy_runs(
            cur, experiment_id, parent_run_id, run_ids, xs, lrs, kinds, finals, states, steps
        )
        conn.commit()
        cur.execute("ANALYZE")
    return run_ids


def _copy_optuna(
    cur: Any, study_id: int, first_id: int, xs: Any, lrs: Any, kinds: Any, finals: Any,
    states: Any, base: datetime.datetime, steps: int, run_ids: list[str],
) -> None:  # fmt: skip
    n = len(xs)
    with cur.copy(
        "COPY trials (trial_id, number, study_id, state, datetime_start, datetime_complete) "
        "FROM STDIN"
    ) as copy:
        for i in range(n):
            start = base + datetime.timedelta(seconds=10 * i)
            copy.write_row(
                (first_id + i, i, study_id, states[i], start, start + datetime.timedelta(seconds=9))
            )
    with cur.copy(
        "COPY trial_params (trial_id, param_name, param_value, distribution_json) FROM STDIN"
    ) as copy:  # noqa: E501
        for i in range(n):
            copy.write_row((first_id + i, "x", float(xs[i]), DISTRIBUTIONS["x"]))
            copy.write_row((first_id + i, "lr", float(lrs[i]), DISTRIBUTIONS["lr"]))
            copy.write_row((first_id + i, "kind", float(kinds[i]), DISTRIBUTIONS["kind"]))
    with cur.copy("COPY trial_values (trial_id, objective, value, value_type) FROM STDIN") as copy:
        for i in range(n):
            if states[i] == "COMPLETE":
                copy.write_row((first_id + i, 0, float(finals[i]), "FINITE"))
    with cur.copy(
        "COPY trial_intermediate_values (trial_id, step, intermediate_value, "
        "intermediate_value_type) FROM STDIN"
    ) as copy:
        for i in range(n):
            last = steps if states[i] != "PRUNED" else max(1, steps // 3)
            curve = finals[i] * (1 - np.exp(-np.arange(1, last + 1) / (steps / 5)))
            tid = first_id + i
            copy.write(
                "".join(f"{tid}\t{s + 1}\t{v!r}\tFINITE\n" for s, v in enumerate(curve.tolist()))
            )
    with cur.copy("COPY trial_system_attributes (trial_id, key, value_json) FROM STDIN") as copy:
        for i in range(n):
            copy.write_row((first_id + i, "sweep:run_id", json.dumps(run_ids[i])))


def _copy_runs(
    cur: Any, experiment_id: int, parent: str, run_ids: list[str], xs: Any, lrs: Any,
    kinds: Any, finals: Any, states: Any, steps: int,
) -> None:  # fmt: skip
    start = int(time.time() * 1000) - len(run_ids) * 10_000
    with cur.copy(
        "COPY sweep_runs (run_id, experiment_id, parent_run_id, name, status, start_time, "
        "end_time, artifact_uri) FROM STDIN"
    ) as copy:
        for i, run_id in enumerate(run_ids):
            status = "FAILED" if states[i] == "FAIL" else "FINISHED"
            t = start + 10_000 * i
            copy.write_row(
                (run_id, experiment_id, parent, f"trial-{i}", status, t, t + 9_000,
                 f"/tmp/bench-ui-artifacts/{run_id}")
            )  # fmt: skip
    with cur.copy("COPY sweep_params (run_id, key, value, value_num) FROM STDIN") as copy:
        for i, run_id in enumerate(run_ids):
            copy.write_row((run_id, "x", repr(float(xs[i])), float(xs[i])))
            copy.write_row((run_id, "lr", repr(float(lrs[i])), float(lrs[i])))
            copy.write_row((run_id, "kind", "abc"[kinds[i]], None))
    with cur.copy("COPY sweep_tags (run_id, key, value) FROM STDIN") as copy:
        for i, run_id in enumerate(run_ids):
            copy.write_row((run_id, "sweep.state", str(states[i])))
            copy.write_row((run_id, "sweep.trial_number", str(i)))
            copy.write_row((run_id, "sweep.sweep", NAME))
    with cur.copy("COPY sweep_metrics (run_id, key, value, step, timestamp) FROM STDIN") as copy:
        for i, run_id in enumerate(run_ids):
            loss = 1 - finals[i] * (1 - np.exp(-np.arange(1, steps + 1) / (steps / 5)))
            t = start + 10_000 * i
            copy.write(
                "".join(
                    f"{run_id}\tloss\t{v!r}\t{s + 1}\t{t}\n" for s, v in enumerate(loss.tolist())
                )
            )
    with cur.copy(
        "COPY sweep_latest_metrics (run_id, key, value, step, timestamp) FROM STDIN"
    ) as copy:
        for i, run_id in enumerate(run_ids):
            loss = 1 - finals[i] * (1 - math.exp(-steps / (steps / 5)))
            copy.write_row((run_id, "loss", float(loss), steps, start))
            if states[i] == "COMPLETE":
                copy.write_row((run_id, "score", float(finals[i]), 0, start))


def _table(result: dict[str, Any]) -> str:
    lines = [
        f"{result['trials']:,} trials x {result['steps']} steps on PostgreSQL; "
        f"{result['repeat']} warm fetches per page (budget {result['budget_ms']:.0f} ms)",
        "",
        "| page | cold ms | median ms | p95 ms | KB |",
        "|---|---:|---:|---:|---:|",
    ]
    for page in result["pages"]:
        lines.append(
            f"| {page['page']} | {page['cold_ms']} | {page['median_ms']} | {page['p95_ms']} "
            f"| {page['kb']} |"
        )
    lines += [
        "",
        f"app startup (warm-up before it listens): {result['startup_ms']} ms; importances "
        f"drawn {result['importances_drawn_ms']} ms after their first request (worked out "
        f"in the background); after a restart (stored): {result['importances_after_restart_ms']}"
        " ms",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()
    result = run(args.trials, args.steps, args.repeat)
    print(_table(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
