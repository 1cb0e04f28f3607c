"""Reports through the sweep client: score x*step at each step, prunes when told."""

import argparse
import time

import sweep

parser = argparse.ArgumentParser()
parser.add_argument("--x", type=float, required=True)
args = parser.parse_args()
for step in range(1, 11):
    sweep.report(args.x * step, step)
    sweep.log_metric("aux", step * 2.0, step)
    if sweep.should_prune():
        print(f"pruned at {step}", flush=True)
        time.sleep(30)  # the runner ends the process group, without waiting for this
sweep.set_tag("reported", "yes")
sweep.result(args.x * 100)
