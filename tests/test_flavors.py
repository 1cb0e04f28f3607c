"""Model flavors: each round-trips through a run, the registry and another process in
another directory; paths are stored as is; failed saves leave nothing; missing loaders
name their package; `sweep models register` and `download`."""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.linear_model import LinearRegression

import sweep
from sweep.cli import cli
from sweep.errors import ModelSaveError, NotFoundError, RegistryError
from sweep.flavors import MODEL_META, load_model_dir, read_model_info, save_model
from sweep.registry import ModelRegistry, download_model, register_model
from sweep.storage import Database
from tests import flavor_models

REPO = Path(__file__).resolve().parents[1]
#: PyTorch's Linux wheels on PyPI pull in ~3 GB of CUDA libraries (minutes to install),
#: so the README's test command leaves torch out and these tests skip on a laptop without
#: it; CI (.ci/run) installs torch first, and there they run, never skip.
needs_torch = pytest.mark.skipif(
    flavor_models.torch is None and os.environ.get("CI", "").lower() not in ("1", "true", "yes"),
    reason="torch is not installed (pip install 'sweep[torch]')",
)


def _need(module: str) -> Any:
    """``module``, skipping the test where it is not installed, except in CI (which
    installs the test extra, so a missing module there is a failure)."""
    if os.environ.get("CI"):
        return importlib.import_module(module)
    return pytest.importorskip(module)


@pytest.fixture
def registry(sqlite_url: str) -> Any:
    db = Database(sqlite_url)
    db.ensure_schema()
    yield ModelRegistry(db)
    db.dispose()


def _log(storage: str, root: Path, model: Any, **options: Any) -> tuple[str, str]:
    """Log ``model`` in a run; returns (run id, where it was stored)."""
    with sweep.start_run("flavors", storage=storage, artifact_root=str(root)) as run:
        stored = sweep.log_model(model, **options)
    return run.run_id, stored


def _load_elsewhere(storage: str, uri: str, code: str, where: Path) -> str:
    """Run ``code`` (with ``model`` loaded from ``uri``) in a new Python process in
    another directory; returns what it printed."""
    where.mkdir(parents=True, exist_ok=True)
    script = f"import sweep\nmodel = sweep.load_model({uri!r}, storage={storage!r})\n{code}\n"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=where, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_sklearn_round_trips_with_its_metadata(
    sqlite_url: str, registry: ModelRegistry, tmp_path: Path
) -> None:
    model = LinearRegression().fit([[0.0, 0.0], [1.0, 1.0]], [0.0, 2.0])
    example = np.array([[0.5, 0.5]], dtype=np.float64)
    run_id, stored = _log(sqlite_url, tmp_path / "art", model, input_example=example)
    info = read_model_info(stored)
    assert info.flavor == "sklearn" and info.loader["file"] == "model.joblib"
    assert info.python == ".".join(map(str, sys.version_info[:3]))
    assert {"sweep", "scikit-learn", "joblib", "numpy"} <= set(info.packages)
    assert info.signature == {"inputs": [{"type": "tensor", "dtype": "float64", "shape": [-1, 2]}]}
    for file in info.files:  # sizes and digests of what is really there
        data = (Path(stored) / file.path).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (file.size, file.sha256)
    assert {f.path for f in info.files} == {"model.joblib", "input_example.json"}
    saved_example = json.loads((Path(stored) / "input_example.json").read_text())
    assert saved_example["data"] == [[0.5, 0.5]]
    registry.create_model_version("lin", stored, run_id=run_id)
    registry.set_alias("lin", "champion", 1)
    printed = _load_elsewhere(
        sqlite_url, "models:/lin@champion", "print(model.predict([[2.0, 2.0]])[0])", tmp_path / "o"
    )
    assert float(printed) == pytest.approx(4.0)


