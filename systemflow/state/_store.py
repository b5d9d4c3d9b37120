"""
The state store protocol: what ``Stateful`` needs from a place that keeps runs.

A store keeps runs (one row each, with a version and a lease), their history of
events (which is also their journal), and the signals sent to them. Values
cross this boundary as JSON text made by the codec; stores never unpickle or
evaluate anything they read back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import datetime as dt
    from collections import abc

    from .._core import Path
    from ._model import Claim, Event, NewEvent, RunRecord, RunStatus


class StateStore(Protocol):
    """
    Where durable runs live. ``InMemoryStateStore`` and ``SqlStateStore`` implement it.

    Every method that changes a run checks that the caller's claim still holds
    its lease, and raises ``RunLocked`` if not, so a process that lost its run
    (it was too slow, or the run was cancelled) cannot write into it.

    A store may have ``writes_inline = True`` when its ``append`` never waits on
    the event loop (both stores here on SQLite and in memory): a run's journal
    then writes in the run's own task. Otherwise (the default, and PostgreSQL)
    each write runs in a task of its own, so that a cancelled run cannot
    interrupt a write halfway.

    .. versionadded:: 0.1.0
    """

    async def create_run(
        self,
        *,
        run_id: str,
        name: str,
        input_json: str,
        fingerprint: str,
        claim: Claim | None,
        started_data: str | None = None,
    ) -> RunRecord:
        """
        Record a new run with its ``started`` event: running under ``claim``, or pending.

        A pending run (``claim=None``) waits for a worker (``claim_due``).

        The event's data is ``started_data`` (``Stateful`` records the input and
        the tree's shape there), or the input.

        Raises:
            RunExists: A run with this id exists.
        """
        ...

    async def claim_run(
        self, run_id: str, *, claim: Claim, is_dead: abc.Callable[[str], bool]
    ) -> tuple[RunRecord, list[Event]]:
        """
        Take the lease of a pending, paused or abandoned run; return it and its history.

        A running run is abandoned when its lease expired, or when
        ``is_dead(owner)`` says its holder is gone. Claiming bumps the version
        (two claimers race on it: one wins) and appends a ``resumed`` event.

        Raises:
            RunNotFound: No such run.
            RunLocked: Another live claim holds it.
            RunFinished: It completed, failed or was cancelled.
        """
        ...

    async def append(
        self, run_id: str, events: abc.Sequence[NewEvent], *, claim: Claim
    ) -> list[int]:
        """
        Append events in one transaction and renew the lease; return their sequence numbers.

        Raises:
            RunLocked: ``claim`` no longer holds the run.
        """
        ...

    async def take_signal(
        self, run_id: str, signal: str, path: Path, *, claim: Claim
    ) -> Event | None:
        """
        Consume the oldest unconsumed ``signal`` of the run into a ``signal`` event at ``path``.

        Returns the event (its data is the payload), or ``None`` if none is waiting.
        """
        ...

    async def finish(
        self,
        run_id: str,
        *,
        claim: Claim,
        status: RunStatus,
        event: NewEvent,
        output_json: str | None = None,
        error: str | None = None,
        wake_at: dt.datetime | None = None,
        signals: abc.Collection[str] = (),
        events: abc.Sequence[NewEvent] = (),
    ) -> RunRecord:
        """
        End a claim: set the status (paused, completed, failed), release the lease.

        ``events`` (the run's last journal records) are appended before ``event``,
        in the same transaction. A run that pauses for ``signals`` is due at
        once if one of them is already here.

        Raises:
            RunLocked: ``claim`` no longer holds the run.
        """
        ...

    async def claim_due(
        self, flows: abc.Mapping[str, str], *, claims: abc.Sequence[Claim], max_attempts: int
    ) -> list[tuple[Claim, RunRecord, list[Event]]]:
        """
        Claim up to ``len(claims)`` due runs of these flows; return each with its claim.

        ``flows`` maps a flow's name to its fingerprint: only runs of that
        version are taken, longest waiting first.

        Due: pending, paused with a timer due or an awaited signal delivered,
        or running with an expired lease. Each claim counts as an attempt
        (``RunRecord.attempts``, reset when the run pauses or finishes); a run
        whose attempts reached ``max_attempts`` is failed instead, with an
        ``abandoned`` event.
        """
        ...

    async def wait_for_work(self, within: float) -> None:
        """
        Return when a run may have become due, or after ``within`` seconds.
        """
        ...

    @property
    def tenant(self) -> str | None:
        """
        The tenant whose runs this store sees (``None``: every run).
        """
        ...

    def for_tenant(self, tenant: str) -> StateStore:
        """
        Return a view that sees and makes the runs of ``tenant`` only.
        """
        ...

    async def heartbeat(self, run_id: str, *, claim: Claim) -> None:
        """
        Renew the lease of a run that is still working.

        Raises:
            RunLocked: ``claim`` no longer holds the run.
        """
        ...

    async def release(self, run_id: str, *, claim: Claim, failed: bool = False) -> None:
        """
        Give the lease back without changing the status; the run is due at once.

        A hand-back (shutdown, cancellation) resets the run's attempts; one
        after an error (``failed``) counts as an attempt, so a run that keeps
        failing that way is abandoned after ``max_attempts``, not retried forever.
        """
        ...

    async def signal(self, run_id: str, signal: str, payload: Any) -> None:
        """
        Deliver a signal; it is kept until a ``WaitForSignal`` consumes it.

        Raises:
            RunNotFound: No such run.
            RunFinished: The run is over.
            SerializationError: The payload cannot be stored.
        """
        ...

    async def cancel(self, run_id: str) -> RunRecord:
        """
        Mark a run cancelled (a finished run is returned unchanged).

        Raises:
            RunNotFound: No such run.
        """
        ...

    async def get(self, run_id: str) -> RunRecord:
        """
        Return a run's record.

        Raises:
            RunNotFound: No such run.
        """
        ...

    async def history(self, run_id: str) -> list[Event]:
        """
        Return a run's events, oldest first.

        Raises:
            RunNotFound: No such run.
        """
        ...

    async def list_runs(
        self,
        *,
        name: str | None = None,
        status: RunStatus | None = None,
        limit: int = 100,
    ) -> list[RunRecord]:
        """
        Return runs, newest first, filtered by name and status.
        """
        ...

    async def close(self) -> None:
        """
        Release connections.
        """
        ...
