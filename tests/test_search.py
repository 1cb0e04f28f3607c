"""Run search: the filter and order-by grammar, run against every backend, and the CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import update

import sweep
from sweep.errors import FilterError, NotFoundError
from sweep.storage import Database
from sweep.storage.schema import RunRow, SweepRow
from sweep.tracking import MetricPoint, Run, RunStatus, TrackingStore
from tests.test_cli import run_cli

# name: (params, {metric: [(step, value), ...]}, tags, status); started in this order.
RUNS: dict[str, tuple[dict, dict, dict, RunStatus]] = {
    "trial-1": (
        {"lr": 0.001, "optimizer": "sgd", "layers": 10, "my.key": "a", "batch-size": 32},
        {"val_acc": [(0, 0.99), (5, 0.95)], "loss": [(5, 0.2)]},  # latest val_acc: 0.95
        {"model_type": "sgd", "sweep.state": "COMPLETE", "note": "x*y"},
        RunStatus.FINISHED,
    ),
    "trial-2": (
        {"lr": 0.005, "optimizer": "adam", "layers": 9},
        {"val_acc": [(3, 0.92)], "loss": [(3, 0.0005)]},
        {"model_type": "sgd", "note": "axb"},
        RunStatus.FINISHED,
    ),
    "trial-3": (
        {"lr": 0.05, "optimizer": "adam"},
        {"val_acc": [(3, 0.97)], "loss": [(3, 0.1)]},
        {"model_type": "rf", "note": "a_b"},
        RunStatus.FAILED,
    ),
    "other-4": (
        {"lr": "auto", "optimizer": "SGD"},  # lr logged as text
        {"loss": [(1, 0.3)]},  # no val_acc
        {"my-tag": "x"},  # no model_type
        RunStatus.RUNNING,
    ),
    "Trial-5": (
        {"optimizer": "sgd"},  # no lr
        {"val_acc": [(2, 0.92)]},  # ties with trial-2
        {"model_type": "sgd", "note": "xzy"},
        RunStatus.FINISHED,
    ),
}


@dataclass
class World:
    url: str
    store: TrackingStore
    experiment_id: int
    parent: Run
    ids: dict[str, str]

    def names(self, filter: str | None = None, order_by: list[str] | None = None, **kw) -> list:
        """Names of the matching children of the parent run, in the order returned."""
        kw.setdefault("parent_run_id", self.parent.run_id)
        return [r.name for r in self.store.search_runs(filter, order_by, **kw)]

    def matching(self, filter: str) -> set[str]:
        return set(self.names(filter))


@contextmanager
def world_in(url: str, artifacts: Path) -> Iterator[World]:
    """The runs of RUNS under one parent, and a stray run of another experiment."""
    db = Database(url)
    db.ensure_schema()
    store = TrackingStore(db)
    experiment = store.get_or_create_experiment("exp", artifacts)
    parent = store.create_run(experiment, "sweep-parent")
    ids = {}
    for i, (name, (params, metrics, tags, status)) in enumerate(RUNS.items(), 1):
        run = store.create_run(
            experiment, name, parent_run_id=parent.run_id, params=params, tags=tags
        )
        store.log_metrics(
            run.run_id,
            [MetricPoint(k, v, step, 0) for k, points in metrics.items() for step, v in points],
        )
        if status is not RunStatus.RUNNING:
            store.end_run(run.run_id, status)
        ids[name] = run.run_id
        with db.session() as session:  # distinct, known start times
            session.execute(
                update(RunRow).where(RunRow.run_id == run.run_id).values(start_time=i * 1000)
            )
    # A run of another experiment that matches everything: searches must not see it.
    elsewhere = store.get_or_create_experiment("other-exp", artifacts)
    stray = store.create_run(
        elsewhere, "trial-1", params={"lr": 0.001, "optimizer": "sgd"}, tags={"model_type": "sgd"}
    )
    store.log_metrics(stray.run_id, [MetricPoint("val_acc", 0.99, 1, 0)])
    yield World(url, store, experiment.experiment_id, parent, ids)
    db.dispose()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    """One world per backend for the tests that only search it: each would otherwise
    make its own (a database of its own, on PostgreSQL), which took most of this module's
    time."""
    root = tmp_path_factory.mktemp("world")
    if request.param == "sqlite":
        url = f"sqlite:///{root / 'sweep.db'}"
    else:
        url = request.getfixturevalue("module_postgres_url")
    with world_in(url, root / "artifacts") as shared:
        yield shared


@pytest.fixture
def own_world(storage_url: str, tmp_path: Path) -> Iterator[World]:
    """A world of the test's own, for a test that adds to it."""
    with world_in(storage_url, tmp_path / "artifacts") as fresh:
        yield fresh


