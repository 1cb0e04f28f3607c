"""`sweep ui` in a real browser (Debian's headless chromium, driven by Playwright) over
real sweeps in PostgreSQL: every page opens, its charts render with no console error,
the trials table filters, two runs compare, and a promotion needs the write token.

Screenshots of each page land in tests/assets/screenshots/ (the README shows them).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest

import sweep
from sweep.registry import ModelRegistry
from sweep.storage import Database
from sweep.study import get_sweep_record
from tests.conftest import IN_CI
from tests.helpers import fresh_postgres_database, sweep_context
from tests.helpers import write_toy_spec as write_spec

pytestmark = pytest.mark.usefixtures("local_ray")

SCREENSHOTS = Path(__file__).parent / "assets" / "screenshots"
TOKEN = "s3cret-token"


def _chromium() -> str:
    path = os.environ.get("SWEEP_TEST_CHROMIUM") or shutil.which("chromium")
    if path is None:
        message = "chromium is not installed (apt-get install chromium; .ci/run does)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="module")
def store(local_ray: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """PostgreSQL holding: sweep ``toy`` (12 trials, a registered challenger), a plain
    Optuna study with no sweep record, and sweep ``gone`` whose study Optuna deleted."""
    tmp = tmp_path_factory.mktemp("ui")
    with pytest.MonkeyPatch.context() as env, fresh_postgres_database() as url:
        env.setenv("SWEEP_HOME", str(tmp / "home"))
        sweep.launch(write_spec(tmp, budget={"n_trials": 12}), storage=url)
        # A sweep set up as a launch does (study, parent run), its study then deleted.
        sweep_context(url, tmp / "gone", "gone", "toy:no_model")
        optuna.delete_study(study_name="gone", storage=url)
        plain = optuna.create_study(study_name="plain", storage=url)
        plain.optimize(lambda t: t.suggest_float("a", 0, 1) ** 2, n_trials=3)
        yield url


def _serve(url: str, token: str | None) -> tuple[str, Any, threading.Thread]:
    import uvicorn

    from sweep.ui import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(
        create_app(url, write_token=token), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server, thread


@pytest.fixture(scope="module")
def base_url(store: str) -> Iterator[str]:
    base, server, thread = _serve(store, TOKEN)
    yield base
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    executable = _chromium()
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def context(browser: Any) -> Iterator[Any]:
    """One browser context for the module: plotly.js is fetched and compiled once."""
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    ctx.set_default_timeout(120_000)  # a loaded 2-core CI machine is slow
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: Any) -> Iterator[Any]:
    """A page that records console errors and uncaught exceptions in ``page.errors``."""
    tab = context.new_page()
    errors: list[str] = []
    tab.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.errors = errors
    yield tab
    tab.close()


def _open(page: Any, url: str) -> None:
    response = page.goto(url)
    assert response is not None and response.status == 200, (url, response and response.status)


def _shot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def _charts_drawn(page: Any, ids: list[str]) -> None:
    for chart_id in ids:
        # Importances are worked out in a worker process that the first sweep page starts
        # (its imports take seconds on a loaded machine); the page asks again each second.
        timeout = 90_000 if chart_id == "importances" else 15_000
        page.wait_for_selector(f"#chart-{chart_id}.js-plotly-plot", timeout=timeout)
        assert page.locator(f"#chart-{chart_id} .main-svg").count() >= 1, chart_id


def test_sweeps_page_lists_sweeps_and_half_gone_ones(page: Any, base_url: str) -> None:
    _open(page, base_url + "/")
    table = page.locator("#sweeps").inner_text()
    assert "toy" in table and "12/12" in table
    assert "STUDY DELETED" in table  # `gone`: its study deleted with Optuna's tools
    assert "STUDY ONLY" in table  # `plain`: an Optuna study without a sweep
    assert "postgresql+psycopg://postgres@" in page.inner_text("header")
    _shot(page, "sweeps")
    assert page.errors == []


def test_sweep_page_draws_its_charts_and_filters_its_trials(
    page: Any, base_url: str, store: str
) -> None:
    _open(page, base_url + "/sweeps/toy")
    _charts_drawn(page, ["history", "curves", "parallel", "slice", "contour", "importances"])
    assert page.locator("#trials tr").count() == 13  # header + 12 trials
    _shot(page, "sweep")

    page.fill("#filter-form input[name=filter]", "params.x < 0.5")
    page.click("#filter-form button[type=submit]")
    page.wait_for_load_state()
    expected = sweep.search_runs("toy", "params.x < 0.5", storage=store)
    rows = page.locator("#trials tr").all()[1:]
    assert 0 < len(expected) < 12 and len(rows) == len(expected)
    header = [
        th.inner_text().strip() for th in page.locator("#trials tr").first.locator("th").all()
    ]
    x_col = next(i for i, h in enumerate(header) if h.startswith("x"))
    assert all(float(r.locator("td").nth(x_col).inner_text()) < 0.5 for r in rows)

    _open(page, base_url + "/sweeps/toy?filter=params.x+%3C%3C+1")
    assert "filter" in page.inner_text("#filter-error").lower()
    assert page.errors == []


def test_two_runs_compare_side_by_side(page: Any, base_url: str) -> None:
    _open(page, base_url + "/sweeps/toy")
    boxes = page.locator("#trials input[type=checkbox]")
    boxes.nth(0).check()
    boxes.nth(1).check()
    page.click("#compare-button")
    page.wait_for_load_state()
    assert "/compare?" in page.url
    assert page.locator("#compare tr").first.locator("th").count() == 3  # label + 2 runs
    assert "x" in page.inner_text("#compare")
    _charts_drawn(page, ["c1"])
    _shot(page, "compare")
    assert page.errors == []


def test_run_page_charts_every_metric(page: Any, base_url: str, store: str) -> None:
    run = sweep.search_runs("toy", "metrics.loss >= 0", ["metrics.score desc"], storage=store)[0]
    _open(page, f"{base_url}/runs/{run.run_id}")
    _charts_drawn(page, ["m1", "m2"])  # loss and score
    assert "x" in page.inner_text("#params")
    assert "sweep.git" in page.inner_text("#tags") or "sweep.python" in page.inner_text("#tags")
    _shot(page, "run")
    # Sweep `gone` never ran a trial: its parent run has no metrics, said so.
    db = Database(store)
    record = get_sweep_record(db, "gone")
    db.dispose()
    assert record is not None
    _open(page, f"{base_url}/runs/{record.parent_run_id}")
    assert page.locator("#no-metrics").count() == 1
    assert page.errors == []


def test_a_deleted_study_shows_as_such(page: Any, base_url: str) -> None:
    _open(page, base_url + "/sweeps/gone")
    assert "is gone" in page.inner_text("main")
    _open(page, base_url + "/sweeps/plain")
    assert "no sweep record" in page.inner_text("main")
    _charts_drawn(page, ["history"])
    assert page.errors == []
    response = page.goto(base_url + "/sweeps/never-was")
    assert response.status == 404 and "no sweep or study" in page.inner_text("main")


def test_promotion_needs_the_write_token(page: Any, base_url: str, store: str) -> None:
    _open(page, base_url + "/models")
    _shot(page, "models")
    promote = page.locator("form[action='/models/toy-model/promote']")
    promote.locator("input[name=user]").fill("alice")
    promote.locator("input[name=token]").fill("wrong")
    promote.locator("button.promote").click()
    page.wait_for_load_state()
    assert "wrong or missing write token" in page.inner_text("main")
    assert page.errors == [
        "Failed to load resource: the server responded with a status of 403 (Forbidden)"
    ]
    page.errors.clear()
    db = Database(store)
    registry = ModelRegistry(db)
    assert registry.get_model("toy-model").aliases.get("champion") is None

    _open(page, base_url + "/models")
    promote = page.locator("form[action='/models/toy-model/promote']")
    promote.locator("input[name=user]").fill("alice")
    promote.locator("input[name=token]").fill(TOKEN)
    promote.locator("input[name=reason]").fill("better on the holdout")
    promote.locator("button.promote").click()
    page.wait_for_load_state()
    assert "is @champion" in page.inner_text(".message")
    assert registry.get_model("toy-model").aliases.get("champion") == 1
    event = registry.history("toy-model")[-1]
    assert event.user == "alice (sweep ui)" and event.reason == "better on the holdout"
    db.dispose()
    assert page.errors == []


def test_a_ui_without_a_token_refuses_every_write(store: str) -> None:
    from starlette.testclient import TestClient

    from sweep.ui import create_app

    with TestClient(create_app(store)) as client:
        page = client.get("/models")
        assert "need <code>sweep ui --write-token</code>" in page.text
        refused = client.post("/models/toy-model/rollback", data={"user": "mallory", "token": ""})
        assert refused.status_code == 403 and "read-only" in refused.text
        paused = client.post(
            "/sweeps/toy/control", data={"user": "m", "token": "x", "action": "pause"}
        )
        assert paused.status_code == 403
    assert sweep.search_runs("toy", storage=store)  # the store is untouched and readable
