"""A command-mode training script that imports sweep to report and be pruned.

Run as a trial (`program: train_reporting.py`, see sweeps/reporting.yaml), each
`sweep.report` goes to the trial's pruner, which answers at once; run by hand (no
sweep around it), it just prints.

    python sweeps/train_reporting.py --lr=0.05 --epochs=5
"""

from __future__ import annotations

import argparse
import math
import os
import random

import sweep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    in_a_sweep = "SWEEP_TRIAL_FD" in os.environ
    rng = random.Random(0)
    loss = 1.0
    for epoch in range(1, args.epochs + 1):
        floor = 0.1 + math.log10(args.lr / 0.05) ** 2 + (1 - args.momentum) / 2
        loss = floor + math.exp(-epoch * args.lr * 5) + rng.gauss(0, 0.005)
        print(f"epoch {epoch}: val_loss {loss:.4f}", flush=True)
        if in_a_sweep:
            sweep.report(loss, step=epoch)
            sweep.log_metric("lr_scaled", args.lr * epoch, step=epoch)
            if sweep.should_prune():
                return
    if in_a_sweep:
        sweep.result(loss)


if __name__ == "__main__":
    main()
