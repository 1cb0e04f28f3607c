"""W&B sweep configs, read unchanged: detection and translation into a native spec dict.

A file is read as a W&B sweep config when its top level has ``method`` (required by
W&B, unknown to native specs) or only W&B keys with W&B-style parameters. The
translator maps it onto the native spec's keys, and the result is validated as any
native spec is (one source of truth); ``sweep convert`` prints it. Every key of W&B's
schema (github.com/wandb/sweeps ``src/sweeps/config/schema.json``, a copy in
``tests/assets/wandb_sweep_schema.json``) is either mapped or refused by name.

Mapping (W&B -> native):

* ``program``/``command`` -> ``program``/``command``; ``name`` -> ``name`` (made of
  letters, digits, ``.``, ``_``, ``-``; the file's stem when absent); ``description``;
  ``project``/``entity`` -> ``tags`` ``wandb.project``/``wandb.entity``.
* ``method``: ``bayes`` -> sampler ``tpe``, ``random`` -> ``random``, ``grid`` -> ``grid``.
* ``metric``: ``name``, ``goal`` (default minimize) -> ``direction``, ``target``.
* ``run_cap`` -> ``budget.n_trials`` (a grid's budget is its size, capped by run_cap).
* ``early_terminate`` (``type: hyperband``) -> Optuna's Hyperband pruner:
  ``min_resource`` is ``min_iter`` (or W&B's first band below ``max_iter``: ``max_iter /
  eta**k`` for k up to ``s``), ``max_resource`` is ``max_iter`` (else ``auto``),
  ``reduction_factor`` is ``eta``. W&B's rule (one bracket of milestones) is Hyperband's
  first bracket; Optuna's further brackets prune later. ``strict: true`` (W&B's default)
  is the original algorithm's rule, which Optuna follows; ``strict: false`` is refused.
* ``parameters``, nested ``parameters`` as dotted names (``optimizer.lr``):
  ``value`` -> constant; ``values`` -> categorical (+ ``probabilities`` -> weights);
  ``int_uniform`` -> int; ``uniform`` -> float; ``q_uniform`` -> float (int for integer
  bounds and q) with step q between the first and last multiple of q in [min, max];
  ``log_uniform`` (bounds are natural-log exponents) -> log_uniform on [e^min, e^max];
  ``log_uniform_values`` -> log_uniform on [min, max]; ``inv_log_uniform`` (log 1/X
  uniform on [min, max]) -> log_uniform on [e^-max, e^-min], the same distribution;
  ``inv_log_uniform_values`` -> log_uniform on [min, max] (1/X log-uniform on
  [1/max, 1/min] is X log-uniform on [min, max]); ``q_log_uniform``/``_values`` ->
  q_log_uniform; ``normal``/``q_normal``, ``log_normal``/``q_log_normal``,
  ``beta``/``q_beta`` -> normal, log_normal, beta (``q`` -> step). Without
  ``distribution``, W&B's inference: value, values, min/max both integers -> int, else
  float.

Refused: ``method: custom``, ``scheduler``, ``metrics``, ``metric.impute``,
``metric.impute_while_running``, ``controller``, ``job``, ``image_uri``, ``kind`` other
than ``sweep``; ``apiVersion`` is kept as a tag.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sweep.errors import SpecError
from sweep.spec._model import raw_grid_size
from sweep.spec._wandb_params import (
    _DISTRIBUTIONS,
    _REQUIRED,
    _is_number,
    infer_distribution,
    native_parameter,
)

#: Every top-level key of W&B's sweep config schema.
WANDB_KEYS: tuple[str, ...] = (
    "apiVersion", "kind", "controller", "description", "program", "job", "image_uri",
    "entity", "project", "method", "command", "name", "run_cap", "metric", "metrics",
    "scheduler", "early_terminate", "parameters",
)  # fmt: skip

_REFUSED: dict[str, str] = {
    "controller": "sweep always runs its own controller (`sweep launch`, `sweep agent`)",
    "job": "W&B Launch jobs cannot run here; name the script in program or command",
    "image_uri": "container images of W&B Launch cannot run here; use program or command",
    "scheduler": "custom W&B schedulers cannot run here; use method bayes, random or grid",
    "metrics": "multi-objective sweeps are not supported; give one metric",
}
_METHODS = {"bayes": "tpe", "random": "random", "grid": "grid"}
_PARAM_FORM_KEYS = {"value", "values", "min", "max", "distribution", "parameters"}

_NATIVE_ONLY = {"objective", "sampler", "pruner", "budget", "parallelism", "storage", "ray"}


def is_wandb_config(data: Any) -> bool:
    """Whether a spec's top-level mapping is a W&B sweep config (see the module)."""
    if not isinstance(data, Mapping):
        return False
    if "method" in data:
        return True
    if _NATIVE_ONLY & set(data) or not set(data) <= set(WANDB_KEYS):
        return False
    params = data.get("parameters")
    return isinstance(params, Mapping) and any(
        isinstance(p, Mapping) and "type" not in p and _PARAM_FORM_KEYS & set(p)
        for p in params.values()
    )


