"""Optuna's tables, as this project reads and writes them directly (in bulk, and inside
its own transactions), and the time convention they follow.

Only ``sweep.storage`` touches these tables with SQL; everything else goes through
its functions or through Optuna's API.
"""

from __future__ import annotations

import datetime
from typing import overload

from optuna.storages._rdb import models

TRIALS = models.TrialModel.__table__
PARAMS = models.TrialParamModel.__table__
VALUES = models.TrialValueModel.__table__
INTERMEDIATE_VALUES = models.TrialIntermediateValueModel.__table__
USER_ATTRS = models.TrialUserAttributeModel.__table__
SYSTEM_ATTRS = models.TrialSystemAttributeModel.__table__


def utc_now() -> datetime.datetime:
    """Now, as Optuna's tables store it: naive UTC."""
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


@overload
def local_time(stored: datetime.datetime) -> datetime.datetime: ...
@overload
def local_time(stored: None) -> None: ...
def local_time(stored: datetime.datetime | None) -> datetime.datetime | None:
    """A stored naive-UTC datetime as Optuna's trials carry it: naive local time."""
    if stored is None:
        return None
    return stored.replace(tzinfo=datetime.timezone.utc).astimezone().replace(tzinfo=None)
