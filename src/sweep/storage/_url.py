"""Where the store lives: resolving, normalising and masking database URLs."""

from __future__ import annotations

import os
import re
from pathlib import Path

import sqlalchemy.engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from sweep.errors import StorageError

#: Environment variable naming the shared store, used when neither the CLI nor the spec does.
DATABASE_URL_ENV = "SWEEP_DATABASE_URL"
#: Folder, relative to the working directory, that holds the embedded default store.
DEFAULT_HOME = ".sweep"


def default_home() -> Path:
    """The project-local folder for the embedded store and local artifacts."""
    return Path(os.environ.get("SWEEP_HOME", DEFAULT_HOME)).resolve()


def resolve_storage_url(explicit: str | None = None, spec_storage: str | None = None) -> str:
    """Pick the store: the CLI/API argument, then the spec, then ``SWEEP_DATABASE_URL``,
    then an embedded SQLite file under ``.sweep/`` in the working directory.

    The result is normalised so every process (Ray workers included) reaches the same
    database: SQLite paths become absolute and ``postgresql://`` uses psycopg 3.
    """
    url = explicit or spec_storage or os.environ.get(DATABASE_URL_ENV)
    if not url:
        home = default_home()
        home.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{home / 'sweep.db'}"
    return normalise_url(url)


def normalise_url(url: str) -> str:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StorageError(
            f"{mask_url(url)!r} is not a database URL; use e.g. "
            "postgresql+psycopg://user@host:5432/db or sqlite:///path/to/sweep.db"
        ) from exc
    backend = parsed.get_backend_name()
    if backend == "postgresql" and parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif backend == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            path = Path(database).expanduser().resolve()
            path.parent.mkdir(parents=True, exist_ok=True)
            parsed = parsed.set(database=str(path))
    elif backend not in ("postgresql", "sqlite"):
        raise StorageError(
            f"unsupported database {backend!r} in {mask_url(url)!r}; "
            "sweep stores studies in PostgreSQL (postgresql+psycopg://...) or SQLite (sqlite:///...)"
        )
    return parsed.render_as_string(hide_password=False)


def mask_url(url: str | sqlalchemy.engine.URL) -> str:
    """The URL with its password replaced by ``***``, safe for logs, errors and tags."""
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except ArgumentError:
        # Not parseable: hide anything between '://' and '@' that could be a secret.
        text = str(url)
        if "@" in text and "://" in text:
            scheme, rest = text.split("://", 1)
            return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
        return text
    return parsed.render_as_string(hide_password=True)


_CREDENTIALS = re.compile(r"(\b[a-zA-Z][\w+.-]*://[^:/@\s]+:)[^@\s]+@")


def redact(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***``."""
    return _CREDENTIALS.sub(r"\1***@", text)
