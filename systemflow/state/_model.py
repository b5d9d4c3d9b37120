"""
The values the state layer deals in: run statuses, run records, history events, claims.
"""

from __future__ import annotations

import datetime as dt
import enum
import operator
from typing import Any, Final, final

import attrs

from .._core import Path  # noqa: TC001 -- attrs resolves field types at runtime


class RunStatus(enum.Enum):
    """
    Where a durable run is in its life.

    .. versionadded:: 0.1.0
    """

    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_finished(self) -> bool:
        """
        True for completed, failed and cancelled runs: they never run again.
        """
        return self in _FINISHED


_FINISHED = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})


@final
@attrs.frozen
class RunRecord:
    """
    A durable run as the store knows it.

    ``input`` and ``output`` are plain JSON data as stored, unless the record
    came from a ``Stateful`` that knows the types (then they are structured).

    Attributes:
        id: The run id (a UUIDv7 unless the caller chose one).
        name: The name of the ``Stateful`` that runs it.
        status: Where the run is.
        input: The run's input.
        output: Its output, once completed.
        error: What failed, once failed (the message of the error).
        current_path: The path of the last node that recorded something.
        created_at: When the run was started.
        updated_at: When its row last changed.
        fingerprint: The shape of the tree it was started with.
        version: Bumped by every change of the row (optimistic locking).
        lease_owner: Who holds the run now, if anyone.
        lease_expires_at: Until when the lease holds.
        wake_at: When a paused run is due (timer due, or signal delivered).
        tenant: Whose run it is, if the store is shared by tenants
            (``store.for_tenant``).
        attempts: Claims since the run last paused or finished; a run whose
            claims keep dying is failed by workers after ``max_attempts``.

    .. versionadded:: 0.1.0
    """

    id: str
    name: str
    status: RunStatus
    input: Any
    output: Any = None
    error: str | None = None
    current_path: Path | None = None
    created_at: dt.datetime = attrs.field(factory=lambda: dt.datetime.now(dt.UTC))
    updated_at: dt.datetime = attrs.field(factory=lambda: dt.datetime.now(dt.UTC))
    fingerprint: str = ""
    version: int = 0
    lease_owner: str | None = None
    lease_expires_at: dt.datetime | None = None
    wake_at: dt.datetime | None = None
    tenant: str | None = None
    attempts: int = 0


# Every field of RunRecord is an init argument of its own name, in this order.
_RECORD_FIELDS: Final = {name: index for index, name in enumerate(attrs.fields_dict(RunRecord))}
_record_values: Final = operator.attrgetter(*_RECORD_FIELDS)


def evolve_record(record: RunRecord, **changes: Any) -> RunRecord:
    """
    Strictly private: ``attrs.evolve`` for a ``RunRecord``, in 40 % less time.

    Every run makes several at its start and end; ``attrs.evolve`` goes
    through the fields by name, this passes them all by position.

    Raises:
        TypeError: A change names no field of ``RunRecord``.
    """
    values = list(_record_values(record))
    for name, value in changes.items():
        index = _RECORD_FIELDS.get(name)
        if index is None:
            msg = f"RunRecord has no field {name!r}"
            raise TypeError(msg)
        values[index] = value
    return RunRecord(*values)


@final
@attrs.frozen
class Event:
    """
    One entry of a run's history, oldest first.

    The history is also the run's journal: the events of kind ``step``,
    ``failed``, ``decision``, ``timer``, ``signal`` and ``compensated`` hold what
    a resumed run reuses instead of doing again.

    Attributes:
        seq: Orders the run's events, increasing within a run (SQLite numbers
            them 1, 2, 3...; PostgreSQL counts across the table).
        run_id: The run.
        kind: ``started``, ``resumed``, ``step``, ``failed``, ``decision``,
            ``timer``, ``signal``, ``compensated``, ``signalled``, ``paused``,
            ``completed``, ``run_failed``, ``abandoned`` (a worker gave up on a run
            whose claims kept dying) or ``cancelled``.
        path: The node it concerns, if any.
        data: The recorded value as stored JSON text (``None`` if none).
        at: When it was recorded.

    .. versionadded:: 0.1.0
    """

    seq: int
    run_id: str
    kind: str
    path: Path | None
    data: str | None
    at: dt.datetime


@final
@attrs.frozen
class NewEvent:
    """
    Strictly private: an event about to be appended (the store numbers it).
    """

    kind: str
    path: Path | None = None
    data: str | None = None


@final
@attrs.frozen
class Claim:
    """
    Strictly private: who claims a run, and for how long.

    The lease belongs to the claim, not to the process: two claims in one
    process are two owners.
    """

    owner: str
    lease_seconds: float

    def expires(self, now: dt.datetime) -> dt.datetime:
        """
        Return when a lease taken at ``now`` expires.
        """
        return now + dt.timedelta(seconds=self.lease_seconds)


# Event kinds of the run's own life (the journal kinds come from the core).
STARTED = "started"
RESUMED = "resumed"
ABANDONED = "abandoned"  # a worker gave up on a run whose claims kept dying
HANDED_BACK = "handed_back"  # a claim gave the run back unfinished: cancelled, or an error
SIGNALLED = "signalled"
PAUSED = "paused"
COMPLETED = "completed"
RUN_FAILED = "run_failed"
CANCELLED = "cancelled"
