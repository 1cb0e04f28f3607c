"""Run benchmarks: ``python -m tests.benchmarks throughput [--backend postgresql]
[--trials 200] [--workers 2] [--out results.json]`` or ``python -m tests.benchmarks query
[--runs 10000] [--params 20] [--points 1000] [--repeat 20] [--explain] [--out results.json]``
or ``python -m tests.benchmarks logging [--calls 200000] [--work-us 0,10] [--points 2000000]
[--batch 50000] [--writers 1,2] [--end-to-end 1000000] [--nested-runs 300] [--out ...]``."""

from __future__ import annotations

import argparse
import json
import platform
from importlib import metadata

from tests.benchmarks import logging, query, throughput


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
    args = parser.parse_args()

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
    elif args.scenario == "query":
        result = query.run(args.runs, args.params, args.points, args.repeat, args.explain)
    else:
        result = throughput.run(args.backend, args.trials, args.workers)
    result["machine"] = {
        "python": platform.python_version(),
        "cpus": __import__("os").cpu_count(),
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
