"""Artifact files under a run's artifact location, and the on-disk model format.

An artifact location is a local (or mounted, shared) path by default, or an fsspec URL
(``s3://bucket/prefix`` with the ``sweep[s3]`` extra, ``memory://...``, ``gs://...``
with its fsspec package). ``file://`` URLs are local paths. Locations are plain strings:
``pathlib`` would fold a URL's ``//``.
"""

from __future__ import annotations

import json
import os
import platform
import posixpath
import re
import shutil
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from sweep.errors import ArtifactPathError, RegistryError

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

#: File inside a model directory that says how to load it; keeps the format open.
MODEL_META = "sweep-model.json"
MODEL_FILE = "model.joblib"

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_LOCAL_PROTOCOLS = ("file", "local")


def is_url(location: str) -> bool:
    """Whether ``location`` is a URL (``scheme://...``) rather than a plain path."""
    return bool(_URL.match(location))


def _local_path(location: str) -> Path | None:
    """The local path ``location`` names (a plain path or a ``file://`` URL), else None."""
    match = _URL.match(location)
    if match is None:
        return Path(location)
    if match.group(1).lower() in _LOCAL_PROTOCOLS:
        return Path(location[match.end() :] or "/")
    return None


def _filesystem(location: str) -> tuple[AbstractFileSystem, str]:
    import fsspec

    try:
        return fsspec.core.url_to_fs(location)
    except (ImportError, ValueError) as exc:
        raise ArtifactPathError(
            f"cannot open the artifact location {location!r}: {exc}; for s3:// install "
            "sweep[s3] (pip install 'sweep[s3]'), for other schemes their fsspec package"
        ) from exc


def join_location(root: str, *parts: str) -> str:
    """``root/parts...`` for a path or a URL."""
    if is_url(root):
        return "/".join([root.rstrip("/"), *parts])
    return str(Path(root, *parts))


def _name_parts(name: str) -> tuple[str, ...]:
    pure = PurePosixPath(name.replace("\\", "/"))
    if not pure.parts or pure.is_absolute() or ".." in pure.parts or name.startswith("~"):
        raise ArtifactPathError(
            f"artifact name {name!r} is not allowed: use a relative path inside the run, "
            "without '..' (for example 'plots/loss.png')"
        )
    return pure.parts


def safe_artifact_path(artifact_uri: str, name: str) -> Path:
    """``artifact_uri / name`` on the local filesystem, refusing names that would leave
    the run's directory (``..``, absolute, ``~``, or through a symbolic link)."""
    parts = _name_parts(name)
    root = Path(artifact_uri).resolve()
    target = (root / Path(*parts)).resolve()
    if root != target and root not in target.parents:
        raise ArtifactPathError(f"artifact name {name!r} resolves outside the run's directory")
    return target


def artifact_location(artifact_uri: str, name: str) -> str:
    """Where artifact ``name`` of the run at ``artifact_uri`` lives: a local path, or a
    URL under the run's URL. Names that would escape the run are refused either way."""
    local = _local_path(artifact_uri)
    if local is not None:
        return str(safe_artifact_path(str(local), name))
    return join_location(artifact_uri, *_name_parts(name))


#: The folder of a run's artifacts that holds the lineage files other runs point at
#: (``sweep.lineage.*`` tags): written by sweep alone.
RESERVED_FOLDER = "lineage"


def user_artifact_location(artifact_uri: str, name: str) -> str:
    """:func:`artifact_location` for an artifact the user logs: names under
    ``lineage/`` (any case) are refused, since the package list and diff there are
    shared by every run of the process and must not be overwritten by one of them."""
    parts = _name_parts(name)
    if parts[0].lower() == RESERVED_FOLDER:
        raise ArtifactPathError(
            f"artifact name {name!r} is not allowed: '{RESERVED_FOLDER}/' holds the lineage "
            "files that other runs point at; choose another folder, e.g. 'my-lineage/'"
        )
    return artifact_location(artifact_uri, name)


