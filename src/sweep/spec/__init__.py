"""The sweep spec: a YAML file that declares one hyperparameter sweep.

``load_spec`` reads the file with PyYAML's SafeLoader, substitutes ``${VAR}`` and
``${VAR:-default}`` in string values, and validates the result into a frozen pydantic
:class:`SweepSpec`. Every problem becomes a :class:`~sweep.errors.SpecError` that names
the file, the dotted key path and the line, and says what is allowed.

A minimal spec::

    name: mnist-lr
    objective: train:objective        # module.path:function, found under code_dir
    parameters:
      lr: {type: log_uniform, low: 1.0e-5, high: 1.0e-1}
      layers: {type: int, low: 1, high: 4}
    metric: {name: val_accuracy, direction: maximize}
    budget: {n_trials: 50}

and its use::

    spec = load_spec("sweep.yaml")
    objective = resolve_objective(spec)

A trial may instead be a script: ``program: train.py`` and/or ``command: [...]`` (W&B's
macros, see :mod:`sweep.spec._command`); :func:`build_argv` makes a trial's argv. A W&B
sweep config is read as it is (:mod:`sweep.spec._wandb`); :func:`native_yaml` shows the
native spec it becomes. ``sampler: grid`` runs every combination once
(:mod:`sweep.spec._grid`).
"""

from sweep.spec._command import DEFAULT_COMMAND, MACROS, CollectorSpec, build_argv
from sweep.spec._grid import GridSampler, grid_points, grid_size, point_key, stored_point
from sweep.spec._load import (
    WANDB,
    check_launchable,
    load_spec,
    load_spec_from_dict,
    native_yaml,
    resolve_callbacks,
    resolve_objective,
)
from sweep.spec._model import (
    BudgetSpec,
    LeaseSpec,
    MetricSpec,
    RaySpec,
    RegistrySpec,
    ResourcesSpec,
    RetrySpec,
    SelectSpec,
    SweepSpec,
    TrackingSpec,
)
from sweep.spec._optuna import PRUNERS, SAMPLERS, PrunerSpec, SamplerSpec
from sweep.spec._parameters import (
    PARAMETER_TYPES,
    CategoricalParam,
    ConstantParam,
    FloatParam,
    IntParam,
    ParameterSpec,
)
from sweep.spec._search import WarmStartSpec
from sweep.spec._transformed import BetaParam, LogNormalParam, NormalParam, QLogUniformParam
from sweep.spec._wandb import is_wandb_config, translate_wandb
from sweep.spec._yaml import interpolate_env

__all__ = [
    "point_key",
    "stored_point",
    "DEFAULT_COMMAND",
    "MACROS",
    "PARAMETER_TYPES",
    "PRUNERS",
    "SAMPLERS",
    "WANDB",
    "BetaParam",
    "BudgetSpec",
    "CategoricalParam",
    "CollectorSpec",
    "ConstantParam",
    "FloatParam",
    "GridSampler",
    "IntParam",
    "LogNormalParam",
    "NormalParam",
    "QLogUniformParam",
    "LeaseSpec",
    "MetricSpec",
    "ParameterSpec",
    "PrunerSpec",
    "RaySpec",
    "RegistrySpec",
    "ResourcesSpec",
    "RetrySpec",
    "SamplerSpec",
    "SelectSpec",
    "SweepSpec",
    "TrackingSpec",
    "WarmStartSpec",
    "build_argv",
    "check_launchable",
    "grid_points",
    "grid_size",
    "interpolate_env",
    "is_wandb_config",
    "load_spec",
    "load_spec_from_dict",
    "native_yaml",
    "resolve_callbacks",
    "resolve_objective",
    "translate_wandb",
]
