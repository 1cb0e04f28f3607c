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

if TYPE_CHECKING:
    from sweep.controller import SweepResult, launch
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

# The API is imported on first use (PEP 562): `import sweep` (and the CLI, which imports
# it) costs nothing until a name is used, so that `sweep launch` can start its local
# workers' fork server before it imports Optuna, SQLAlchemy and the rest.
_LAZY = {
    "launch": "sweep.controller",
    "SweepResult": "sweep.controller",
    "FrontTrial": "sweep.pareto",
    "pareto_front": "sweep.pareto",
    "ModelRegistry": "sweep.registry",
    "ModelVersion": "sweep.registry",
    "load_model": "sweep.registry",
    "report": "sweep.script",
    "result": "sweep.script",
    "should_prune": "sweep.script",
    "SweepSpec": "sweep.spec",
    "load_spec": "sweep.spec",
    **dict.fromkeys(
        [
            "TrackingStore",
            "autolog",
            "log_artifact",
            "log_input",
            "log_metric",
            "log_metrics",
            "log_model",
            "log_param",
            "log_params",
            "log_text",
            "search_runs",
            "set_tag",
            "set_tags",
            "start_run",
        ],
        "sweep.tracking",
    ),
}

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
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sweep' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once: later lookups find it without this call
    return value
