"""
RunJournal: a durable run's journal, kept in its store's event history.

Loaded once when a run is claimed, then looked up in memory. New records wait
in order until the next effect is about to start (``settle``: one ``append``
for all of them) or the run ends (``drain``: they go with the store's
``finish``, in its transaction): the last checkpoint of a run costs no commit
of its own. A crash can lose only records whose next effect had not started;
their steps run once more on resume, which at-least-once steps allow. In a
``Parallel`` branch a record is stored at once (siblings' effects are not
ordered after it), and records made at the same time by the branches share
one commit: group commit.
"""

from __future__ import annotations

import asyncio
import copy
from typing import TYPE_CHECKING, Any, final

from .._core import COMPENSATED, DECISION, FAILED, IN_BRANCH, SIGNAL, STEP, TIMER, Recorded
from ._model import NewEvent

if TYPE_CHECKING:
    from collections import abc

    from .._core import Path
    from ._codec import Codec
    from ._model import Claim, Event
    from ._store import StateStore

JOURNAL_KINDS = frozenset({STEP, FAILED, DECISION, TIMER, SIGNAL, COMPENSATED})


@final
class RunJournal:
    """
    Strictly private: the ``Journal`` of one claim of one run.
    """

    def __init__(
        self,
        store: StateStore,
        run_id: str,
        claim: Claim,
        codec: Codec,
        history: abc.Iterable[Event],
    ) -> None:
        self._store = store
        self._run_id = run_id
        self._claim = claim
        self._codec = codec
        self._entries: dict[tuple[str, Path], tuple[str | None, int]] = {}
        last = 0
        for event in history:
            last = event.seq
            if event.kind in JOURNAL_KINDS and event.path is not None:
                self._entries[(event.kind, event.path)] = (event.data, event.seq)
        # New records are numbered after everything loaded, in the order they are
        # made: within this claim, the order the store gives them (undos are
        # sorted by it).
        self._last = last
        self._pending: list[NewEvent] = []
        self._pending_sequential = 0  # of the pending, those made outside Parallel branches
        self._writing: asyncio.Future[None] | None = None  # the append in flight
        self._failed: BaseException | None = None
        self._lock = asyncio.Lock()
        # A store whose writes never wait on the event loop says so (in memory;
        # SQLite, whose driver is synchronous): its appends run in this task.
        self._inline = bool(getattr(store, "writes_inline", False))

    def get(self, kind: str, path: Path, type_: Any = Any) -> Recorded | None:
        """
        Return what was recorded for ``kind`` at ``path``, structured as ``type_``.
        """
        entry = self._entries.get((kind, path))
        if entry is None:
            return None
        data, seq = entry
        value = (
            None if data is None else self._codec.loads(data, type_, path=path, run_id=self._run_id)
        )
        return Recorded(value, seq)

    def record(self, kind: str, path: Path, value: Any) -> Recorded:
        """
        Record ``value`` for ``kind`` at ``path``; stored by the next ``settle``, ``commit`` or end.

        Raises:
            SerializationError: ``value`` cannot be stored (nothing is recorded).
        """
        data = self._codec.dumps(value, path=path, run_id=self._run_id)
        self._pending.append(NewEvent(kind, path, data))
        self._last += 1
        self._entries[(kind, path)] = (data, self._last)
        if not IN_BRANCH.get():
            self._pending_sequential += 1
        return Recorded(value, self._last)

    async def commit(self) -> None:
        """
        In a ``Parallel`` branch, store the pending records now (group commit).

        The siblings' effects are not ordered after a branch's record, so they
        do not settle it: the branch stores it itself, with what the other
        branches record meanwhile (one commit for many branches).
        """
        if IN_BRANCH.get():
            await asyncio.sleep(0)  # let the siblings record too
            await self.flush()

    async def settle(self) -> None:
        """
        Store the records made before this point (one ``append``) before an effect starts.

        Inside a ``Parallel`` branch, the siblings' records are theirs to store;
        outside, every record is (a branch cancelled before it stored its own
        leaves it pending). A write in flight is waited for.

        Raises:
            RunLocked: This claim lost the run (cancelled, or taken over).
        """
        self._raise_if_failed()
        if (
            self._pending_sequential
            or (self._pending and not IN_BRANCH.get())  # a cancelled branch's, say
            or (self._writing is not None and not self._writing.done())
        ):
            await self.flush()

    async def flush(self) -> None:
        """
        Store every pending record, after any write in flight.
        """
        # acquire and release, not ``async with``: two coroutines fewer, and this
        # runs for every step of a run.
        await self._lock.acquire()
        try:
            await self._flush()
        finally:
            self._lock.release()

    async def _flush(self) -> None:
        if self._writing is None:  # no write ever left this task (the store writes inline)
            self._raise_if_failed()
        else:
            await self._wait_for_write()
        if not self._pending:
            return
        batch = self._pending
        self._pending, self._pending_sequential = [], 0
        if self._inline:
            # It never waits on the event loop, so nothing can cancel it midway
            # nor run meanwhile: no task of its own is needed.
            await self._write(batch)
            return
        write = asyncio.ensure_future(self._write(batch))
        self._writing = write
        # If this task is cancelled meanwhile, the write goes on; whoever stores
        # or ends next waits for it, and a failure stops the run all the same.
        try:
            await asyncio.shield(write)
        except asyncio.CancelledError:
            if write.cancelled():  # the write was, not this task: a failure like any other
                self._raise_if_failed()
            raise

    async def _write(self, batch: list[NewEvent]) -> None:
        # The journal's state changes here, before anyone waiting sees the write done.
        try:
            await self._store.append(self._run_id, batch, claim=self._claim)
        except (asyncio.CancelledError, GeneratorExit):
            raise  # its task ends cancelled: _raise_if_failed tells
        except BaseException as exc:
            self._failed = exc  # nothing may run after unstored records
            raise

    async def _wait_for_write(self) -> None:
        if self._writing is not None and not self._writing.done():
            # asyncio.wait neither raises the write's failure (kept in _failed)
            # nor passes on its cancellation as this task's own.
            await asyncio.wait([self._writing])
        self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        # A fresh error for each task that meets the failure, chained to it: one
        # exception object raised in several tasks would tangle their tracebacks.
        write = self._writing
        if self._failed is None and write is not None and write.cancelled():
            # Cancelled before or while it ran: the records may not be stored.
            self._failed = RuntimeError(f"run {self._run_id}: a journal write was cancelled")
        failed = self._failed
        if failed is None:
            return
        try:
            error = copy.copy(failed)  # same type and fields, none of its traceback
        except Exception:  # noqa: BLE001 -- a type that cannot be rebuilt from its args
            raise failed.with_traceback(None) from None
        raise error from failed

    async def drain(self) -> list[NewEvent]:
        """
        Take the pending records (after any write in flight), for ``finish`` to write.

        If the ``finish`` fails, ``restore`` gives them back.

        Raises:
            RunLocked: A write of this claim failed because it lost the run.
        """
        await self._lock.acquire()
        try:
            await self._wait_for_write()
            batch = self._pending
            self._pending, self._pending_sequential = [], 0
        finally:
            self._lock.release()
        return batch

    @property
    def run_id(self) -> str:
        """
        The run this journal records.
        """
        return self._run_id

    def note(self, event: NewEvent) -> None:
        """
        Add an event of the run's own (not a record of a node) to go with the next write.
        """
        self._pending.append(event)
        self._last += 1

    def restore(self, batch: list[NewEvent]) -> None:
        """
        Put back records ``drain`` took whose ``finish`` did not happen.
        """
        self._pending[:0] = batch
        self._pending_sequential += len(batch)

    async def take_signal(self, path: Path, signal: str, type_: Any = Any) -> Recorded | None:
        """
        Consume the oldest pending ``signal`` of the run into ``path``, if any.
        """
        async with self._lock:
            await self._flush()  # the records before it, in order
            event = await self._store.take_signal(self._run_id, signal, path, claim=self._claim)
        if event is None:
            return None
        self._last = max(self._last, event.seq)
        self._entries[(SIGNAL, path)] = (event.data, event.seq)
        return self.get(SIGNAL, path, type_)
