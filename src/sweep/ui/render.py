"""Pages from the Jinja2 templates beside this module (autoescaped), and figures as JSON
safe to embed in a ``<script>`` element."""

from __future__ import annotations

import datetime
import json
import math
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

TEMPLATES = Path(__file__).parent / "templates"


def _when(ms: int | None) -> str:
    if not ms:
        return ""
    return datetime.datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S")


def _num(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.5g}" if math.isfinite(value) else str(value)
    try:
        return f"{float(value):.5g}"
    except (TypeError, ValueError):
        return str(value)


def _ago(ms: int | None, now_ms: int) -> str:
    if not ms:
        return ""
    seconds = max(0, (now_ms - ms) // 1000)
    return f"{seconds}s ago" if seconds < 120 else f"{seconds // 60} min ago"


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html"])
    )
    env.filters.update(when=_when, num=_num, ago=_ago)
    return env


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)


def dumps_figure(figure: dict[str, Any]) -> str:
    """``figure`` as JSON for a ``<script type="application/json">`` element: NaN and
    infinities become null, and ``</`` cannot close the element."""
    try:
        # Most figures hold no NaN: JSON's C encoder alone, without a walk over every
        # point (a 10,000-trial sweep page's figures take ~40,000 _clean calls).
        text = json.dumps(figure, separators=(",", ":"), allow_nan=False)
    except ValueError:
        text = json.dumps(_clean(figure), separators=(",", ":"))
    return text.replace("</", "<\\/")


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value
