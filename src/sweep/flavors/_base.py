"""The flavor interface and lazy imports of the packages a flavor needs."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

from sweep.errors import RegistryError


def require(module: str, package: str, flavor: str | None = None, *, what: str = "") -> ModuleType:
    """Import ``module`` or say which package to install for ``flavor`` (or ``what``)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        user = f"the {flavor!r} model flavor" if flavor is not None else what
        raise RegistryError(
            f"{user} needs the {package!r} package, which is not installed here ({exc}); "
            f"install it with: pip install {package}"
        ) from exc


class Flavor:
    """How one kind of model is saved into, and loaded from, a model directory.

    ``save`` writes into a fresh staging directory and returns the ``loader`` data that
    ``load`` gets back; ``save_path`` does the same for a file or directory the
    training code wrote. ``packages`` are the distributions whose versions are
    recorded (and named when a loader is missing)."""

    name: ClassVar[str]
    packages: tuple[str, ...] = ()

    def matches(self, obj: Any) -> bool:
        return False

    def save(self, obj: Any, directory: Path, options: dict[str, Any]) -> dict[str, Any]:
        raise RegistryError(
            f"the {self.name!r} flavor saves files, not Python objects; pass a path or "
            "another flavor"
        )

    def save_path(self, source: Path, directory: Path) -> dict[str, Any]:
        raise RegistryError(
            f"the {self.name!r} flavor saves Python objects, not paths: load the object "
            f"first, or log {str(source)!r} with flavor='files'"
        )

    def load(self, directory: Path, loader: dict[str, Any]) -> Any:
        raise NotImplementedError

    def signature(self, directory: Path, loader: dict[str, Any]) -> dict[str, Any] | None:
        """The inputs and outputs the saved model declares, where the format has them."""
        return None


def module_of(obj: Any) -> str:
    return type(obj).__module__.split(".")[0]


def mro_modules(obj: Any) -> set[str]:
    return {cls.__module__.split(".")[0] for cls in type(obj).__mro__}
