"""The flavors sweep knows and how one is picked for an object or a path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sweep.errors import ModelSaveError
from sweep.flavors._base import Flavor
from sweep.flavors._simple import FilesFlavor, JoblibFlavor, OnnxFlavor, SklearnFlavor
from sweep.flavors._torch import TorchModuleFlavor, TorchScriptFlavor, TorchStateDictFlavor

#: In detection order: the first whose ``matches`` accepts an object saves it.
_FLAVORS: tuple[Flavor, ...] = (
    TorchScriptFlavor(),
    TorchStateDictFlavor(),
    TorchModuleFlavor(),
    OnnxFlavor(),
    SklearnFlavor(),
    FilesFlavor(),
    JoblibFlavor(),
)
FLAVORS: dict[str, Flavor] = {f.name: f for f in _FLAVORS}


def flavor_named(name: str) -> Flavor:
    try:
        return FLAVORS[name]
    except KeyError:
        raise ModelSaveError(
            f"unknown model flavor {name!r}; use one of {', '.join(sorted(FLAVORS))}"
        ) from None


def detect(obj: Any) -> Flavor:
    """The flavor for ``obj``: a path is ONNX when it ends in ``.onnx``, else files
    stored as is; an object goes to the first flavor that recognises it (joblib for
    any other object)."""
    if isinstance(obj, (str, Path)):
        return FLAVORS["onnx" if str(obj).lower().endswith(".onnx") else "files"]
    return next(f for f in _FLAVORS if f.matches(obj))
