"""Artifact files under a run's artifact directory, and the on-disk model format."""

from __future__ import annotations

import json
import platform
import shutil
from pathlib import Path, PurePosixPath
from typing import Any

from sweep.errors import ArtifactPathError, RegistryError

#: File inside a model directory that says how to load it; keeps the format open.
MODEL_META = "sweep-model.json"
MODEL_FILE = "model.joblib"


def safe_artifact_path(artifact_uri: str, name: str) -> Path:
    """``artifact_uri / name``, refusing names that would leave the run's directory."""
    pure = PurePosixPath(name.replace("\\", "/"))
    if not name or pure.is_absolute() or ".." in pure.parts or name.startswith("~"):
        raise ArtifactPathError(
            f"artifact name {name!r} is not allowed: use a relative path inside the run, "
            "without '..' (for example 'plots/loss.png')"
        )
    root = Path(artifact_uri).resolve()
    target = (root / Path(*pure.parts)).resolve()
    if root != target and root not in target.parents:
        raise ArtifactPathError(f"artifact name {name!r} resolves outside the run's directory")
    return target


def copy_artifact(source: Path, target: Path) -> tuple[str, int]:
    """Copy a file or directory; returns its kind and size in bytes."""
    if not source.exists():
        raise FileNotFoundError(f"cannot log artifact {str(source)!r}: no such file or directory")
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target, dirs_exist_ok=True)
        return "dir", sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
    shutil.copy2(source, target)
    return "file", target.stat().st_size


def save_model(model: Any, directory: Path) -> int:
    """Write ``model`` with joblib plus a small metadata file; returns bytes written."""
    import joblib

    directory.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, directory / MODEL_FILE)
    meta = {
        "format": "joblib",
        "file": MODEL_FILE,
        "class": f"{type(model).__module__}.{type(model).__qualname__}",
        "python": platform.python_version(),
    }
    (directory / MODEL_META).write_text(json.dumps(meta, indent=2))
    return sum(p.stat().st_size for p in directory.iterdir() if p.is_file())


def load_model_dir(directory: Path) -> Any:
    meta_path = directory / MODEL_META
    if not meta_path.is_file():
        raise RegistryError(
            f"no model at {directory}: {MODEL_META} is missing; was the artifact root moved? "
            "Point SWEEP_ARTIFACT_ROOT or the experiment's artifact root at the shared path"
        )
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != "joblib":
        raise RegistryError(f"model at {directory} has unknown format {meta.get('format')!r}")
    import joblib

    return joblib.load(directory / meta["file"])
