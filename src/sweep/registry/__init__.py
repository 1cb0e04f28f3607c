"""The model registry: registered models, immutable numbered versions, aliases
(``challenger``, ``champion``, ...), version tags and descriptions, the lineage of each
version back to its sweep, and an audit log of every change.

``models:/<name>@<alias>`` and ``models:/<name>/<version>`` name a version;
:func:`load_model` returns the model object itself.

A version's source, run and metric never change once it is registered (an ORM guard
refuses it). Its tags and description, the model's description and the aliases can
change; each change is one transaction together with its audit event.

Modules: ``_registry`` (the :class:`ModelRegistry` facade), ``_rows`` (reading and
locking rows, the immutability guard), ``_aliases`` (alias moves), ``_audit`` (the
audit log), ``_lineage`` (where versions came from), ``_uris`` and ``_load`` (URIs,
loading and downloading), ``_register`` (registering files and run artifacts).
"""

from sweep.registry._audit import acting_user
from sweep.registry._entities import (
    CHALLENGER,
    CHAMPION,
    ROLLBACK,
    AlreadyPromotedError,
    DatasetInput,
    ModelVersion,
    RegisteredModel,
    RegistryEvent,
    VersionLineage,
)
from sweep.registry._load import download_model, load_model
from sweep.registry._register import register_model
from sweep.registry._registry import ModelRegistry
from sweep.registry._uris import parse_model_uri

__all__ = [
    "AlreadyPromotedError",
    "acting_user",
    "CHALLENGER",
    "CHAMPION",
    "ROLLBACK",
    "DatasetInput",
    "ModelRegistry",
    "ModelVersion",
    "RegisteredModel",
    "RegistryEvent",
    "VersionLineage",
    "download_model",
    "load_model",
    "parse_model_uri",
    "register_model",
]
