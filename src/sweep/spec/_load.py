"""Loading a spec: validating YAML or a mapping into a :class:`SweepSpec`.

Pydantic's errors become SpecErrors that name the key path, the line and what is
allowed; :func:`resolve_objective` imports the objective function a spec names.
"""

from __future__ import annotations

import importlib
import os
import sys
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from sweep.errors import ObjectiveImportError, SpecError
from sweep.spec._common import (
    _KEY_CTX,
    _SPEC_ERROR,
    _did_you_mean,
    _raise_all,
    _show,
    _yaml_type,
)
from sweep.spec._model import SweepSpec
from sweep.spec._objectives import written_form
from sweep.spec._optuna import _OptunaComponentSpec
from sweep.spec._overrides import Override, apply_overrides, attribute, parse_overrides
from sweep.spec._parameters import _PARAM_BY_TYPE, PARAMETER_TYPES
from sweep.spec._wandb import is_wandb_config, translate_wandb
from sweep.spec._yaml import _nearest_line, _read_yaml

#: ``SweepSpec.dialect`` of a spec read from a W&B sweep config.
WANDB = "wandb"

# ---------------------------------------------------------------------------------------
# Validation errors
# ---------------------------------------------------------------------------------------


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class validating the mapping at ``loc`` (a raw pydantic location)."""
    if not loc:
        return SweepSpec
    if loc[0] == "parameters":
        return _PARAM_BY_TYPE.get(loc[2]) if len(loc) == 3 else None
    if len(loc) == 2 and loc[0] == "metrics":
        return SweepSpec.model_fields["metric"].annotation  # type: ignore[return-value]
    if len(loc) == 1 and loc[0] in SweepSpec.model_fields:
        annotation = SweepSpec.model_fields[loc[0]].annotation
        for candidate in (annotation, *typing.get_args(annotation)):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                return candidate
    return None


def _key_path(loc: tuple[Any, ...]) -> list[str]:
    """Map a pydantic location to the YAML key path (drop union tags and '[key]')."""
    parts = list(loc)
    # parameters.<name>.<tag>.<field>: the discriminated union adds the tag.
    if len(parts) >= 3 and parts[0] == "parameters" and parts[2] in _PARAM_BY_TYPE:
        del parts[2]
    return [str(p) for p in parts if p != "[key]"]


def _allowed_keys(model: type[BaseModel]) -> str:
    return ", ".join(model.model_fields)


def _message(err: Mapping[str, Any], loc: tuple[Any, ...], parts: list[str]) -> str:
    """Rewrite a pydantic error message so that it says what is allowed."""
    kind = err["type"]
    value = err.get("input")
    if kind == _SPEC_ERROR:
        return str(err["msg"])
    if kind == "extra_forbidden":
        key = str(loc[-1])
        model = _model_at(loc[:-1])
        if model is None:
            return f"unknown key {key!r}"
        allowed = list(model.model_fields)
        hint = _did_you_mean(key, allowed)
        return f"unknown key {key!r}{hint}; allowed keys: {', '.join(allowed)}"
    if kind == "missing":
        key = str(loc[-1])
        model = _model_at(loc[:-1])
        field = model.model_fields.get(key) if model is not None else None
        hint = f": {field.description}" if field is not None and field.description else ""
        return f"missing required key {key!r}{hint}"
    if kind == "union_tag_not_found":
        return f"missing key 'type'; allowed types: {', '.join(PARAMETER_TYPES)}"
    if kind == "union_tag_invalid":
        tag = (err.get("ctx") or {}).get("tag", value)
        return f"unknown parameter type {_show(tag)}; allowed types: {', '.join(PARAMETER_TYPES)}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        got = _yaml_type(value)
        if loc and loc[0] == "parameters" and len(loc) == 2:
            return (
                f"expected a mapping with a 'type' key (one of {', '.join(PARAMETER_TYPES)}), "
                f"got {got}"
            )
        model = _model_at(loc)
        if model is not None and issubclass(model, _OptunaComponentSpec):
            kind = model.component_kind
            return f"expected a {kind} name or a mapping with name and {kind} options, got {got}"
        if model is not None:
            return f"expected a mapping with keys {_allowed_keys(model)}, got {got}"
        if loc == ("parameters",):
            return f"expected a mapping of parameter names to parameter specs, got {got}"
        return f"expected a mapping, got {got}"
    message = str(err["msg"])
    if loc and loc[-1] == "[key]":
        return f"keys here must be strings: {message} (got {_show(value)})"
    if parts and parts[0] == "storage":
        return message  # never echo a database URL: it may hold a password
    if value is None or isinstance(value, (str, int, float, bool)):
        return f"{message} (got {_show(value)})"
    return f"{message} (got {_yaml_type(value)})"


def _error_parts(err: Mapping[str, Any]) -> list[str]:
    """The key path of a pydantic error, as parts."""
    parts = _key_path(tuple(err["loc"]))
    if err["type"] in ("union_tag_not_found", "union_tag_invalid"):
        parts.append("type")
    sub_key = (err.get("ctx") or {}).get(_KEY_CTX)
    if sub_key:
        parts.append(str(sub_key))
    return parts


def _convert_validation_error(
    exc: ValidationError, file: str, lines: Mapping[str, int] | None, data: Mapping[str, Any]
) -> list[SpecError]:
    """One SpecError per pydantic error, located by key path and (if known) line;
    ``data`` is the spec as written (it says how its objectives are written)."""
    errors: list[SpecError] = []
    as_written = written_form(data)
    raw = exc.errors(include_url=False)
    # An objective's error shows once, under the key the author wrote (metric/metrics).
    kept = [e for e in raw if as_written(".".join(_error_parts(e))) != ""] or raw
    for err in kept:
        loc = tuple(err["loc"])
        parts = _error_parts(err)
        joined = ".".join(parts)
        key_path = as_written(joined) or joined or None
        line = _nearest_line(lines, key_path) if lines is not None else None
        errors.append(SpecError(_message(err, loc, parts), file=file, key_path=key_path, line=line))
    # Read top to bottom, like the file.
    errors.sort(key=lambda e: e.line or 0)
    return errors


def _validate(
    data: Any,
    file: str,
    lines: Mapping[str, int] | None,
    overrides: Sequence[Override] = (),
) -> SweepSpec:
    """Validate a native spec, or translate a W&B sweep config and validate the result;
    ``overrides`` are set (on the native keys) first, and errors they cause name them."""
    if not isinstance(data, Mapping):
        raise SpecError(
            f"a spec must be a mapping of keys to values, got {_yaml_type(data)}",
            file=file,
            line=1 if lines is not None else None,
        )
    origin: dict[str, str] | None = None
    if is_wandb_config(data):
        data, origin = translate_wandb(data, file, lines)
    if overrides:
        data = apply_overrides(data, overrides)
    try:
        spec = SweepSpec.model_validate(dict(data))
    except ValidationError as exc:
        errors = _convert_validation_error(exc, file, None if origin is not None else lines, data)
        errors = [attribute(e, overrides) for e in errors]
        if origin is not None:
            errors = [e if e.file != file else _to_wandb_key(e, origin, lines) for e in errors]
    else:
        spec._overrides = tuple(overrides)
        if origin is not None:
            spec._dialect = WANDB
            if lines is not None:
                # Later checks (line_of) ask by native key: point them at the W&B lines.
                spec._lines = {**lines, **{n: lines[w] for n, w in origin.items() if w in lines}}
        return spec
    # Raised outside the except block so tracebacks do not drag pydantic's error along.
    _raise_all(errors)


def _to_wandb_key(
    error: SpecError, origin: Mapping[str, str], lines: Mapping[str, int] | None
) -> SpecError:
    """A native spec's error located at the W&B key it was translated from."""
    full = (error.key_path or "").split(".")
    parts = list(full)
    while parts and ".".join(parts) not in origin:
        parts.pop()
    prefix = ".".join(parts)
    key_path = origin[prefix] if parts else error.key_path
    written = lines is not None and ".".join(full) in lines
    if parts and origin[prefix] == prefix and (written or not prefix.startswith("parameters")):
        # Keys W&B and native specs share (command.1, a normal's sigma) keep their sub-path.
        key_path = ".".join(full)
    line = _nearest_line(lines, key_path) if lines is not None else None
    return SpecError(error.reason, file=error.file, key_path=key_path, line=line)


