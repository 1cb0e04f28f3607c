"""Experiment tracking: runs nested under a sweep's parent run, with params, step
metrics, tags, datasets, artifacts, status and the lineage that produced them."""

from sweep.tracking._artifact_root import ARTIFACT_ROOT_ENV, artifact_root
from sweep.tracking._entities import (
    ArtifactInfo,
    Experiment,
    MetricPoint,
    Run,
    RunInput,
    RunStatus,
)
from sweep.tracking._environment import command_line, environment_tags
from sweep.tracking._lineage import open_run
from sweep.tracking._logging import (
    ActiveRun,
    activate,
    active_run,
    attach_runs_with,
    log_artifact,
    log_input,
    log_metric,
    log_metrics,
    log_model,
    log_param,
    log_params,
    log_text,
    set_tag,
    set_tags,
    start_run,
)
from sweep.tracking._query import search_runs
from sweep.tracking._store import RunEnd, TrackingStore

__all__ = [
    "ARTIFACT_ROOT_ENV",
    "ActiveRun",
    "ArtifactInfo",
    "Experiment",
    "MetricPoint",
    "Run",
    "RunEnd",
    "RunInput",
    "RunStatus",
    "TrackingStore",
    "activate",
    "active_run",
    "artifact_root",
    "attach_runs_with",
    "command_line",
    "environment_tags",
    "log_artifact",
    "log_input",
    "log_metric",
    "log_metrics",
    "log_model",
    "log_param",
    "log_params",
    "log_text",
    "open_run",
    "search_runs",
    "set_tag",
    "set_tags",
    "start_run",
]
