"""The lineage of versions: the sweep, trial and run that produced each, the run's
params, its code (git) and its datasets, read in four queries for any number of
versions."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from sweep.registry._entities import DatasetInput, VersionLineage
from sweep.storage.schema import ModelVersionRow, ParamRow, RunInputRow, RunRow, TagRow

_GIT_TAGS = ("sweep.git.commit", "sweep.git.branch", "sweep.git.dirty")
_RUN_TAGS = (*_GIT_TAGS, "sweep.sweep", "sweep.trial_number")


@dataclass
class _RunData:
    """What the versions' runs recorded, by run id."""

    parents: dict[str, str | None] = field(default_factory=dict)
    params: dict[str, dict[str, str]] = field(default_factory=lambda: defaultdict(dict))
    tags: dict[str, dict[str, str]] = field(default_factory=lambda: defaultdict(dict))
    datasets: dict[str, list[DatasetInput]] = field(default_factory=lambda: defaultdict(list))


def lineages(session: Session, rows: Sequence[ModelVersionRow]) -> list[VersionLineage]:
    """The lineage of each of ``rows``."""
    data = _run_data(session, sorted({r.run_id for r in rows if r.run_id}))
    return [_lineage(row, data) for row in rows]


def _run_data(session: Session, run_ids: list[str]) -> _RunData:
    data = _RunData()
    if not run_ids:
        return data
    data.parents = dict(
        session.execute(
            select(RunRow.run_id, RunRow.parent_run_id).where(RunRow.run_id.in_(run_ids))
        ).all()
    )
    for run_id, key, value in session.execute(
        select(ParamRow.run_id, ParamRow.key, ParamRow.value)
        .where(ParamRow.run_id.in_(run_ids))
        .order_by(ParamRow.key)
    ):
        data.params[run_id][key] = value
    for run_id, key, value in session.execute(
        select(TagRow.run_id, TagRow.key, TagRow.value).where(
            TagRow.run_id.in_(run_ids), TagRow.key.in_(_RUN_TAGS)
        )
    ):
        data.tags[run_id][key] = value
    for row in session.scalars(
        select(RunInputRow)
        .where(RunInputRow.run_id.in_(run_ids))
        .order_by(RunInputRow.context, RunInputRow.name)
    ):
        data.datasets[row.run_id].append(
            DatasetInput(row.name, row.context, row.digest, row.source)
        )
    return data


def _lineage(row: ModelVersionRow, data: _RunData) -> VersionLineage:
    run_id = row.run_id
    run_tags = data.tags.get(run_id, {}) if run_id else {}
    trial = run_tags.get("sweep.trial_number")
    dirty = run_tags.get("sweep.git.dirty")
    return VersionLineage(
        model_name=row.model_name,
        version=row.version,
        run_id=run_id,
        parent_run_id=data.parents.get(run_id) if run_id else None,
        # A version registered by hand from a trial's run still finds its sweep and trial.
        sweep_name=row.sweep_name or run_tags.get("sweep.sweep"),
        trial_number=(
            row.trial_number
            if row.trial_number is not None
            else (int(trial) if trial is not None and trial.isdigit() else None)
        ),
        metric_name=row.metric_name,
        metric_value=row.metric_value,
        params=dict(data.params.get(run_id, {})) if run_id else {},
        git_commit=run_tags.get("sweep.git.commit"),
        git_branch=run_tags.get("sweep.git.branch"),
        git_dirty=None if dirty is None else dirty == "true",
        datasets=tuple(data.datasets.get(run_id, ())) if run_id else (),
    )
