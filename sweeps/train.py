"""A command-mode training script: argparse in, `epoch=3 val_loss=0.41` lines out.

It does not import sweep: run as a trial, its params arrive as `--lr=0.01 ...` and the
lines it prints are read by sweep's metrics collector (sweep.collector). It is cheap
(pure Python, a noisy quadratic bowl in place of a model), so it also runs by hand:

    python sweeps/train.py --lr=0.05 --batch_size=64 --optimizer=adam --epochs=5
"""

from __future__ import annotations

import argparse
import math
import random


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd")
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def val_loss(args: argparse.Namespace, epoch: int, rng: random.Random) -> float:
    """A loss that falls with epochs, best near lr=0.03 (adam) and batch_size 64."""
    best_lr = 0.03 if args.optimizer == "adam" else 0.1
    distance = math.log10(args.lr / best_lr) ** 2 + math.log2(args.batch_size / 64) ** 2 / 16
    floor = 0.2 + distance + args.dropout / 4
    return floor + math.exp(-epoch * args.lr * 10) + rng.gauss(0, 0.01)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    rng = random.Random(args.seed)
    for epoch in range(1, args.epochs + 1):
        loss = val_loss(args, epoch, rng)
        print(f"epoch={epoch} val_loss={loss:.4f}", flush=True)


if __name__ == "__main__":
    main()