def test_the_issue_example_filters_and_orders_and_loads_each_run(world: World) -> None:
    runs = world.store.search_runs(
        "params.lr < 0.01 and metrics.val_acc > 0.9 and tags.model_type = 'sgd'",
        ["metrics.val_acc desc"],
        experiment_ids=[world.experiment_id],
    )
    assert [r.name for r in runs] == ["trial-1", "trial-2"]
    best = runs[0]
    assert best.run_id == world.ids["trial-1"]
    assert best.metrics == {"val_acc": 0.95, "loss": 0.2}
    assert best.params["optimizer"] == "sgd" and best.params["my.key"] == "a"
    assert best.tags["model_type"] == "sgd"
    assert best.status is RunStatus.FINISHED
    # Keywords are case-insensitive.
    assert world.names("params.lr < 0.01 AND params.optimizer IN ('sgd')") == ["trial-1"]


def test_params_compare_numbers_numerically_and_quoted_values_as_text(world: World) -> None:
    assert world.matching("params.lr >= 0.005") == {"trial-2", "trial-3"}
    assert world.matching("params.layers > 9") == {"trial-1"}  # 10 > 9, though '10' < '9'
    assert world.matching("params.lr = 0.001") == {"trial-1"}
    assert world.matching("params.lr = '0.001'") == {"trial-1"}
    assert world.matching("params.lr = 'auto'") == {"other-4"}
    # Text never matches a numeric comparison; a run without the param never matches.
    assert world.matching("params.lr != 0.001") == {"trial-2", "trial-3"}
    assert world.matching("params.optimizer = 'adam'") == {"trial-2", "trial-3"}
    assert world.matching("params.optimizer != 'adam'") == {"trial-1", "other-4", "Trial-5"}
    assert world.matching("params.lr > -1 and params.lr < 0.01") == {"trial-1", "trial-2"}


def test_metrics_compare_the_latest_value_of_runs_that_have_the_metric(world: World) -> None:
    # trial-1 logged 0.99 at step 0 but 0.95 at step 5: only the latest counts.
    assert world.matching("metrics.val_acc > 0.96") == {"trial-3"}
    assert world.matching("metrics.val_acc >= 0.95") == {"trial-1", "trial-3"}
    assert world.matching("metrics.loss <= 1e-3") == {"trial-2"}
    assert world.matching("metrics.val_acc < 1") == {"trial-1", "trial-2", "trial-3", "Trial-5"}
    assert world.matching("metrics.val_acc != 0.92") == {"trial-1", "trial-3"}


