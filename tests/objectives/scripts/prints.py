"""Prints `step=N score=V` lines (no sweep import) for --steps steps, then exits --code."""

import argparse
import json
import os
import sys
import time

parser = argparse.ArgumentParser()
parser.add_argument("--x", type=float, required=True)
parser.add_argument("--steps", type=int, default=5)
parser.add_argument("--pause", type=float, default=0.0)
parser.add_argument("--code", type=int, default=0)
args = parser.parse_args()
print(
    json.dumps(
        {
            "argv": sys.argv[1:],
            "trial": os.environ["SWEEP_TRIAL_ID"],
            "params": json.loads(os.environ["SWEEP_PARAMS_JSON"]),
            "url_in_env": bool(os.environ.get("SWEEP_DATABASE_URL")),
            "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"),
        }
    ),
    flush=True,
)
for step in range(1, args.steps + 1):
    time.sleep(args.pause)
    print(f"step={step} score={args.x * step:.4f} loss={1.0 / step:.4f}", flush=True)
if args.code:
    print("something went wrong: the data is gone", file=sys.stderr, flush=True)
sys.exit(args.code)
