"""Run benchmarks: ``python -m tests.benchmarks throughput [--backend postgresql]
[--trials 200] [--workers 2] [--out results.json]`` or ``python -m tests.benchmarks query
[--runs 10000] [--params 20] [--points 1000] [--repeat 20] [--explain] [--out results.json]``
or ``python -m tests.benchmarks logging [--calls 200000] [--work-us 0,10] [--points 2000000]
[--batch 50000] [--writers 1,2] [--end-to-end 1000000] [--nested-runs 300] [--out ...]``.

Side by side with the peers (Optuna, Ray Tune, MLflow; ``pip install -e '.[bench]'``):
``python -m tests.benchmarks all [--small [--full a,b]] [--skip a,b] --out results.json``
runs every scenario below and writes the results as JSON and as a Markdown table
(``results.md``); each also runs alone (``orchestration``, ``mlflow-logging``,
``pruning-latency``, ``bookkeeping``, ``pruning-pays``, ``parallel-efficiency``,
``whole-run``), with
the flags of ``all`` that concern it. ``--small`` makes every size a quick check except
in the scenarios named by ``--full``; a size given as a flag always wins.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import traceback
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from tests.benchmarks import logging, query, throughput

#: The side-by-side scenarios, in the order ``all`` runs them.
SCENARIOS = (
    "orchestration",
    "mlflow-logging",
    "pruning-latency",
    "bookkeeping",
    "pruning-pays",
    "parallel-efficiency",
    "whole-run",
)

#: Each side-by-side scenario's flags: (flag, type, full size, ``--small`` size, help).
#: Names are unique across scenarios, so that ``all`` takes every one.
FLAGS: dict[str, list[tuple[str, type, Any, Any, str]]] = {
    "orchestration": [
        ("--trials", int, 500, 100, "trials per run"),
        ("--workers", int, 2, 2, "parallel workers"),
        ("--repeat", int, 3, 1, "repetitions of ours and the peers, in turn"),
        ("--tune-storage", str, "memory", "memory", "OptunaSearch's study: memory|postgresql"),
    ],
    "mlflow-logging": [
        ("--log-calls", int, 200_000, 20_000, "our timed log_metric calls"),
        ("--log-points", int, 500_000, 50_000, "our ingest points (1,000-point batches)"),
        ("--log-end-to-end", int, 500_000, 50_000, "our points via log_metric, end to end"),
        ("--log-nested-runs", int, 300, 50, "our nested runs"),
        ("--mlflow-calls", int, 2_000, 200, "MLflow's timed synchronous log_metric calls"),
        ("--mlflow-async-calls", int, 5_000, 1_000, "MLflow's synchronous=False calls"),
        ("--mlflow-points", int, 100_000, 10_000, "MLflow's log_batch points"),
        ("--mlflow-end-to-end", int, 10_000, 2_000, "MLflow's points, end to end"),
        ("--mlflow-nested-runs", int, 100, 30, "MLflow's nested runs"),
        ("--log-repeat", int, 3, 1, "repetitions of ours and MLflow, in turn"),
    ],
    "pruning-latency": [
        ("--prune-trials", int, 1000, 100, "trials in the study"),
        ("--prune-steps", int, 100, 30, "reported steps per trial"),
        ("--prune-calls", int, 1000, 200, "timed should_prune() calls"),
    ],
    "bookkeeping": [
        ("--scale-trials", int, 5000, 400, "overhead measured up to this many trials"),
        ("--memory-trials", int, 10_000, 400, "controller memory measured over this many"),
        ("--scale-window", int, 500, 100, "trials per p50 window"),
        ("--scale-workers", int, 1, 1, "workers of the sweep"),
        ("--scale-peer", str, "yes", "yes", "also measure Optuna alone: yes|no"),
    ],
    "pruning-pays": [
        ("--pays-seeds", int, 10, 2, "seeds"),
        ("--pays-trials", int, 60, 16, "trials per sweep"),
        ("--pays-workers", int, 2, 2, "workers per sweep"),
        ("--pays-workloads", str, "quickstart,mlp", "quickstart,mlp", "sweeps/ specs to run"),
    ],
    "parallel-efficiency": [
        ("--parallel-seeds", int, 9, 2, "seeds"),
        ("--parallel-workers", int, 4, 4, "the workers compared with 1"),
        ("--parallel-trials", int, 200, 60, "budget per sweep"),
        ("--parallel-target", float, 0.05, 0.5, "the value to reach (minimizing)"),
    ],
    "whole-run": [
        ("--quickstart-trials", int, 60, 20, "the quickstart's trials"),
        ("--whole-trivial-trials", int, 500, 100, "trivial trials, whole run"),
        ("--whole-repeat", int, 3, 1, "repetitions of ours and the peers, in turn"),
    ],
}


def _key(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def _flag_group(name: str) -> argparse.ArgumentParser:
    """The flags of scenario ``name``; unset ones are absent (filled in by ``_sizes``)."""
    group = argparse.ArgumentParser(add_help=False)
    for flag, kind, full, small, what in FLAGS[name]:
        group.add_argument(
            flag,
            type=kind,
            default=argparse.SUPPRESS,
            help=f"{what} (default {full}; --small {small})",
        )
    return group


def _sizes(args: argparse.Namespace) -> None:
    """Fill in the flags not given: ``--small`` sizes, but full ones for the scenarios
    named in ``--full`` (and without ``--small``)."""
    full = {s.strip() for s in (args.full or "").split(",") if s.strip()}
    for name in FLAGS:
        for flag, _kind, full_size, small_size, _what in FLAGS[name]:
            if not hasattr(args, _key(flag)):
                small = args.small and name not in full
                setattr(args, _key(flag), small_size if small else full_size)


def _runner(name: str) -> Callable[[argparse.Namespace], dict[str, Any]]:
    """Run side-by-side scenario ``name`` with the parsed flags; imported late, so that
    the older scenarios need none of the peers installed."""

    def run(a: argparse.Namespace) -> dict[str, Any]:
        if name == "orchestration":
            from tests.benchmarks import orchestration

            return orchestration.run(a.trials, a.workers, a.repeat, a.tune_storage)
        if name == "mlflow-logging":
            from tests.benchmarks import mlflow_logging

            return mlflow_logging.run(
                a.log_calls,
                a.log_points,
                a.log_end_to_end,
                a.log_nested_runs,
                a.mlflow_calls,
                a.mlflow_async_calls,
                a.mlflow_points,
                a.mlflow_end_to_end,
                a.mlflow_nested_runs,
                a.log_repeat,
            )
        if name == "pruning-latency":
            from tests.benchmarks import pruning

            return pruning.latency(a.prune_trials, a.prune_steps, a.prune_calls)
        if name == "bookkeeping":
            from tests.benchmarks import bookkeeping

            return bookkeeping.run(
                a.scale_trials,
                a.memory_trials,
                a.scale_window,
                a.scale_workers,
                a.scale_peer != "no",
            )
        if name == "pruning-pays":
            from tests.benchmarks import pruning

            return pruning.pays(
                a.pays_seeds,
                a.pays_trials,
                a.pays_workers,
                tuple(w for w in a.pays_workloads.split(",") if w),
            )
        if name == "whole-run":
            from tests.benchmarks import whole_run

            return whole_run.run(a.quickstart_trials, a.whole_trivial_trials, a.whole_repeat)
        from tests.benchmarks import parallel

        return parallel.run(
            a.parallel_seeds, a.parallel_workers, a.parallel_trials, a.parallel_target
        )

    return run


def side_by_side(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run the scenario named (or all), print the table, write JSON and Markdown; the
    exit status is 1 when a scenario failed (the others' figures are kept)."""
    from tests.benchmarks.report import machine, markdown, postgres_started

    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    skip = {s.strip() for s in (getattr(args, "skip", "") or "").split(",") if s.strip()}
    full = {s.strip() for s in (args.full or "").split(",") if s.strip()}
    unknown = (skip | full) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    _sizes(args)
    results: dict[str, Any] = {
        "machine": machine(),
        "command": " ".join(["python -m tests.benchmarks", *sys.argv[1:]]),
        "sizes": {_key(f[0]): getattr(args, _key(f[0])) for n in names for f in FLAGS[n]},
        "scenarios": {},
        "skipped": {name: "--skip" for name in names if name in skip},
    }
    failed = False
    for name in names:
        if name in skip:
            continue
        print(f"== {name}", flush=True)
        for attempt in range(1, args.attempts + 1):
            before, server = os.getloadavg(), postgres_started()
            try:
                result = _runner(name)(args)
                error = None
            except Exception as exc:  # one scenario's failure leaves the others' figures
                traceback.print_exc()
                result, error = None, f"failed: {type(exc).__name__}: {exc}"
            restarted = server is None or postgres_started() != server
            if restarted and result is not None:
                result, error = None, "PostgreSQL was restarted during the run"
            if result is not None:
                # Others' work on the machine skews absolute figures: keep a trace of it.
                result["load_average"] = {"before": before, "after": os.getloadavg()}
                result["attempts"] = attempt
                results["scenarios"][name] = result
                results["skipped"].pop(name, None)
                break
            results["skipped"][name] = error
            print(f"== {name}: {error} (attempt {attempt} of {args.attempts})", flush=True)
        failed = failed or name not in results["scenarios"]
        _write(results, args.out, markdown(results))
    print()
    print(markdown(results))
    return 1 if failed else 0


