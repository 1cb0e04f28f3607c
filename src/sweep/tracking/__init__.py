"""Experiment tracking: runs nested under a sweep's parent run, with params, step
metrics, tags, artifacts, status and the environment that produced them."""

from sweep.tracking._entities import (
    ArtifactInfo,
    Experiment,
    MetricPoint,
    Run,
    RunStatus,
)
from sweep.tracking._environment import command_line, environment_tags
from sweep.tracking._logging import (
    ActiveRun,
    activate,
    active_run,
    log_artifact,
    log_metric,
    log_metrics,
    log_model,
    log_param,
    log_params,
    set_tag,
    set_tags,
    start_run,
)
from sweep.tracking._store import TrackingStore

__all__ = [
    "ActiveRun",
    "ArtifactInfo",
    "Experiment",
    "MetricPoint",
    "Run",
    "RunStatus",
    "TrackingStore",
    "activate",
    "active_run",
    "command_line",
    "environment_tags",
    "log_artifact",
    "log_metric",
    "log_metrics",
    "log_model",
    "log_param",
    "log_params",
    "set_tag",
    "set_tags",
    "start_run",
]
