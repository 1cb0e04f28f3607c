"""Flavors without heavy dependencies: scikit-learn and anything joblib pickles, ONNX
files, and files or directories stored as the training code wrote them."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from sweep.errors import RegistryError
from sweep.flavors._base import Flavor, mro_modules, require

JOBLIB_FILE = "model.joblib"
ONNX_FILE = "model.onnx"


class JoblibFlavor(Flavor):
    """Any object joblib pickles; loads where its classes are importable."""

    name = "joblib"
    packages: tuple[str, ...] = ("joblib", "numpy")

    def matches(self, obj: Any) -> bool:
        return True

    def save(self, obj: Any, directory: Path, options: dict[str, Any]) -> dict[str, Any]:
        joblib = require("joblib", "joblib", self.name)
        joblib.dump(obj, directory / JOBLIB_FILE)
        return {"file": JOBLIB_FILE, "class": f"{type(obj).__module__}.{type(obj).__qualname__}"}

    def save_path(self, source: Path, directory: Path) -> dict[str, Any]:
        shutil.copy2(source, directory / JOBLIB_FILE)
        return {"file": JOBLIB_FILE}

    def load(self, directory: Path, loader: dict[str, Any]) -> Any:
        joblib = require("joblib", "joblib", self.name)
        return joblib.load(directory / loader["file"])


class SklearnFlavor(JoblibFlavor):
    """scikit-learn estimators and pipelines (saved with joblib)."""

    name = "sklearn"
    packages = ("scikit-learn", "joblib", "numpy")

    def matches(self, obj: Any) -> bool:
        return "sklearn" in mro_modules(obj)

    def load(self, directory: Path, loader: dict[str, Any]) -> Any:
        require("sklearn", "scikit-learn", self.name)
        return super().load(directory, loader)


class OnnxFlavor(Flavor):
    """An ``onnx.ModelProto`` or a ``.onnx`` file; loads as a ``ModelProto`` (serve it
    with onnxruntime from ``load_model(uri, as_path=True)``)."""

    name = "onnx"
    packages = ("onnx", "onnxruntime")

    def matches(self, obj: Any) -> bool:
        return type(obj).__name__ == "ModelProto" and "onnx" in mro_modules(obj)

    def save(self, obj: Any, directory: Path, options: dict[str, Any]) -> dict[str, Any]:
        onnx = require("onnx", "onnx", self.name)
        onnx.checker.check_model(obj)
        onnx.save(obj, str(directory / ONNX_FILE))
        return {"file": ONNX_FILE}

    def save_path(self, source: Path, directory: Path) -> dict[str, Any]:
        shutil.copy2(source, directory / ONNX_FILE)
        return {"file": ONNX_FILE}

    def load(self, directory: Path, loader: dict[str, Any]) -> Any:
        onnx = require("onnx", "onnx", self.name)
        return onnx.load(str(directory / loader["file"]))

    def signature(self, directory: Path, loader: dict[str, Any]) -> dict[str, Any] | None:
        try:
            onnx = require("onnx", "onnx", self.name)
        except RegistryError:
            return None  # a file logged where onnx is not installed: no signature then
        graph = onnx.load(str(directory / loader["file"]), load_external_data=False).graph

        def tensors(values: Any) -> list[dict[str, Any]]:
            return [
                {
                    "name": v.name,
                    "dtype": onnx.TensorProto.DataType.Name(v.type.tensor_type.elem_type),
                    "shape": [
                        d.dim_value if d.HasField("dim_value") else (d.dim_param or -1)
                        for d in v.type.tensor_type.shape.dim
                    ],
                }
                for v in values
            ]

        return {"inputs": tensors(graph.input), "outputs": tensors(graph.output)}


class FilesFlavor(Flavor):
    """A file or directory the training code wrote (a checkpoint), stored as is;
    loading gives its local path."""

    name = "files"

    def save_path(self, source: Path, directory: Path) -> dict[str, Any]:
        if source.is_dir():
            shutil.copytree(source, directory, dirs_exist_ok=True)
            return {"path": "."}
        shutil.copy2(source, directory / source.name)
        return {"path": source.name}

    def load(self, directory: Path, loader: dict[str, Any]) -> Any:
        return directory / loader.get("path", ".")
