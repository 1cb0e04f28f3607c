"""Reading a spec's YAML: safe parsing, key path -> line map, ``${VAR}`` substitution."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import Any

import yaml

from sweep.errors import SpecError
from sweep.spec._command import is_macro_reference
from sweep.spec._common import _raise_all, _show

_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_TAG = "tag:yaml.org,2002:merge"


# ---------------------------------------------------------------------------------------
# Environment variables
# ---------------------------------------------------------------------------------------

# `$$` is an escaped `$`; `${...}` is a reference; a `${` without `}` is malformed.
_REF_RE = re.compile(r"\$\$|\$\{([^}]*)\}|\$\{")
_BODY_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?", re.DOTALL)


def interpolate_env(
    value: str,
    environ: Mapping[str, str] | None = None,
    keep: Callable[[str], bool] | None = None,
) -> tuple[str, list[str]]:
    """Substitute ``${VAR}`` and ``${VAR:-default}`` in ``value``; ``$$`` is a literal ``$``.

    ``:-`` uses the default when the variable is unset or empty, as in the shell.
    References for which ``keep(text)`` is true stay as written (W&B's command macros).
    Returns the new string and a list of problems (empty when all went well).
    """
    env = os.environ if environ is None else environ
    problems: list[str] = []

    def replace(match: re.Match[str]) -> str:
        text = match.group(0)
        if text == "$$":
            return "$"
        if keep is not None and keep(text):
            return text
        body = match.group(1)
        parsed = _BODY_RE.fullmatch(body) if body is not None else None
        if parsed is None:
            problems.append(
                f"malformed variable reference {_show(text)}; write ${{NAME}} or "
                "${NAME:-default} (and $$ for a literal $)"
            )
            return text
        name, default = parsed.group(1), parsed.group(2)
        current = env.get(name)
        if default is not None and not current:
            return default
        if current is None:
            problems.append(
                f"environment variable {name} is not set; export {name}=... before running, "
                f"or give a default with ${{{name}:-default}}"
            )
            return text
        return current

    return _REF_RE.sub(replace, value), problems


# ---------------------------------------------------------------------------------------
# Reading YAML
# ---------------------------------------------------------------------------------------


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _nearest_line(lines: Mapping[str, int], key_path: str | None) -> int:
    """The line of ``key_path`` or of its nearest parent present in ``lines``; else 1."""
    parts = key_path.split(".") if key_path else []
    while parts:
        line = lines.get(".".join(parts))
        if line is not None:
            return line
        parts.pop()
    return 1


class _NodeWalker:
    """One pass over the composed YAML: line map, duplicate keys, env substitution."""

    def __init__(self, file: str, environ: Mapping[str, str] | None = None) -> None:
        self.file = file
        self.environ = environ
        self.lines: dict[str, int] = {}
        self.errors: list[SpecError] = []
        # Aliases share nodes: each is handled once (under its first path), which also
        # ends recursive aliases and keeps "billion laughs" documents cheap.
        self._seen: set[int] = set()

    def walk(self, node: yaml.Node, path: str = "", *, merged: bool = False) -> None:
        """Visit ``node`` at ``path``; ``merged`` nodes never override explicit keys' lines."""
        if id(node) in self._seen:
            return
        self._seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            self._walk_mapping(node, path, merged)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                child = _join(path, str(index))
                self.lines.setdefault(child, item.start_mark.line + 1)
                self.walk(item, child)
        elif isinstance(node, yaml.ScalarNode) and node.tag == _STR_TAG and "$" in node.value:
            # Tags were resolved when composing, so a substituted "8" stays a string and
            # pydantic's coercion decides whether it fits the field.
            # In command, W&B's macros (${args}, ${envvar:NAME}...) are kept for the runner.
            keep = is_macro_reference if path.split(".")[0] == "command" else None
            node.value, problems = interpolate_env(node.value, self.environ, keep)
            line = node.start_mark.line + 1
            for problem in problems:
                self.errors.append(
                    SpecError(problem, file=self.file, key_path=path or None, line=line)
                )

    def _walk_mapping(self, node: yaml.MappingNode, path: str, merged_in: bool) -> None:
        first_line: dict[str, int] = {}
        merged: list[yaml.Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merged.append(value_node)
                continue
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
            child = _join(path, key)
            line = key_node.start_mark.line + 1
            if key in first_line:
                # SafeLoader keeps the last value silently; a repeated key is almost
                # always a mistake, so it is an error.
                self.errors.append(
                    SpecError(
                        f"duplicate key {key!r} (also on line {first_line[key]}); "
                        "write each key once",
                        file=self.file,
                        key_path=child,
                        line=line,
                    )
                )
            else:
                first_line[key] = line
            if merged_in:
                self.lines.setdefault(child, line)
            else:
                self.lines[child] = line
            self.walk(value_node, child)
        # Keys merged in with `<<:` count only where not written explicitly.
        for value_node in merged:
            is_list = isinstance(value_node, yaml.SequenceNode)
            sources = value_node.value if is_list else [value_node]
            for source in sources:
                if isinstance(source, yaml.MappingNode):
                    for key_node, _ in source.value:
                        if isinstance(key_node, yaml.ScalarNode):
                            child = _join(path, str(key_node.value))
                            self.lines.setdefault(child, key_node.start_mark.line + 1)
                self.walk(source, path, merged=True)


def _yaml_error(exc: yaml.YAMLError, file: str, text: str) -> SpecError:
    """Turn a PyYAML error into a SpecError at the line of its mark."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or "could not parse"
        if exc.context:
            at = f" on line {exc.context_mark.line + 1}" if exc.context_mark is not None else ""
            problem = f"{problem} ({exc.context}{at})"
        if "'\\t'" in problem:
            problem += "; indent with spaces, YAML does not allow tabs"
        line = mark.line + 1 if mark is not None else None
        if line is not None and "${" in "".join(text.splitlines(True)[line - 1 : line]):
            # `{a: ${X}}` is a classic: the `{` of ${X} ends a plain scalar in flow style.
            problem += "; quote values that use ${VAR} inside [...] or {...}, e.g. '${VAR}'"
        return SpecError(f"invalid YAML: {problem}", file=file, line=line)
    return SpecError(f"invalid YAML: {exc}", file=file)


def _read_yaml(text: str, file: str) -> tuple[dict[str, Any], dict[str, int]]:
    """Parse ``text`` safely, substitute env vars; return (data, key path -> line)."""
    loader = yaml.SafeLoader(text)
    try:
        try:
            root = loader.get_single_node()
        except yaml.YAMLError as exc:
            raise _yaml_error(exc, file, text) from None
        if root is None:
            raise SpecError(
                "the spec is empty; it needs at least name, objective, metric and budget",
                file=file,
                line=1,
            )
        if not isinstance(root, yaml.MappingNode):
            kind = "a list" if isinstance(root, yaml.SequenceNode) else "a single value"
            raise SpecError(
                f"the top level of a spec must be a mapping of keys to values, got {kind}",
                file=file,
                line=root.start_mark.line + 1,
            )
        walker = _NodeWalker(file)
        walker.walk(root)
        if walker.errors:
            _raise_all(walker.errors)
        try:
            data = loader.construct_document(root)
        except yaml.YAMLError as exc:
            raise _yaml_error(exc, file, text) from None
    finally:
        loader.dispose()
    return data, walker.lines
