"""The audit log: one event per registration and change, written in the same
transaction as the change, never updated or deleted."""

from __future__ import annotations

import getpass
import socket
from contextvars import ContextVar
from dataclasses import dataclass

from sqlalchemy.orm import Session

from sweep.registry._entities import RegistryEvent
from sweep.storage.schema import RegistryEventRow
from sweep.tracking import now_ms


@dataclass(frozen=True)
class Change:
    """What one audit event records. ``alias`` names the alias an alias change moves,
    ``tag`` the key a tag change concerns; ``from_version`` and ``to_version`` are the
    versions before and after (see :class:`~sweep.registry.RegistryEvent`)."""

    model_name: str
    action: str
    to_version: int | None = None
    from_version: int | None = None
    alias: str | None = None
    tag: str | None = None
    reason: str | None = None


#: Who acts, when not this process's OS user: the web UI sets the user who made the
#: change (``acting_user.set("alice (sweep ui)")``) for the audit log.
acting_user: ContextVar[str | None] = ContextVar("sweep_acting_user", default=None)


def _who() -> tuple[str, str]:
    override = acting_user.get()
    if override:
        return override[:250], socket.gethostname()
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return user, socket.gethostname()


def audit(session: Session, change: Change) -> None:
    """Add the audit event of ``change`` to ``session`` (committed with the change)."""
    user, host = _who()
    session.add(
        RegistryEventRow(
            model_name=change.model_name,
            action=change.action,
            alias=change.alias,
            tag=change.tag,
            from_version=change.from_version,
            to_version=change.to_version,
            user=user,
            host=host,
            reason=change.reason,
            at=now_ms(),
        )
    )


def to_event(row: RegistryEventRow) -> RegistryEvent:
    return RegistryEvent(
        model_name=row.model_name,
        action=row.action,
        alias=row.alias,
        from_version=row.from_version,
        to_version=row.to_version,
        user=row.user,
        host=row.host,
        reason=row.reason,
        at=row.at,
        tag=row.tag,
    )
