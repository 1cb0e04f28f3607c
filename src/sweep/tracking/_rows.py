"""What the tracking store writes, row by row: runs to open (:class:`RunRecord`) and
how they end (:class:`RunEnd`), params and tags as rows (values cut to
``MAX_VALUE_LENGTH``, numbers kept beside the text), and the latest point of each
metric."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any, cast

from sqlalchemy import Table
from sqlalchemy.orm import Session

from sweep.storage.schema import (
    LatestMetricRow,
    MetricRow,
    ParamRow,
    RunInputRow,
    RunRow,
    TagRow,
)
from sweep.storage.sql import upsert
from sweep.tracking._entities import RunStatus
from sweep.tracking._ingest import PointTuple
from sweep.tracking.artifacts import join_location

# The tables written through Core statements. DeclarativeBase types ``__table__`` as any
# FromClause (a model may map a join); each of these models maps one Table.
RUN_TABLE = cast(Table, RunRow.__table__)
PARAM_TABLE = cast(Table, ParamRow.__table__)
TAG_TABLE = cast(Table, TagRow.__table__)
METRIC_TABLE = cast(Table, MetricRow.__table__)
LATEST_METRIC_TABLE = cast(Table, LatestMetricRow.__table__)
RUN_INPUT_TABLE = cast(Table, RunInputRow.__table__)

#: Longest param or tag value kept; longer values are cut with a marker so logging never fails.
MAX_VALUE_LENGTH = 8000


def now_ms() -> int:
    return int(time.time() * 1000)


def text_value(value: Any) -> str:
    text = str(value)
    if len(text) > MAX_VALUE_LENGTH:
        return text[: MAX_VALUE_LENGTH - 15] + "...[truncated]"
    return text


def number_value(value: Any) -> float | None:
    """``value`` as a finite float when it is a number (or a numeric string), else None."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def param_rows(run_id: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [
        {"run_id": run_id, "key": str(k), "value": text_value(v), "value_num": number_value(v)}
        for k, v in params.items()
    ]


def tag_rows(run_id: str, tags: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"run_id": run_id, "key": str(k), "value": text_value(v)} for k, v in tags.items()]


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """A run to open: where, under which parent, with which params and tags."""

    experiment_id: int
    artifact_root: str
    name: str
    run_id: str
    parent_run_id: str | None = None
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    tags: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def artifact_uri(self) -> str:
        return join_location(self.artifact_root, str(self.experiment_id), self.run_id)


@dataclasses.dataclass(frozen=True)
class RunEnd:
    """How a run ends: its status, and the params, tags and metric points to write with
    it (picklable: a Ray worker hands its trial's run end to the controller)."""

    run_id: str
    status: RunStatus
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    tags: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    points: Sequence[PointTuple] = ()


def upsert_latest(session: Session, rows: list[dict[str, Any]]) -> None:
    """Keep each (run, key)'s latest point: replaced only by the same or a higher step."""
    upsert(session, LATEST_METRIC_TABLE, rows, ("run_id", "key"), only_if_step_not_lower=True)
