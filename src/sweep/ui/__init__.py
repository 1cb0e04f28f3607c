"""`sweep ui`: a web app over the store (Starlette, server-rendered pages, Plotly charts
drawn by the plotly.js the ``plotly`` package bundles). Needs the ``ui`` extra:
``pip install 'sweep[ui]'``."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.applications import Starlette


def create_app(storage: str | None = None, *, write_token: str | None = None) -> Starlette:
    """The UI app over the store at ``storage``; read-only without ``write_token``."""
    from sweep.ui.app import create_app as create

    return create(storage, write_token=write_token)
