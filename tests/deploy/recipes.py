"""Reading the deploy/ recipes as their tools do: Compose's interpolation, the `sweep`
command lines and the environment variables each recipe sets, and the variables that
sweep and the libraries it drives (libpq, Ray, Python) really read."""

from __future__ import annotations

import ast
import configparser
import json
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import click
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COMPOSE_FILE = DEPLOY / "compose" / "docker-compose.yml"
COMPOSE_ENV_EXAMPLE = DEPLOY / "compose" / "env.example"
KUBERNETES = DEPLOY / "kubernetes"
SYSTEMD_UNIT = DEPLOY / "systemd" / "sweep-agent@.service"
SYSTEMD_ENV_EXAMPLE = DEPLOY / "systemd" / "agent.env.example"
SBATCH = DEPLOY / "slurm" / "agents.sbatch"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
DEPLOY_README = DEPLOY / "README.md"
SWEEP_IMAGE = "sweep"  # the image the Dockerfile builds, as the recipes name it


@dataclass(frozen=True)
class CommandLine:
    """A `sweep` invocation found in a recipe: where, and its arguments after `sweep`."""

    source: str
    args: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.source}: sweep {shlex.join(self.args)}"


# -- Compose ------------------------------------------------------------------------------

_INTERPOLATION = re.compile(r"\$\$|\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error} and $$."""

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group(1), match.group(2), match.group(3)
        present = name in env and (env[name] != "" or op in ("-", "?"))
        if op and op.endswith("?") and not present:
            raise ValueError(f"${{{name}}}: {arg}")
        if op and op.endswith("-") and not present:
            return arg
        return env.get(name, "")

    return _INTERPOLATION.sub(substitute, value)


def _interpolate_tree(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [_interpolate_tree(item, env) for item in node]
    if isinstance(node, dict):
        return {key: _interpolate_tree(value, env) for key, value in node.items()}
    return node


def dotenv(path: Path) -> dict[str, str]:
    """A .env file as Compose reads it (KEY=VALUE lines, # comments)."""
    pairs = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


def example_env() -> dict[str, str]:
    """env.example with its blank secrets filled in, as an operator's .env would be."""
    return {k: v or f"example-{k.lower()}" for k, v in dotenv(COMPOSE_ENV_EXAMPLE).items()}


def compose_config(env: Mapping[str, str]) -> dict[str, Any]:
    """The compose file with its variables substituted (values only, as Compose does)."""
    return _interpolate_tree(yaml.safe_load(COMPOSE_FILE.read_text()), env)


def service_command(service: Mapping[str, Any]) -> list[str]:
    command = service.get("command", [])
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def service_environment(service: Mapping[str, Any]) -> dict[str, str]:
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    return {key: "" if value is None else str(value) for key, value in environment.items()}


def runs_sweep_image(service: Mapping[str, Any]) -> bool:
    return str(service.get("image", "")).split(":")[0] == SWEEP_IMAGE


# -- Kubernetes ---------------------------------------------------------------------------


def kubernetes_objects() -> Iterator[tuple[Path, dict[str, Any]]]:
    """The objects of the manifests kustomization.yaml lists (before kustomize)."""
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    for name in kustomization["resources"]:
        for doc in yaml.safe_load_all((KUBERNETES / name).read_text()):
            if doc:
                yield KUBERNETES / name, doc


def pod_specs(obj: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every pod spec in a workload, a RayCluster or a RayJob, with its path."""
    spec = obj.get("spec", {})
    if obj["kind"] in ("StatefulSet", "Job", "Deployment", "DaemonSet"):
        yield "spec.template.spec", spec["template"]["spec"]
    if obj["kind"] == "RayCluster":
        yield "spec.headGroupSpec", spec["headGroupSpec"]["template"]["spec"]
        for group in spec.get("workerGroupSpecs", []):
            yield f"spec.workerGroupSpecs[{group['groupName']}]", group["template"]["spec"]


def containers(obj: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, pod in pod_specs(obj):
        for container in [*pod.get("initContainers", []), *pod.get("containers", [])]:
            yield f"{path}.containers[{container['name']}]", container


# -- sweep command lines ------------------------------------------------------------------

_SEPARATORS = {"&&", "||", ";", "|", "exec", "srun", "then", "do"}


def _sweep_calls(tokens: list[str]) -> Iterator[tuple[str, ...]]:
    """The argument lists of `sweep` in a tokenised shell line: where it starts a command
    (first, or after a separator), or anywhere it is followed by one of its commands
    (`kubectl exec POD -- sweep status`, `docker compose run controller sweep ...`)."""
    from sweep.cli import cli

    for i, token in enumerate(tokens):
        if Path(token).name != "sweep":
            continue
        starts = i == 0 or tokens[i - 1] in _SEPARATORS
        if i > 0 and tokens[i - 1] in ("-n", "--namespace"):
            continue  # `kubectl -n sweep create secret ...`: the namespace, not the CLI
        if starts or (i + 1 < len(tokens) and tokens[i + 1] in {*cli.commands, "ui"}):
            end = next((j for j in range(i + 1, len(tokens)) if tokens[j] in _SEPARATORS), None)
            yield tuple(tokens[i + 1 : end])


def _shell_lines(text: str) -> Iterator[str]:
    """Logical shell lines (backslash continuations joined), prompts stripped."""
    for line in text.replace("\\\n", " ").splitlines():
        line = line.strip()
        if line.startswith("$ "):
            line = line[2:]
        if line and not line.startswith("#"):
            yield line


def _calls_in_shell(source: str, text: str) -> Iterator[CommandLine]:
    for line in _shell_lines(text):
        for args in _sweep_calls(shlex.split(line, comments=True)):
            yield CommandLine(source, args)


def _calls_in_argv(source: str, argv: list[str]) -> Iterator[CommandLine]:
    """`sweep` in an exec-form command, or in the script of `sh -c SCRIPT`."""
    if len(argv) >= 3 and Path(argv[0]).name in ("sh", "bash") and argv[1] == "-c":
        yield from _calls_in_shell(source, argv[2])
    else:
        yield from (CommandLine(source, args) for args in _sweep_calls(argv))


def sweep_commands() -> list[CommandLine]:
    """Every `sweep ...` command line in every recipe and in deploy/README.md."""
    rel = lambda path: str(path.relative_to(REPO))  # noqa: E731
    found: list[CommandLine] = []
    compose = compose_config(example_env())
    for name, service in compose["services"].items():
        source = f"{rel(COMPOSE_FILE)}: services.{name}"
        found += _calls_in_argv(source, service_command(service))
    for path, obj in kubernetes_objects():
        where = f"{rel(path)}: {obj['kind']} {obj['metadata']['name']}"
        for cpath, container in containers(obj):
            argv = [*container.get("command", []), *container.get("args", [])]
            found += _calls_in_argv(f"{where} {cpath}", argv)
        if obj["kind"] == "RayJob":
            tokens = shlex.split(obj["spec"]["entrypoint"])
            found += [CommandLine(f"{where} entrypoint", a) for a in _sweep_calls(tokens)]
    for line in systemd_unit()["Service"].get("execstart", "").splitlines():
        found += _calls_in_shell(rel(SYSTEMD_UNIT), line.lstrip("-@:+!").replace("%i", "demo"))
    found += _calls_in_shell(rel(SBATCH), SBATCH.read_text())
    for instruction, value in dockerfile_instructions():
        if instruction in ("CMD", "ENTRYPOINT") and value.startswith("["):
            found += [CommandLine(rel(DOCKERFILE), a) for a in _sweep_calls(json.loads(value))]
    for block in re.findall(
        r"```(?:bash|sh|shell|console)\n(.*?)```", DEPLOY_README.read_text(), flags=re.S
    ):
        found += _calls_in_shell(rel(DEPLOY_README), block)
    return found


def parse_sweep_command(args: tuple[str, ...]) -> click.Context:
    """Parse ``sweep ARGS`` with the real CLI down to its leaf command, without running it:
    unknown commands or options, missing arguments and bad values raise click errors."""
    from sweep.cli import cli

    ctx = cli.make_context("sweep", list(args))
    while isinstance(ctx.command, click.Group):
        rest = [*ctx._protected_args, *ctx.args]
        if not rest:
            raise click.UsageError(f"'sweep {shlex.join(args)}' names no command")
        name, command, remaining = ctx.command.resolve_command(ctx, rest)
        assert name is not None and command is not None
        ctx = command.make_context(name, remaining, parent=ctx)
    return ctx


# -- other recipe files -------------------------------------------------------------------


def systemd_unit() -> dict[str, dict[str, str]]:
    """The unit's sections; a key given twice keeps each value on its own line."""
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.read_string(_join_repeated_keys(SYSTEMD_UNIT.read_text()))
    return {section: dict(parser[section]) for section in parser.sections()}


def _join_repeated_keys(text: str) -> str:
    lines: list[str] = []
    seen: dict[tuple[str, str], int] = {}
    section = ""
    for line in text.splitlines():
        if line.startswith("["):
            section = line
        elif "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            index = seen.get((section, key.lower()))
            if index is not None:
                lines[index] += f"\n    {value}"
                continue
            seen[(section, key.lower())] = len(lines)
        lines.append(line)
    return "\n".join(lines)


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuations joined, comments dropped."""
    # Comment lines go first, also inside a continued instruction, as Docker drops them.
    lines = [
        line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#")
    ]
    pairs = []
    for line in "\n".join(lines).replace("\\\n", " ").splitlines():
        line = line.strip()
        if line:
            instruction, _, value = line.partition(" ")
            pairs.append((instruction.upper(), value.strip()))
    return pairs


# -- environment variables ------------------------------------------------------------------


def recipe_environment() -> list[tuple[str, str]]:
    """(where, NAME) for every variable a recipe sets for a sweep or Ray process."""
    rel = lambda path: str(path.relative_to(REPO))  # noqa: E731
    found: list[tuple[str, str]] = []
    compose = compose_config(example_env())
    for name, service in compose["services"].items():
        if runs_sweep_image(service):
            where = f"{rel(COMPOSE_FILE)}: services.{name}.environment"
            found += [(where, var) for var in service_environment(service)]
    for path, obj in kubernetes_objects():
        for cpath, container in containers(obj):
            if container["image"].split(":")[0] == SWEEP_IMAGE:
                where = f"{rel(path)}: {obj['kind']} {cpath}.env"
                found += [(where, env["name"]) for env in container.get("env", [])]
    for line in systemd_unit()["Service"].get("environment", "").splitlines():
        found += [(rel(SYSTEMD_UNIT), pair.split("=", 1)[0]) for pair in shlex.split(line)]
    found += [(rel(SYSTEMD_ENV_EXAMPLE), var) for var in dotenv(SYSTEMD_ENV_EXAMPLE)]
    found += [(rel(SBATCH), m) for m in re.findall(r"export (\w+)=", SBATCH.read_text())]
    for instruction, value in dockerfile_instructions():
        if instruction == "ENV":
            found += [(rel(DOCKERFILE), m) for m in re.findall(r"(\w+)=", value)]
    return found


@cache
def sweep_reads() -> frozenset[str]:
    """The environment variables sweep's own code reads (os.environ.get / [] / in,
    os.getenv, click's envvar=), names resolved through module constants like
    DATABASE_URL_ENV."""
    trees = [ast.parse(p.read_text()) for p in (REPO / "src" / "sweep").rglob("*.py")]
    constants = {
        target.id: node.value.value
        for tree in trees
        for node in ast.walk(tree)
        if isinstance(node, (ast.Assign, ast.AnnAssign))
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(target, ast.Name)
    }

    def name_of(node: ast.expr) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.Name):
            return constants.get(node.id)
        return None

    def is_environ(node: ast.expr) -> bool:
        return isinstance(node, ast.Attribute) and node.attr == "environ"

    names: set[str | None] = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
                func = node.func
                if (func.attr == "get" and is_environ(func.value)) or func.attr == "getenv":
                    names.add(name_of(node.args[0]))
            elif isinstance(node, ast.Subscript) and is_environ(node.value):
                if isinstance(node.ctx, ast.Load):
                    names.add(name_of(node.slice))
            elif isinstance(node, ast.Compare) and any(is_environ(c) for c in node.comparators):
                names.add(name_of(node.left))
            elif isinstance(node, ast.keyword) and node.arg == "envvar" and node.value:
                names.add(name_of(node.value))  # a click option's variable
    return frozenset(n for n in names if n)


@cache
def _binary_strings(path: Path) -> bytes:
    return path.read_bytes()


def libpq_library() -> Path:
    """The libpq that psycopg uses (psycopg[binary] ships its own)."""
    import psycopg  # noqa: F401  (psycopg_binary must come after it)
    import psycopg_binary

    libs = Path(psycopg_binary.__file__).parent.parent / "psycopg_binary.libs"
    return next(libs.glob("libpq*.so*"))


def reader_of(name: str) -> str | None:
    """What reads the variable ``name``, checked in the installed code; None if nothing."""
    if name in sweep_reads():
        return "sweep"
    if name.startswith("PG") and _c_string(name) in _binary_strings(libpq_library()):
        return "libpq (psycopg)"
    if name.startswith("RAY_") and _ray_reads(name):
        return "Ray"
    if name.startswith("PYTHON") and re.search(rf"^{name}\b", _python_reads(), flags=re.M):
        return "Python"
    if name == "PATH":
        return "the operating system"
    return None


@cache
def _python_reads() -> str:
    return subprocess.run([sys.executable, "--help-env"], capture_output=True, text=True).stdout


def _ray_reads(name: str) -> bool:
    """Ray's core (its C++ part, in _raylet.so) reads RAY_AUTH_MODE, RAY_AUTH_TOKEN, ..."""
    import ray

    core = Path(ray.__file__).parent / "_raylet.so"
    return _c_string(name) in _binary_strings(core)


def _c_string(name: str) -> bytes:
    """``name`` as a whole C string constant, as getenv("NAME") leaves it in a binary."""
    return b"\0" + name.encode() + b"\0"
