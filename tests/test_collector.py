"""The metrics line collector: name=value pairs, JSON lines, a spec's regex, steps."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sweep.collector import MetricCollector, MetricPoint, last_value, parse_auto
from sweep.errors import SpecError
from sweep.spec import load_spec_from_dict


def points(lines: list[str], **kwargs: str) -> list[tuple[str, float, int | None]]:
    collector = MetricCollector(**kwargs)
    return [(p.name, p.value, p.step) for p in collector.feed_all(lines)]


def test_name_value_pairs_with_the_epoch_as_step() -> None:
    assert points(["epoch=3 val_loss=0.41", "epoch=4 val_loss=0.38 acc=0.9\n"]) == [
        ("val_loss", 0.41, 3),
        ("val_loss", 0.38, 4),
        ("acc", 0.9, 4),
    ]


def test_separators_colons_exponents_and_non_numbers() -> None:
    assert parse_auto("model=resnet, lr=1e-3; acc: 0.9 | loss=-.5") == {
        "lr": 0.001,
        "acc": 0.9,
        "loss": -0.5,
    }
    # Not metrics: URLs, clock times, percentages, words.
    assert parse_auto("see http://host:8080/x=3 at 12:30:01, 50% done, eta=3s") == {}
    assert parse_auto("Epoch 3/10 - loss: 0.25") == {"loss": 0.25}


def test_json_lines_nested_and_non_numeric_values() -> None:
    line = '{"step": 7, "val": {"loss": 0.2, "acc": 0.9}, "tag": "x", "ok": true}'
    assert points([line]) == [("val.loss", 0.2, 7), ("val.acc", 0.9, 7)]
    # Not an object, or not JSON: read as name=value text instead.
    assert points(["[1, 2]", "{oops loss=1}"]) == [("loss", 1.0, None)]


def test_step_keys_in_order_and_a_configured_one() -> None:
    assert points(["iteration=5 epoch=2 loss=1"]) == [("iteration", 5.0, 2), ("loss", 1.0, 2)]
    assert points(["iteration=5 epoch=2 loss=1"], step_key="iteration") == [
        ("epoch", 2.0, 5),
        ("loss", 1.0, 5),
    ]
    assert points(["loss=1"]) == [("loss", 1.0, None)]
    assert points(["step=nan loss=1"]) == [("loss", 1.0, None)]


def test_non_finite_values_are_kept_as_printed() -> None:
    [(name, value, _)] = points(["loss=nan"])
    assert name == "loss" and math.isnan(value)
    assert points(["loss=inf"]) == [("loss", math.inf, None)]


def test_regex_with_metric_groups_and_name_value_groups() -> None:
    pattern = r"Epoch (?P<epoch>\d+).*val loss (?P<val_loss>[-+.\deE]+)"
    assert points(["Epoch 2/10: train loss 0.5, val loss 0.41"], kind="regex", pattern=pattern) == [
        ("val_loss", 0.41, 2)
    ]
    katib = r"(?P<name>[\w-]+)\s*=\s*(?P<value>[-+]?\d*\.?\d+)"
    assert points(["acc = 0.5 loss=0.2", "nothing"], kind="regex", pattern=katib) == [
        ("acc", 0.5, None),
        ("loss", 0.2, None),
    ]


def test_line_numbers_and_last_value() -> None:
    collector = MetricCollector()
    found = collector.feed_all(["warming up", "epoch=1 loss=2", "epoch=2 loss=1"])
    assert [p.line_number for p in found] == [2, 3]
    assert last_value(found, "loss") == 1.0 and last_value(found, "acc") is None
    assert found[0] == MetricPoint("loss", 2.0, 1, 2)


def test_bad_collector_arguments() -> None:
    with pytest.raises(ValueError, match="auto or regex"):
        MetricCollector(kind="stdout")
    with pytest.raises(ValueError, match="needs a pattern"):
        MetricCollector(kind="regex")


def _spec(collector: dict[str, object]) -> dict[str, object]:
    return {
        "name": "c",
        "program": "train.py",
        "metric": {"name": "loss", "direction": "minimize"},
        "budget": {"n_trials": 1},
        "collector": collector,
    }


def test_the_spec_section_builds_the_collector_and_checks_its_pattern() -> None:
    spec = load_spec_from_dict(_spec({"kind": "regex", "pattern": r"l=(?P<loss>\S+)"}))
    assert points(["l=0.5"], kind="regex", pattern=r"l=(?P<loss>\S+)") == [("loss", 0.5, None)]
    assert MetricCollector.from_spec(spec).feed("l=0.5")[0].value == 0.5
    for collector, needle in [
        ({"kind": "regex"}, "needs a pattern"),
        ({"kind": "regex", "pattern": "(unclosed"}, "not a valid regex"),
        ({"kind": "regex", "pattern": r"loss=\d+"}, "needs named groups"),
        ({"kind": "regex", "pattern": r"(?P<name>\w+)"}, "go together"),
        ({"pattern": r"(?P<loss>\d)"}, "needs kind: regex"),
    ]:
        with pytest.raises(SpecError) as info:
            load_spec_from_dict(_spec(collector))
        assert info.value.key_path == "collector.pattern" and needle in info.value.reason


def test_a_real_script_output_read_line_by_line(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(
        textwrap.dedent(
            """\
            import json, sys
            print("starting", flush=True)
            for epoch in range(1, 4):
                print(f"epoch={epoch} val_loss={1 / epoch:.3f}", flush=True)
            print(json.dumps({"step": 4, "val_loss": 0.2}))
            print("epoch=5 val_loss=0.1", file=sys.stderr)
            """
        )
    )
    process = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, text=True, bufsize=1
    )
    collector = MetricCollector()
    assert process.stdout is not None
    found = [p for line in process.stdout for p in collector.feed(line)]
    assert process.wait(timeout=30) == 0
    assert [(p.step, p.value) for p in found] == [(1, 1.0), (2, 0.5), (3, 0.333), (4, 0.2)]
