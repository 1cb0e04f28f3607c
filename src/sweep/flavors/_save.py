"""Saving a model directory atomically: everything is written under a temporary name
first, then published in one step, so a failed save leaves nothing half-written."""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sweep.errors import ModelSaveError, SweepError
from sweep.flavors._base import Flavor
from sweep.flavors._examples import example_to_json
from sweep.flavors._meta import (
    INPUT_EXAMPLE,
    MODEL_META,
    ModelInfo,
    manifest,
    package_versions,
    python_version,
)
from sweep.flavors._registry import detect, flavor_named
from sweep.tracking.artifacts import filesystem, local_path


def save_model(
    model: Any,
    location: str,
    *,
    flavor: str | None = None,
    input_example: Any = None,
    signature: dict[str, Any] | None = None,
    init_kwargs: dict[str, Any] | None = None,
) -> ModelInfo:
    """Write ``model`` (an object, or a ``str``/``Path`` naming a file or directory the
    training code wrote) as a model directory at ``location`` (a path or a URL).

    The flavor is ``flavor`` or detected (see :func:`~sweep.flavors.detect`). Raises
    :class:`~sweep.errors.ModelSaveError` saying why when the model cannot be saved;
    then nothing is left at ``location`` (an earlier model there stays as it was)."""
    chosen = flavor_named(flavor) if flavor is not None else detect(model)
    is_path = isinstance(model, (str, Path))
    if is_path and not Path(model).exists():
        raise ModelSaveError(
            f"cannot log the model {str(model)!r}: no such file or directory (a string or "
            "Path is taken as the path of a model the training code wrote)"
        )
    local = local_path(location)
    with _staging(local) as staging:
        info = _write(
            chosen,
            model,
            staging,
            input_example=input_example,
            signature=signature,
            init_kwargs=init_kwargs,
        )
        if local is not None:
            _publish_local(staging, local)
        else:
            _publish_remote(staging, location)
    return info


def _write(
    flavor: Flavor,
    model: Any,
    staging: Path,
    *,
    input_example: Any,
    signature: dict[str, Any] | None,
    init_kwargs: dict[str, Any] | None,
) -> ModelInfo:
    """Write ``model`` and its ``sweep-model.json`` into ``staging``."""
    try:
        if isinstance(model, (str, Path)):
            loader = flavor.save_path(Path(model), staging)
        else:
            loader = flavor.save(model, staging, {"init_kwargs": init_kwargs})
    except SweepError:
        raise
    except Exception as exc:
        raise ModelSaveError(
            f"saving the model ({type(model).__name__}) with the {flavor.name!r} flavor "
            f"failed: {type(exc).__name__}: {exc}; nothing was written. Pass another "
            "flavor=..., or save the model yourself and log its path"
        ) from exc
    example_file = None
    if input_example is not None:
        data, inferred = example_to_json(input_example)
        (staging / INPUT_EXAMPLE).write_text(_json(data))
        example_file, signature = INPUT_EXAMPLE, signature or inferred
    info = ModelInfo(
        flavor=flavor.name,
        loader=loader,
        files=manifest(staging),
        python=python_version(),
        packages=package_versions(flavor.packages),
        signature=signature or flavor.signature(staging, loader),
        input_example=example_file,
    )
    (staging / MODEL_META).write_text(info.to_json())
    return info


def _json(data: Any) -> str:
    import json

    return json.dumps(data)


@contextlib.contextmanager
def _staging(local: Path | None) -> Iterator[Path]:
    """A fresh directory to write the model into: beside its final place for a local
    location (so that publishing is a rename), else in the temporary directory.
    Removed afterwards, whatever happened."""
    if local is not None:
        local.parent.mkdir(parents=True, exist_ok=True)
        staging = local.parent / f".{local.name}.tmp-{uuid.uuid4().hex[:12]}"
        staging.mkdir()
    else:
        staging = Path(tempfile.mkdtemp(prefix="sweep-model-"))
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _publish_local(staging: Path, final: Path) -> None:
    """Rename ``staging`` to ``final``; an earlier model there is replaced."""
    if not (final.exists() or final.is_symlink()):
        os.rename(staging, final)
        return
    old = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:12]}"
    os.rename(final, old)
    os.rename(staging, final)
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old, ignore_errors=True)
    else:
        old.unlink()


def _publish_remote(staging: Path, location: str) -> None:
    """Upload ``staging`` to ``location`` with ``sweep-model.json`` last: object stores
    have no rename, so the metadata file is the commit point (a model without it is
    not a model), and a failed upload removes what it wrote."""
    fs, path = filesystem(location)
    if fs.exists(path):
        fs.rm(path, recursive=True)
    files = sorted(p for p in staging.rglob("*") if p.is_file() and p.name != MODEL_META)
    try:
        for file in [*files, staging / MODEL_META]:
            target = f"{path}/{file.relative_to(staging).as_posix()}"
            fs.makedirs(posixpath.dirname(target), exist_ok=True)
            fs.put_file(str(file), target)
    except BaseException:
        with contextlib.suppress(Exception):
            fs.rm(path, recursive=True)
        raise
