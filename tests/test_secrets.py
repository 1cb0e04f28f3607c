"""Passwords never appear in output, errors, tags, tables or artifacts, in any of the
forms libpq and SQLAlchemy accept them (issue 18).

The end-to-end cases launch real sweeps through the CLI on the test PostgreSQL server,
whose trust authentication accepts any password, so that a URL holding one connects.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path

import pytest
import sqlalchemy
from sqlalchemy.engine import make_url

from sweep.errors import StorageError
from sweep.storage import Database, mask_url, normalise_url, redact
from sweep.tracking import TrackingStore
from tests.helpers import write_toy_spec
from tests.test_cli import run_cli

S = "S3cr3t-pw"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("postgresql+psycopg://u:S3cr3t-pw@h/db", "postgresql+psycopg://u:***@h/db"),
        ("postgresql://:S3cr3t-pw@h:5432/db", "postgresql://:***@h:5432/db"),
        ("postgresql://u:S3cr3t@pw@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:S3@cr@3t@h/db?sslmode=require", "postgresql://u:***@h/db?sslmode=require"),
        ("postgresql://u:S3cr3t?pw@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u@h/db?password=S3cr3t-pw", "postgresql://u@h/db?password=***"),
        (
            "postgresql://u@h/db?sslmode=require&password=S3cr3t-pw&application_name=x",
            "postgresql://u@h/db?sslmode=require&password=***&application_name=x",
        ),
        ("postgresql://u@h/db?PASSWORD=S3cr3t@pw", "postgresql://u@h/db?PASSWORD=***"),
        ("postgresql://u@h/db?sslpassword=S3cr3t-pw", "postgresql://u@h/db?sslpassword=***"),
        ("host=h port=5432 password=S3cr3t-pw user=u", "host=h port=5432 password=*** user=u"),
        ("host=h password='S3cr3t pw' user=u", "host=h password=*** user=u"),
        ("host=h password = S3cr3t-pw", "host=h password = ***"),
        ("PGPASSWORD=S3cr3t-pw sweep launch", "PGPASSWORD=*** sweep launch"),
        (
            "sweep launch s.yaml --storage=postgresql://u:S3cr3t-pw@h/db --debug",
            "sweep launch s.yaml --storage=postgresql://u:***@h/db --debug",
        ),
        ('storage: "postgresql://u:S3cr3t-pw@h/db"\n', 'storage: "postgresql://u:***@h/db"\n'),
        ("s3://key:S3cr3t-pw@bucket/prefix", "s3://key:***@bucket/prefix"),
    ],
)
def test_redact_masks_every_credential_form(text: str, shown: str) -> None:
    assert redact(text) == shown
    assert "S3cr3t" not in redact(text)


@pytest.mark.parametrize(
    "text",
    [
        "postgresql+psycopg://user@db-host:5432/sweeps",
        "sqlite:////home/me/a@b:c/sweep.db",
        "sweep runs quickstart --filter \"params.alpha < 0.01 and tags.x = 'y'\"",
        "${SWEEP_DATABASE_URL}",
    ],
)
def test_redact_keeps_what_holds_no_secret(text: str) -> None:
    assert redact(text) == text


def test_mask_url_takes_a_parsed_url_too() -> None:
    url = make_url("postgresql+psycopg://u:S3cr3t@h/db?password=S3cr3t")
    assert mask_url(url) == "postgresql+psycopg://u:***@h/db?password=***"


def test_an_unencoded_at_in_the_password_is_part_of_the_password() -> None:
    """SQLAlchemy alone takes 'pw@h' for the host, so the tail of the password reached
    the connection error; now the last '@' ends the password."""
    parsed = make_url(normalise_url("postgresql://u:S3cr@t@db-host:5432/db"))
    assert (parsed.password, parsed.host, parsed.port) == ("S3cr@t", "db-host", 5432)


def test_errors_for_bad_urls_mask_the_password() -> None:
    for url in (
        "host=h password=S3cr3t-pw",  # a libpq DSN: not a URL sweep takes
        "mysql://u:S3cr3t-pw@h/db",
        "postgresql://u:S3cr3t-pw@h:port/db",
    ):
        with pytest.raises(StorageError) as caught:
            Database(url)
        assert "S3cr3t" not in str(caught.value) and "***" in str(caught.value)


# -- end to end ----------------------------------------------------------------------


def _everything_in(url: str) -> str:
    """Every value of every table of the database, as text: the database dumped."""
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        metadata = sqlalchemy.MetaData()
        metadata.reflect(engine)
        with engine.connect() as conn:
            rows = [
                repr(tuple(row))
                for table in metadata.sorted_tables
                for row in conn.execute(sqlalchemy.select(table))
            ]
    finally:
        engine.dispose()
    assert any("sweep.command" in row for row in rows)  # the dump reached the tags
    return "\n".join(rows)


def _files_under(root: Path) -> str:
    return "\n".join(
        p.read_bytes().decode("utf-8", "replace") for p in root.rglob("*") if p.is_file()
    )


def _with_password(url: str, password: str, *, user: str | None = "postgres") -> str:
    parsed = make_url(url)
    auth = f"{user or ''}:{password}"
    return f"postgresql+psycopg://{auth}@{parsed.host}:{parsed.port or 5432}/{parsed.database}"


FORMS = ["userinfo-with-at", "empty-user", "query-in-spec", "query-in-env", "pgpassword"]


@pytest.mark.parametrize("form", FORMS)
def test_a_launch_stores_and_prints_no_password(
    form: str, postgres_url: str, tmp_path: Path
) -> None:
    secret = f"pw{uuid.uuid4().hex[:10]}"
    base = make_url(postgres_url)
    plain = base.render_as_string(hide_password=False)
    # Ray's session (its logs) where this test can read it: a short path, for its sockets.
    ray_dir = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))
    env = {"SWEEP_ARTIFACT_ROOT": str(tmp_path / "artifacts"), "RAY_TMPDIR": str(ray_dir)}
    args: list[str] = []
    spec_storage = None
    if form == "userinfo-with-at":
        args = ["--storage", _with_password(postgres_url, f"{secret}@tail{secret}")]
    elif form == "empty-user":
        args = ["--storage", _with_password(postgres_url, secret, user=None)]
        env["PGUSER"] = base.username or "postgres"
    elif form == "query-in-spec":  # and so in the spec text kept on the parent run
        spec_storage = f"{plain}?password={secret}"
    elif form == "query-in-env":
        env["SWEEP_DATABASE_URL"] = f"{plain}?sslmode=prefer&password={secret}"
    else:
        env["PGPASSWORD"] = secret
        args = ["--storage", plain]
    # The forms that hand the password over in the environment (which Ray's workers
    # inherit) run on Ray, and its session's logs are searched for the password too; the
    # others on local workers (the default), which write no logs of their own.
    on_ray = form in ("query-in-env", "pgpassword")
    overrides: dict[str, object] = {
        "budget": {"n_trials": 2},
        "parallelism": 1,
        "executor": "ray" if on_ray else "local",
    }
    if spec_storage is not None:
        overrides["storage"] = spec_storage
        # A ${VAR} in the spec is kept as written in the stored spec text.
        overrides["tracking"] = {"artifact_root": "${ARTIFACTS_HERE}"}
        env["ARTIFACTS_HERE"] = env["SWEEP_ARTIFACT_ROOT"]
    spec = write_toy_spec(tmp_path, **overrides)

    launched = run_cli("launch", str(spec), *args, cwd=tmp_path, env=env)
    later = args if spec_storage is None else ["--storage", spec_storage]
    listed = run_cli("runs", "toy", "--json", *later, cwd=tmp_path, env=env)
    status = run_cli("status", "--json", *later, cwd=tmp_path, env=env)
    outputs = [launched, listed, status]
    for result in outputs:
        assert result.returncode == 0, result.stdout + result.stderr
        assert secret not in result.stdout + result.stderr
    assert "postgresql+psycopg://" in launched.stdout  # the store is shown, masked

    dump = _everything_in(postgres_url)
    assert secret not in dump
    assert spec_storage is None or "${ARTIFACTS_HERE}" in dump
    assert secret not in _files_under(tmp_path / "artifacts")
    ray_logs = _files_under(ray_dir)
    shutil.rmtree(ray_dir, ignore_errors=True)
    if on_ray:
        assert "TrialActor" in ray_logs  # Ray's session was there: its workers' logs too
    assert secret not in ray_logs
    runs = TrackingStore(Database(postgres_url)).list_runs()
    parent = next(r for r in runs if r.parent_run_id is None)
    assert parent.tags["sweep.storage"].startswith("postgresql+psycopg://")
    if form != "pgpassword":
        assert "***" in parent.tags["sweep.storage"] + parent.tags["sweep.command"]
    assert all(secret not in r.tags.get("sweep.command", "") for r in runs)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://alice:{s}@tail{s}@127.0.0.1:1/db",
        "postgresql+psycopg://:{s}@127.0.0.1:1/db",
        "postgresql+psycopg://alice@127.0.0.1:1/db?password={s}",
        "host=127.0.0.1 port=1 password={s}",
        "postgresql+psycopg://alice:{s}@127.0.0.1:port/db",
    ],
)
def test_a_store_that_fails_names_no_password(url: str, tmp_path: Path) -> None:
    secret = f"pw{uuid.uuid4().hex[:10]}"
    spec = write_toy_spec(tmp_path, budget={"n_trials": 1})
    for args in (["launch", str(spec)], ["models", "list"]):
        result = run_cli(*args, "--storage", url.format(s=secret), cwd=tmp_path)
        assert result.returncode == 3, result.stdout + result.stderr
        assert secret not in result.stdout + result.stderr
        assert "error:" in result.stderr and "Traceback" not in result.stderr


def test_validate_refuses_a_bad_storage_url_without_echoing_it(tmp_path: Path) -> None:
    secret = f"pw{uuid.uuid4().hex[:10]}"
    for url, reason in (
        (f"mysql://u:{secret}@h/db", "unsupported database 'mysql'"),
        (f"postgresql://u:{secret}@h:port/db", "port"),
        (f"host=h password={secret}", "not a database URL"),
    ):
        spec = write_toy_spec(tmp_path, storage=url)
        result = run_cli("validate", str(spec), cwd=tmp_path)
        assert result.returncode == 2, result.stdout + result.stderr
        assert reason in result.stderr and "storage" in result.stderr
        assert secret not in result.stdout + result.stderr
        assert "Traceback" not in result.stderr


def test_pgpassword_is_never_echoed(tmp_path: Path) -> None:
    """PGPASSWORD is never echoed: not by an error about the store either."""
    secret = f"pw{uuid.uuid4().hex[:10]}"
    result = run_cli(
        "runs",
        "toy",
        "--storage",
        "postgresql+psycopg://alice@127.0.0.1:1/db",
        cwd=tmp_path,
        env={"PGPASSWORD": secret},
    )
    assert result.returncode == 3
    assert secret not in result.stdout + result.stderr
