"""What a saved model records about itself in ``sweep-model.json``: its flavor and how
to load it, its files with their sizes and SHA-256, the Python and package versions it
was saved with, and an optional input example and signature."""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from sweep.errors import RegistryError

#: File inside a model directory that says how to load it; keeps the format open.
MODEL_META = "sweep-model.json"
INPUT_EXAMPLE = "input_example.json"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class ModelFile:
    path: str  # relative to the model directory, with '/'
    size: int
    sha256: str


@dataclass(frozen=True)
class ModelInfo:
    """A saved model's ``sweep-model.json``. ``loader`` holds what the flavor needs to
    load it (its file, a class's import path, ...)."""

    flavor: str
    loader: dict[str, Any] = field(default_factory=dict)
    files: tuple[ModelFile, ...] = ()
    python: str = ""
    packages: dict[str, str] = field(default_factory=dict)
    signature: dict[str, Any] | None = None
    input_example: str | None = None  # the file holding it

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    def to_json(self) -> str:
        data = asdict(self)
        data["files"] = [asdict(f) for f in self.files]
        return json.dumps(data, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, location: str) -> ModelInfo:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise RegistryError(
                f"the model at {location} has a broken {MODEL_META}: {exc}"
            ) from exc
        if "flavor" not in data and data.get("format") == "joblib":
            # The first release wrote {"format": "joblib", "file": ...}.
            return cls("joblib", {"file": data["file"]}, python=data.get("python", ""))
        try:
            files = tuple(ModelFile(**f) for f in data.pop("files", ()))
            return cls(files=files, **data)
        except TypeError as exc:
            raise RegistryError(
                f"the model at {location} has a {MODEL_META} this version of sweep cannot "
                f"read ({exc}); upgrade sweep"
            ) from exc


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def manifest(directory: Path) -> tuple[ModelFile, ...]:
    """Every file under ``directory`` but the metadata file, sorted by path."""
    return tuple(
        ModelFile(p.relative_to(directory).as_posix(), p.stat().st_size, sha256(p))
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.relative_to(directory).as_posix() != MODEL_META
    )


def package_versions(names: tuple[str, ...]) -> dict[str, str]:
    """The installed versions of ``names`` (distribution names), sweep's included."""
    found: dict[str, str] = {}
    for name in ("sweep", *names):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def python_version() -> str:
    return platform.python_version()
