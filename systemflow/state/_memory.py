"""
InMemoryStateStore: the state store for tests and single-process use.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime as dt
import itertools
import json
from typing import TYPE_CHECKING, Any, final

from .._core import SIGNAL, RunExists, RunFinished, RunLocked, RunNotFound
from ._codec import encode_payload
from ._lease import abandoned, check_tenant
from ._model import (
    ABANDONED,
    CANCELLED,
    RESUMED,
    SIGNALLED,
    STARTED,
    Claim,
    Event,
    NewEvent,
    RunRecord,
    RunStatus,
    evolve_record,
)

if TYPE_CHECKING:
    from collections import abc

    from .._core import Path


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def plain(text: str | None) -> Any:
    """
    Decode stored JSON text to plain data (no types: nothing is evaluated).
    """
    return None if text is None else json.loads(text)


@final
class _Run:
    """
    Strictly private: one run's record, history and waiting signals.

    Every ``append`` renews the lease. Rebuilding the frozen record for that
    would cost more than the rest of the append, so the renewal is only noted
    (``renew``) and written into the record when the record is next read.
    """

    __slots__ = ("_renewed", "events", "last_path", "signals", "stored")

    def __init__(self, record: RunRecord) -> None:
        self.stored = record  # the record, without a renewal noted since
        self._renewed: dt.datetime | None = None  # the lease's new expiry, not yet written
        self.events: list[Event] = []
        self.last_path: Path | None = None  # of the last event that has one
        self.signals: list[tuple[str, str]] = []  # (signal, payload JSON), oldest first

    @property
    def record(self) -> RunRecord:
        """
        The run's record, with its lease as last renewed.
        """
        if self._renewed is not None:
            self.stored = evolve_record(self.stored, lease_expires_at=self._renewed)
            self._renewed = None
        return self.stored

    @record.setter
    def record(self, record: RunRecord) -> None:
        self._renewed = None
        self.stored = record

    def renew(self, claim: Claim, now: dt.datetime) -> None:
        """
        Renew the lease of ``claim`` (which holds the run) as of ``now``.

        The new expiry is computed now (an impossible one fails the append that
        renews, as before); only writing it into the record waits.
        """
        self._renewed = claim.expires(now)


@final
class InMemoryStateStore:
    """
    Keeps runs in this process's memory.

    For tests, and for flows that need pause and resume but not survival of
    the process.

    It follows the same rules as ``SqlStateStore`` (versions, leases,
    signals kept until consumed), so tests written against it hold for both.

    .. versionadded:: 0.1.0
    """

    writes_inline = True
    """Its writes never wait on the event loop (see ``StateStore``)."""

    def __init__(self) -> None:
        self._runs: dict[str, _Run] = {}
        self._seq = itertools.count(1)
        self._tenant: str | None = None
        self._wakeup = asyncio.Event()  # set by signals, new pending runs, hand-backs

    def __repr__(self) -> str:
        scope = "" if self._tenant is None else f", tenant={self._tenant!r}"
        return f"InMemoryStateStore(runs={len(self._runs)}{scope})"

    @property
    def tenant(self) -> str | None:
        """
        The tenant whose runs this store sees (``None``: every run).
        """
        return self._tenant

    def for_tenant(self, tenant: str) -> InMemoryStateStore:
        """
        Return a view of this store that sees and makes the runs of ``tenant`` only.
        """
        scoped = copy.copy(self)
        scoped._tenant = check_tenant(tenant)  # noqa: SLF001 -- our own class
        return scoped

    # -- helpers ---------------------------------------------------------------

    def _run(self, run_id: str) -> _Run:
        run = self._runs.get(run_id)
        # (``stored``: a renewal of the lease changes neither tenant, owner nor status.)
        if run is None or (self._tenant is not None and run.stored.tenant != self._tenant):
            msg = f"no run with id {run_id!r}"
            raise RunNotFound(msg, run_id=run_id) from None
        return run

    def _held(self, run_id: str, claim: Claim) -> _Run:
        run = self._run(run_id)
        rec = run.stored
        if rec.lease_owner != claim.owner or rec.status is not RunStatus.RUNNING:
            msg = f"run {run_id} is no longer held by this claim ({rec.status.value})"
            raise RunLocked(msg, run_id=run_id)
        return run

    def _append(
        self, run: _Run, events: abc.Iterable[NewEvent], now: dt.datetime | None = None
    ) -> list[int]:
        now = _now() if now is None else now
        run_id = run.stored.id
        seqs = []
        for new in events:
            seq = next(self._seq)
            run.events.append(Event(seq, run_id, new.kind, new.path, new.data, now))
            seqs.append(seq)
            if new.path is not None:
                run.last_path = new.path
        return seqs

    def _view(self, run: _Run) -> RunRecord:
        rec = run.record
        return evolve_record(
            rec, input=plain(rec.input), output=plain(rec.output), current_path=run.last_path
        )

    def _update(self, run: _Run, **changes: Any) -> None:
        # A lease renewed since the record was written need not be written first
        # when this change sets the lease anew.
        rec = run.stored if "lease_expires_at" in changes else run.record
        run.record = evolve_record(rec, version=rec.version + 1, updated_at=_now(), **changes)

    # -- the protocol ----------------------------------------------------------

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
        """
        if run_id in self._runs:
            msg = f"a run with id {run_id!r} exists"
            raise RunExists(msg, run_id=run_id)
        now = _now()
        run = _Run(
            RunRecord(
                id=run_id,
                name=name,
                status=RunStatus.PENDING if claim is None else RunStatus.RUNNING,
                input=input_json,
                created_at=now,
                updated_at=now,
                fingerprint=fingerprint,
                version=1,
                lease_owner=None if claim is None else claim.owner,
                lease_expires_at=None if claim is None else claim.expires(now),
                tenant=self._tenant,
            )
        )
        self._runs[run_id] = run
        self._append(run, [NewEvent(STARTED, data=started_data or input_json)])
        if claim is None:
            self._wakeup.set()
        return self._view(run)

    async def claim_run(
        self, run_id: str, *, claim: Claim, is_dead: abc.Callable[[str], bool]
    ) -> tuple[RunRecord, list[Event]]:
        """
        Take the lease of a pending, paused or abandoned run; return it and its history.
        """
        run = self._run(run_id)
        rec = run.record
        now = _now()
        if rec.status.is_finished:
            msg = f"run {run_id} is {rec.status.value}: there is nothing to resume"
            raise RunFinished(msg, run_id=run_id, status=rec.status.value)
        if (
            rec.status is RunStatus.RUNNING
            and rec.lease_owner is not None
            and rec.lease_expires_at is not None
            and rec.lease_expires_at > now
            and not is_dead(rec.lease_owner)
        ):
            msg = f"run {run_id} is held by {rec.lease_owner} until {rec.lease_expires_at}"
            raise RunLocked(msg, run_id=run_id)
        return self._take_over(run, claim, now)

    def _take_over(
        self, run: _Run, claim: Claim, now: dt.datetime
    ) -> tuple[RunRecord, list[Event]]:
        self._update(
            run,
            status=RunStatus.RUNNING,
            lease_owner=claim.owner,
            lease_expires_at=claim.expires(now),
            wake_at=None,
            attempts=run.record.attempts + 1,
        )
        self._append(run, [NewEvent(RESUMED)])
        return self._view(run), list(run.events)

    async def claim_due(
        self, flows: abc.Mapping[str, str], *, claims: abc.Sequence[Claim], max_attempts: int
    ) -> list[tuple[Claim, RunRecord, list[Event]]]:
        """
        Claim up to ``len(claims)`` due runs of these flows (name: fingerprint), one claim each.
        """
        now = _now()
        due = [
            run
            for run in self._runs.values()
            if flows.get(run.record.name) == run.record.fingerprint
            and self._tenant in (None, run.record.tenant)
            and _due(run, now)
        ]
        due.sort(key=lambda run: run.record.updated_at)  # longest waiting first
        claimed = []
        for run, claim in zip(due, claims, strict=False):
            if run.record.attempts >= max_attempts:
                error, data = abandoned(run.record.id, run.record.attempts)
                self._update(
                    run,
                    status=RunStatus.FAILED,
                    error=error,
                    lease_owner=None,
                    lease_expires_at=None,
                    wake_at=None,
                )
                self._append(run, [NewEvent(ABANDONED, data=data)])
                continue
            claimed.append((claim, *self._take_over(run, claim, now)))
        return claimed

    async def wait_for_work(self, within: float) -> None:
        """
        Return when a run may have become due, or after ``within`` seconds.
        """
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), within)
        self._wakeup.clear()

    async def append(
        self, run_id: str, events: abc.Sequence[NewEvent], *, claim: Claim
    ) -> list[int]:
        """
        Append events and renew the lease; return their sequence numbers.
        """
        run = self._held(run_id, claim)
        now = _now()
        run.renew(claim, now)
        return self._append(run, events, now)

    async def take_signal(
        self, run_id: str, signal: str, path: Path, *, claim: Claim
    ) -> Event | None:
        """
        Consume the oldest waiting ``signal`` into a ``signal`` event at ``path``.
        """
        run = self._held(run_id, claim)
        for index, (name, payload) in enumerate(run.signals):
            if name == signal:
                del run.signals[index]
                self._append(run, [NewEvent(SIGNAL, path, payload)])
                return run.events[-1]
        return None

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
        End a claim: append ``events`` and ``event``, set the status, release the lease.
        """
        run = self._held(run_id, claim)
        if status is RunStatus.PAUSED and any(name in signals for name, _ in run.signals):
            wake_at = _now()  # a signal it waits for is here: due at once
            self._wakeup.set()
        self._update(
            run,
            status=status,
            output=output_json,
            error=error,
            wake_at=wake_at,
            lease_owner=None,
            lease_expires_at=None,
            attempts=0,
        )
        self._append(run, [*events, event])
        return self._view(run)

    async def heartbeat(self, run_id: str, *, claim: Claim) -> None:
        """
        Renew the lease of a run that is still working.
        """
        self._held(run_id, claim).renew(claim, _now())

    async def release(self, run_id: str, *, claim: Claim, failed: bool = False) -> None:
        """
        Give the lease back without changing the status; the run is due at once.
        """
        run = self._run(run_id)
        if run.record.lease_owner == claim.owner:
            # Expired at once: due for the next worker (claim_due).
            attempts = run.record.attempts if failed else 0
            self._update(run, lease_owner=None, lease_expires_at=_now(), attempts=attempts)
            self._wakeup.set()

    async def signal(self, run_id: str, signal: str, payload: Any) -> None:
        """
        Deliver a signal; it is kept until a ``WaitForSignal`` consumes it.
        """
        run = self._run(run_id)
        status = run.record.status
        if status.is_finished:
            msg = f"run {run_id} is {status.value}: it takes no more signals ({signal!r})"
            raise RunFinished(msg, run_id=run_id, status=status.value)
        data = encode_payload(run_id, signal, payload)
        run.signals.append((signal, data))
        self._append(run, [NewEvent(SIGNALLED, data=json.dumps({"signal": signal}))])
        if status is RunStatus.PAUSED:
            self._update(run, wake_at=_now())
            self._wakeup.set()

    async def cancel(self, run_id: str) -> RunRecord:
        """
        Mark a run cancelled (a finished run is returned unchanged).
        """
        run = self._run(run_id)
        if not run.record.status.is_finished:
            self._update(
                run,
                status=RunStatus.CANCELLED,
                lease_owner=None,
                lease_expires_at=None,
                wake_at=None,
            )
            self._append(run, [NewEvent(CANCELLED)])
        return self._view(run)

    async def get(self, run_id: str) -> RunRecord:
        """
        Return a run's record.
        """
        return self._view(self._run(run_id))

    async def history(self, run_id: str) -> list[Event]:
        """
        Return a run's events, oldest first.
        """
        return list(self._run(run_id).events)

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
        runs = [
            run
            for run in self._runs.values()
            if self._tenant in (None, run.record.tenant)
            and (name is None or run.record.name == name)
            and (status is None or run.record.status is status)
        ]
        runs.sort(key=lambda run: (run.record.created_at, run.record.id), reverse=True)
        return [self._view(run) for run in runs[:limit]]

    async def close(self) -> None:
        """
        Nothing to release.
        """


def _due(run: _Run, now: dt.datetime) -> bool:
    rec = run.record
    if rec.status is RunStatus.PENDING:
        return True
    if rec.status is RunStatus.PAUSED:
        return rec.wake_at is not None and rec.wake_at <= now
    return (
        rec.status is RunStatus.RUNNING
        and rec.lease_expires_at is not None
        and rec.lease_expires_at < now
    )
