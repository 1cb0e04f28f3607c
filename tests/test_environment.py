"""Runs record the code and environment that produced them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sweep.tracking import command_line, environment_tags


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@e", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    environment_tags.cache_clear()


def test_git_commit_branch_and_dirty_flag(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q", "-b", "main")
    (tmp_path / "train.py").write_text("print(1)\n")
    git(tmp_path, "add", "train.py")
    git(tmp_path, "commit", "-q", "-m", "first")

    clean = environment_tags(str(tmp_path))
    assert clean["sweep.git.commit"] == git(tmp_path, "rev-parse", "HEAD")
    assert clean["sweep.git.branch"] == "main"
    assert clean["sweep.git.dirty"] == "false"

    (tmp_path / "train.py").write_text("print(2)\n")
    environment_tags.cache_clear()
    assert environment_tags(str(tmp_path))["sweep.git.dirty"] == "true"


def test_versions_host_and_python_without_git(tmp_path: Path) -> None:
    tags = environment_tags(str(tmp_path))
    assert not any(key.startswith("sweep.git.") for key in tags)
    assert tags["sweep.python"] == ".".join(map(str, sys.version_info[:3]))
    assert tags["sweep.version.optuna"].startswith("5.")
    assert "sweep.version.ray" in tags and tags["sweep.host"]


def test_command_line_hides_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        sys, "argv", ["sweep", "launch", "--storage", "postgresql+psycopg://u:pw123@h/db"]
    )
    assert command_line() == "sweep launch --storage postgresql+psycopg://u:***@h/db"
