"""What the side-by-side scenarios share: medians, result rows, the machine, and the
Markdown table.

Each scenario returns a dict with its raw measurements and a list of ``rows``; a row is
one figure of ours next to the same figure of each peer (Optuna, Ray Tune, MLflow):

``{"scenario", "unit", "better" ("higher"/"lower"), "ours", "peers": {name: figure},
"advantage": {name: how many times better ours is}, "target", "met"}``

``advantage`` is ours/peer for a rate and peer/ours for a time, so above 1 always means
ours is ahead (the issue's "3x Optuna" reads as an advantage of 3).
"""

from __future__ import annotations

import datetime
import os
import platform
import statistics
from collections.abc import Callable, Iterable, Sequence
from importlib import metadata
from typing import Any

PEERS = ("Optuna", "Ray Tune", "MLflow")


def median(values: Iterable[float]) -> float:
    return float(statistics.median(list(values)))


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile of an already sorted sequence (nearest rank)."""
    return float(ordered[min(len(ordered) - 1, int(len(ordered) * fraction))])


def advantage(ours: float, peer: float, better: str) -> float | None:
    """How many times better ours is than the peer (above 1: ours is ahead)."""
    if not ours or not peer:
        return None
    return ours / peer if better == "higher" else peer / ours


def row(
    scenario: str,
    unit: str,
    better: str,
    ours: float | None,
    peers: dict[str, float] | None = None,
    target: str = "",
    met: bool | Callable[[dict[str, Any]], bool] | None = None,
    note: str = "",
    judged: bool = True,
) -> dict[str, Any]:
    """One line of the table. ``met`` may be a function of the finished row; a run
    smaller than the target's (``judged`` false) leaves it unjudged."""
    peers = peers or {}
    result: dict[str, Any] = {
        "scenario": scenario,
        "unit": unit,
        "better": better,
        "ours": ours,
        "peers": peers,
        "advantage": {
            name: (round(a, 2) if (a := advantage(ours or 0.0, value, better)) else None)
            for name, value in peers.items()
        },
        "target": target,
        "note": note,
    }
    result["met"] = met(result) if callable(met) else met
    if not judged:
        result["met"] = None
        result["note"] = "; ".join(
            filter(None, [note, "smaller than the target's run: not judged"])
        )
    return result


def machine() -> dict[str, Any]:
    """Date, machine size and the versions of everything measured."""
    memory_gib = None
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    memory_gib = round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass

    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": os.cpu_count(),
        "memory_gib": memory_gib,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "optuna": version("optuna"),
        "ray": version("ray"),
        "mlflow": version("mlflow"),
        "sqlalchemy": version("sqlalchemy"),
        "postgresql": postgres_version(),
    }


def postgres_version() -> str | None:
    try:
        import sqlalchemy

        from tests.helpers import PG_URL

        engine = sqlalchemy.create_engine(PG_URL, poolclass=sqlalchemy.pool.NullPool)
        with engine.connect() as conn:
            text = conn.exec_driver_sql("SHOW server_version").scalar_one()
        engine.dispose()
        return str(text).split()[0]
    except Exception:  # the table is still worth writing without it
        return None


def postgres_started() -> str | None:
    """When the test PostgreSQL server last started: a change during a scenario means
    someone restarted it (a fault-injection test) and the figures are not to be kept."""
    try:
        import sqlalchemy

        from tests.helpers import PG_URL

        engine = sqlalchemy.create_engine(PG_URL, poolclass=sqlalchemy.pool.NullPool)
        with engine.connect() as conn:
            text = conn.exec_driver_sql("SELECT pg_postmaster_start_time()").scalar_one()
        engine.dispose()
        return str(text)
    except Exception:
        return None


def _figure(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if abs(value) >= 1000:
        text = f"{value:,.0f}"
    elif abs(value) >= 100:
        text = f"{value:.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    elif abs(value) >= 1:
        text = f"{value:.2f}"
    else:
        text = f"{value:.3g}"
    return f"{text} {unit}".strip()


def _times(value: float) -> str:
    return f"{value:,.0f}x" if value >= 100 else f"{value:.3g}x"


def markdown(results: dict[str, Any]) -> str:
    """The table of every row of every scenario in ``results``, under its header."""
    info = results["machine"]
    lines = [
        f"Benchmarks, {info['date']}: {info['cpus']} cores, {info['memory_gib']} GiB, "
        f"PostgreSQL {info['postgresql']} on loopback; Python {info['python']}, "
        f"Optuna {info['optuna']}, Ray {info['ray']}, MLflow {info['mlflow']}, "
        f"SQLAlchemy {info['sqlalchemy']}. Figures are medians over the repetitions; "
        "'x' is how many times better ours is than the peer (above 1: ours ahead).",
        "",
        "| Scenario | Ours | " + " | ".join(PEERS) + " | Ours vs peer | Target | Met |",
        "|---|---|" + "---|" * len(PEERS) + "---|---|---|",
    ]
    for scenario in results["scenarios"].values():
        for item in scenario.get("rows", []):
            peers = [_figure(item["peers"].get(name), item["unit"]) for name in PEERS]
            if not item["peers"]:
                peers = ["—"] * len(PEERS)
            ratio = ", ".join(
                f"{_times(a)} {name}" for name, a in item["advantage"].items() if a is not None
            )
            met = {True: "met", False: "**not met**", None: "—"}[item["met"]]
            label = item["scenario"] + (f" ({item['note']})" if item["note"] else "")
            lines.append(
                f"| {label} | {_figure(item['ours'], item['unit'])} | "
                + " | ".join(peers)
                + f" | {ratio or '—'} | {item['target'] or '—'} | {met} |"
            )
    for name, scenario in results["scenarios"].items():
        if scenario.get("attempts", 1) > 1:
            lines.append("")
            lines.append(
                f"- {name}: run {scenario['attempts']} times; PostgreSQL was restarted (by "
                "another test on the machine) or the scenario failed in the earlier ones"
            )
    skipped = results.get("skipped") or {}
    if skipped:
        lines.append("")
        for name, why in skipped.items():
            lines.append(f"- {name}: not run ({why})")
    return "\n".join(lines) + "\n"
