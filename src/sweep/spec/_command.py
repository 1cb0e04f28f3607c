"""Command-mode trials: a script run per trial, its command line, and its metric lines.

A spec names a ``program`` (a script, run as ``${env} ${interpreter} ${program}
${args}`` by default) and/or a ``command``: an argv list whose items may be W&B's
macros. :func:`build_argv` expands a command for one trial's params; it is pure (the
runner that executes the result lives in the trial execution path).

Macros, each a whole item of ``command`` (as W&B's agent requires):

=========================== ==========================================================
``${env}``                  ``/usr/bin/env`` (nothing on Windows)
``${interpreter}``          the Python running the worker (W&B: ``python``)
``${program}``              the spec's ``program``
``${args}``                 ``--name=value`` per param
``${args_no_equals}``       ``--name value`` per param
``${args_no_hyphens}``      ``name=value`` per param
``${args_no_boolean_flags}`` ``--name=value``, but ``--name`` for true, nothing for false
``${args_append_hydra}``    ``+name=value`` per param
``${args_override_hydra}``  ``++name=value`` per param
``${args_json}``, ``${json}`` one item: the params as JSON
``${args_json_file}``, ``${json_file}`` one item: the path of a file holding that JSON
=========================== ==========================================================

and ``${envvar:NAME}`` anywhere in an item: the environment variable ``NAME`` where the
trial runs. Values are written as W&B writes them (Python's ``str``: ``True``,
``None``, ``[1, 2]``); nested parameters (dotted names) are flags with dotted names
(``--optimizer.lr=0.01``) and nested objects in the JSON forms. ``${json}`` and
``${json_file}`` are not in W&B's agent; they are accepted as the issue names them.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import Field, model_validator

from sweep.spec._base import OptionalText, _SpecModel
from sweep.spec._common import _show, _spec_error

#: The command of a spec that gives ``program`` and no ``command`` (W&B's default).
DEFAULT_COMMAND: tuple[str, ...] = ("${env}", "${interpreter}", "${program}", "${args}")

#: Macros that expand to the params (one item per param, or one JSON item).
ARGS_MACROS: tuple[str, ...] = (
    "args",
    "args_no_equals",
    "args_no_hyphens",
    "args_no_boolean_flags",
    "args_append_hydra",
    "args_override_hydra",
    "args_json",
    "args_json_file",
    "json",
    "json_file",
)
#: Every macro a command item may be.
MACROS: tuple[str, ...] = ("env", "interpreter", "program", *ARGS_MACROS)

_MACRO_ITEM = re.compile(r"\$\{([a-z_]+)\}")
_ENVVAR = re.compile(r"\$\{envvar:([A-Za-z_][A-Za-z0-9_]*)\}")
_ANY_REF = re.compile(r"\$\{[^}]*\}")


def is_macro_reference(text: str) -> bool:
    """Whether ``${...}`` text is a W&B macro (kept verbatim by the YAML reader in
    ``command``) rather than an environment variable: lower-case names and envvar."""
    return bool(_MACRO_ITEM.fullmatch(text) or _ENVVAR.fullmatch(text))


def check_command(command: Sequence[str], *, has_program: bool) -> list[tuple[int, str]]:
    """Problems with a ``command`` list: (item index, message) pairs."""
    problems: list[tuple[int, str]] = []
    if not command:
        return [(-1, "command must not be empty; give the argv list, e.g. [python, train.py]")]
    for index, item in enumerate(command):
        whole = _MACRO_ITEM.fullmatch(item)
        if whole is not None:
            name = whole.group(1)
            if name not in MACROS:
                problems.append(
                    (index, f"unknown macro {item}; allowed: {', '.join(MACROS)}, ${{envvar:NAME}}")
                )
            elif name == "program" and not has_program:
                problems.append((index, "${program} needs the spec's program key; set program"))
            continue
        rest = _ENVVAR.sub("", item)
        stray = _ANY_REF.search(rest)
        if stray is not None:
            problems.append(
                (
                    index,
                    f"{_show(stray.group(0))} in {_show(item)}: a macro must be a whole item of "
                    "command (W&B passes it on literally otherwise); only ${envvar:NAME} may "
                    "sit inside an item",
                )
            )
    return problems


def _text(value: Any) -> str:
    # W&B formats values with Python's str(): True, None, [1, 2], 0.001.
    return str(value)


def nest(params: Mapping[str, Any]) -> dict[str, Any]:
    """Dotted names as nested mappings (``{"a.b": 1}`` -> ``{"a": {"b": 1}}``), or the
    params unchanged when a name is both a value and a parent."""
    nested: dict[str, Any] = {}
    for name, value in params.items():
        node = nested
        *parents, leaf = name.split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                return dict(params)
            node = child
        if leaf in node:
            return dict(params)
        node[leaf] = value
    return nested


def _expand_args(macro: str, params: Mapping[str, Any], json_file: str | None) -> list[str]:
    if macro in ("args_json", "json"):
        return [json.dumps(nest(params))]
    if macro in ("args_json_file", "json_file"):
        if json_file is None:
            raise ValueError(f"${{{macro}}} needs the path of the params' JSON file")
        return [json_file]
    items: list[str] = []
    for name, value in params.items():
        if macro == "args":
            items.append(f"--{name}={_text(value)}")
        elif macro == "args_no_equals":
            items += [f"--{name}", _text(value)]
        elif macro == "args_no_hyphens":
            items.append(f"{name}={_text(value)}")
        elif macro == "args_append_hydra":
            items.append(f"+{name}={_text(value)}")
        elif macro == "args_override_hydra":
            items.append(f"++{name}={_text(value)}")
        elif isinstance(value, bool):  # args_no_boolean_flags
            items += [f"--{name}"] if value else []
        else:
            items.append(f"--{name}={_text(value)}")
    return items


def build_argv(
    command: Sequence[str] | None,
    params: Mapping[str, Any],
    *,
    program: str | None = None,
    interpreter: str = sys.executable,
    json_file: str | None = None,
    environ: Mapping[str, str] | None = None,
    platform: str = sys.platform,
) -> list[str]:
    """The argv of one trial: ``command`` (or :data:`DEFAULT_COMMAND`) with its macros
    expanded for ``params`` (the values, in the order to pass them).

    ``json_file`` is where the runner wrote the params as JSON (for ``${args_json_file}``
    and ``${json_file}``); ``environ`` is the trial's environment (for
    ``${envvar:NAME}``). Raises ValueError for an unset ``${envvar:NAME}``, a macro that
    is not known or ``${program}`` without a program.
    """
    env = environ if environ is not None else {}
    argv: list[str] = []
    for item in command if command is not None else DEFAULT_COMMAND:
        item = str(item)
        whole = _MACRO_ITEM.fullmatch(item)
        if whole is None:

            def variable(match: re.Match[str]) -> str:
                name = match.group(1)
                if name not in env:
                    raise ValueError(
                        f"{match.group(0)} in the command: environment variable {name} is "
                        "not set where the trial runs; export it on the worker or agent"
                    )
                return env[name]

            argv.append(_ENVVAR.sub(variable, item))
            continue
        macro = whole.group(1)
        if macro == "env":
            argv += [] if platform.startswith("win") else ["/usr/bin/env"]
        elif macro == "interpreter":
            argv.append(interpreter)
        elif macro == "program":
            if program is None:
                raise ValueError("${program} in the command, but the spec names no program")
            argv.append(program)
        elif macro in ARGS_MACROS:
            argv += _expand_args(macro, params, json_file)
        else:
            raise ValueError(f"unknown macro {item} in the command")
    return argv


class CollectorSpec(_SpecModel):
    """How metrics are read from a command-mode trial's output lines.

    ``auto`` reads ``name=value`` pairs (``epoch=3 val_loss=0.41``) and JSON objects
    (``{"epoch": 3, "val_loss": 0.41}``); ``regex`` applies ``pattern``: its named groups
    are metrics, except ``name``/``value`` (one metric named by the ``name`` group) and
    the step group. The step comes from ``step_key`` (default: the first of step,
    epoch, iteration present on the line).
    """

    kind: Literal["auto", "regex"] = Field(default="auto", description="auto or regex")
    pattern: OptionalText = Field(default=None, description="a regex with named groups")
    step_key: OptionalText = Field(
        default=None, description="the key (or group) holding the step, e.g. epoch"
    )

    @model_validator(mode="after")
    def _check(self) -> CollectorSpec:
        if self.kind == "auto":
            if self.pattern is not None:
                raise _spec_error("pattern needs kind: regex", "pattern")
            return self
        if self.pattern is None:
            raise _spec_error("kind regex needs a pattern with named groups", "pattern")
        try:
            compiled = re.compile(self.pattern)
        except re.error as exc:
            raise _spec_error(f"pattern is not a valid regex: {exc}", "pattern") from None
        groups = set(compiled.groupindex)
        step = {self.step_key} if self.step_key else {"step", "epoch", "iteration"}
        if ("name" in groups) != ("value" in groups):
            raise _spec_error("groups name and value go together; give both", "pattern")
        if not groups - step - {"name", "value"} and not {"name", "value"} <= groups:
            raise _spec_error(
                "pattern needs named groups: one per metric, e.g. (?P<val_loss>[-+.\\deE]+), "
                "or (?P<name>...) and (?P<value>...)",
                "pattern",
            )
        return self
