"""Overrides of a spec's keys from the command line: ``--set sampler.seed=3``.

An override names a dotted key path of the native spec and a value read as YAML
(``3`` is a number, ``true`` a boolean, ``[a, b]`` a list, ``''`` an empty string). It
is applied to the file's data before validation, so it is checked like the file; an
error it causes names the override (``--set sampler.seed=abc: sampler.seed: ...``)
instead of a line of the file.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from sweep.errors import SpecError
from sweep.spec._common import _raise_all, _yaml_type

# Sections written as a bare name (`sampler: tpe`) that an override may extend with an
# option; when the file leaves them out, an option extends their default.
_NAMED_SECTIONS = {"sampler": "tpe", "pruner": "hyperband"}


@dataclass(frozen=True)
class Override:
    """One ``KEY.PATH=VALUE``: the text as given, the key path, and the parsed value."""

    text: str
    key_path: str
    value: Any

    @property
    def source(self) -> str:
        """How errors name this override, in place of a file."""
        return f"--set {self.text}"

    def covers(self, key_path: str | None) -> bool:
        """Whether an error at ``key_path`` is about this override's key (the key, a key
        under it, or a section above it that the override changed)."""
        if not key_path:
            return False
        mine, theirs = self.key_path.split("."), key_path.split(".")
        shorter = min(len(mine), len(theirs))
        return mine[:shorter] == theirs[:shorter]


def parse_overrides(texts: Iterable[str]) -> list[Override]:
    """Parse ``KEY.PATH=VALUE`` texts; raises SpecError naming each malformed one."""
    overrides: list[Override] = []
    errors: list[SpecError] = []
    for text in texts:
        key, sep, raw = text.partition("=")
        key = key.strip()
        parts = key.split(".")
        if not sep or not key or any(not p.strip() for p in parts):
            errors.append(
                SpecError(
                    "expected KEY.PATH=VALUE, a dotted key of the spec and a YAML value, "
                    "e.g. --set sampler.seed=3",
                    file=f"--set {text}",
                )
            )
            continue
        try:
            value = yaml.safe_load(raw) if raw.strip() else raw
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or str(exc)
            errors.append(
                SpecError(
                    f"the value is not valid YAML: {problem}; quote it for a string",
                    file=f"--set {text}",
                    key_path=key,
                )
            )
            continue
        overrides.append(Override(text, ".".join(p.strip() for p in parts), value))
    if errors:
        _raise_all(errors)
    return overrides


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[Override]) -> dict[str, Any]:
    """A copy of ``data`` with each override set, in order (a later one wins)."""
    result: dict[str, Any] = copy.deepcopy(dict(data))
    for override in overrides:
        _set(result, override)
    return result


def _set(data: dict[str, Any], override: Override) -> None:
    parts = override.key_path.split(".")
    node: Any = data
    for depth, part in enumerate(parts[:-1]):
        here = ".".join(parts[: depth + 1])
        child = _child(node, part)
        if child is None:
            child = {"name": _NAMED_SECTIONS[here]} if here in _NAMED_SECTIONS else {}
        elif isinstance(child, str) and here in _NAMED_SECTIONS:
            child = {"name": child}  # `sampler: tpe` with `--set sampler.seed=3`
        elif not isinstance(child, (dict, list)):
            raise SpecError(
                f"cannot set a key under {here}: it is {_yaml_type(child)} in the spec, "
                f"not a mapping; set {here} itself",
                file=override.source,
                key_path=here,
            )
        _put(node, part, child, override, here)
        node = child
    _put(node, parts[-1], override.value, override, override.key_path)


def _child(node: dict[str, Any] | list[Any], part: str) -> Any:
    if isinstance(node, dict):
        return node.get(part)
    index = int(part) if part.isdigit() else None
    return node[index] if index is not None and index < len(node) else None


def _put(node: dict[str, Any] | list[Any], part: str, value: Any, o: Override, here: str) -> None:
    if isinstance(node, dict):
        node[part] = value
        return
    if not part.isdigit() or int(part) > len(node):
        raise SpecError(
            f"this key is a list of {len(node)} items: use an index 0..{len(node)} "
            f"({len(node)} appends)",
            file=o.source,
            key_path=here,
        )
    if int(part) == len(node):
        node.append(value)
    else:
        node[int(part)] = value


def attribute(error: SpecError, overrides: Sequence[Override]) -> SpecError:
    """``error`` named after the override it is about, if any (the last that covers it)."""
    for override in reversed(overrides):
        if override.covers(error.key_path):
            return type(error)(error.reason, file=override.source, key_path=error.key_path)
    return error
