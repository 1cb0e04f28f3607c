"""`sweep launch --dry-run`: the resolved spec and the first params its sampler draws,
worked out in memory: no store is opened, nothing is written, no trial runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna
import yaml

from sweep.spec import SweepSpec
from sweep.storage import redact


@dataclass(frozen=True)
class DryRun:
    """What a launch of ``spec`` would run: its resolved spec (YAML, credentials masked,
    defaults left out) and the params of its first trials."""

    spec_yaml: str
    samples: list[dict[str, Any]]
    overrides: tuple[str, ...]


def dry_run(spec: SweepSpec, n: int = 3) -> DryRun:
    """The resolved spec and the first ``n`` params the spec's sampler draws over its
    declared ``parameters``, in an in-memory study seeded as a sweep's first worker is
    (so a seeded sampler draws what that worker would in a new sweep). Parameters an
    objective suggests itself (define-by-run) are not known before it runs."""
    data = spec.model_dump(mode="json", exclude_defaults=True)
    data["name"] = spec.name  # always shown, whatever the defaults
    text = redact(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return DryRun(text, _samples(spec, n) if spec.parameters else [], spec.overrides)


def _samples(spec: SweepSpec, n: int) -> list[dict[str, Any]]:
    from sweep.study import enqueue_grid

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        directions=[m.direction for m in spec.metrics], sampler=spec.sampler.build(seed_offset=1)
    )
    if spec.sampler.is_grid:
        enqueue_grid(study, spec)  # a grid sweep's points, in the order they run
    for config in spec.enqueue:  # run first, in this order
        study.enqueue_trial(config)
    samples: list[dict[str, Any]] = []
    for _ in range(n):
        if spec.sampler.is_grid and len(samples) >= len(study.get_trials(deepcopy=False)):
            break
        trial = study.ask()
        samples.append(spec.suggest_parameters(trial))
    return samples