def _write(results: dict[str, Any], out: str | None, table: str) -> None:
    if not out:
        return
    path = Path(out)
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    path.with_suffix(".md").write_text(table)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks")
    # --out is accepted after the scenario's name too (as the README writes it).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--out", help="also write the results as JSON to this file")
    sub = parser.add_subparsers(dest="scenario", required=True)
    tp = sub.add_parser("throughput", help="trials/s on a trivial objective", parents=[common])
    tp.add_argument("--backend", choices=["postgresql", "sqlite"], default="postgresql")
    tp.add_argument("--trials", type=int, default=200)
    tp.add_argument("--workers", type=int, default=2)
    qp = sub.add_parser(
        "query", help="filtered, ordered run searches on PostgreSQL", parents=[common]
    )
    qp.add_argument("--runs", type=int, default=10_000)
    qp.add_argument("--params", type=int, default=20, help="params per run")
    qp.add_argument("--points", type=int, default=1000, help="metric points per run")
    qp.add_argument("--repeat", type=int, default=20, help="timed repetitions per search")
    qp.add_argument("--explain", action="store_true", help="add EXPLAIN ANALYZE of each search")
    lp = sub.add_parser(
        "logging", help="log_metric cost, ingest rate, nested runs on PostgreSQL", parents=[common]
    )
    lp.add_argument("--calls", type=int, default=200_000, help="timed log_metric calls")
    lp.add_argument("--work-us", default="0,10", help="microseconds of work between calls")
    lp.add_argument("--points", type=int, default=2_000_000, help="points per ingest run")
    lp.add_argument("--batch", type=int, default=50_000, help="points per ingest transaction")
    lp.add_argument("--writers", default="1,2", help="concurrent ingest writers to try")
    lp.add_argument("--end-to-end", type=int, default=1_000_000, help="points via log_metric")
    lp.add_argument("--nested-runs", type=int, default=300)
    sp = sub.add_parser(
        "scale",
        help="64 agents claiming against one PostgreSQL; claim cost from 1k to 100k trials",
        parents=[common],
    )
    sp.add_argument("--agents", type=int, default=64, help="concurrent agent workers")
    sp.add_argument("--trials", type=int, default=2000, help="the agents' budget")
    sp.add_argument(
        "--prefill", default="1000,10000,100000", help="finished trials before timed claims"
    )
    sp.add_argument("--claims", type=int, default=200, help="timed claims per prefill size")
    sp.add_argument(
        "--memory",
        default="10000,20000,50000,100000",
        help="finished trials at which the controller's view is measured",
    )
    up = sub.add_parser(
        "ui-pages", help="sweep ui page times on a 10,000-trial sweep", parents=[common]
    )
    up.add_argument("--trials", type=int, default=10_000)
    up.add_argument("--steps", type=int, default=100, help="reports and loss points per trial")
    up.add_argument("--repeat", type=int, default=10, help="warm fetches per page")

    # The side-by-side scenarios: JSON to --out and a Markdown table beside it (.md).
    table = argparse.ArgumentParser(add_help=False)
    table.add_argument(
        "--out", help="write the results as JSON to this file and as Markdown beside it (.md)"
    )
    table.add_argument(
        "--small", action="store_true", help="small sizes where no flag says: a check in minutes"
    )
    table.add_argument(
        "--full", default="", help="with --small: scenarios (comma-separated) kept full size"
    )
    table.add_argument(
        "--attempts",
        type=int,
        default=2,
        help="runs of a scenario that fails or sees PostgreSQL restart (default 2)",
    )
    helps = {
        "orchestration": "trials/s: ours vs Optuna alone vs Ray Tune + OptunaSearch",
        "mlflow-logging": "log_metric, ingest, nested runs: ours vs MLflow on PostgreSQL",
        "pruning-latency": "should_prune() with Hyperband on a 1,000 x 100-step study",
        "bookkeeping": "per-trial overhead beyond the sampler to 5,000 trials; memory",
        "pruning-pays": "quickstart and mlp: TPE+Hyperband vs TPE alone, best value, epochs",
        "parallel-efficiency": "trials to a target value with 4 workers vs 1",
        "whole-run": "quickstart and 500 trials as whole processes; time to the first trial",
    }
    groups = {name: _flag_group(name) for name in SCENARIOS}
    for name in SCENARIOS:
        sub.add_parser(name, help=helps[name], parents=[table, groups[name]])
    ap = sub.add_parser(
        "all", help="every side-by-side scenario", parents=[table, *groups.values()]
    )
    ap.add_argument("--skip", default="", help=f"comma-separated, of: {', '.join(SCENARIOS)}")
    args = parser.parse_args()

    if args.scenario in SCENARIOS or args.scenario == "all":
        sys.exit(side_by_side(args, parser))
    if args.scenario == "logging":
        result = logging.run(
            args.calls,
            tuple(float(w) for w in args.work_us.split(",")),
            args.points,
            args.batch,
            tuple(int(w) for w in args.writers.split(",")),
            args.end_to_end,
            args.nested_runs,
        )
    elif args.scenario == "scale":
        from tests.benchmarks import scale

        sizes = [int(n) for n in args.prefill.split(",") if n]
        memory = [int(n) for n in args.memory.split(",") if n]
        result = scale.run(args.agents, args.trials, sizes, args.claims, memory)
    elif args.scenario == "ui-pages":
        from tests.benchmarks import ui_pages

        result = ui_pages.run(args.trials, args.steps, args.repeat)
    elif args.scenario == "query":
        result = query.run(args.runs, args.params, args.points, args.repeat, args.explain)
    else:
        result = throughput.run(args.backend, args.trials, args.workers)
    result["machine"] = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "optuna": metadata.version("optuna"),
        "ray": metadata.version("ray"),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text + "\n")


if __name__ == "__main__":
    main()