def test_tags_and_attributes(world: World) -> None:
    assert world.matching("tags.model_type = 'sgd'") == {"trial-1", "trial-2", "Trial-5"}
    assert world.matching("tags.model_type != 'sgd'") == {"trial-3"}  # other-4 has no tag
    assert world.matching("attributes.status = 'FINISHED'") == {"trial-1", "trial-2", "Trial-5"}
    assert world.matching("attributes.status != 'FINISHED'") == {"trial-3", "other-4"}
    assert world.matching("attributes.start_time >= 3000") == {"trial-3", "other-4", "Trial-5"}
    assert world.matching(f"attributes.run_id = '{world.ids['trial-2']}'") == {"trial-2"}
    everything = {"sweep-parent", *RUNS}
    assert (
        set(world.names(None, experiment_ids=[world.experiment_id], parent_run_id=None))
        == everything
    )
    children = f"attributes.parent_run_id = '{world.parent.run_id}'"
    assert set(
        world.names(children, experiment_ids=[world.experiment_id], parent_run_id=None)
    ) == set(RUNS)
    here = f"attributes.experiment_id = {world.experiment_id}"
    assert set(world.names(here, parent_run_id=None)) == everything
    assert world.matching("attributes.end_time > 0") == set(RUNS) - {"other-4"}


def test_in_and_not_in(world: World) -> None:
    assert world.matching("params.optimizer in ('sgd', 'adam')") == {
        "trial-1",
        "trial-2",
        "trial-3",
        "Trial-5",
    }
    assert world.matching("params.optimizer not in ('sgd')") == {"trial-2", "trial-3", "other-4"}
    assert world.matching("params.layers in (9, 10, 11)") == {"trial-1", "trial-2"}
    assert world.matching("metrics.val_acc in (0.92, 0.97)") == {"trial-2", "trial-3", "Trial-5"}
    assert world.matching("attributes.status in ('FAILED', 'RUNNING')") == {"trial-3", "other-4"}
    assert world.matching("tags.model_type not in ('rf')") == {"trial-1", "trial-2", "Trial-5"}


def test_like_is_case_sensitive_and_ilike_is_not_on_every_backend(world: World) -> None:
    assert world.matching("attributes.name like 'trial-%'") == {"trial-1", "trial-2", "trial-3"}
    assert world.matching("attributes.name ilike 'TRIAL-%'") == {
        "trial-1",
        "trial-2",
        "trial-3",
        "Trial-5",
    }
    assert world.matching("params.optimizer like 'SG_'") == {"other-4"}
    assert world.matching("params.optimizer ilike 'sg_'") == {"trial-1", "other-4", "Trial-5"}
    # _ is any one character, \_ a literal underscore; * is not a wildcard.
    assert world.matching("tags.note like 'a_b'") == {"trial-2", "trial-3"}
    assert world.matching(r"tags.note like 'a\_b'") == {"trial-3"}
    assert world.matching("tags.note like 'x*%'") == {"trial-1"}


def test_backquoted_and_dotted_keys(world: World) -> None:
    assert world.matching("params.`my.key` = 'a'") == {"trial-1"}
    assert world.matching("params.`batch-size` = 32") == {"trial-1"}
    assert world.matching("tags.`my-tag` = 'x'") == {"other-4"}
    assert world.matching("tags.sweep.state = 'COMPLETE'") == {"trial-1"}
    assert world.matching("tags.`sweep.state` = 'COMPLETE'") == {"trial-1"}


def test_order_by_puts_missing_keys_last_and_breaks_ties_by_start_time(world: World) -> None:
    assert world.names(None, ["metrics.val_acc desc"]) == [
        "trial-3",  # 0.97
        "trial-1",  # 0.95
        "trial-2",  # 0.92, started before Trial-5
        "Trial-5",  # 0.92
        "other-4",  # no val_acc
    ]
    assert world.names(None, ["metrics.val_acc"]) == [
        "trial-2",
        "Trial-5",
        "trial-1",
        "trial-3",
        "other-4",
    ]
    # Params sort numerically, then text values, then runs without the param.
    assert world.names(None, ["params.lr desc"]) == [
        "trial-3",
        "trial-2",
        "trial-1",
        "other-4",
        "Trial-5",
    ]
    assert world.names(None, ["params.layers asc"])[:2] == ["trial-2", "trial-1"]  # 9 < 10
    by_type_then_acc = ["trial-2", "Trial-5", "trial-1", "trial-3", "other-4"]
    assert world.names(None, ["tags.model_type desc", "metrics.val_acc"]) == by_type_then_acc
    assert world.names(None, ["tags.model_type DESC, metrics.val_acc ASC"]) == by_type_then_acc
    assert world.names(None, ["attributes.start_time desc"]) == list(RUNS)[::-1]
    assert world.names() == list(RUNS)  # default: start time


