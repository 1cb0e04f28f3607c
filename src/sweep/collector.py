"""Metrics read from a command-mode trial's output lines (Katib's StdOut collector is the
model): a script that does not import sweep reports by printing.

``auto`` (the default) reads two forms of line:

* ``name=value`` pairs separated by spaces, commas or semicolons: ``epoch=3
  val_loss=0.41`` (``name: value`` too). Values that are not numbers are skipped, so
  ``model=resnet epoch=3 loss=0.4`` yields epoch and loss.
* a JSON object: ``{"epoch": 3, "val_loss": 0.41}``; nested objects give dotted names,
  non-numeric values are skipped.

``regex`` applies the spec's pattern (``re.search`` on each line): each named group is
a metric, except ``name``/``value`` (a metric named by the text of ``name``) and the
step group.

The step of a line is the value of ``step_key``, or else of the first of ``step``,
``epoch``, ``iteration`` on the line; it is None when there is none. The step key
itself is not a metric point. :class:`MetricCollector` keeps a count of lines read, so
that a runner feeding it lines can number points that have no step.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

#: Keys a line's step is read from when the spec names none, first present wins.
STEP_KEYS: tuple[str, ...] = ("step", "epoch", "iteration")

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:inf|nan)"
# A pair stands alone: after the start, a space or , ; | ( [ {, before the end or their mates.
_PAIR = re.compile(
    r"(?:^|(?<=[\s,;|(\[{]))(?P<name>[A-Za-z_][\w./-]*)\s*[=:]\s*"
    r"(?P<value>" + _NUMBER + r")(?=$|[\s,;|)\]}])"
)


@dataclass(frozen=True)
class MetricPoint:
    """One value of one metric read from an output line."""

    name: str
    value: float
    step: int | None
    line_number: int


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _flatten(data: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in data.items():
        if isinstance(value, Mapping):
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _json_values(line: str) -> dict[str, float] | None:
    text = line.strip()
    if not (text.startswith("{") and text.endswith("}")):
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    values: dict[str, float] = {}
    for name, raw in _flatten(data):
        number = _number(raw)
        if number is not None:
            values[name] = number
    return values


def parse_auto(line: str) -> dict[str, float]:
    """The numeric values on one line: a JSON object's, or its ``name=value`` pairs'."""
    values = _json_values(line)
    if values is not None:
        return values
    return {m.group("name"): float(m.group("value")) for m in _PAIR.finditer(line)}


def parse_regex(line: str, pattern: re.Pattern[str]) -> dict[str, float]:
    """The numeric values that ``pattern``'s named groups capture on one line."""
    values: dict[str, float] = {}
    for match in pattern.finditer(line):
        groups = {k: v for k, v in match.groupdict().items() if v is not None}
        if "name" in groups and "value" in groups:
            number = _number(groups.pop("value"))
            name = groups.pop("name")
            if number is not None:
                values[name] = number
        for name, text in groups.items():
            if name in ("name", "value"):
                continue
            number = _number(text)
            if number is not None:
                values[name] = number
    return values


class MetricCollector:
    """Turns output lines into :class:`MetricPoint` values, line by line.

    ``kind`` is ``auto`` or ``regex`` (with ``pattern``); ``step_key`` names the key or
    group holding the step (default: step, epoch or iteration). A non-finite value (nan,
    inf) is kept as the script printed it; deciding what it means is the caller's.
    """

    def __init__(
        self, kind: str = "auto", pattern: str | None = None, step_key: str | None = None
    ) -> None:
        if kind not in ("auto", "regex"):
            raise ValueError(f"collector kind must be auto or regex, got {kind!r}")
        if kind == "regex" and not pattern:
            raise ValueError("a regex collector needs a pattern with named groups")
        self.kind = kind
        self.pattern = re.compile(pattern) if kind == "regex" and pattern else None
        self.step_keys = (step_key,) if step_key else STEP_KEYS
        self.lines_read = 0

    @classmethod
    def from_spec(cls, spec: Any) -> MetricCollector:
        """The collector a spec's ``collector`` section describes."""
        section = spec.collector
        return cls(section.kind, section.pattern, section.step_key)

    def feed(self, line: str) -> list[MetricPoint]:
        """The metric points on one line (a trailing newline is fine)."""
        self.lines_read += 1
        line = line.rstrip("\r\n")
        pattern = self.pattern
        values = parse_auto(line) if pattern is None else parse_regex(line, pattern)
        step: int | None = None
        for key in self.step_keys:
            if key in values:
                raw = values.pop(key)
                if math.isfinite(raw):
                    step = int(raw)
                break
        return [MetricPoint(name, value, step, self.lines_read) for name, value in values.items()]

    def feed_all(self, lines: Iterable[str]) -> list[MetricPoint]:
        """Every metric point on ``lines``, in order."""
        return [point for line in lines for point in self.feed(line)]


def last_value(points: Iterable[MetricPoint], metric: str) -> float | None:
    """The last value of ``metric`` among ``points`` (a script's result when it writes
    none explicitly), or None."""
    value: float | None = None
    for point in points:
        if point.name == metric:
            value = point.value
    return value
