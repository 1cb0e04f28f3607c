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
"""

from sweep.spec._load import load_spec, load_spec_from_dict, resolve_objective
from sweep.spec._model import (
    BudgetSpec,
    LeaseSpec,
    MetricSpec,
    RaySpec,
    RegistrySpec,
    ResourcesSpec,
    RetrySpec,
    SweepSpec,
    TrackingSpec,
)
from sweep.spec._optuna import PRUNERS, SAMPLERS, PrunerSpec, SamplerSpec
from sweep.spec._parameters import (
    PARAMETER_TYPES,
    CategoricalParam,
    FloatParam,
    IntParam,
    ParameterSpec,
)
from sweep.spec._yaml import interpolate_env

__all__ = [
    "PARAMETER_TYPES",
    "PRUNERS",
    "SAMPLERS",
    "BudgetSpec",
    "CategoricalParam",
    "FloatParam",
    "IntParam",
    "LeaseSpec",
    "MetricSpec",
    "ParameterSpec",
    "PrunerSpec",
    "RaySpec",
    "RegistrySpec",
    "ResourcesSpec",
    "RetrySpec",
    "SamplerSpec",
    "SweepSpec",
    "TrackingSpec",
    "interpolate_env",
    "load_spec",
    "load_spec_from_dict",
    "resolve_objective",
]
