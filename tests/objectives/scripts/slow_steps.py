"""Reports score x*step for 8 steps, SWEEP_TEST_STEP_S seconds apart (default 0.5),
then returns x*8: a script that is still running a few seconds after it started."""

import argparse
import os
import time

import sweep

parser = argparse.ArgumentParser()
parser.add_argument("--x", type=float, required=True)
args = parser.parse_args()
pause = float(os.environ.get("SWEEP_TEST_STEP_S", "0.5"))
for step in range(1, 9):
    sweep.report(args.x * step, step)
    time.sleep(pause)
sweep.result(args.x * 8)
