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
    """``url`` checked and made canonical: psycopg 3 for PostgreSQL, an absolute path for
    SQLite, an unencoded ``@`` in the password percent-encoded. Raises
    :class:`~sweep.errors.StorageError` (credentials masked) for anything else."""
    parsed = check_url(url)
    if parsed.get_backend_name() == "postgresql" and parsed.drivername in (
        "postgresql",
        "postgres",
    ):
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            path = Path(database).expanduser().resolve()
            path.parent.mkdir(parents=True, exist_ok=True)
            parsed = parsed.set(database=str(path))
    return parsed.render_as_string(hide_password=False)


def check_url(url: str) -> sqlalchemy.engine.URL:
    """``url`` parsed, if sweep can store in it (PostgreSQL or SQLite, a numeric port);
    else :class:`~sweep.errors.StorageError` with the credentials masked. No side effects:
    ``sweep validate`` uses it."""
    try:
        parsed = make_url(_encode_userinfo(url))
    except ArgumentError:
        raise StorageError(
            f"{redact(url)!r} is not a database URL; use e.g. "
            "postgresql+psycopg://user@host:5432/db or sqlite:///path/to/sweep.db"
        ) from None
    except ValueError:  # SQLAlchemy's int() of a port that is not a number
        raise StorageError(
            f"the port in {redact(url)!r} is not a number; write it like "
            "postgresql+psycopg://user@host:5432/db"
        ) from None
    backend = parsed.get_backend_name()
    if backend not in ("postgresql", "sqlite"):
        raise StorageError(
            f"unsupported database {backend!r} in {redact(url)!r}; sweep stores studies "
            "in PostgreSQL (postgresql+psycopg://...) or SQLite (sqlite:///...)"
        )
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise StorageError(
            f"the port in {redact(url)!r} is {parsed.port}; a port is between 1 and 65535"
        )
    return parsed


def _encode_userinfo(url: str) -> str:
    """``url`` with every '@' of its userinfo but the last percent-encoded, so that a
    password holding an unencoded '@' is read whole (SQLAlchemy would otherwise take
    its tail for the host)."""
    if "://" not in url or url.startswith("sqlite"):
        return url
    scheme, rest = url.split("://", 1)
    at = _userinfo_end(rest)
    if at <= 0:
        return url
    return f"{scheme}://{rest[:at].replace('@', '%40')}{rest[at:]}"


def redact(text: str) -> str:
    """``text`` with every credential libpq or SQLAlchemy accepts replaced by ``***``.

    The one masking function, used wherever a URL, a command line or a spec is shown or
    stored. It hides: the password in a URL's userinfo, with or without a user name
    (``://:pw@host``) and up to the *last* ``@`` before the host (an unencoded ``@`` in
    the password); ``password=`` (and ``sslpassword=``, ``PGPASSWORD=``, any
    ``...password=``) in a URL's query string; the same keys in a libpq keyword/value
    string (``host=db password=secret``, quoted values included).
    """
    text = _URL.sub(_mask_one_url, text)
    return _KEYWORD_SECRET.sub(_mask_keyword, text)


def mask_url(url: str | sqlalchemy.engine.URL) -> str:
    """The URL (or libpq string) with its credentials masked: :func:`redact` on its text."""
    text = url if isinstance(url, str) else url.render_as_string(hide_password=False)
    return redact(text)


#: A URL: a scheme, ``://``, then everything up to whitespace or a quote.
_URL = re.compile(r"""\b([a-zA-Z][\w+.-]*://)([^\s'"<>`]*)""")
#: A secret in a query string: key ending in "password", value up to the next '&'.
_QUERY_SECRET = re.compile(r"(?i)([?&][\w.-]*password=)[^&#]*")
#: A secret in a libpq keyword/value string or a shell assignment; value quoted or not.
_KEYWORD_SECRET = re.compile(
    r"""(?i)(\b[\w.-]*password\s*=\s*)(?!\*\*\*(?:[\s&'"]|$))('(?:[^'\\]|\\.)*'?|"(?:[^"\\]|\\.)*"?|\S+)"""
)


def _userinfo_end(rest: str) -> int:
    """Where the userinfo of a URL's part after ``://`` ends (its separating '@'), or -1.

    The last '@' before the query string, so that an unencoded '@' in the password is
    part of the password; if the query's '?' comes first (a '?' in the password), the
    last '@' before any '=' (a query value of its own)."""
    head = rest.split("?", 1)[0]
    at = head.rfind("@")
    if at >= 0:
        return at
    equals = rest.find("=")
    return rest.rfind("@", 0, equals if equals >= 0 else len(rest))


def _mask_one_url(match: re.Match[str]) -> str:
    scheme, rest = match.group(1), match.group(2)
    at = -1 if scheme.startswith("sqlite") else _userinfo_end(rest)
    if at >= 0:
        userinfo = rest[:at]
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":***"
        rest = f"{userinfo}{rest[at:]}"
    return scheme + _QUERY_SECRET.sub(r"\1***", rest)


def _mask_keyword(match: re.Match[str]) -> str:
    return f"{match.group(1)}***"