def test_onnx_objects_and_files_round_trip_with_their_signature(
    sqlite_url: str, registry: ModelRegistry, tmp_path: Path
) -> None:
    onnx = _need("onnx")
    proto = flavor_models.onnx_affine(scale=3.0)
    _, from_object = _log(sqlite_url, tmp_path / "art", proto)
    written = tmp_path / "exported.onnx"
    onnx.save(flavor_models.onnx_affine(scale=5.0), str(written))
    _, from_file = _log(sqlite_url, tmp_path / "art", written, name="exported")
    for stored in (from_object, from_file):
        info = read_model_info(stored)
        assert info.flavor == "onnx" and info.packages["onnx"] == onnx.__version__
        assert info.signature == {
            "inputs": [{"name": "x", "dtype": "FLOAT", "shape": ["N", 2]}],
            "outputs": [{"name": "y", "dtype": "FLOAT", "shape": ["N", 2]}],
        }
    assert (Path(from_file) / "model.onnx").read_bytes() == written.read_bytes()
    registry.create_model_version("affine", from_file)
    code = (
        "import numpy as np\nfrom onnx.reference import ReferenceEvaluator\n"
        "x = np.array([[1.0, 2.0]], dtype=np.float32)\n"
        "print(ReferenceEvaluator(model).run(None, {'x': x})[0].tolist())"
    )
    printed = _load_elsewhere(sqlite_url, "models:/affine/1", code, tmp_path / "o")
    assert printed == "[[6.0, 11.0]]"


def test_a_path_is_stored_as_is_never_pickled(
    sqlite_url: str, registry: ModelRegistry, tmp_path: Path
) -> None:
    checkpoint = tmp_path / "ckpt"
    (checkpoint / "shards").mkdir(parents=True)
    (checkpoint / "config.json").write_text('{"layers": 2}')
    (checkpoint / "shards" / "0.bin").write_bytes(bytes(range(256)))
    single = tmp_path / "weights.bin"
    single.write_bytes(b"\x00\x01weights")
    _, stored_dir = _log(sqlite_url, tmp_path / "art", checkpoint, name="ckpt")
    _, stored_file = _log(sqlite_url, tmp_path / "art", str(single), name="single")
    assert read_model_info(stored_dir).flavor == "files"
    assert {f.path for f in read_model_info(stored_dir).files} == {
        "config.json",
        "shards/0.bin",
    }
    registry.create_model_version("ckpt", stored_dir)
    registry.create_model_version("single", stored_file)
    loaded = sweep.load_model("models:/ckpt/1", storage=sqlite_url)
    assert (loaded / "shards" / "0.bin").read_bytes() == bytes(range(256))
    file = sweep.load_model("models:/single/1", storage=sqlite_url)
    assert file.name == "weights.bin" and file.read_bytes() == b"\x00\x01weights"
    with pytest.raises(ModelSaveError, match="no such file or directory.*path of a model"):
        _log(sqlite_url, tmp_path / "art", str(tmp_path / "typo.pt"))


def test_a_checkpoint_registered_by_hand_loads_as_files(
    registry: ModelRegistry, sqlite_url: str, tmp_path: Path
) -> None:
    """A directory without sweep-model.json (the training code's own) is its files, not
    "artifact root moved?"; a source that is gone says so."""
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    (checkpoint / "model.safetensors").write_bytes(b"st")
    registry.create_model_version("raw", str(checkpoint))
    registry.create_model_version("raw", str(tmp_path / "gone"))
    assert sweep.load_model("models:/raw/1", storage=sqlite_url) == checkpoint
    assert sweep.load_model("models:/raw/1", storage=sqlite_url, as_path=True) == checkpoint
    with pytest.raises(RegistryError, match="nothing is there; was the artifact root moved"):
        sweep.load_model("models:/raw/2", storage=sqlite_url)