class _Translator:
    """One translation: the native dict, where each native key came from, and errors."""

    def __init__(self, file: str, lines: Mapping[str, int] | None) -> None:
        self.file = file
        self.lines = lines
        self.errors: list[SpecError] = []
        #: native key path -> the W&B key path it was read from
        self.origin: dict[str, str] = {}

    def error(self, key_path: str, message: str) -> None:
        line = None
        if self.lines is not None:
            parts = key_path.split(".")
            while parts and ".".join(parts) not in self.lines:
                parts.pop()
            line = self.lines.get(".".join(parts), 1)
        self.errors.append(SpecError(message, file=self.file, key_path=key_path, line=line))

    def translate(self, data: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in data:
            if key not in WANDB_KEYS:
                self.error(
                    key,
                    f"unknown key {key!r} in a W&B sweep config (read as one because it has "
                    f"method); W&B's keys: {', '.join(WANDB_KEYS)}",
                )
            elif key in _REFUSED:
                self.error(key, f"{key} cannot be honoured: {_REFUSED[key]}; remove it")
        stem = Path(self.file).stem if not self.file.startswith("<") else "wandb-sweep"
        name = data.get("name") or stem
        out["name"] = re.sub(r"[^A-Za-z0-9._-]+", "-", str(name)).strip("-") or "wandb-sweep"
        self.origin["name"] = "name"
        for key in ("description", "program", "command"):
            if key in data:
                out[key] = data[key]
                self.origin[key] = key
        tags = self._tags(data)
        if tags:
            out["tags"] = tags
        method = data.get("method")
        if method not in _METHODS:
            hint = " (custom needs a W&B scheduler)" if method == "custom" else ""
            self.error("method", f"method must be bayes, random or grid, got {method!r}{hint}")
        else:
            out["sampler"] = {"name": _METHODS[method]}
            self.origin["sampler"] = "method"
        out["metric"] = self._metric(data.get("metric"))
        params = self._parameters(data.get("parameters"), "parameters", "")
        out["parameters"] = params
        if "early_terminate" in data:
            out["pruner"] = self._early_terminate(data["early_terminate"])
        else:
            out["pruner"] = {"name": "none"}  # W&B stops no run without early_terminate
        out["budget"] = self._budget(data, method)
        if method == "grid" and out["budget"] is not None:
            # run_cap caps a grid; a grid smaller than run_cap simply ends sooner.
            size = raw_grid_size(params)
            if size is not None and size < out["budget"]["n_trials"]:
                out["budget"] = {"n_trials": size}
        return out

    def _tags(self, data: Mapping[str, Any]) -> dict[str, str]:
        tags: dict[str, str] = {}
        for key in ("project", "entity", "apiVersion"):
            if key in data:
                tags[f"wandb.{key}"] = str(data[key])
                self.origin[f"tags.wandb.{key}"] = key
        if "kind" in data and data["kind"] != "sweep":
            self.error("kind", f"kind must be sweep, got {data['kind']!r}")
        return tags

    def _metric(self, metric: Any) -> Any:
        if metric is None:
            self.error(
                "metric",
                "metric is required: sweep records each trial's result under it; add "
                "metric: {name: ..., goal: minimize or maximize}",
            )
            return None
        if not isinstance(metric, Mapping):
            return metric  # the native model reports the type
        out: dict[str, Any] = {}
        for key, value in metric.items():
            if key == "name":
                out["name"] = value
            elif key == "goal":
                out["direction"] = value
                self.origin["metric.direction"] = "metric.goal"
            elif key == "target":
                out["target"] = value
            elif key in ("impute", "impute_while_running"):
                self.error(
                    f"metric.{key}",
                    f"metric.{key} cannot be honoured: failed trials are left out of the "
                    "sampler's model, never imputed; remove it",
                )
            else:
                self.error(
                    f"metric.{key}", f"unknown key {key!r}; W&B's metric keys: name, goal, target"
                )
        out.setdefault("direction", "minimize")
        return out

    def _budget(self, data: Mapping[str, Any], method: Any) -> dict[str, Any] | None:
        run_cap = data.get("run_cap")
        if run_cap is not None:
            self.origin["budget.n_trials"] = "run_cap"
            self.origin["budget"] = "run_cap"
        if method == "grid":
            return {"n_trials": run_cap} if run_cap is not None else None
        if run_cap is None:
            self.error(
                "run_cap",
                "run_cap is required here: a sweep runs to a budget, and W&B's runs-until-"
                "stopped has no end; add run_cap: N (or use method grid)",
            )
            return None
        return {"n_trials": run_cap}

    def _early_terminate(self, config: Any) -> dict[str, Any] | None:
        path = "early_terminate"
        self.origin["pruner"] = path
        if not isinstance(config, Mapping):
            self.error(path, "early_terminate must be a mapping with type: hyperband")
            return None
        allowed = ("type", "min_iter", "max_iter", "s", "eta", "strict")
        for key in config:
            if key not in allowed:
                self.error(f"{path}.{key}", f"unknown key {key!r}; allowed: {', '.join(allowed)}")
        if config.get("type") != "hyperband":
            self.error(f"{path}.type", f"type must be hyperband, got {config.get('type')!r}")
        if config.get("strict", True) is not True:
            self.error(
                f"{path}.strict",
                "strict: false cannot be honoured: Optuna's Hyperband follows the original "
                "algorithm (W&B's strict: true); remove it",
            )
        eta = config.get("eta", 3)
        if not _is_number(eta) or eta <= 1 or not float(eta).is_integer():
            self.error(f"{path}.eta", f"eta must be an integer > 1 (Optuna's rule), got {eta!r}")
            return None
        eta = int(eta)
        out: dict[str, Any] = {"name": "hyperband", "reduction_factor": eta}
        max_iter, min_iter = config.get("max_iter"), config.get("min_iter")
        if max_iter is not None:
            s = config.get("s")
            if s is None and min_iter is None:
                self.error(path, "max_iter needs s (or give min_iter), as W&B requires")
                return None
            out["max_resource"] = max_iter
            if s is not None:
                bands = [int(max_iter / eta**k) for k in range(1, int(s) + 1)]
                bands = [b for b in bands if b >= 1]
                if not bands:
                    self.error(path, "no band >= 1 below max_iter; raise max_iter or lower s, eta")
                    return None
                out["min_resource"] = min(bands)
            else:
                out["min_resource"] = min_iter
        elif min_iter is not None:
            out["min_resource"] = min_iter
        else:
            self.error(path, "early_terminate needs min_iter, or max_iter and s")
            return None
        return out

    def _parameters(self, params: Any, wandb_path: str, prefix: str) -> dict[str, Any]:
        if params is None:
            if not prefix:
                self.error("parameters", "parameters is required: the search space")
            return {}
        if not isinstance(params, Mapping):
            self.error(wandb_path, "parameters must be a mapping of names to parameter configs")
            return {}
        out: dict[str, Any] = {}
        for name, config in params.items():
            path = f"{wandb_path}.{name}"
            native_name = f"{prefix}{name}"
            if isinstance(config, Mapping) and "parameters" in config:
                extra = set(config) - {"parameters"}
                if extra:
                    self.error(path, f"a nested parameter has only parameters, got {sorted(extra)}")
                out.update(self._parameters(config["parameters"], f"{path}.parameters",
                                            f"{native_name}."))  # fmt: skip
                continue
            self.origin[f"parameters.{native_name}"] = path
            native = self._parameter(config, path)
            if native is not None:
                out[native_name] = native
        return out

    def _parameter(self, config: Any, path: str) -> dict[str, Any] | None:
        if not isinstance(config, Mapping):
            self.error(path, "a parameter must be a mapping, e.g. {values: [...]} or {min, max}")
            return None
        dist = config.get("distribution") or infer_distribution(config)
        if dist is None:
            self.error(path, "give value, values, min and max, or a distribution")
            return None
        if dist not in _DISTRIBUTIONS:
            self.error(
                f"{path}.distribution",
                f"unknown distribution {dist!r}; W&B's: {', '.join(_DISTRIBUTIONS)}",
            )
            return None
        if dist == "categorical" and "probabilities" in config:
            dist = "categorical_w_probabilities"
        allowed, defaults = _DISTRIBUTIONS[dist]
        bad = [k for k in config if k not in (*allowed, "distribution")]
        missing = [k for k in allowed if k in _REQUIRED and k not in config] + (
            ["probabilities"] if dist == "categorical_w_probabilities" and "probabilities"
            not in config else []
        )  # fmt: skip
        for key in bad:
            self.error(f"{path}.{key}", f"{key!r} is not a key of distribution {dist}; "
                       f"allowed: {', '.join(allowed)}")  # fmt: skip
        for key in missing:
            self.error(path, f"distribution {dist} needs {key}")
        if bad or missing:
            return None
        c = {**defaults, **config}
        try:
            return native_parameter(dist, c)
        except (TypeError, ValueError) as exc:
            self.error(path, str(exc))
            return None


def translate_wandb(
    data: Mapping[str, Any], file: str, lines: Mapping[str, int] | None
) -> tuple[dict[str, Any], dict[str, str]]:
    """The native spec dict for W&B config ``data``, and native key path -> W&B key path.

    Raises SpecError (SpecErrors for several) naming the W&B keys at fault.
    """
    translator = _Translator(file, lines)
    native = translator.translate(data)
    if translator.errors:
        from sweep.spec._common import _raise_all

        translator.errors.sort(key=lambda e: e.line or 0)
        _raise_all(translator.errors)
    return native, translator.origin
