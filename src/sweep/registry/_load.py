"""Loading a registered model by URI."""

from __future__ import annotations

from typing import Any

from sweep.registry._registry import ModelRegistry
from sweep.storage import Database, resolve_storage_url
from sweep.tracking._artifacts import load_model_dir


def load_model(uri: str, *, storage: str | None = None) -> Any:
    """Load the model a registry URI names, e.g. ``models:/digits-sgd@challenger``.

    The store is ``storage`` if given, else ``SWEEP_DATABASE_URL``, else the embedded
    default under ``.sweep/``.
    """
    db = Database(resolve_storage_url(storage))
    try:
        db.ensure_schema()
        version = ModelRegistry(db).resolve(uri)
        return load_model_dir(version.source)
    finally:
        db.dispose()