def test_max_results_returns_the_top_of_the_order(world: World) -> None:
    assert world.names(None, ["metrics.val_acc desc"], max_results=2) == ["trial-3", "trial-1"]
    assert world.names("tags.model_type = 'sgd'", max_results=1) == ["trial-1"]
    with pytest.raises(ValueError, match="max_results"):
        world.names(max_results=0)


def test_the_python_api_searches_a_sweep_or_an_experiment_by_name(own_world: World) -> None:
    with own_world.store.db.session() as session:  # what `sweep launch` records
        session.add(
            SweepRow(
                name="my-sweep",
                study_name="my-sweep",
                experiment_id=own_world.experiment_id,
                parent_run_id=own_world.parent.run_id,
                status="FINISHED",
                spec_yaml="",
                created_at=0,
                updated_at=0,
            )
        )
    best = sweep.search_runs(
        "my-sweep", "metrics.val_acc > 0.9", ["metrics.val_acc desc"], storage=own_world.url
    )
    assert [r.name for r in best] == ["trial-3", "trial-1", "trial-2", "Trial-5"]
    # An experiment's search covers all its runs, the sweep's parent run included.
    runs = sweep.search_runs("exp", "params.lr < 0.01", storage=own_world.url)
    assert [r.name for r in runs] == ["trial-1", "trial-2"]
    assert len(sweep.search_runs(storage=own_world.url)) == len(RUNS) + 2  # the whole store
    with pytest.raises(NotFoundError, match="no sweep or experiment called 'nope'"):
        sweep.search_runs("nope", storage=own_world.url)


INVALID_FILTERS = [
    # (filter, position of the bad token, what the message says)
    ("foo.x = 1", 0, "unknown key type 'foo' in 'foo.x' at position 0"),
    (
        "params.lr 0.01",
        10,
        "expected an operator (=, !=, <, <=, >, >=, like, ilike, in, not in) "
        "after 'params.lr' at position 10, got '0.01'",
    ),
    ("tags.model_type = 'sgd", 18, "unterminated string starting at position 18"),
    (
        "params.lr < 0.01 and ",
        21,
        "expected a key like params.lr, metrics.val_acc, tags.model_type or attributes.status "
        "after 'and' at position 21, got the end of the filter",
    ),
    ("params.lr < 0.0.1", 12, "invalid number '0.0.1' at position 12"),
    ("metrics.loss <= 1e", 16, "invalid number '1e' at position 16"),
    ("params.`my.key = 'a'", 7, "unterminated backquoted key starting at position 7"),
    ("params.lr < 0.1 or params.lr > 1", 16, "'or' at position 16 is not supported"),
    ("params.lr < 0.1 params.x = 1", 16, "expected 'and' or the end of the filter after '0.1'"),
    ("lr < 0.1", 0, "'lr' at position 0 has no type; expected params.lr, metrics.lr"),
    ("metrics.val_acc > high", 18, "quote text values: 'high'"),
    ("metrics.val_acc = 'high'", 18, "metrics are numbers; expected a number at position 18"),
    ("tags.model_type = 3", 18, "tags are text; expected a quoted value at position 18"),
    ("attributes.colour = 'red'", 0, "unknown attribute 'colour' at position 0"),
    ("attributes.status = 'DONE'", 20, "expected a status (RUNNING, FINISHED, FAILED, KILLED)"),
    ("params.optimizer in 'sgd'", 20, "expected '(' to open the list of values"),
    ("params.optimizer in ('sgd' 'adam')", 27, "expected ',' or ')' in the list of values"),
    ("params.lr-x < 1", 9, "unexpected character '-' at position 9"),
    ("größe < 1", 0, "'größe' at position 0 has no type"),
    (
        "params.größe < 1 and metrics.€ > 0",
        29,
        "expected a key name after 'metrics.' at position 29",
    ),
]