def copy_artifact(source: Path, location: str) -> tuple[str, int]:
    """Copy a local file or directory to ``location``; returns its kind and size in bytes."""
    if not source.exists():
        raise FileNotFoundError(f"cannot log artifact {str(source)!r}: no such file or directory")
    local = _local_path(location)
    if local is not None:
        local.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, local, dirs_exist_ok=True)
            return "dir", sum(p.stat().st_size for p in local.rglob("*") if p.is_file())
        shutil.copy2(source, local)
        return "file", local.stat().st_size
    fs, path = _filesystem(location)
    if not source.is_dir():
        _put(fs, source, path)
        return "file", source.stat().st_size
    size = 0
    for file in sorted(p for p in source.rglob("*") if p.is_file()):
        _put(fs, file, f"{path}/{file.relative_to(source).as_posix()}")
        size += file.stat().st_size
    return "dir", size


def _put(fs: AbstractFileSystem, source: Path, path: str) -> None:
    fs.makedirs(posixpath.dirname(path), exist_ok=True)
    fs.put_file(str(source), path)


def write_bytes(location: str, data: bytes) -> int:
    """Write ``data`` as the file at ``location``; returns its size."""
    local = _local_path(location)
    if local is not None:
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(data)
        return len(data)
    fs, path = _filesystem(location)
    fs.makedirs(posixpath.dirname(path), exist_ok=True)
    fs.pipe_file(path, data)
    return len(data)


def save_model(model: Any, location: str) -> int:
    """Write ``model`` with joblib plus a small metadata file; returns bytes written."""
    import joblib

    meta = {
        "format": "joblib",
        "file": MODEL_FILE,
        "class": f"{type(model).__module__}.{type(model).__qualname__}",
        "python": platform.python_version(),
    }
    meta_bytes = json.dumps(meta, indent=2).encode()
    local = _local_path(location)
    if local is not None:
        local.mkdir(parents=True, exist_ok=True)
        joblib.dump(model, local / MODEL_FILE)
        (local / MODEL_META).write_bytes(meta_bytes)
        return sum(p.stat().st_size for p in local.iterdir() if p.is_file())
    fs, path = _filesystem(location)
    fs.makedirs(path, exist_ok=True)
    with fs.open(f"{path}/{MODEL_FILE}", "wb") as handle:
        joblib.dump(model, handle)
    fs.pipe_file(f"{path}/{MODEL_META}", meta_bytes)
    return int(fs.size(f"{path}/{MODEL_FILE}")) + len(meta_bytes)


def load_model_dir(location: str | os.PathLike[str]) -> Any:
    """Load the model saved by :func:`save_model` at ``location`` (a path or a URL)."""
    text = os.fspath(location)
    local = _local_path(text)
    if local is not None:
        meta_path = local / MODEL_META
        if not meta_path.is_file():
            raise _missing_model(text)
        meta = _model_meta(meta_path.read_text(), text)
        import joblib

        return joblib.load(local / meta["file"])
    fs, path = _filesystem(text)
    if not fs.isfile(f"{path}/{MODEL_META}"):
        raise _missing_model(text)
    meta = _model_meta(fs.cat_file(f"{path}/{MODEL_META}").decode(), text)
    import joblib

    with fs.open(f"{path}/{meta['file']}", "rb") as handle:
        return joblib.load(handle)


def _model_meta(text: str, location: str) -> dict[str, Any]:
    meta: dict[str, Any] = json.loads(text)
    if meta.get("format") != "joblib":
        raise RegistryError(f"model at {location} has unknown format {meta.get('format')!r}")
    return meta


def _missing_model(location: str) -> RegistryError:
    return RegistryError(
        f"no model at {location}: {MODEL_META} is missing; was the artifact root moved? "
        "Point SWEEP_ARTIFACT_ROOT or the experiment's artifact root at the shared path"
    )