# ---------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------


def _read_spec_file(file: str) -> tuple[dict[str, Any], dict[str, int]]:
    """Read the YAML spec at ``file``: its data and key path -> line map."""
    spec_path = Path(file)
    if not spec_path.exists():
        raise SpecError(f"spec file not found: {spec_path.absolute()}", file=file)
    if not spec_path.is_file():
        raise SpecError("spec path is not a file; pass the path of a YAML spec", file=file)
    try:
        text = spec_path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"spec file is not UTF-8 text: {exc.reason}", file=file) from None
    except OSError as exc:
        raise SpecError(f"cannot read spec file: {exc.strerror or exc}", file=file) from None

    return _read_yaml(text, file)


def native_yaml(path: str | os.PathLike[str]) -> tuple[str, SweepSpec]:
    """The native YAML spec that the spec at ``path`` is read as, and the spec: a W&B
    sweep config's translation (``sweep convert``), or a native spec's text as written.

    The text is validated: loading it gives the same spec. Raises SpecError.
    """
    file = os.fspath(path)
    data, lines = _read_spec_file(file)
    spec = load_spec(file, check_objective=False)
    if not is_wandb_config(data):
        # As written: ${VAR} stays unexpanded (a storage URL may hold a password).
        return Path(file).read_text(encoding="utf-8"), spec
    data, _ = translate_wandb(data, file, lines)
    header = f"# {Path(file).name}, a W&B sweep config, as a native sweep spec\n"
    return header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True), spec


