"""
Worker: runs durable flows' runs as they become due, in any process that shares the store.
"""

from __future__ import annotations

import asyncio
import signal
from typing import TYPE_CHECKING, Any, final

import structlog

from .._core import format_path, walk
from ..combinators import Call
from ._lease import new_owner
from ._model import Claim, RunStatus

if TYPE_CHECKING:
    from collections import abc

    from ._model import Event, RunRecord
    from ._stateful import Stateful
    from ._store import StateStore


@final
class Worker:
    """
    Claim the runs of some durable flows as they become due, and run them.

    A run is due when it is new (``Stateful.enqueue``), when its timer is due
    or a signal it waits for arrived, and when the lease of the process that
    ran it expired (that process died). Any number of workers, in any number
    of processes and hosts, may share one store: each run is claimed by one of
    them (on PostgreSQL with ``SELECT ... FOR UPDATE SKIP LOCKED``).

    On PostgreSQL a worker hears of new runs, signals and handed-back runs at
    once (``LISTEN``/``NOTIFY``); it also polls every ``poll_seconds``, which
    is all it does on SQLite and is when due timers are found.

    Args:
        store: Where the runs are; each flow's runs are taken from it.
        flows: The durable flows this worker runs (their names pick the runs).
        concurrency: How many runs it drives at once.
        services: The services the flows' steps call.
        poll_seconds: The longest wait between two looks for due runs.
        max_attempts: After this many claims in a row that died without the run
            pausing or finishing, the run is failed (``abandoned`` event), not
            tried forever.
        grace_seconds: On ``stop``, how long runs in flight may take to finish
            or pause before they are cancelled and handed back.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        store: StateStore,
        flows: abc.Iterable[Stateful],
        *,
        concurrency: int = 10,
        services: abc.Mapping[str, Any] | None = None,
        poll_seconds: float = 1.0,
        max_attempts: int = 5,
        grace_seconds: float = 30.0,
    ) -> None:
        by_name: dict[str, Stateful] = {}
        for flow in flows:
            if flow.name in by_name:
                msg = f"Worker: two flows are named {flow.name!r}"
                raise ValueError(msg)
            by_name[flow.name] = flow if flow.store is store else flow.with_store(store)
        if not by_name:
            msg = "Worker: no flows to run"
            raise ValueError(msg)
        _check_services(by_name.values(), services or {})
        if concurrency < 1 or max_attempts < 1 or poll_seconds <= 0:
            msg = (
                "Worker: concurrency and max_attempts must be at least 1 and poll_seconds "
                f"positive, not {concurrency}, {max_attempts}, {poll_seconds}"
            )
            raise ValueError(msg)
        self.store = store
        self.flows = by_name
        # Runs of these versions only: a run started with another tree waits for
        # a worker that has it (or a resume that accepts the version change).
        self._versions = {name: flow.fingerprint for name, flow in by_name.items()}
        self.concurrency = concurrency
        self.services = services
        self.poll_seconds = poll_seconds
        self.max_attempts = max_attempts
        self.grace_seconds = grace_seconds
        self.finished = 0  # runs this worker drove to their end: completed, failed, cancelled
        self._running: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._freed = asyncio.Event()  # a run in flight ended: a slot is free
        self._log = structlog.get_logger("systemflow.worker").bind(
            flows=sorted(by_name), concurrency=concurrency
        )

    def __repr__(self) -> str:
        return f"Worker({self.store!r}, flows={sorted(self.flows)}, concurrency={self.concurrency})"

    @property
    def in_flight(self) -> int:
        """
        How many runs this worker is driving now.
        """
        return len(self._running)

    def stop(self) -> None:
        """
        Ask ``run`` to return: claim nothing more, let runs in flight finish or pause.
        """
        self._stopping.set()

    async def run(self, *, handle_signals: bool = False) -> None:
        """
        Claim and drive due runs until ``stop`` is called.

        Then runs in flight get ``grace_seconds`` to finish or pause; those still
        running are cancelled, and their leases handed back so that another
        worker takes them over at once. With ``handle_signals``, SIGTERM and
        SIGINT call ``stop`` (the main thread's loop only).
        """
        loop = asyncio.get_running_loop()
        if handle_signals:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, self.stop)
        self._log.info("worker_started")
        try:
            await self._warn_of_other_versions()
            await self.store.wait_for_work(0)  # start listening before the first look
            while not self._stopping.is_set():
                if await self._claim() and self._free() > 0:
                    continue  # all it asked for: more may be due, and slots freed meanwhile
                await self._wait()
        finally:
            await self._drain()
            if handle_signals:
                for signum in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(signum)
            self._log.info("worker_stopped", finished=self.finished)

    async def _warn_of_other_versions(self) -> None:
        # Runs started with another version of a flow are not this worker's: say
        # so once, or they would wait unseen for a worker that has their tree.
        for name, fingerprint in self._versions.items():
            others: list[str] = []
            for status in (RunStatus.PENDING, RunStatus.RUNNING, RunStatus.PAUSED):
                try:
                    runs = await self.store.list_runs(name=name, status=status, limit=10_000)
                except Exception:  # noqa: BLE001, S112 -- only a hint; the loop reports a lost store
                    continue
                others += [r.fingerprint for r in runs if r.fingerprint != fingerprint]
            if others:
                self._log.warning(
                    "runs_of_other_versions",
                    flow=name,
                    runs=len(others),
                    fingerprints=sorted(set(others)),
                    version=fingerprint,
                )

    def _free(self) -> int:
        return self.concurrency - len(self._running)

    async def _claim(self) -> bool:
        # True if it got as many runs as it asked for: then more may be due now.
        free = self._free()
        if free <= 0:
            return False
        lease = max(flow.lease_seconds for flow in self.flows.values())
        claims = [Claim(new_owner(), lease) for _ in range(free)]
        try:
            claimed = await self.store.claim_due(
                self._versions, claims=claims, max_attempts=self.max_attempts
            )
        except Exception:  # noqa: BLE001 -- a worker outlives a bad moment of its database
            self._log.exception("claim_failed")  # logged; the next look is after the poll
            return False
        for claim, record, history in claimed:
            task = asyncio.create_task(self._drive(claim, record, history))
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        return len(claimed) == free

    async def _drive(self, claim: Claim, record: RunRecord, history: list[Event]) -> None:
        flow = self.flows[record.name]
        log = self._log.bind(run_id=record.id, flow=record.name)
        log.debug("run_claimed", attempts=record.attempts)
        try:
            final = await flow._drive_claimed(record, claim, history, self.services)  # noqa: SLF001
        except asyncio.CancelledError:
            log.info("run_handed_back")  # the lease was released by Stateful
            raise
        except Exception:
            # A bug or a lost store: Stateful handed the run back as a failed
            # attempt (or the lease expires, if the store was unreachable).
            log.exception("run_crashed")
        else:
            if final.status.is_finished:
                self.finished += 1
            log.info("run_ended", status=final.status.value, current_path=final.current_path)
        finally:
            self._freed.set()

    async def _wait(self) -> None:
        # Until stop(), and: with free slots, until the store tells of work or the
        # poll interval passes; with none, until a run in flight ends.
        waiters: list[asyncio.Future[Any]] = [asyncio.ensure_future(self._stopping.wait())]
        if self._free() > 0:
            waiters.append(asyncio.ensure_future(self.store.wait_for_work(self.poll_seconds)))
        else:
            waiters.append(asyncio.ensure_future(self._freed.wait()))
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
            self._freed.clear()

    async def _drain(self) -> None:
        if not self._running:
            return
        self._log.info("worker_draining", in_flight=len(self._running))
        _done, pending = await asyncio.wait(set(self._running), timeout=self.grace_seconds)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)


def _check_services(flows: abc.Iterable[Stateful], services: abc.Mapping[str, Any]) -> None:
    # A worker without a service its flows call would take their runs only to
    # hand each back (ServiceNotFound) again and again: refuse it at once.
    for flow in flows:
        for path, node in walk(flow.flow):
            if isinstance(node, Call) and node.critical and node.service not in services:
                known = ", ".join(sorted(services)) or "none"
                msg = (
                    f"Worker: flow {flow.name!r} calls service {node.service!r} "
                    f"(at {format_path(path)}), which services= lacks (known: {known})"
                )
                raise ValueError(msg)
