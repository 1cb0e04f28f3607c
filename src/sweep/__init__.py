"""sweep: hyperparameter sweeps on Optuna + Ray, with experiment tracking and a model
registry in one database.

Inside an objective::

    import sweep

    def objective(trial):
        lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        ...
        sweep.log_metric("train_loss", loss, step=epoch)
        trial.report(val_acc, epoch)          # logged as a step metric too
        sweep.log_model(model)                # the best trial's model becomes @challenger
        return val_acc

From Python: ``sweep.launch("sweeps/quickstart.yaml")`` and
``sweep.load_model("models:/digits-sgd@challenger")``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sweep.errors import (
    ArtifactPathError,
    ExecutionError,
    FilterError,
    NoActiveRunError,
    NotFoundError,
    ObjectiveImportError,
    RegistrationError,
    RegistryError,
    SchemaVersionError,
    SpecError,
    SpecErrors,
    StorageError,
    SweepError,
)
from sweep.pareto import FrontTrial, pareto_front
from sweep.registry import ModelRegistry, ModelVersion, load_model
from sweep.script import report, result, should_prune
from sweep.spec import SweepSpec, load_spec
from sweep.tracking import (
    TrackingStore,
    autolog,
    log_artifact,
    log_input,
    log_metric,
    log_metrics,
    log_model,
    log_param,
    log_params,
    log_text,
    search_runs,
    set_tag,
    set_tags,
    start_run,
)

if TYPE_CHECKING:
    from sweep.controller import SweepResult, launch

__version__ = "0.1.0"

__all__ = [
    "ArtifactPathError",
    "ExecutionError",
    "FilterError",
    "FrontTrial",
    "ModelRegistry",
    "ModelVersion",
    "NoActiveRunError",
    "NotFoundError",
    "ObjectiveImportError",
    "RegistrationError",
    "RegistryError",
    "SchemaVersionError",
    "SpecError",
    "SpecErrors",
    "StorageError",
    "SweepError",
    "SweepResult",
    "SweepSpec",
    "TrackingStore",
    "autolog",
    "launch",
    "load_model",
    "load_spec",
    "log_artifact",
    "log_input",
    "log_metric",
    "log_metrics",
    "log_model",
    "log_param",
    "log_params",
    "log_text",
    "pareto_front",
    "report",
    "result",
    "search_runs",
    "set_tag",
    "set_tags",
    "should_prune",
    "start_run",
]


def __getattr__(name: str) -> Any:
    # The controller imports Ray; objectives that only log should not pay for it.
    if name in ("launch", "SweepResult"):
        from sweep import controller

        return getattr(controller, name)
    raise AttributeError(f"module 'sweep' has no attribute {name!r}")
