"""
The errors systemflow raises.

Every error is a ``FlowError`` and carries data, not only a message: the path of
the node it came from and the run id, plus whatever else tells the story (the
offending type, both fingerprints). The tree::

    FlowError
    +-- StepFailed                 a node of the tree failed; the cause is chained
    |   +-- FlowTimeout            ... because a step ran past its timeout (also TimeoutError)
    |   +-- ServiceNotFound        ... because a Call's service is not in ctx (also LookupError)
    +-- CompensationFailed         a saga failed and some of its undos failed too
    +-- FlowPaused                 a durable run is waiting (a signal, a timer); not a failure
    +-- FlowVersionMismatch        the tree changed under a paused run
    +-- RunLocked                  another claim holds the run
    +-- RunNotFound                no run with that id (also LookupError)
    +-- RunFinished                the run is over: it takes no signals (also ValueError)
    +-- RunExists                  a run with that id exists, with another input (also ValueError)
    +-- SerializationError         a value cannot be stored or read back (also TypeError)
    +-- FlowDefinitionError        a tree is malformed at construction (also ValueError, TypeError)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, final

if TYPE_CHECKING:
    import datetime as dt
    from collections import abc

    from ._flow import Path


def format_path(path: Path) -> str:
    """
    Render a node path for humans: ``order/2/charge``, or ``<root>``.
    """
    return "/".join(map(str, path)) if path else "<root>"


class FlowError(Exception):
    """
    The root of every error systemflow raises.

    Attributes:
        path: The path of the node the error came from (``()`` for the root).
        run_id: The run the error happened in, when there is one.

    .. versionadded:: 0.1.0
    """

    path: Path
    run_id: str | None

    def __init__(self, message: str, *, path: Path = (), run_id: str | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.run_id = run_id


class StepFailed(FlowError):
    """
    A node of the tree failed; ``__cause__`` is what it raised.

    .. versionadded:: 0.1.0
    """


@final
class FlowTimeout(StepFailed, TimeoutError):
    """
    A step ran longer than its ``timeout=``.

    Attributes:
        timeout: The limit, in seconds.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self, message: str, *, path: Path = (), run_id: str | None = None, timeout: float
    ) -> None:
        super().__init__(message, path=path, run_id=run_id)
        self.timeout = timeout


@final
class CompensationFailed(FlowError):
    """
    A saga scope failed and at least one of its undos failed too.

    The scope still ran every undo it could. ``__cause__`` is the original failure.

    Attributes:
        original: The failure that started the compensation.
        errors: One ``StepFailed`` per undo that failed, newest first; each names
            the path of the step it was undoing.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        message: str,
        *,
        path: Path = (),
        run_id: str | None = None,
        original: BaseException,
        errors: abc.Sequence[StepFailed],
    ) -> None:
        super().__init__(message, path=path, run_id=run_id)
        self.original = original
        self.errors = tuple(errors)


@final
class ServiceNotFound(StepFailed, LookupError):
    """
    A ``Call`` names a service that ``ctx.services`` does not have.

    A configuration error of the process, not of the run: in a durable run it
    is not journaled and undoes nothing, and the run is handed back as it was,
    to be resumed where the service is given. Elsewhere it is a step's failure
    like any other.

    Attributes:
        service: The name the step asked for.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self, message: str, *, path: Path = (), run_id: str | None = None, service: str
    ) -> None:
        super().__init__(message, path=path, run_id=run_id)
        self.service = service


def interrupts(exc: BaseException, durable: bool) -> bool:
    """
    Tell whether ``exc`` stops a run without being a failure of it.

    A pause always; in a durable run, a missing service (it is handed back, to
    be resumed where the service is) and a lost lease (another claim has the
    run, or a run it needs). None is retried, journaled or compensated.
    """
    return isinstance(exc, FlowPaused) or (
        durable and isinstance(exc, (ServiceNotFound, RunLocked))
    )


class FlowPaused(FlowError):
    """
    A durable run is waiting for a signal or a timer.

    Pausing is not failure: it never triggers a retry or a compensation.
    ``run_id`` says which run to resume.

    Attributes:
        wake_at: When the earliest timer it waits for is due, if any.
        signals: The signals it waits for.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        message: str,
        *,
        path: Path = (),
        run_id: str | None = None,
        wake_at: dt.datetime | None = None,
        signals: abc.Iterable[str] = (),
    ) -> None:
        super().__init__(message, path=path, run_id=run_id)
        self.wake_at = wake_at
        self.signals = tuple(signals)


@final
class FlowVersionMismatch(FlowError):
    """
    The tree's shape changed since the run was started.

    Attributes:
        stored: The fingerprint the run was started with.
        current: The fingerprint of the tree now.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        message: str,
        *,
        path: Path = (),
        run_id: str | None = None,
        stored: str,
        current: str,
    ) -> None:
        super().__init__(message, path=path, run_id=run_id)
        self.stored = stored
        self.current = current


@final
class RunLocked(FlowError):
    """
    Another claim holds the run's lease.

    .. versionadded:: 0.1.0
    """


@final
class RunNotFound(FlowError, LookupError):
    """
    No run has that id.

    .. versionadded:: 0.1.0
    """


@final
class RunFinished(FlowError, ValueError):
    """
    The run has completed, failed or been cancelled: it takes no more signals.

    Attributes:
        status: The run's status, as its lower-case word.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self, message: str, *, path: Path = (), run_id: str | None = None, status: str
    ) -> None:
        super().__init__(message, path=path, run_id=run_id)
        self.status = status


@final
class RunExists(FlowError, ValueError):
    """
    ``start`` was given the id of an existing run, with a different input.

    Starting again with the same id and input is not an error: it resumes
    that run (or returns it, if it is over), so starts can be retried.

    .. versionadded:: 0.1.0
    """


@final
class SerializationError(FlowError, TypeError):
    """
    A value cannot be stored, or a stored value cannot be read back.

    Attributes:
        type: The offending type, when known.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        message: str,
        *,
        path: Path = (),
        run_id: str | None = None,
        type: Any = None,
    ) -> None:
        super().__init__(message, path=path, run_id=run_id)
        self.type = type


@final
class FlowDefinitionError(FlowError, ValueError, TypeError):
    """
    A tree is malformed: two siblings share a name, an option makes no sense, ...

    Raised by constructors, before anything runs. It is also a ``ValueError``
    and a ``TypeError``, so code that guards a constructor with either catches it.

    .. versionadded:: 0.1.0
    """
