"""PyTorch flavors: a module's ``state_dict`` plus its class's import path, a whole
module (``torch.save``), and TorchScript."""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path
from typing import Any

from sweep.errors import ModelSaveError, RegistryError
from sweep.flavors._base import Flavor, mro_modules, require

STATE_FILE = "state_dict.pt"
MODULE_FILE = "module.pt"
SCRIPT_FILE = "model.pt"


def _is_script(obj: Any) -> bool:
    return any(
        cls.__name__ in ("ScriptModule", "RecursiveScriptModule") for cls in type(obj).__mro__
    )


def _is_module(obj: Any) -> bool:
    return "torch" in mro_modules(obj) and any(
        cls.__name__ == "Module" and cls.__module__ == "torch.nn.modules.module"
        for cls in type(obj).__mro__
    )


class TorchStateDictFlavor(Flavor):
    """``state_dict`` + the module's ``module:Class`` and constructor keyword arguments
    (``init_kwargs``); loads where that class is importable."""

    name = "pytorch"
    packages = ("torch",)

    def matches(self, obj: Any) -> bool:
        return _is_module(obj) and not _is_script(obj)

    def save(self, obj: Any, directory: Path, options: dict[str, Any]) -> dict[str, Any]:
        torch = require("torch", "torch", self.name)
        cls = type(obj)
        if cls.__module__ == "__main__" or "<locals>" in cls.__qualname__:
            raise ModelSaveError(
                f"{cls.__qualname__} is defined in {cls.__module__} and cannot be imported "
                "where the model is loaded; define it in a module, or log it with "
                "flavor='torchscript' (torch.jit.script) or flavor='pytorch-module'"
            )
        torch.save(obj.state_dict(), directory / STATE_FILE)
        return {
            "file": STATE_FILE,
            "class": f"{cls.__module__}:{cls.__qualname__}",
            "init_kwargs": dict(options.get("init_kwargs") or {}),
        }

    def load(self, directory: Path, loader: dict[str, Any]) -> Any:
        torch = require("torch", "torch", self.name)
        module_name, _, qualname = loader["class"].partition(":")
        try:
            cls: Any = importlib.import_module(module_name)
            for part in qualname.split("."):
                cls = getattr(cls, part)
        except (ImportError, AttributeError) as exc:
            raise RegistryError(
                f"cannot import {loader['class']}, the class of this PyTorch model ({exc}); "
                "install the package that defines it, or load the weights yourself from "
                "load_model(uri, as_path=True)"
            ) from exc
        module = cls(**loader.get("init_kwargs", {}))
        state = torch.load(directory / loader["file"], map_location="cpu", weights_only=True)
        module.load_state_dict(state)
        return module.eval()


class TorchModuleFlavor(Flavor):
    """A whole module pickled by ``torch.save``; loads where its code is importable."""

    name = "pytorch-module"
    packages = ("torch",)

    def save(self, obj: Any, directory: Path, options: dict[str, Any]) -> dict[str, Any]:
        torch = require("torch", "torch", self.name)
        torch.save(obj, directory / MODULE_FILE)
        return {"file": MODULE_FILE}

    def save_path(self, source: Path, directory: Path) -> dict[str, Any]:
        shutil.copy2(source, directory / MODULE_FILE)
        return {"file": MODULE_FILE}

    def load(self, directory: Path, loader: dict[str, Any]) -> Any:
        torch = require("torch", "torch", self.name)
        return torch.load(directory / loader["file"], map_location="cpu", weights_only=False)


class TorchScriptFlavor(Flavor):
    """A TorchScript module (``torch.jit.script``/``trace``); loads without its code."""

    name = "torchscript"
    packages = ("torch",)

    def matches(self, obj: Any) -> bool:
        return _is_script(obj)

    def save(self, obj: Any, directory: Path, options: dict[str, Any]) -> dict[str, Any]:
        torch = require("torch", "torch", self.name)
        if not _is_script(obj):
            obj = torch.jit.script(obj)
        torch.jit.save(obj, str(directory / SCRIPT_FILE))
        return {"file": SCRIPT_FILE}

    def save_path(self, source: Path, directory: Path) -> dict[str, Any]:
        shutil.copy2(source, directory / SCRIPT_FILE)
        return {"file": SCRIPT_FILE}

    def load(self, directory: Path, loader: dict[str, Any]) -> Any:
        torch = require("torch", "torch", self.name)
        return torch.jit.load(str(directory / loader["file"]), map_location="cpu")
