"""Model URIs: ``models:/<name>@<alias>`` and ``models:/<name>/<version>``."""

from __future__ import annotations

import re

from sweep.errors import RegistryError

_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/@]+)|/(?P<version>\d+))$")


def parse_model_uri(uri: str) -> tuple[str, str | None, int | None]:
    """``(name, alias, version)`` of a model URI; one of alias and version is None."""
    match = _URI.match(uri)
    if match is None:
        raise RegistryError(
            f"{uri!r} is not a model URI; use models:/<name>@<alias> or models:/<name>/<version>"
        )
    if match["alias"]:
        return match["name"], match["alias"], None
    return match["name"], None, int(match["version"])
