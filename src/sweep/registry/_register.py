"""Registering a model from outside a sweep: a file or directory on this machine, or
the artifact of a run (``runs:/<run_id>/<artifact path>``)."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

from sweep.errors import NotFoundError, RegistryError
from sweep.flavors import MODEL_META, read_model_info, save_model
from sweep.registry._entities import ModelVersion
from sweep.registry._registry import ModelRegistry
from sweep.tracking import TrackingStore
from sweep.tracking.artifacts import (
    artifact_location,
    copy_artifact,
    join_location,
    resolve_artifact_root,
)

_RUN_URI = re.compile(r"^runs:/(?P<run_id>[0-9a-f]+)/(?P<path>.+)$")


def register_model(
    registry: ModelRegistry,
    model_name: str,
    source: str | Path,
    *,
    alias: str | None = None,
    flavor: str | None = None,
    artifact_root: str | None = None,
    reason: str | None = None,
) -> ModelVersion:
    """Register ``source`` as the next version of ``model_name`` (pointing ``alias`` at
    it if given) and return the version.

    ``runs:/<run_id>/<path>`` registers a run's artifact where it is, with the run as the
    version's lineage. A local path is copied into the artifact store first (under
    ``<artifact root>/registry/<model>/``, see ``SWEEP_ARTIFACT_ROOT``) so that the
    version does not depend on it: a model directory as it is, any other file or
    directory in ``flavor`` (detected when None: ONNX for ``.onnx``, else files as is).
    """
    run_id = None
    match = _RUN_URI.match(str(source))
    if match is not None:
        run_id = match["run_id"]
        run = TrackingStore(registry.db).get_run(run_id)
        location = artifact_location(run.artifact_uri, match["path"])
        read_model_info(location)  # refuses an artifact that is not there
    else:
        location = _copy_in(Path(source), model_name, flavor, artifact_root)
    why = reason or f"registered from {source}"
    version = registry.create_model_version(model_name, location, run_id=run_id, reason=why)
    if alias is not None:
        registry.set_alias(model_name, alias, version.version, reason=why)
        version = registry.get_version(model_name, version.version)
    return version


def _copy_in(source: Path, model_name: str, flavor: str | None, root: str | None) -> str:
    if not source.exists():
        raise NotFoundError(
            f"cannot register {str(source)!r}: no such file or directory; give a path on "
            "this machine or a run's artifact as runs:/<run_id>/<artifact path>"
        )
    if "/" in model_name or model_name in (".", ".."):
        raise RegistryError(f"{model_name!r} is not a valid model name: it must not contain '/'")
    location = join_location(resolve_artifact_root(root), "registry", model_name, uuid.uuid4().hex)
    if (source / MODEL_META).is_file() and flavor is None:
        staged = f"{location}.tmp"
        copy_artifact(source, staged)
        read_model_info(staged)  # a readable sweep-model.json
        _rename(staged, location)
    else:
        save_model(source, location, flavor=flavor)
    return location


def _rename(old: str, new: str) -> None:
    from sweep.tracking.artifacts import filesystem, local_path

    local = local_path(old)
    if local is not None:
        local.rename(str(local_path(new)))
        return
    fs, path = filesystem(old)
    fs.mv(path, filesystem(new)[1], recursive=True)