def check_launchable(spec: SweepSpec) -> None:
    """Refuse, before anything is created, a spec that the execution path cannot run
    yet: parameters stored in another form than their value (quantile types, list
    choices) for a function objective."""
    encoded = spec.encoded_parameters()
    if encoded and not spec.is_command:  # a command gets decoded values
        raise spec.error_at(
            f"parameters.{encoded[0]}",
            f"parameter(s) {', '.join(encoded)} reach a function objective's trial.params in "
            "Optuna's stored form (a quantile, or JSON text), not as values; this needs the "
            "trial path to hand objectives decoded values (SweepSpec.decode_params) and is "
            "not supported yet; use float/int/categorical with scalar choices",
        )


def load_spec(
    path: str | os.PathLike[str],
    *,
    check_objective: bool = True,
    overrides: Iterable[str] = (),
) -> SweepSpec:
    """Read, interpolate and validate the YAML spec at ``path``.

    ``overrides`` are ``KEY.PATH=VALUE`` texts (the CLI's ``--set``), each value read as
    YAML and set on the spec's native keys before validation (``spec.overrides`` keeps
    them); an error one causes names it instead of a line of the file.
    With ``check_objective`` the objective is also imported (see :func:`resolve_objective`).
    Raises SpecError (SpecErrors for several problems) or ObjectiveImportError.
    """
    file = os.fspath(path)
    spec_path = Path(file)
    parsed = parse_overrides(overrides)
    data, lines = _read_spec_file(file)
    spec = _validate(data, file, lines, parsed)
    source_path = spec_path.resolve()
    spec._source = file
    spec._source_path = source_path
    spec._base_dir = source_path.parent
    if spec.dialect != WANDB:
        spec._lines = lines
    if check_objective:
        _check_runnable(spec)
    return spec


def _check_runnable(spec: SweepSpec) -> None:
    """Import the objective (or check that a command-mode spec's program exists) and
    the callbacks."""
    resolve_callbacks(spec)
    if not spec.is_command:
        resolve_objective(spec)
    elif spec.program is not None:
        path = spec.code_path / Path(spec.program).expanduser()
        if not path.is_file():
            raise spec.error_at(
                "program",
                f"program {spec.program!r} not found: looked for {path}; put the script there "
                "or set code_dir (relative to the spec file) to its directory",
                cls=ObjectiveImportError,
            )
    resolve_callbacks(spec)


def load_spec_from_dict(
    data: Mapping[str, Any], *, source: str = "<dict>", check_objective: bool = False
) -> SweepSpec:
    """Validate a spec given as a Python mapping; errors name ``source`` and carry no line.

    Strings are taken as they are: ``${VAR}`` is not substituted here, so a dict that was
    dumped from a loaded spec validates to the same spec. ``code_dir`` is relative to the
    current directory.
    """
    spec = _validate(data, source, None)
    spec._source = source
    spec._base_dir = Path.cwd()
    if check_objective:
        _check_runnable(spec)
    return spec