def test_a_failed_save_leaves_nothing_and_says_why(sqlite_url: str, tmp_path: Path) -> None:
    root = tmp_path / "art"
    good = LinearRegression().fit([[0.0], [1.0]], [0.0, 1.0])
    with sweep.start_run("flavors", storage=sqlite_url, artifact_root=str(root)) as run:
        stored = sweep.log_model(good)
        before = {p: p.read_bytes() for p in Path(stored).rglob("*") if p.is_file()}
        with pytest.raises(ModelSaveError, match="'joblib' flavor failed: .*nothing was written"):
            sweep.log_model(threading.Lock())  # joblib cannot pickle a lock
        with pytest.raises(ModelSaveError, match="'joblib' flavor failed"):
            sweep.log_model(threading.Lock(), "other")
    run_dir = Path(run.run.artifact_uri)
    assert not (run_dir / "other").exists()
    assert [p.name for p in run_dir.iterdir() if p.name.startswith(".")] == []
    assert {p: p.read_bytes() for p in Path(stored).rglob("*") if p.is_file()} == before
    assert load_model_dir(stored).predict([[1.0]]) == pytest.approx([1.0])
    with pytest.raises(ModelSaveError, match="unknown model flavor 'keras'.*sklearn"):
        save_model(good, str(tmp_path / "x"), flavor="keras")
    assert not (tmp_path / "x").exists()


def test_models_on_an_object_store_round_trip_and_are_checked(
    sqlite_url: str, registry: ModelRegistry, tmp_path: Path
) -> None:
    import fsspec

    location = f"memory://sweep-{uuid.uuid4().hex[:8]}/models/m"
    save_model(LinearRegression().fit([[0.0], [1.0]], [1.0, 3.0]), location)
    registry.create_model_version("remote", location)
    assert sweep.load_model("models:/remote/1", storage=sqlite_url).predict([[1.0]]) == (
        pytest.approx([3.0])
    )
    local = download_model("models:/remote/1", tmp_path / "dl", storage=sqlite_url)
    assert sorted(p.name for p in local.iterdir()) == ["model.joblib", MODEL_META]
    # A failed upload to an object store leaves no model there either.
    broken = f"memory://sweep-{uuid.uuid4().hex[:8]}/models/b"
    with pytest.raises(ModelSaveError):
        save_model(threading.Lock(), broken)
    fs = fsspec.filesystem("memory")
    assert not fs.exists(broken.removeprefix("memory://"))
    # Files changed after saving are caught when the files are fetched.
    fs.pipe_file(f"{location.removeprefix('memory://')}/model.joblib", b"tampered")
    with pytest.raises(RegistryError, match="does not match the SHA-256"):
        download_model("models:/remote/1", tmp_path / "dl2", storage=sqlite_url)


def test_a_missing_loader_names_the_package_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _need("onnx")
    stored = str(tmp_path / "m")
    save_model(flavor_models.onnx_affine(), stored)
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if onnx were not installed
    with pytest.raises(RegistryError, match="needs the 'onnx' package.*pip install onnx"):
        load_model_dir(stored)
    assert (load_model_dir(stored, as_path=True) / "model.onnx").is_file()


def test_models_saved_by_the_first_release_still_load(tmp_path: Path) -> None:
    import joblib

    old = tmp_path / "old"
    old.mkdir()
    joblib.dump(LinearRegression().fit([[0.0], [1.0]], [0.0, 5.0]), old / "model.joblib")
    (old / MODEL_META).write_text(json.dumps({"format": "joblib", "file": "model.joblib"}))
    assert load_model_dir(old).predict([[1.0]]) == pytest.approx([5.0])


