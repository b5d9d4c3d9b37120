"""
RunJournal: a durable run's journal, kept in its store's event history.

Loaded once when a run is claimed, then looked up in memory; new records are
appended to the store before ``put`` returns. Records made at the same time (the
branches of a ``Parallel``) share one commit: group commit.
"""

from __future__ import annotations

import asyncio
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
class _Pending:
    __slots__ = ("error", "event", "seq")

    def __init__(self, event: NewEvent) -> None:
        self.event = event
        self.seq: int | None = None
        self.error: BaseException | None = None


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
        self._entries: dict[tuple[str, Path], tuple[str | None, int]] = {
            (event.kind, event.path): (event.data, event.seq)
            for event in history
            if event.kind in JOURNAL_KINDS and event.path is not None
        }
        self._queue: list[_Pending] = []
        self._lock = asyncio.Lock()

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

    async def put(self, kind: str, path: Path, value: Any) -> Recorded:
        """
        Record ``value`` for ``kind`` at ``path``; durable when this returns.

        Raises:
            SerializationError: ``value`` cannot be stored (nothing is written).
            RunLocked: This claim lost the run (cancelled, or taken over).
        """
        data = self._codec.dumps(value, path=path, run_id=self._run_id)
        pending = _Pending(NewEvent(kind, path, data))
        self._queue.append(pending)
        if IN_BRANCH.get():
            # Let sibling branches queue their records too, then write what has
            # queued in one transaction: 1,000 Parallel branches, a few commits.
            await asyncio.sleep(0)
        async with self._lock:
            if pending.seq is None and pending.error is None:
                await self._flush()
        if pending.error is not None:
            raise pending.error
        assert pending.seq is not None  # noqa: S101 -- set by _flush
        return Recorded(value, pending.seq)

    async def _flush(self) -> None:
        batch, self._queue = self._queue, []
        try:
            seqs = await self._store.append(
                self._run_id, [p.event for p in batch], claim=self._claim
            )
        except BaseException as exc:
            for p in batch:
                p.error = exc
            raise
        for p, seq in zip(batch, seqs, strict=True):
            p.seq = seq
            self._entries[(p.event.kind, p.event.path)] = (p.event.data, seq)  # type: ignore[index]

    async def take_signal(self, path: Path, signal: str, type_: Any = Any) -> Recorded | None:
        """
        Consume the oldest pending ``signal`` of the run into ``path``, if any.
        """
        async with self._lock:
            event = await self._store.take_signal(self._run_id, signal, path, claim=self._claim)
        if event is None:
            return None
        self._entries[(SIGNAL, path)] = (event.data, event.seq)
        return self.get(SIGNAL, path, type_)
