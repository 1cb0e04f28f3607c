"""Reading a model directory back: its metadata, its files, the model object."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from sweep.errors import RegistryError
from sweep.flavors._meta import MODEL_META, ModelInfo, sha256
from sweep.flavors._registry import FLAVORS
from sweep.tracking.artifacts import filesystem, local_path


def read_model_info(location: str | os.PathLike[str]) -> ModelInfo:
    """The metadata of the model at ``location``. A file or directory without
    ``sweep-model.json`` (a checkpoint registered as it is) reads as flavor ``files``."""
    text = os.fspath(location)
    local = local_path(text)
    if local is not None:
        if (local / MODEL_META).is_file():
            return ModelInfo.from_json((local / MODEL_META).read_text(), text)
        if local.exists():
            return ModelInfo("files", {"path": "."})
        raise _missing(text)
    fs, path = filesystem(text)
    if fs.isfile(f"{path}/{MODEL_META}"):
        return ModelInfo.from_json(fs.cat_file(f"{path}/{MODEL_META}").decode(), text)
    if fs.exists(path):
        return ModelInfo("files", {"path": "."})
    raise _missing(text)


def model_path(location: str | os.PathLike[str], into: Path | None = None) -> Path:
    """A local directory (or, for a bare file, the file) holding the model's files: the
    location itself when it is local and ``into`` is None, else a copy in ``into`` (a
    new temporary directory when None), each file checked against its SHA-256."""
    text = os.fspath(location)
    info = read_model_info(text)
    local = local_path(text)
    if local is not None and into is None:
        return local
    target = into if into is not None else Path(tempfile.mkdtemp(prefix="sweep-model-"))
    target.mkdir(parents=True, exist_ok=True)
    if local is not None:
        if local.is_dir():
            shutil.copytree(local, target, dirs_exist_ok=True)
        else:
            shutil.copy2(local, target / local.name)
            return target / local.name
    else:
        fs, path = filesystem(text)
        fs.get(f"{path}/", f"{target}/", recursive=True)
    _verify(info, target, text)
    return target


def _verify(info: ModelInfo, directory: Path, location: str) -> None:
    for file in info.files:
        copy = directory / file.path
        if not copy.is_file() or sha256(copy) != file.sha256:
            raise RegistryError(
                f"the model file {file.path} at {location} is missing or does not match the "
                f"SHA-256 recorded when it was saved ({file.sha256[:12]}...): the artifact "
                "was changed or only partly copied; register the model again"
            )


def load_model_dir(location: str | os.PathLike[str], *, as_path: bool = False) -> Any:
    """Load the model at ``location`` (a path or a URL) by its flavor; with ``as_path``
    return the local directory of its files instead (copied from a URL)."""
    text = os.fspath(location)
    info = read_model_info(text)
    flavor = FLAVORS.get(info.flavor)
    if flavor is None and not as_path:
        raise RegistryError(
            f"the model at {text} has flavor {info.flavor!r}, which this version of sweep "
            "cannot load; upgrade sweep, or load its files from load_model(uri, as_path=True)"
        )
    directory = model_path(text)
    # The files themselves (a download of a remote model is kept).
    if as_path:
        return directory
    if info.flavor == "files":
        return directory if directory.is_file() else directory / info.loader.get("path", ".")
    assert flavor is not None
    try:
        return flavor.load(directory, info.loader)
    finally:
        if local_path(text) is None:  # the object is loaded: drop the downloaded copy
            shutil.rmtree(directory, ignore_errors=True)


def _missing(location: str) -> RegistryError:
    return RegistryError(
        f"no model at {location}: nothing is there; was the artifact root moved? Point "
        "SWEEP_ARTIFACT_ROOT or the experiment's artifact root at the shared path"
    )
