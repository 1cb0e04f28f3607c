"""Where our per-trial time goes in the orchestration scenario: py-spy on the controller
and on each Ray worker while ``sweep.launch`` runs the trivial objective.

    python -m tests.benchmarks.profile_ours [--trials 500] [--workers 2] [--seconds 15]
        [--out prof/]

After ``--skip`` trials (start-up done), ``py-spy record --idle --threads`` samples the
controller (this process) and every ``TrialActor`` for ``--seconds`` seconds, wall
clock (a thread waiting on PostgreSQL counts), without pausing them. The raw stacks are
written to ``--out``; the summary printed is, for the workers, the share of the
sampled wall time in each step of ``TrialRunner.run`` and the busiest functions below
it, and for the controller, the share in each step of the dispatch loop's thread.
Needs py-spy (in the ``bench`` extra) and the right to ptrace (root, or
``kernel.yama.ptrace_scope=0``).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil

import sweep
from sweep.spec import load_spec_from_dict
from tests.benchmarks.sweeps import trivial_spec
from tests.helpers import fresh_postgres_database

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def _frames(stack: str) -> list[tuple[str, str]]:
    """(function, short file) of each frame, outermost first; thread frames dropped."""
    out = []
    for part in stack.split(";"):
        match = FRAME.match(part)
        if not match or part.startswith(("thread ", "process ")):
            continue
        path = match["file"]
        for marker in ("site-packages/", "src/", "lib/python3"):
            if marker in path:
                path = path.split(marker, 1)[1]
                break
        out.append((match["func"], path))
    return out


def read_raw(path: Path) -> list[tuple[list[tuple[str, str]], int]]:
    stacks = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((_frames(stack), int(count)))
    return stacks


def _below(
    stacks: list[tuple[list[tuple[str, str]], int]], func: str, file_part: str
) -> tuple[int, Counter[str], Counter[str], Counter[str]]:
    """Samples inside ``func`` (of a file containing ``file_part``): the share of each
    direct callee, the inclusive samples of every function below it, and of the
    innermost function of sweep or Optuna on each stack (marked [PostgreSQL] when the
    stack was waiting on the server)."""
    total = 0
    children: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    calls: Counter[str] = Counter()
    for frames, count in stacks:
        index = next((i for i, (f, p) in enumerate(frames) if f == func and file_part in p), None)
        if index is None:
            continue
        total += count
        below = frames[index + 1 :]
        children[f"{below[0][0]} ({below[0][1]})" if below else "(self)"] += count
        for name in {f"{f} ({p})" for f, p in below}:
            inclusive[name] += count
        # The innermost call of ours or Optuna's: what asked for the time spent below.
        ours = [f"{f} ({p})" for f, p in below if p.startswith(("sweep/", "optuna/"))]
        waiting = any(f == "Connection.wait" and "psycopg" in p for f, p in below)
        calls[(ours[-1] if ours else "(Ray, Python)") + (" [PostgreSQL]" if waiting else "")] += (
            count
        )
    return total, children, inclusive, calls


def summarize(folder: Path) -> str:
    lines = []
    for path in sorted(folder.glob("*.txt")):
        stacks = read_raw(path)
        samples = sum(c for _, c in stacks)
        if path.name.startswith("worker"):
            roots = [("TrialRunner.run", "sweep/trial.py")]
        else:
            roots = [("Dispatcher.run", "sweep/dispatcher.py")]
        lines.append(f"== {path.stem}: {samples} samples (all threads, wall clock)")
        for func, file_part in roots:
            total, children, inclusive, calls = _below(stacks, func, file_part)
            thread = _thread_samples(path, func)
            lines.append(
                f"  {func} ({file_part}): {total} samples, "
                f"{100 * total / max(thread, 1):.0f}% of its thread's {thread}"
            )
            lines.append("  direct steps:")
            for name, count in children.most_common(14):
                lines.append(f"    {100 * count / max(total, 1):5.1f}%  {name}")
            waiting = sum(c for name, c in calls.items() if name.endswith("[PostgreSQL]"))
            lines.append(f"  waiting on PostgreSQL: {100 * waiting / max(total, 1):.1f}%")
            lines.append("  innermost call of sweep or Optuna (self time of our code):")
            for name, count in calls.most_common(25):
                lines.append(f"    {100 * count / max(total, 1):5.1f}%  {name}")
            lines.append("  busiest below it (inclusive):")
            ours = [
                (name, count)
                for name, count in inclusive.most_common()
                if name.split(" (")[-1].startswith(("sweep/", "optuna/"))
            ]
            for name, count in ours[:30]:
                lines.append(f"    {100 * count / max(total, 1):5.1f}%  {name}")
    return "\n".join(lines)


def _thread_samples(path: Path, func: str) -> int:
    """Samples of the thread(s) that ever ran ``func``: its wall time in the window."""
    threads: Counter[str] = Counter()
    hits: set[str] = set()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        thread = stack.split(";", 1)[0]
        threads[thread] += int(count)
        if f";{func} (" in stack:
            hits.add(thread)
    return sum(threads[t] for t in hits)


def _workers(root: int) -> list[psutil.Process]:
    found = []
    for child in psutil.Process(root).children(recursive=True):
        try:
            if any("TrialActor" in part for part in child.cmdline()):
                found.append(child)
        except psutil.Error:
            continue
    return found


def profile(trials: int, workers: int, seconds: int, skip: int, out: Path, rate: int) -> str:
    spy = shutil.which("py-spy")
    if spy is None:
        raise SystemExit("py-spy is not installed: pip install -e '.[bench]'")
    out.mkdir(parents=True, exist_ok=True)
    recorders: list[subprocess.Popen[bytes]] = []
    seen = 0

    def record(pid: int, name: str) -> None:
        recorders.append(
            subprocess.Popen(
                [spy, "record", "--pid", str(pid), "--format", "raw", "--rate", str(rate)]
                + ["--duration", str(seconds), "--idle", "--threads", "--nonblocking"]
                + ["-o", str(out / f"{name}.txt")],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )

    def on_trial(_outcome: Any, _counts: Any) -> None:
        nonlocal seen
        seen += 1
        if seen == skip:
            record(os.getpid(), "controller")
            for index, process in enumerate(_workers(os.getpid())):
                record(process.pid, f"worker-{index}")

    with fresh_postgres_database() as url, tempfile.TemporaryDirectory() as root:
        spec = trivial_spec("bench-profile", trials, workers, 0, tracking={"artifact_root": root})
        started = time.perf_counter()
        result = sweep.launch(
            load_spec_from_dict(spec, check_objective=True), storage=url, on_trial=on_trial
        )
        wall = time.perf_counter() - started
    for recorder in recorders:
        recorder.wait()
    header = (
        f"{result.counts.finished} trials in {wall:.1f} s; py-spy from trial {skip} for "
        f"{seconds} s at {rate} Hz; raw stacks in {out}"
    )
    return header + "\n" + summarize(out)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.profile_ours")
    parser.add_argument("--trials", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=15, help="how long py-spy samples")
    parser.add_argument("--skip", type=int, default=20, help="trials before sampling starts")
    parser.add_argument("--rate", type=int, default=200, help="samples per second")
    parser.add_argument("--out", default="prof", help="folder for py-spy's raw stacks")
    args = parser.parse_args()
    print(profile(args.trials, args.workers, args.seconds, args.skip, Path(args.out), args.rate))


if __name__ == "__main__":
    main()
