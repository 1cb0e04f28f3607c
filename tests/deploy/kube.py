"""Offline validation of Kubernetes objects, strict as `kubectl apply --validate=strict`:
core objects against the Python `kubernetes` client's models, KubeRay's custom resources
against the openAPIV3Schema of KubeRay's published CRDs (tests/assets/kuberay/)."""

from __future__ import annotations

import copy
import gzip
import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

CRD_SCHEMAS = Path(__file__).resolve().parents[1] / "assets" / "kuberay"
_CUSTOM = {("ray.io/v1", "RayCluster"): "rayclusters", ("ray.io/v1", "RayJob"): "rayjobs"}
_PRIMITIVES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "datetime": (str,),
    "date": (str,),
    "bytes": (str,),
}


def problems(obj: dict[str, Any]) -> list[str]:
    """What the API server would reject in ``obj`` (empty when it is valid)."""
    key = (obj.get("apiVersion"), obj.get("kind"))
    if key in _CUSTOM:
        return _crd_problems(obj, _CUSTOM[key])  # type: ignore[index]
    model = _model_name(obj)
    if model is None:
        return [f"unknown apiVersion/kind {key}"]
    found = list(_model_problems(obj, model, obj["kind"]))
    if not found:
        found = _required_problems(obj, model)
    return found


# -- core objects: the client's models ---------------------------------------------------


def _model_name(obj: dict[str, Any]) -> str | None:
    from kubernetes import client

    # The client names models by version and kind (apps/v1 StatefulSet: V1StatefulSet).
    version = obj.get("apiVersion", "").split("/")[-1]
    name = f"{version.capitalize()}{obj.get('kind', '')}"
    return name if hasattr(client.models, name) else None


def _model_problems(value: Any, type_name: str, path: str) -> Iterator[str]:
    from kubernetes import client

    if type_name in _PRIMITIVES:
        if not isinstance(value, _PRIMITIVES[type_name]) or (
            type_name == "int" and isinstance(value, bool)
        ):
            yield f"{path}: expected {type_name}, got {type(value).__name__} {value!r}"
        return
    if type_name == "object":  # IntOrString, quantities, raw JSON
        return
    if match := re.fullmatch(r"[Ll]ist\[(.+)\]", type_name):
        if not isinstance(value, list):
            yield f"{path}: expected a list, got {value!r}"
            return
        for i, item in enumerate(value):
            yield from _model_problems(item, match.group(1), f"{path}[{i}]")
        return
    if match := re.fullmatch(r"dict\(str, (.+)\)|Dict\[str, (.+)\]", type_name):
        if not isinstance(value, dict):
            yield f"{path}: expected a mapping, got {value!r}"
            return
        for key, item in value.items():
            yield from _model_problems(item, match.group(1) or match.group(2), f"{path}.{key}")
        return
    model = getattr(client.models, type_name)
    if not isinstance(value, dict):
        yield f"{path}: expected a {type_name} mapping, got {value!r}"
        return
    fields = {json_name: attr for attr, json_name in model.attribute_map.items()}
    for key, item in value.items():
        if key not in fields:
            yield f"{path}: unknown field {key!r} for {type_name}"
        else:
            yield from _model_problems(item, model.openapi_types[fields[key]], f"{path}.{key}")


def _required_problems(obj: dict[str, Any], model: str) -> list[str]:
    """Missing required fields, as the client's models check them when built."""
    from kubernetes import client

    api = client.ApiClient()
    try:
        api._ApiClient__deserialize(copy.deepcopy(obj), model)  # type: ignore[attr-defined]
    except ValueError as exc:
        return [f"{obj['kind']}: {exc}"]
    return []


# -- KubeRay custom resources: the CRD's schema ---------------------------------------------


@cache
def crd_schema(plural: str) -> dict[str, Any]:
    """The CRD's v1 schema, made strict: an object schema that lists its properties
    rejects others (the API server prunes them silently; strict validation refuses)."""
    path = CRD_SCHEMAS / f"ray.io_{plural}.v1.schema.json.gz"
    schema = json.loads(gzip.decompress(path.read_bytes()))
    _close_objects(schema)
    return schema


def _close_objects(schema: Any) -> None:
    if isinstance(schema, dict):
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        for value in schema.values():
            _close_objects(value)
    elif isinstance(schema, list):
        for item in schema:
            _close_objects(item)


def _crd_problems(obj: dict[str, Any], plural: str) -> list[str]:
    import jsonschema

    validator = jsonschema.Draft7Validator(crd_schema(plural))
    found = [
        f"{obj['kind']}.{'.'.join(str(p) for p in error.absolute_path)}: {error.message}"
        for error in validator.iter_errors(obj)
    ]
    # The CRD leaves metadata open; the API server checks it as ObjectMeta.
    found += list(_model_problems(obj.get("metadata", {}), "V1ObjectMeta", "metadata"))
    return found
