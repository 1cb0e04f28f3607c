"""Starts a child that sleeps (its pid in SWEEP_TEST_PIDS), then reports and hangs."""

import argparse
import os
import subprocess
import time

parser = argparse.ArgumentParser()
parser.add_argument("--x", type=float, required=True)
args = parser.parse_args()
child = subprocess.Popen(["sleep", "300"])
with open(os.environ["SWEEP_TEST_PIDS"], "a") as pids:
    pids.write(f"{os.getpid()} {child.pid}\n")
for step in range(1, 1000):
    print(f"step={step} score={args.x:.4f}", flush=True)
    time.sleep(0.2)