def test_cli_registers_paths_and_run_artifacts_and_downloads(
    sqlite_url: str, registry: ModelRegistry, tmp_path: Path
) -> None:
    runner = CliRunner()
    checkpoint = tmp_path / "outside"
    checkpoint.mkdir()
    (checkpoint / "weights.bin").write_bytes(b"w" * 10)
    root = tmp_path / "store"
    result = runner.invoke(
        cli,
        ["models", "register", "ext", str(checkpoint), "--alias", "champion"]
        + ["--artifact-root", str(root), "--storage", sqlite_url],
    )
    assert result.exit_code == 0, result.output
    assert "registered ext version 1 @champion" in result.output
    version = registry.get_by_alias("ext", "champion")
    assert version.source.startswith(str(root / "registry" / "ext"))
    (checkpoint / "weights.bin").unlink()  # the registered copy does not depend on it
    result = runner.invoke(
        cli, ["models", "download", "ext@champion", str(tmp_path / "dl"), "--storage", sqlite_url]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "dl" / "weights.bin").read_bytes() == b"w" * 10

    run_id, _ = _log(sqlite_url, tmp_path / "art", LinearRegression().fit([[0.0]], [1.0]))
    result = runner.invoke(
        cli, ["models", "register", "lin", f"runs:/{run_id}/model", "--storage", sqlite_url]
    )
    assert result.exit_code == 0, result.output
    assert registry.lineage("lin", 1).run_id == run_id
    assert sweep.load_model("models:/lin/1", storage=sqlite_url).predict([[0.0]]) == (
        pytest.approx([1.0])
    )
    result = runner.invoke(
        cli, ["models", "register", "lin", f"runs:/{run_id}/nope", "--storage", sqlite_url]
    )
    assert result.exit_code != 0 and "nothing is there" in result.output
    with pytest.raises(NotFoundError, match="no such file or directory"):
        register_model(registry, "x", tmp_path / "missing")
    assert [v.version for v in registry.list_versions("lin")] == [1]


@pytest.mark.parametrize("flavor", ["pytorch", "pytorch-module", "torchscript"])
@pytest.mark.torch
@needs_torch
@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_pytorch_flavors_round_trip(
    sqlite_url: str, registry: ModelRegistry, tmp_path: Path, flavor: str
) -> None:
    torch = flavor_models.torch
    torch.manual_seed(0)
    net = flavor_models.TinyNet(width=4)
    x = torch.ones(1, 4)
    expected = float(net(x).detach()[0, 0])
    model: Any = torch.jit.script(net) if flavor == "torchscript" else net
    options: dict[str, Any] = {"input_example": x}
    if flavor == "pytorch":
        options["init_kwargs"] = {"width": 4}
    if flavor == "pytorch-module":
        options["flavor"] = flavor  # the default for a module is its state_dict
    _, stored = _log(sqlite_url, tmp_path / "art", model, **options)
    info = read_model_info(stored)
    assert info.flavor == flavor
    assert torch.__version__.startswith(info.packages["torch"])  # '2.x.y' of '2.x.y+cpu'
    assert info.signature == {"inputs": [{"type": "tensor", "dtype": "float32", "shape": [-1, 4]}]}
    registry.create_model_version("net", stored)
    code = "import torch\nprint(float(model(torch.ones(1, 4)).detach()[0, 0]))"
    printed = _load_elsewhere(sqlite_url, "models:/net/1", code, tmp_path / "o")
    assert float(printed) == pytest.approx(expected)


@pytest.mark.torch
@needs_torch
@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_pytorch_saves_that_cannot_work_fail_cleanly(sqlite_url: str, tmp_path: Path) -> None:
    torch = flavor_models.torch

    class Local(torch.nn.Module):
        def forward(self, x: Any) -> Any:
            return {1: x}[len(x.shape)]  # not scriptable: a dict with int keys from a call

    with sweep.start_run("flavors", storage=sqlite_url, artifact_root=str(tmp_path)) as run:
        with pytest.raises(ModelSaveError, match="cannot be imported.*flavor='torchscript'"):
            sweep.log_model(Local())
        with pytest.raises(ModelSaveError, match="'torchscript' flavor failed"):
            sweep.log_model(Local(), "scripted", flavor="torchscript")
    assert sorted(p.name for p in Path(run.run.artifact_uri).iterdir()) == ["lineage"]


