"""Runs record their lineage without being asked (git, packages, host, GPUs, seeds,
datasets), keep artifacts on local and fsspec stores, and lose no metric point: the
background writer, the end of a trial, a database that refuses a write. Storage tests
run against SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import fsspec
import numpy as np
import pytest
import sqlalchemy
from click.testing import CliRunner
from sklearn.linear_model import LinearRegression

import sweep
from sweep.cli import cli
from sweep.errors import (
    ArtifactPathError,
    InvalidValueError,
    MetricFlushError,
    StorageError,
)
from sweep.flavors import load_model_dir
from sweep.registry import ModelRegistry
from sweep.storage import Database, _retrying
from sweep.tracking import RunStatus, TrackingStore
from sweep.tracking._datasets import digest_dataset
from sweep.tracking._environment import clear_caches, environment_tags, gpu_tags
from sweep.tracking._lineage import forget_written
from sweep.trial import TrialRunner
from tests.helpers import OBJECTIVES_DIR, sweep_context

sys.path.insert(0, str(OBJECTIVES_DIR))
from logging_probe import POINTS  # noqa: E402


@pytest.fixture(autouse=True)
def _new_process() -> Iterator[None]:
    """Each test sees the process-wide caches (environment, lineage files) empty."""
    clear_caches()
    forget_written()
    yield
    clear_caches()
    forget_written()


@pytest.fixture
def store(storage_url: str) -> Iterator[TrackingStore]:
    database = Database(storage_url)
    database.ensure_schema()
    yield TrackingStore(database)
    database.dispose()


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@e", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    (path / "train.py").write_text("print(1)\n")
    git(path, "add", "train.py")
    git(path, "commit", "-q", "-m", "first")
    return path


def count_points(url: str, run_id: str) -> int:
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            query = sqlalchemy.text("SELECT count(*) FROM sweep_metrics WHERE run_id = :r")
            return int(conn.execute(query, {"r": run_id}).scalar_one())
    finally:
        engine.dispose()


# -- environment and code lineage -------------------------------------------------------


def test_runs_record_code_packages_and_host_without_asking(
    storage_url: str, store: TrackingStore, repo: Path, tmp_path: Path
) -> None:
    root = str(tmp_path / "artifacts")
    with sweep.start_run("lineage", storage=storage_url, artifact_root=root, code_dir=repo) as r:
        pass
    clean = store.get_run(r.run_id)
    assert clean.tags["sweep.git.commit"] == git(repo, "rev-parse", "HEAD")
    assert (clean.tags["sweep.git.branch"], clean.tags["sweep.git.dirty"]) == ("main", "false")
    assert clean.tags["sweep.python"] == platform.python_version()
    assert clean.tags["sweep.host"] == socket.gethostname()
    assert clean.tags["sweep.version.optuna"] == metadata.version("optuna")
    assert "sweep.command" in clean.tags and "sweep.user" in clean.tags
    assert [a.path for a in store.list_artifacts(clean.run_id)] == ["lineage/packages.txt"]
    assert "sweep.lineage.git_diff" not in clean.tags
    packages = Path(clean.tags["sweep.lineage.packages"]).read_text().splitlines()
    names = [line.split("==")[0].lower() for line in packages]
    assert names == sorted(names)  # sorted by name
    assert f"optuna=={metadata.version('optuna')}" in packages
    assert all(line.count("==") == 1 for line in packages)
    # Every distribution once, named and versioned as its metadata says.
    installed = {
        d.metadata["Name"].lower(): f"{d.metadata['Name']}=={d.version}"
        for d in metadata.distributions()
    }
    assert packages == [installed[name] for name in sorted(installed)]

    (repo / "train.py").write_text("print(2)\n")  # uncommitted change
    clear_caches()  # as a new process would
    forget_written()
    with sweep.start_run("lineage", storage=storage_url, code_dir=repo) as r:
        pass
    dirty = store.get_run(r.run_id)
    assert dirty.tags["sweep.git.dirty"] == "true"
    assert dirty.tags["sweep.git.commit"] == clean.tags["sweep.git.commit"]
    artifacts = sorted(a.path for a in store.list_artifacts(dirty.run_id))
    assert artifacts == ["lineage/git.diff", "lineage/packages.txt"]
    diff_path = Path(dirty.tags["sweep.lineage.git_diff"])
    assert diff_path == Path(dirty.artifact_uri) / "lineage" / "git.diff"
    diff = diff_path.read_text()
    assert "-print(1)" in diff and "+print(2)" in diff


def test_lineage_files_are_written_once_per_process_then_referenced(
    storage_url: str, store: TrackingStore, repo: Path, tmp_path: Path
) -> None:
    (repo / "train.py").write_text("print(3)\n")
    ids = []
    for _ in range(3):
        with sweep.start_run(
            "once", storage=storage_url, artifact_root=str(tmp_path / "a"), code_dir=repo
        ) as r:
            ids.append(r.run_id)
    first, *later = (store.get_run(i) for i in ids)
    assert len(store.list_artifacts(first.run_id)) == 2
    for run in later:
        assert store.list_artifacts(run.run_id) == []
        for tag in ("sweep.lineage.packages", "sweep.lineage.git_diff"):
            assert run.tags[tag] == first.tags[tag]
            assert run.tags[tag].startswith(first.artifact_uri)
            assert Path(run.tags[tag]).is_file()


def fake_nvidia_smi(bin_dir: Path) -> None:
    bin_dir.mkdir()
    script = bin_dir / "nvidia-smi"
    script.write_text(
        "#!/bin/sh\n"
        'case "$1" in\n'
        "  --query-gpu=*) printf '"
        "0, GPU-aaaa-1111, NVIDIA H100 80GB HBM3, 550.54.15\\n"
        "1, GPU-bbbb-2222, NVIDIA H100 80GB HBM3, 550.54.15\\n"
        "2, GPU-cccc-3333, NVIDIA A100-SXM4-40GB, 550.54.15\\n' ;;\n"
        '  *) echo "| NVIDIA-SMI 550.54.15  Driver Version: 550.54.15  CUDA Version: 12.4 |" ;;\n'
        "esac\n"
    )
    script.chmod(0o755)


def test_gpu_model_count_driver_and_cuda_follow_cuda_visible_devices(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_nvidia_smi(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    assert gpu_tags(None) == {
        "sweep.gpu.count": "3",
        "sweep.gpu.model": "NVIDIA H100 80GB HBM3, NVIDIA A100-SXM4-40GB",
        "sweep.gpu.driver": "550.54.15",
        "sweep.gpu.cuda": "12.4",
    }
    assert gpu_tags("1")["sweep.gpu.count"] == "1"
    assert gpu_tags("GPU-cccc,0")["sweep.gpu.model"] == (
        "NVIDIA A100-SXM4-40GB, NVIDIA H100 80GB HBM3"
    )
    assert gpu_tags("0,7,1")["sweep.gpu.count"] == "1"  # CUDA stops at an unknown device
    assert gpu_tags("") == {} and gpu_tags("-1") == {}
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2")
    tags = environment_tags(str(tmp_path))
    assert (tags["sweep.gpu.count"], tags["sweep.gpu.model"]) == ("1", "NVIDIA A100-SXM4-40GB")


def test_no_gpu_tags_without_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing to run here
    assert gpu_tags(None) == {}
    assert not any(key.startswith("sweep.gpu.") for key in environment_tags(str(tmp_path)))


# -- trials: seeds, lineage, and every metric point ------------------------------------


def trial_runner(url: str, root: Path, name: str, objective: str, worker_index: int) -> TrialRunner:
    """A sweep's study, parent run and a worker's runner, as a launch sets them up."""
    return TrialRunner(sweep_context(url, root, name, objective), worker_index)


@pytest.mark.parametrize("objective", ["log_then_return", "log_then_raise"])
def test_a_trial_writes_every_point_and_records_its_seeds(
    storage_url: str,
    store: TrackingStore,
    objective: str,
    tmp_path: Path,
) -> None:
    name, path = f"probe-{objective}", f"logging_probe:{objective}"
    runner = trial_runner(storage_url, tmp_path / "art", name, path, worker_index=2)
    try:
        worker = runner.coordinator.register_worker("agent")
        claim = runner.coordinator.claim(worker, runner.run_seed)
        assert claim is not None
        outcome = runner.run(claim)
    finally:
        runner.close()
    expected = "COMPLETE" if objective == "log_then_return" else "FAIL"
    assert outcome.state == expected, outcome.error
    history = store.metric_history(outcome.run_id, "loss")
    assert [p.step for p in history] == list(range(POINTS))  # none lost, none twice
    run = store.get_run(outcome.run_id)
    assert run.metrics["loss"] == 1.0 / POINTS
    assert run.status is (RunStatus.FINISHED if expected == "COMPLETE" else RunStatus.FAILED)
    # The spec's seed, and the one worker 2's sampler draws with (seed + index + 1).
    assert (run.params["sweep.seed"], run.params["sweep.sampler_seed"]) == ("7", "10")
    assert run.tags["sweep.python"] == platform.python_version()
    assert Path(run.tags["sweep.lineage.packages"]).is_file()


def test_the_background_writer_flushes_an_open_run(storage_url: str, tmp_path: Path) -> None:
    with sweep.start_run("bg", storage=storage_url, artifact_root=str(tmp_path)) as run:
        for step in range(1000):
            sweep.log_metric("loss", 1.0, step)
        deadline = time.monotonic() + 10
        while count_points(storage_url, run.run_id) < 1000 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert count_points(storage_url, run.run_id) == 1000  # before the run ended
        sweep.log_metric("loss", 2.0)  # step 1000, written at the end
    assert count_points(storage_url, run.run_id) == 1001


def test_logging_from_many_threads_loses_nothing(
    storage_url: str, store: TrackingStore, tmp_path: Path
) -> None:
    with sweep.start_run("threads", storage=storage_url, artifact_root=str(tmp_path)) as run:

        def work() -> None:
            for _ in range(5000):
                run.log_metric("shared", 1.0)  # steps drawn under the buffer's lock

        threads = [threading.Thread(target=work) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    steps = [p.step for p in store.metric_history(run.run_id, "shared")]
    assert steps == list(range(20_000))


def test_a_failed_flush_keeps_its_points_and_the_end_reports_what_is_lost(
    storage_url: str, store: TrackingStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_retrying, "RETRY_WINDOW_S", 0.5)
    engine = sqlalchemy.create_engine(storage_url)

    away = False

    def take_table(gone: bool) -> None:  # the metrics table disappears: writes fail
        nonlocal away
        names = ("sweep_metrics", "sweep_metrics_away")
        source, target = names if gone else names[::-1]
        with engine.begin() as conn:
            conn.exec_driver_sql(f"ALTER TABLE {source} RENAME TO {target}")
        away = gone

    lost = pytest.raises(MetricFlushError, match=r"30 metric points of run \w+ could not")
    try:
        with lost, sweep.start_run("fail", storage=storage_url, artifact_root=str(tmp_path)) as run:
            take_table(gone=True)
            for step in range(60):
                sweep.log_metric("loss", 1.0, step)
            with pytest.raises(StorageError):
                run.flush()  # (or the background writer failed first: same points)
            for step in range(60, 100):
                sweep.log_metric("loss", 1.0, step)
            run.flush_in_background()  # fails again: logged, points kept
            take_table(gone=False)
            run.flush()  # the retry writes the 100 points, in order
            assert count_points(storage_url, run.run_id) == 100
            for step in range(100, 130):
                sweep.log_metric("loss", 1.0, step)
            take_table(gone=True)
    finally:
        if away:
            take_table(gone=False)
        engine.dispose()
    assert [p.step for p in store.metric_history(run.run_id, "loss")] == list(range(100))
    assert store.get_run(run.run_id).status is RunStatus.FAILED


def test_bad_metric_keys_are_refused_at_once(tmp_path: Path) -> None:
    with sweep.start_run("keys", artifact_root=str(tmp_path)) as run:
        for key in ("", "k" * 251, 3):
            with pytest.raises(InvalidValueError, match="metric key"):
                run.log_metric(key, 1.0)  # type: ignore[arg-type]


# -- datasets ---------------------------------------------------------------------------


def digest_in_another_process(expression: str) -> str:
    code = (
        "import numpy as np\n"
        "from pathlib import Path\n"
        "from sweep.tracking._datasets import digest_dataset\n"
        f"print(digest_dataset({expression}).digest)\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout.strip()


def test_dataset_digests_are_stable_and_tell_data_apart(tmp_path: Path) -> None:
    array = np.arange(12, dtype=np.float64).reshape(3, 4)
    digest = digest_dataset(array).digest
    assert digest.startswith("sha256:") and len(digest) == 7 + 64
    assert digest_dataset(array.copy()).digest == digest
    assert digest_dataset(np.asfortranarray(array)).digest == digest  # values, not layout
    assert digest_dataset(array.astype(">f8")).digest == digest  # nor byte order
    assert digest_dataset(array.tolist()).digest == digest  # a list of the same numbers
    changed = array.copy()
    changed[2, 3] = 11.5
    others = {
        digest_dataset(changed).digest,
        digest_dataset(array.astype(np.float32)).digest,
        digest_dataset(array.reshape(4, 3)).digest,
        digest_dataset(array[:2]).digest,
    }
    assert digest not in others and len(others) == 4
    expression = "np.arange(12, dtype=np.float64).reshape(3, 4)"
    assert digest_in_another_process(expression) == digest

    data = tmp_path / "train.csv"
    data.write_bytes(b"x,y\n1,2\n")
    found = digest_dataset(data)
    assert found.digest == "sha256:" + hashlib.sha256(b"x,y\n1,2\n").hexdigest()
    assert found.source == data.resolve().as_uri() and found.profile["size"] == 8
    assert digest_in_another_process(f"Path({str(data)!r})") == found.digest
    data.write_bytes(b"x,y\n1,3\n")
    assert digest_dataset(str(data)).digest != found.digest

    assert digest_dataset(b"abc").digest == digest_dataset(bytearray(b"abc")).digest
    assert digest_dataset(b"abc").digest != digest_dataset(b"abd").digest
    with pytest.raises(InvalidValueError, match="not an existing file"):
        digest_dataset(str(tmp_path / "missing.csv"))
    with pytest.raises(InvalidValueError, match="cannot digest a object"):
        digest_dataset(object())
    with pytest.raises(InvalidValueError, match="must hold numbers"):
        digest_dataset(["a", "b"])


def make_tree(root: Path, files: dict[str, bytes]) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return root


def test_directory_digests_follow_content_and_names_not_creation_order(tmp_path: Path) -> None:
    files = {"a.csv": b"1,2\n", "sub/b.csv": b"3,4\n", "sub/c/d.bin": b"\x00\x01"}
    first = make_tree(tmp_path / "one", files)
    second = make_tree(tmp_path / "two", dict(reversed(list(files.items()))))
    digest = digest_dataset(first).digest
    assert digest_dataset(second).digest == digest
    assert digest_dataset(first).profile == {"type": "directory", "files": 3, "size": 10}
    assert digest_in_another_process(f"Path({str(first)!r})") == digest
    (second / "sub" / "b.csv").rename(second / "sub" / "b2.csv")
    assert digest_dataset(second).digest != digest
    (first / "a.csv").write_bytes(b"1,2\n\n")
    assert digest_dataset(first).digest != digest


def test_pandas_digests_cover_columns_dtypes_and_values() -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0], "label": ["a", "b", "c"]})
    digest = digest_dataset(frame).digest
    assert digest_dataset(frame.copy()).digest == digest
    assert digest_dataset(frame.set_axis([7, 8, 9])).digest == digest  # the index is not data
    variants = [
        frame.assign(x=[1.0, 2.0, 4.0]),
        frame.rename(columns={"label": "y"}),
        frame.astype({"x": "float32"}),
        frame[["label", "x"]],
    ]
    assert len({digest, *(digest_dataset(v).digest for v in variants)}) == 5
    profile = digest_dataset(frame).profile
    assert (profile["type"], profile["rows"]) == ("DataFrame", 3)
    assert list(profile["columns"]) == ["x", "label"] and profile["columns"]["x"] == "float64"
    assert digest_dataset(frame["x"]).digest != digest_dataset(frame["x"] * 2).digest


def test_a_run_lists_its_datasets_in_the_store_and_the_cli(
    storage_url: str, store: TrackingStore, tmp_path: Path
) -> None:
    data = np.random.default_rng(0).normal(size=(100, 3))
    raw = tmp_path / "raw.csv"
    raw.write_text("a,b\n1,2\n")
    ids = []
    for _ in range(2):  # two runs over the same data
        with sweep.start_run("data", storage=storage_url, artifact_root=str(tmp_path)) as run:
            sweep.log_input(data.copy(), "train", source="s3://bucket/train.npy")
            sweep.log_input(data[:10], "val", context="validation")
            sweep.log_input(raw, "raw")
        ids.append(run.run_id)
    first, second = (store.get_run(i) for i in ids)
    assert [(i.name, i.context) for i in first.inputs] == [
        ("raw", "training"),
        ("train", "training"),
        ("val", "validation"),
    ]
    assert first.inputs == second.inputs  # same data, same digests
    train = first.inputs[1]
    assert train.digest == digest_dataset(data).digest
    assert train.source == "s3://bucket/train.npy"
    assert train.profile == {"type": "ndarray", "shape": [100, 3], "dtype": "float64", "rows": 100}
    assert first.inputs[0].source == raw.resolve().as_uri()
    assert first.inputs[2].digest != train.digest

    shown = CliRunner().invoke(cli, ["runs", "show", first.run_id, "--storage", storage_url])
    assert shown.exit_code == 0, shown.output
    assert "datasets:" in shown.output
    assert f"train (training) {train.digest[:19]}  s3://bucket/train.npy" in shown.output
    as_json = CliRunner().invoke(
        cli, ["runs", "show", first.run_id, "--storage", storage_url, "--json"]
    )
    inputs = json.loads(as_json.output)["run"]["inputs"]
    assert [(i["name"], i["digest"]) for i in inputs][1] == ("train", train.digest)
    assert inputs[1]["profile"]["shape"] == [100, 3]


# -- artifacts --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["local", "file-url", "memory"])
def test_artifacts_on_local_paths_and_fsspec_urls(
    storage_url: str, store: TrackingStore, tmp_path: Path, kind: str
) -> None:
    root = {
        "local": str(tmp_path / "art"),
        "file-url": (tmp_path / "art").as_uri(),
        "memory": f"memory://sweep-{uuid.uuid4().hex[:8]}/artifacts",
    }[kind]
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    folder = make_tree(tmp_path / "folder", {"a.txt": b"aa", "deep/b.txt": b"bbb"})
    model = LinearRegression().fit([[0.0], [1.0]], [0.0, 2.0])
    with sweep.start_run("art", storage=storage_url, artifact_root=root) as run:
        stored_file = sweep.log_artifact(notes, "docs/notes.txt")
        stored_dir = sweep.log_artifact(folder, "data")
        stored_text = sweep.log_text("some text", "notes/readme.md")
        stored_model = sweep.log_model(model)
        for bad in ("../escape.txt", "/etc/passwd", "~/x", "a/../../b", "..\\up", ".", ""):
            with pytest.raises(ArtifactPathError):
                sweep.log_artifact(notes, bad)
            with pytest.raises(ArtifactPathError):
                sweep.log_text("x", bad)
            with pytest.raises(ArtifactPathError):
                sweep.log_model(model, bad)
    if kind == "memory":
        assert stored_file.startswith(root) and run.run.artifact_uri.startswith(root)
    with fsspec.open(stored_file, "rt") as handle:
        assert handle.read() == "hello"
    with fsspec.open(f"{stored_dir}/deep/b.txt", "rb") as handle:
        assert handle.read() == b"bbb"
    with fsspec.open(stored_text, "rt") as handle:
        assert handle.read() == "some text"
    assert load_model_dir(stored_model).predict([[0.5]]) == pytest.approx([1.0])
    listed = {a.path: (a.kind, a.size) for a in store.list_artifacts(run.run_id)}
    assert listed["docs/notes.txt"] == ("file", 5)
    assert listed["data"] == ("dir", 5)
    assert listed["notes/readme.md"] == ("file", 9)
    assert listed["model"][0] == "model" and "lineage/packages.txt" in listed
    # The registry loads a model from the same place, whatever the store.
    ModelRegistry(store.db).create_model_version("art-model", stored_model, run_id=run.run_id)
    loaded = sweep.load_model("models:/art-model/1", storage=storage_url)
    assert loaded.predict([[1.0]]) == pytest.approx([2.0])
    if kind != "memory":
        assert not (tmp_path / "art" / "escape.txt").exists()
        assert not (tmp_path / "escape.txt").exists()


def test_an_unknown_url_scheme_says_what_to_install() -> None:
    refused = pytest.raises(ArtifactPathError, match="fsspec package")  # writing the lineage
    with refused, sweep.start_run("scheme", artifact_root="nosuchfs://bucket/x"):
        pass
