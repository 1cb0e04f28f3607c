"""Clear outcomes (issue 18): strict JSON, a connect timeout, exit codes as documented,
lineage files no run can overwrite."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import sweep
from sweep.errors import ArtifactPathError, NotFoundError, StorageError
from sweep.registry import AlreadyPromotedError, ModelRegistry
from sweep.storage import Database
from sweep.storage._database import connect_timeout_s
from sweep.tracking import MetricPoint, TrackingStore
from sweep.tracking._lineage import forget_written
from tests.test_cli import run_cli


def _strict(text: str) -> object:
    """json.loads that refuses the bare Infinity / NaN Python writes by default."""

    def refuse(constant: str) -> object:
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def test_json_output_is_strict_with_an_infinite_metric(sqlite_url: str, tmp_path: Path) -> None:
    db = Database(sqlite_url)
    db.ensure_schema()
    store = TrackingStore(db)
    experiment = store.get_or_create_experiment("inf", str(tmp_path / "a"))
    run = store.create_run(experiment, "r", params={"x": 1.0})
    store.log_metrics(
        run.run_id,
        [MetricPoint("objective_value", float("inf"), 0, 0), MetricPoint("loss", -1e400, 0, 0)],
    )
    db.dispose()
    for args in (["runs", "inf", "--json"], ["runs", "show", run.run_id, "--json"]):
        result = run_cli(*args, "--storage", sqlite_url, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        found = _strict(result.stdout)
        metrics = found[0]["metrics"] if isinstance(found, list) else found["run"]["metrics"]
        assert metrics == {"objective_value": "Infinity", "loss": "-Infinity"}


# -- a store that accepts TCP and never answers ------------------------------------------


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port whose listener accepts connections (the kernel completes the handshake)
    and never says a word."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


def test_a_silent_store_fails_within_the_connect_timeout(
    silent_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWEEP_CONNECT_TIMEOUT", "2")
    db = Database(f"postgresql+psycopg://u:pw@127.0.0.1:{silent_port}/db")
    started = time.monotonic()
    with pytest.raises(StorageError, match="timeout") as caught:
        db.check_connection()
    # libpq's timeout holds per attempt; SQLAlchemy makes two. Without one it hung for
    # minutes (the kernel's TCP timeouts).
    assert time.monotonic() - started < 8
    assert "pw" not in str(caught.value).split("127.0.0.1")[0].split("u:")[-1]
    db.dispose()


def test_the_connect_timeout_defaults_to_10_s_and_is_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SWEEP_CONNECT_TIMEOUT", raising=False)
    assert connect_timeout_s() == 10
    monkeypatch.setenv("SWEEP_CONNECT_TIMEOUT", "3")
    assert connect_timeout_s() == 3
    for bad in ("0", "-2", "soon", "1.5"):
        monkeypatch.setenv("SWEEP_CONNECT_TIMEOUT", bad)
        with pytest.raises(StorageError, match="SWEEP_CONNECT_TIMEOUT"):
            connect_timeout_s()


def test_a_connect_timeout_in_the_url_wins(silent_port: int) -> None:
    db = Database(f"postgresql+psycopg://u@127.0.0.1:{silent_port}/db?connect_timeout=1")
    started = time.monotonic()
    with pytest.raises(StorageError):
        db.check_connection()
    assert time.monotonic() - started < 5
    db.dispose()


def test_the_cli_exits_3_on_a_silent_store(silent_port: int, tmp_path: Path) -> None:
    result = run_cli(
        "models",
        "list",
        "--storage",
        f"postgresql+psycopg://u@127.0.0.1:{silent_port}/db",
        cwd=tmp_path,
        env={"SWEEP_CONNECT_TIMEOUT": "2"},
        timeout=120,
    )
    assert result.returncode == 3, result.stderr
    assert "timeout" in result.stderr and "Traceback" not in result.stderr


# -- exit codes ------------------------------------------------------------------------


@pytest.fixture
def registry(sqlite_url: str, tmp_path: Path) -> Iterator[ModelRegistry]:
    db = Database(sqlite_url)
    db.ensure_schema()
    model = tmp_path / "model"
    model.mkdir()
    registry = ModelRegistry(db)
    registry.create_model_version("m", str(model))
    registry.set_alias("m", "challenger", 1)
    yield registry
    db.dispose()


def test_promoting_the_champion_again_is_done_not_an_error(
    registry: ModelRegistry, sqlite_url: str, tmp_path: Path
) -> None:
    registry.promote("m")
    registry.set_alias("m", "challenger", 1)
    with pytest.raises(AlreadyPromotedError):
        registry.promote("m")
    result = run_cli("models", "promote", "m", "--storage", sqlite_url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "already @champion" in result.stdout
    refused = run_cli("models", "alias", "m", "a/b", "1", "--storage", sqlite_url, cwd=tmp_path)
    assert refused.returncode == 2, refused.stderr  # a usage error, not "unexpected"


@pytest.mark.parametrize("version", [str(2**31), str(2**63), "99999999999999999999999"])
def test_a_version_past_the_column_is_not_found(
    version: str, registry: ModelRegistry, sqlite_url: str, tmp_path: Path
) -> None:
    with pytest.raises(NotFoundError, match="has no version"):
        registry.get_version("m", int(version))
    with pytest.raises(NotFoundError):
        sweep.load_model(f"models:/m/{version}", storage=sqlite_url)
    for args in (["alias", "m", "x", version], ["tag", "m", version, "k", "v"]):
        result = run_cli("models", *args, "--storage", sqlite_url, cwd=tmp_path)
        assert result.returncode == 6, result.stdout + result.stderr
        assert "has no version" in result.stderr


# -- lineage files ------------------------------------------------------------------------


def test_a_run_cannot_overwrite_the_lineage_files_others_point_at(
    sqlite_url: str, tmp_path: Path
) -> None:
    forget_written()
    fake = tmp_path / "packages.txt"
    fake.write_text("evil==1\n")
    folder = tmp_path / "lineage"
    folder.mkdir()
    (folder / "packages.txt").write_text("evil==1\n")
    root = str(tmp_path / "artifacts")
    with sweep.start_run("shared", storage=sqlite_url, artifact_root=root) as first:
        for name in ("lineage/packages.txt", "Lineage/packages.txt", "lineage", "./lineage/x"):
            with pytest.raises(ArtifactPathError, match="lineage files"):
                sweep.log_artifact(fake, name)
        with pytest.raises(ArtifactPathError):
            sweep.log_artifact(folder)  # named after the folder: lineage
        with pytest.raises(ArtifactPathError):
            sweep.log_text("evil==1", "lineage/packages.txt")
        with pytest.raises(ArtifactPathError):
            sweep.log_model({"w": 1}, "lineage")
        sweep.log_artifact(fake, "my-lineage/packages.txt")  # any other folder is fine
    with sweep.start_run("shared", storage=sqlite_url, artifact_root=root) as second:
        pass
    store = TrackingStore(Database(sqlite_url))
    shared = store.get_run(second.run_id).tags["sweep.lineage.packages"]
    assert shared == store.get_run(first.run_id).tags["sweep.lineage.packages"]
    assert "evil==1" not in Path(shared).read_text()
