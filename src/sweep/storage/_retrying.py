"""Optuna's RDB storage, made to ride out a database restart.

Every public storage method is retried, with backoff, while the database is unreachable
(a restart, a failover, a dropped connection), for up to ``RETRY_WINDOW_S`` seconds.
The objective's ``trial.report`` and ``trial.should_prune`` go through it too, so a
PostgreSQL restart of a few seconds pauses a trial instead of failing it.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from optuna.storages import BaseStorage, RDBStorage
from sqlalchemy.exc import DBAPIError, OperationalError

logger = logging.getLogger(__name__)

#: How long an operation keeps retrying while the database is unreachable.
RETRY_WINDOW_S = 90.0

T = TypeVar("T")


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it wraps) means "the database is unreachable right now"."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OperationalError):
            return True
        if isinstance(current, DBAPIError) and current.connection_invalidated:
            return True
        current = current.__cause__ or current.__context__
    return False


def retry_transient(
    operation: Callable[[], T],
    *,
    what: str = "database operation",
    retry_if: Callable[[BaseException], bool] = is_transient,
) -> T:
    """Run ``operation``; while it fails transiently (``retry_if``), wait and run it again."""
    deadline = time.monotonic() + RETRY_WINDOW_S
    delay = 0.1
    while True:
        try:
            return operation()
        except Exception as exc:
            if not retry_if(exc) or time.monotonic() + delay > deadline:
                raise
            logger.warning("%s failed (%s); retrying in %.1f s", what, type(exc).__name__, delay)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


class RetryingRDBStorage(RDBStorage):
    """:class:`optuna.storages.RDBStorage` whose operations survive a database restart."""


def _retried(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(self: RetryingRDBStorage, *args: Any, **kwargs: Any) -> Any:
        return retry_transient(lambda: method(self, *args, **kwargs), what=f"optuna {name}")

    return wrapper


for _name in dir(BaseStorage):
    _method = getattr(RDBStorage, _name, None)
    if not _name.startswith("_") and callable(_method) and _name != "remove_session":
        setattr(RetryingRDBStorage, _name, _retried(_name, _method))

__all__ = ["RetryingRDBStorage", "is_transient", "retry_transient"]
