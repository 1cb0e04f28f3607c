"""Two objectives through the sweep client: reports score (logged only: several
objectives are not pruned), then sends both values with sweep.result, by name."""

import argparse

import sweep

parser = argparse.ArgumentParser()
parser.add_argument("--x", type=float, required=True)
args = parser.parse_args()
sweep.report(args.x, 1)
print(f"pruned: {sweep.should_prune()}", flush=True)
sweep.result({"score": args.x * 10, "loss": 1.0 - args.x})
