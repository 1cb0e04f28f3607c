"""Run benchmarks: ``python -m tests.benchmarks throughput [--backend postgresql]
[--trials 200] [--workers 2] [--out results.json]``."""

from __future__ import annotations

import argparse
import json
import platform
from importlib import metadata

from tests.benchmarks import throughput


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks")
    sub = parser.add_subparsers(dest="scenario", required=True)
    tp = sub.add_parser("throughput", help="trials/s on a trivial objective")
    tp.add_argument("--backend", choices=["postgresql", "sqlite"], default="postgresql")
    tp.add_argument("--trials", type=int, default=200)
    tp.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", help="also write the results as JSON to this file")
    args = parser.parse_args()

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
