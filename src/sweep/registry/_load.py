"""Loading a registered model by URI, or fetching its files."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sweep.flavors import load_model_dir, model_path
from sweep.registry._entities import ModelVersion
from sweep.registry._registry import ModelRegistry
from sweep.storage import Database, resolve_storage_url


@contextmanager
def _registry(storage: str | None) -> Iterator[ModelRegistry]:
    db = Database(resolve_storage_url(storage))
    try:
        db.ensure_schema()
        yield ModelRegistry(db)
    finally:
        db.dispose()


def _version(uri: str, storage: str | None) -> ModelVersion:
    with _registry(storage) as registry:
        return registry.resolve(uri)


def load_model(uri: str, *, storage: str | None = None, as_path: bool = False) -> Any:
    """Load the model a registry URI names, e.g. ``models:/digits-sgd@challenger``, by
    its flavor; with ``as_path`` return the local path of its files instead (for
    serving code with a loader of its own).

    The store is ``storage`` if given, else ``SWEEP_DATABASE_URL``, else the embedded
    default under ``.sweep/``.
    """
    return load_model_dir(_version(uri, storage).source, as_path=as_path)


def download_model(uri: str, directory: str | Path, *, storage: str | None = None) -> Path:
    """Copy the files of the model ``uri`` names into ``directory`` (created if need
    be), each checked against its recorded SHA-256; returns where they are."""
    return model_path(_version(uri, storage).source, into=Path(directory))