@pytest.mark.ray
@pytest.mark.usefixtures("local_ray")
def test_models_logged_on_ray_workers_register_and_load_elsewhere(
    sqlite_url: str, registry: ModelRegistry, tmp_path: Path
) -> None:
    _need("onnx")
    from tests.helpers import write_toy_spec

    spec = write_toy_spec(
        tmp_path,
        name="flavored",
        objective="tests.objectives.flavored:objective",
        code_dir=str(REPO),
        parameters={},
        pruner={"name": "nop"},
        budget={"n_trials": 4},
        registry={"model_name": "affine", "required": True},
    )
    result = sweep.launch(spec, storage=sqlite_url)
    assert result.counts.failed == 1
    db = registry.db
    first = next(
        run
        for run in sweep.TrackingStore(db).list_runs(parent_run_id=result.parent_run_id)
        if run.tags["sweep.trial_number"] == "0"
    )
    assert "ModelSaveError" in first.tags["sweep.error"]
    assert "'joblib' flavor failed" in first.tags["sweep.error"]
    assert not (Path(first.artifact_uri) / "model").exists()

    version = registry.get_by_alias("affine", "challenger")
    assert read_model_info(version.source).flavor == "onnx"
    best_x = float(registry.lineage("affine", version.version).params["x"])
    code = (
        "import numpy as np\nfrom onnx.reference import ReferenceEvaluator\n"
        "x = np.array([[1.0, 1.0]], dtype=np.float32)\n"
        "print(ReferenceEvaluator(model).run(None, {'x': x})[0][0][0])"
    )
    printed = _load_elsewhere(sqlite_url, "models:/affine@challenger", code, tmp_path / "o")
    assert float(printed) == pytest.approx(best_x * 1.0 + 1.0, rel=1e-6)

    ckpt = register_model(registry, "ckpt", f"runs:/{version.run_id}/weights", alias="best")
    assert ckpt.run_id == version.run_id
    code = "print((model / 'x.txt').read_text())"
    printed = _load_elsewhere(sqlite_url, "models:/ckpt@best", code, tmp_path / "o2")
    assert float(printed) == pytest.approx(best_x)


def test_autolog_logs_sklearn_fits_in_the_active_run(sqlite_url: str, tmp_path: Path) -> None:
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.array([[0.0], [1.0], [2.0], [3.0]])
    y = np.array([0.0, 2.0, 4.0, 6.0])
    sweep.autolog()
    try:
        LinearRegression().fit(x, y)  # outside a run: fits, logs nothing, no error
        with sweep.start_run("auto", storage=sqlite_url, artifact_root=str(tmp_path)) as run:
            sweep.log_param("alpha", "searched")
            pipeline = make_pipeline(StandardScaler(), Ridge(alpha=0.5)).fit(x, y)
    finally:
        sweep.autolog(disable=True)
    logged = sweep.TrackingStore(Database(sqlite_url)).get_run(run.run_id)
    assert logged.params["alpha"] == "searched"  # the trial's own param is left alone
    assert "Pipeline.steps" in logged.params and "Pipeline.memory" in logged.params
    assert not any(k.startswith(("Ridge.", "StandardScaler.")) for k in logged.params)
    assert logged.metrics["training_score"] == pytest.approx(pipeline.score(x, y))
    stored = str(Path(run.run.artifact_uri) / "model")
    assert read_model_info(stored).flavor == "sklearn"
    assert load_model_dir(stored).predict([[4.0]]) == pytest.approx(pipeline.predict([[4.0]]))
    with sweep.start_run("auto", storage=sqlite_url, artifact_root=str(tmp_path)) as after:
        LinearRegression().fit(x, y)  # disabled: nothing logged
    assert not (Path(after.run.artifact_uri) / "model").exists()
