"""Artifact files under a run's artifact location (models: :mod:`sweep.flavors`).

An artifact location is a local (or mounted, shared) path by default, or an fsspec URL
(``s3://bucket/prefix`` with the ``sweep[s3]`` extra, ``memory://...``, ``gs://...``
with its fsspec package). ``file://`` URLs are local paths. Locations are plain strings:
``pathlib`` would fold a URL's ``//``.
"""

from __future__ import annotations

import os
import posixpath
import re
import shutil
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from sweep.errors import ArtifactPathError

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

#: The environment variable naming the artifact root of new experiments.
ARTIFACT_ROOT_ENV = "SWEEP_ARTIFACT_ROOT"
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_LOCAL_PROTOCOLS = ("file", "local")


def is_url(location: str) -> bool:
    """Whether ``location`` is a URL (``scheme://...``) rather than a plain path."""
    return bool(_URL.match(location))


def local_path(location: str) -> Path | None:
    """The local path ``location`` names (a plain path or a ``file://`` URL), else None."""
    match = _URL.match(location)
    if match is None:
        return Path(location)
    if match.group(1).lower() in _LOCAL_PROTOCOLS:
        return Path(location[match.end() :] or "/")
    return None


def filesystem(location: str) -> tuple[AbstractFileSystem, str]:
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
    local = local_path(artifact_uri)
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
    local = local_path(location)
    if local is not None:
        local.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, local, dirs_exist_ok=True)
            return "dir", sum(p.stat().st_size for p in local.rglob("*") if p.is_file())
        shutil.copy2(source, local)
        return "file", local.stat().st_size
    fs, path = filesystem(location)
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
    local = local_path(location)
    if local is not None:
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(data)
        return len(data)
    fs, path = filesystem(location)
    fs.makedirs(posixpath.dirname(path), exist_ok=True)
    fs.pipe_file(path, data)
    return len(data)


def resolve_artifact_root(explicit: str | None = None) -> str:
    """Where new experiments keep artifacts: ``explicit``, else ``SWEEP_ARTIFACT_ROOT``,
    else ``artifacts`` under the sweep home; local paths made absolute."""
    from sweep.storage import default_home

    root = explicit or os.environ.get(ARTIFACT_ROOT_ENV)
    if not root:
        return str(default_home() / "artifacts")
    return root if is_url(root) else str(Path(root).expanduser().resolve())