def _no_objective(spec: SweepSpec) -> SpecError:
    return spec.error_at(
        "program" if spec.program is not None else "command",
        f"this sweep runs a {spec.runs}, not a Python objective; there is no function to import",
        cls=ObjectiveImportError,
    )


def resolve_objective(spec: SweepSpec) -> Callable[..., Any]:
    """Import ``spec.objective`` with ``spec.code_path`` first on ``sys.path``.

    Raises ObjectiveImportError pointing at the spec's ``objective`` (or ``code_dir``) key.
    """
    if spec.objective is None:
        raise _no_objective(spec)
    hint = "point objective at a function that takes an optuna.Trial"
    return _import_function(spec, spec.objective, "objective", hint)


def resolve_callbacks(spec: SweepSpec) -> list[tuple[str, Callable[..., Any]]]:
    """Import each of ``spec.callbacks`` (``module.path:function``) from ``spec.code_path``;
    ``(reference, function)`` each. Raises ObjectiveImportError at ``callbacks.N``."""
    return [
        (ref, _import_function(spec, ref, f"callbacks.{index}", _CALLBACK_HINT))
        for index, ref in enumerate(spec.callbacks)
    ]


_CALLBACK_HINT = "point the callback at a function that takes one sweep.callbacks.SweepEvent"


def _import_function(spec: SweepSpec, ref: str, key: str, hint: str) -> Callable[..., Any]:
    """Import ``ref`` (``module.path:function``) with ``spec.code_path`` first on
    ``sys.path``; errors point at the spec's ``key`` (or ``code_dir``)."""
    module_name, _, function_name = ref.partition(":")
    code_path = spec.code_path

    def fail(message: str, key: str = key) -> ObjectiveImportError:
        return spec.error_at(key, message, cls=ObjectiveImportError)  # type: ignore[return-value]

    if not code_path.is_dir():
        raise fail(
            f"code_dir {code_path} is not a directory; set code_dir (relative to the spec "
            "file) to the directory that holds the objective's code",
            key="code_dir",
        )
    entry = str(code_path)
    if entry not in sys.path:
        sys.path.insert(0, entry)
    # Finders cache directory listings; a module written moments ago must still be found.
    importlib.invalidate_caches()
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing == module_name or module_name.startswith(missing + "."):
            relative = module_name.replace(".", "/")
            raise fail(
                f"module {module_name!r} not found: searched {code_path} (the code_dir) and "
                f"sys.path for {relative}.py or {relative}/__init__.py; put the module "
                "there or set code_dir (relative to the spec file) to its directory"
            ) from exc
        raise fail(
            f"importing module {module_name!r} raised ModuleNotFoundError: {exc}; install "
            "the missing package in this environment"
        ) from exc
    except (Exception, SystemExit) as exc:
        # SystemExit too: a module that runs argparse or sys.exit() at import time.
        raise fail(
            f"importing module {module_name!r} raised {type(exc).__name__}: {exc}; fix the "
            "module so that it imports cleanly"
        ) from exc

    function = getattr(module, function_name, None)
    if function is None:
        raise fail(_no_such_function(module, module_name, function_name))
    if not callable(function):
        raise fail(
            f"{module_name}:{function_name} is {type(function).__name__}, not a function; " + hint
        )
    return typing.cast(Callable[..., Any], function)


def _no_such_function(module: Any, module_name: str, function_name: str) -> str:
    """Why ``function_name`` cannot be found in ``module``: what it does define."""
    where = getattr(module, "__file__", None) or module_name
    defined = sorted(
        name
        for name, value in vars(module).items()
        if callable(value)
        and not name.startswith("_")
        and getattr(value, "__module__", None) == module.__name__
    )
    listing = (
        f"callables defined there: {', '.join(defined)}"
        if defined
        else "it defines no public functions"
    )
    return (
        f"module {module_name!r} ({where}) has no function {function_name!r}"
        f"{_did_you_mean(function_name, defined)}; {listing}"
    )
