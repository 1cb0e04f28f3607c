"""Experiment tracking: runs nested under a sweep's parent run, with params, step
metrics, tags, datasets, artifacts, status and the lineage that produced them."""

from sweep.tracking._active_run import ActiveRun
from sweep.tracking._autolog import autolog
from sweep.tracking._entities import (
    ArtifactInfo,
    Experiment,
    MetricPoint,
    Run,
    RunInput,
    RunStatus,
)
from sweep.tracking._environment import (
    command_line,
    environment_tags,
    gpu_indices,
    installed_packages,
)
from sweep.tracking._filter import parse_filter, parse_order_by
from sweep.tracking._flusher import flusher
from sweep.tracking._lineage import open_run, reference_tags, write_lineage
from sweep.tracking._logging import (
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
from sweep.tracking._run_reads import load_runs
from sweep.tracking._search import build_search
from sweep.tracking._store import RunEnd, RunRecord, TrackingStore, now_ms
from sweep.tracking.artifacts import ARTIFACT_ROOT_ENV, resolve_artifact_root

__all__ = [
    "ARTIFACT_ROOT_ENV",
    "ActiveRun",
    "ArtifactInfo",
    "Experiment",
    "MetricPoint",
    "Run",
    "RunEnd",
    "RunInput",
    "RunRecord",
    "RunStatus",
    "TrackingStore",
    "activate",
    "active_run",
    "attach_runs_with",
    "autolog",
    "build_search",
    "command_line",
    "environment_tags",
    "flusher",
    "gpu_indices",
    "installed_packages",
    "load_runs",
    "log_artifact",
    "log_input",
    "log_metric",
    "log_metrics",
    "log_model",
    "log_param",
    "log_params",
    "log_text",
    "now_ms",
    "open_run",
    "parse_filter",
    "parse_order_by",
    "reference_tags",
    "resolve_artifact_root",
    "search_runs",
    "set_tag",
    "set_tags",
    "start_run",
    "write_lineage",
]
