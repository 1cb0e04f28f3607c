"""The quickstart's objective (sweeps/digits.py), stamping the wall-clock time at
which each trial starts running into the file ``$SWEEP_BENCH_STAMPS``: the whole-run
benchmark reads the first stamp as "the first trial is running". Alone in its folder,
since the spec's ``code_dir`` goes first on the workers' ``sys.path``."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "sweeps"))

import digits  # noqa: E402


def objective(trial: Any) -> float:
    with open(os.environ["SWEEP_BENCH_STAMPS"], "a") as stamps:
        stamps.write(f"{time.time()}\n")
    return digits.objective(trial)