@pytest.mark.parametrize(("text", "position", "message"), INVALID_FILTERS)
def test_a_malformed_filter_points_at_the_bad_token(
    world: World, text: str, position: int, message: str
) -> None:
    with pytest.raises(FilterError) as caught:
        world.names(text)
    error = caught.value
    assert error.position == position
    first, quoted, caret = str(error).splitlines()
    assert first.startswith("invalid filter: ")
    assert message in first
    assert quoted == "    " + text
    assert caret.index("^") == 4 + position


@pytest.mark.parametrize(
    ("order_by", "position", "message"),
    [
        (
            "metrics.val_acc down",
            16,
            "expected 'asc', 'desc', ',' or the end after 'metrics.val_acc' at position 16, "
            "got 'down'",
        ),
        ("val_acc desc", 0, "'val_acc' at position 0 has no type"),
        ("metrics.val_acc desc,", 21, "after ',' at position 21, got the end of the order-by"),
    ],
)
def test_a_malformed_order_by_points_at_the_bad_token(
    world: World, order_by: str, position: int, message: str
) -> None:
    with pytest.raises(FilterError) as caught:
        world.names(None, ["attributes.name", order_by])
    first, quoted, caret = str(caught.value).splitlines()
    assert first.startswith("invalid order-by: ") and message in first
    assert quoted == "    " + order_by
    assert caret.index("^") == 4 + position


def test_cli_filters_orders_prints_json_and_exits_2_on_a_bad_filter(
    sqlite_url: str, tmp_path: Path
) -> None:
    db = Database(sqlite_url)
    db.ensure_schema()
    store = TrackingStore(db)
    experiment = store.get_or_create_experiment("cli-exp", tmp_path / "artifacts")
    for name, lr, acc in (
        ("a", 0.001, 0.91),
        ("b", 0.002, 0.97),
        ("c", 0.5, 0.99),
        ("d", 0.003, 0.5),
    ):
        run = store.create_run(experiment, name, params={"lr": lr})
        store.log_metrics(run.run_id, [MetricPoint("val_acc", acc, 1, 0)])
    db.dispose()
    common = ("--storage", sqlite_url)

    result = run_cli(
        "runs",
        "cli-exp",
        "--filter",
        "params.lr < 0.01 and metrics.val_acc > 0.9",
        "--order-by",
        "metrics.val_acc desc",
        "--json",
        *common,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    runs = json.loads(result.stdout)
    assert [r["name"] for r in runs] == ["b", "a"]
    assert runs[0]["metrics"] == {"val_acc": 0.97} and runs[0]["params"] == {"lr": "0.002"}

    table = run_cli(
        "runs",
        "cli-exp",
        "--order-by",
        "params.lr desc",
        "--max-results",
        "2",
        *common,
        cwd=tmp_path,
    )
    assert table.returncode == 0, table.stderr
    assert table.stdout.index("lr=0.5") < table.stdout.index("lr=0.003")
    assert "lr=0.002" not in table.stdout
    assert "showing the first 2 runs; raise --max-results" in table.stderr

    bad = run_cli("runs", "cli-exp", "--filter", "params.lr 0.01", *common, cwd=tmp_path)
    assert bad.returncode == 2
    assert "after 'params.lr' at position 10" in bad.stderr
    lines = bad.stderr.splitlines()
    quoted = next(i for i, line in enumerate(lines) if line.endswith("params.lr 0.01"))
    assert lines[quoted + 1].index("^") == lines[quoted].index("params.lr 0.01") + 10
