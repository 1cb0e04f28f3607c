"""The one exception hierarchy of sweep.

Every error a user can cause derives from :class:`SweepError`; each message says what
to do next. The CLI maps the classes below to exit codes (see ``sweep.cli``).
"""

from __future__ import annotations


class SweepError(Exception):
    """Raised for any problem sweep reports to its user; the root of all sweep errors."""


class SpecError(SweepError):
    """Raised when a sweep spec cannot be read or does not validate.

    ``file``, ``key_path`` and ``line`` locate the problem where they are known.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        key_path: str | None = None,
        line: int | None = None,
    ) -> None:
        self.file = file
        self.key_path = key_path
        self.line = line
        self.reason = message
        where = ""
        if file is not None:
            where = f"{file}:{line}: " if line is not None else f"{file}: "
        key = f"{key_path}: " if key_path else ""
        super().__init__(f"{where}{key}{message}")


class SpecErrors(SpecError):
    """Raised when a spec has several problems; ``errors`` holds one SpecError each."""

    def __init__(self, errors: list[SpecError]) -> None:
        self.errors = errors
        first = errors[0]
        super().__init__(first.reason, file=first.file, key_path=first.key_path, line=first.line)
        self.args = ("\n".join(str(e) for e in errors),)

    def __str__(self) -> str:
        return self.args[0]


class ObjectiveImportError(SpecError):
    """Raised when the spec's ``objective`` module or function cannot be imported."""


class StorageError(SweepError):
    """Raised when the database cannot be reached or an operation on it fails."""


class SchemaVersionError(StorageError):
    """Raised when the database schema is older or newer than this version of sweep."""


class SearchTimeoutError(StorageError):
    """Raised when a run search runs past its statement timeout and the database cancels it."""


class MetricFlushError(StorageError):
    """Raised when a run's buffered metric points still cannot be written when it ends."""


class NoActiveRunError(SweepError):
    """Raised when a logging call is made outside a trial or an open run."""


class ArtifactPathError(SweepError):
    """Raised when an artifact name would escape its run's artifact directory."""


class InvalidValueError(SweepError, ValueError):
    """Raised when a logging call gets a key or a dataset it cannot record."""


#: Characters of a filter quoted in a FilterError, around the bad token.
FILTER_SHOWN = 120


class FilterError(SweepError):
    """Raised when a run search's filter or order-by clause is malformed.

    ``text`` is the clause, ``position`` the offset (from 0) of the bad token in it and
    ``reason`` what was expected there; the message quotes the clause with a caret line.
    """

    def __init__(
        self,
        reason: str,
        *,
        text: str,
        position: int,
        length: int = 1,
        what: str = "filter",
    ) -> None:
        self.reason = reason
        self.text = text
        self.position = position
        # Tabs and newlines shown as spaces keep the caret under the token; a long
        # clause is shown as the stretch around the bad token.
        shown = "".join(" " if c.isspace() else c for c in text)
        start = 0
        if len(shown) > FILTER_SHOWN:
            start = max(0, position - FILTER_SHOWN // 2)
            end = start + FILTER_SHOWN
            shown = ("..." if start else "") + shown[start:end] + ("..." if end < len(text) else "")
            start -= 3 if start else 0
        length = min(length, FILTER_SHOWN // 2)
        caret = " " * (position - start) + "^" * max(1, min(length, len(text) - position))
        super().__init__(f"invalid {what}: {reason}\n    {shown}\n    {caret}")


class NotFoundError(SweepError):
    """Raised when a run, experiment, sweep, model, version or alias does not exist."""


class RegistryError(SweepError):
    """Raised when a model cannot be registered, aliased or loaded."""


class RegistrationError(RegistryError):
    """Raised when a sweep's spec demands a registered model and none could be registered."""


class ExecutionError(SweepError):
    """Raised when the trial executors (Ray or local workers) cannot be started or reached."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name if it has none)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def summary(exc: BaseException) -> str:
    """``"ExceptionType: first line of its message"``, for a one-line failure report."""
    return f"{type(exc).__name__}: {first_line(exc)}"


class ModelSaveError(RegistryError):
    """Raised when a model cannot be saved: its flavor does not fit the object, or the
    flavor's writer failed (nothing half-written is left behind)."""


class MlflowExportError(SweepError):
    """Raised when MLflow refuses part of an export; the message names the run."""
