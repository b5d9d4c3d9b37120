"""
Stateful: durable runs of a flow, kept in a state store.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import TYPE_CHECKING, Any, final

import attrs
import structlog

from .._core import (
    SYSTEM_CLOCK,
    Child,
    Clock,
    Flow,
    FlowContext,
    FlowError,
    FlowPaused,
    FlowVersionMismatch,
    RunExists,
    RunFinished,
    RunLocked,
    RunNotFound,
    SerializationError,
    ServiceNotFound,
    StepFailed,
    check_name,
    children_of,
    error_fields,
    format_path,
    interrupts,
    invoke,
    new_run_id,
)
from ..combinators._node import Node, as_flow
from ..combinators._wait import WaitForSignal
from ._codec import Codec
from ._journal import RunJournal
from ._lease import is_dead, new_owner
from ._model import (
    COMPLETED,
    HANDED_BACK,
    PAUSED,
    RUN_FAILED,
    STARTED,
    Claim,
    NewEvent,
    RunRecord,
    RunStatus,
    evolve_record,
)
from ._shape import diff, edge_types, fingerprint, shape

if TYPE_CHECKING:
    from collections import abc

    from .._core import Path
    from ._model import Event
    from ._store import StateStore


@final
@attrs.frozen(init=False, repr=False)
class Stateful(Node[Any, Any]):
    """
    Make runs of a flow durable: checkpointed, pausable, resumable after a crash.

    Each run has an id, a status and a journal in ``store``: every leaf's
    outcome, branch decision, timer deadline, consumed signal and completed
    undo. Resuming runs the tree again from the root; a node whose result is
    journaled returns it without running again. Steps are therefore
    at-least-once (a crash between a step's effect and its checkpoint runs it
    once more): pass ``ctx.idempotency_key``, stable per run and node, to the
    services they call.

    ``start`` and ``resume`` report the flow's own failure in the returned
    record (status ``failed``, ``error`` set); they raise only for problems
    of the call itself (``RunNotFound``, ``RunLocked``, ``FlowVersionMismatch``,
    an input that cannot be stored).

    Attributes:
        flow: The flow to run durably.
        store: Where runs are kept (not part of equality).
        name: The runs' name, to list and tell them apart; not a path segment.
        input_type: What a stored input is read back as (from the first step's
            annotation when not given; plain JSON data if unknown).
        output_type: What a stored output is read back as (likewise, last step).
        lease_seconds: How long a claim holds a run without a checkpoint or
            heartbeat before another process may take it over.
        clock: What timers and retry backoff use (tests pass one that skips time).

    .. versionadded:: 0.1.0
    """

    flow: Flow[Any, Any]
    store: StateStore = attrs.field(kw_only=True, eq=False)
    name: str = attrs.field(kw_only=True)
    input_type: Any = attrs.field(kw_only=True)
    output_type: Any = attrs.field(kw_only=True)
    lease_seconds: float = attrs.field(default=30.0, kw_only=True)
    clock: Clock = attrs.field(default=SYSTEM_CLOCK, kw_only=True, eq=False)
    children: tuple[Child, ...] = attrs.field(init=False, eq=False, repr=False)
    _shape: list[str] = attrs.field(init=False, eq=False, repr=False)
    _shape_json: str = attrs.field(init=False, eq=False, repr=False)
    _fingerprint: str = attrs.field(init=False, eq=False, repr=False)

    def __init__(
        self,
        flow: Flow[Any, Any] | abc.Callable[..., Any],
        *,
        store: StateStore,
        name: str,
        input_type: Any = None,
        output_type: Any = None,
        lease_seconds: float = 30.0,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        check_name(name, f"Stateful {name!r}")
        inner = as_flow(flow, f"Stateful {name!r}")
        inferred_in, inferred_out = edge_types(inner)
        self.__attrs_init__(
            inner,
            store=store,
            name=name,
            input_type=inferred_in if input_type is None else input_type,
            output_type=inferred_out if output_type is None else output_type,
            lease_seconds=lease_seconds,
            clock=clock,
        )
        lines = shape(inner)
        object.__setattr__(self, "children", ((None, inner),))
        object.__setattr__(self, "_shape", lines)
        object.__setattr__(self, "_shape_json", json.dumps(lines, separators=(",", ":")))
        object.__setattr__(self, "_fingerprint", fingerprint(lines))

    @property
    def fingerprint(self) -> str:
        """
        The hash of the tree's shape; a resumed run must have been started with it.
        """
        return self._fingerprint

    def __repr__(self) -> str:
        return f"Stateful({self.flow!r}, name={self.name!r})"

    # -- the public calls ------------------------------------------------------

    async def start(
        self,
        input: Any,
        *,
        run_id: str | None = None,
        services: abc.Mapping[str, Any] | None = None,
    ) -> RunRecord:
        """
        Start a run and drive it until it completes, fails or pauses.

        Starting again with the id of an existing run and the same input
        resumes it (or returns it, if it is over), so a start can be retried.

        Raises:
            RunExists: That id belongs to a run with another input.
            SerializationError: The input cannot be stored.
        """
        run_id = new_run_id() if run_id is None else run_id
        fields = self._new_run(run_id, input)
        claim = Claim(new_owner(), self.lease_seconds)
        try:
            record = await self.store.create_run(claim=claim, **fields)
        except RunExists:
            try:
                existing = await self.store.get(run_id)
            except RunNotFound:  # another tenant's run: it exists, but is not ours to see
                msg = f"a run with id {run_id!r} exists; start this one with a new id"
                raise RunExists(msg, run_id=run_id) from None
            if existing.input != json.loads(fields["input_json"]) or existing.name != self.name:
                msg = (
                    f"run {run_id} exists as a run of {existing.name!r} with another input; "
                    "start it with a new id, or resume it"
                )
                raise RunExists(msg, run_id=run_id) from None
            return await self.resume(run_id, services=services)
        return await self._drive(record, claim, [], input, services)

    async def enqueue(
        self,
        input: Any,
        *,
        run_id: str | None = None,
        connection: Any = None,
    ) -> str:
        """
        Record a pending run for a ``Worker`` to run; return its id at once.

        With ``connection`` (a SQLAlchemy ``Connection`` or ``AsyncConnection``
        to the store's database, in a transaction of the caller's), the run is
        written in that transaction: it exists if and only if the caller's own
        work commits. Workers hear of it when the transaction commits.

        Raises:
            RunExists: A run with this id exists.
            SerializationError: The input cannot be stored.
            TypeError: ``connection`` is given, but the store is not a ``SqlStateStore``.
        """
        run_id = new_run_id() if run_id is None else run_id
        fields = self._new_run(run_id, input)
        if connection is None:
            await self.store.create_run(claim=None, **fields)
            return run_id
        enqueue_on = getattr(self.store, "enqueue_on", None)
        if enqueue_on is None:
            msg = f"{self!r}: enqueue(connection=...) needs a SqlStateStore, not {self.store!r}"
            raise TypeError(msg)
        await enqueue_on(connection, **fields)
        return run_id

    def _new_run(self, run_id: str, input: Any) -> dict[str, Any]:
        input_json = Codec.shared().dumps(input, path=(), run_id=run_id)
        return {
            "run_id": run_id,
            "name": self.name,
            "input_json": input_json,
            "fingerprint": self._fingerprint,
            # {"input": ..., "shape": [...]}: both are JSON text already.
            "started_data": f'{{"input":{input_json},"shape":{self._shape_json}}}',
        }

    def with_store(self, store: StateStore) -> Stateful:
        """
        Return this durable flow, keeping its runs in ``store`` instead.
        """
        return Stateful(
            self.flow,
            store=store,
            name=self.name,
            input_type=self.input_type,
            output_type=self.output_type,
            lease_seconds=self.lease_seconds,
            clock=self.clock,
        )

    async def _drive_claimed(
        self,
        record: RunRecord,
        claim: Claim,
        history: list[Event],
        services: abc.Mapping[str, Any] | None = None,
    ) -> RunRecord:
        # For Worker: run a run claimed with ``store.claim_due``.
        try:
            value = Codec.shared().structure(
                record.input, self.input_type, path=(), run_id=record.id
            )
        except FlowError as failure:  # its input does not fit this flow: fail it, once
            # (the record as stored: its input cannot be read as this flow's)
            return await self.store.finish(
                record.id,
                claim=claim,
                status=RunStatus.FAILED,
                event=NewEvent(RUN_FAILED, None, json.dumps(error_fields(failure))),
                error=str(failure),
            )
        return await self._drive(record, claim, history, value, services)

    async def resume(
        self,
        run_id: str,
        *,
        services: abc.Mapping[str, Any] | None = None,
        accept_version_change: bool = False,
    ) -> RunRecord:
        """
        Continue a paused run, or one whose holder is gone, from where it stopped.

        A run that is over is returned as it is.

        Args:
            run_id: The run.
            services: The services its steps call.
            accept_version_change: Resume even though the tree's shape changed
                since the run started (journaled results are reused by path).

        Raises:
            RunNotFound: No such run.
            RunLocked: Another live claim holds it.
            FlowVersionMismatch: The tree changed (nothing stored is touched).
        """
        record = await self.store.get(run_id)
        if record.status.is_finished:
            return self._typed(record)
        if record.fingerprint != self._fingerprint and not accept_version_change:
            await self._refuse_version(record)
        claim = Claim(new_owner(), self.lease_seconds)
        try:
            record, history = await self.store.claim_run(run_id, claim=claim, is_dead=is_dead)
        except RunFinished:
            return self._typed(await self.store.get(run_id))
        value = Codec.shared().structure(record.input, self.input_type, path=(), run_id=run_id)
        return await self._drive(record, claim, history, value, services)

    async def get(self, run_id: str) -> RunRecord:
        """
        Return a run's record, its input and output structured when the types are known.

        Raises:
            RunNotFound: No such run.
        """
        return self._typed(await self.store.get(run_id))

    async def signal(self, run_id: str, signal: str, payload: Any = None) -> None:
        """
        Deliver a signal to a run of this flow, once it fits what the flow waits for.

        ``store.signal`` delivers anything; this checks first that a
        ``WaitForSignal`` of the tree waits for ``signal`` and that ``payload``
        reads back as its ``payload_type``, so that a mistyped payload is
        refused here rather than failing the run when it is consumed.

        Raises:
            ValueError: No ``WaitForSignal`` of this flow waits for ``signal``, or
                the run is of another flow.
            SerializationError: ``payload`` does not fit the wait's ``payload_type``
                (nothing is delivered).
            RunNotFound: No such run.
            RunFinished: The run is over.
        """
        waits = self._own_waits()
        types = [(path, node.payload_type) for path, node in waits if node.signal == signal]
        if not types:
            known = ", ".join(sorted({node.signal for _, node in waits})) or "none"
            msg = f"{self.name!r} waits for no signal {signal!r} (it waits for: {known})"
            raise ValueError(msg)
        codec = Codec.shared()
        misfits: list[str] = []
        for path, type_ in types:  # one wait it fits is enough: waits may take it in turn
            try:
                data = codec.dumps(payload, path=path, run_id=run_id)
                codec.loads(data, type_, path=path, run_id=run_id)
            except SerializationError as exc:
                misfits.append(f"the WaitForSignal at {format_path(path)}: {exc}")
            else:
                break
        else:
            msg = (
                f"the payload of signal {signal!r} for run {run_id} fits no wait for it: "
                + "; ".join(misfits)
            )
            raise SerializationError(msg, path=types[0][0], run_id=run_id, type=types[0][1])
        record = await self.store.get(run_id)
        if record.name != self.name:
            msg = f"run {run_id} is a run of {record.name!r}, not of {self.name!r}"
            raise ValueError(msg)
        await self.store.signal(run_id, signal, payload)

    def _own_waits(self) -> list[tuple[Path, WaitForSignal]]:
        # The signal waits of this run's own tree: a nested Stateful's are its run's.
        found: list[tuple[Path, WaitForSignal]] = []
        stack: list[tuple[Path, Any]] = [((), self.flow)]
        while stack:
            path, node = stack.pop()
            if isinstance(node, WaitForSignal):
                found.append((path, node))
            if not isinstance(node, Stateful):
                stack.extend(
                    (path if seg is None else (*path, seg), child)
                    for seg, child in children_of(node)
                )
        return found

    async def cancel(self, run_id: str) -> RunRecord:
        """
        Cancel a run: it will not run again (a run that is over is returned as it is).

        Raises:
            RunNotFound: No such run.
        """
        return self._typed(await self.store.cancel(run_id))

    async def execute(self, ctx: FlowContext, input: Any) -> Any:
        """
        Run durably as a node of a bigger tree: start a run, return its output.

        Inside another durable run, the run's id is the enclosing run's id and
        this node's path, so that when the enclosing run is resumed this node
        resumes the same run (or returns how it ended) instead of starting one.

        Raises:
            FlowPaused: The run paused; its ``run_id`` says which run to resume.
            StepFailed: The run failed; the message is the run's error.
        """
        record: RunRecord | None = None
        if ctx.journal is None:
            run_id = new_run_id()
        else:
            await ctx.journal.settle()  # the enclosing run's records, before this one starts
            run_id = f"{ctx.run_id}/{format_path(ctx.path)}"
            with contextlib.suppress(RunNotFound):
                found = await self.store.get(run_id)
                if found.name != self.name:  # a user's run id with a '/' in it, say
                    msg = f"run {run_id}, the id of {self.name!r} here, is a run of {found.name!r}"
                    raise RunExists(msg, path=ctx.path, run_id=run_id)
                record = self._typed(found)
        try:
            if record is None:
                record = await self.start(input, run_id=run_id, services=ctx.services)
            elif not record.status.is_finished:
                record = await self.resume(run_id, services=ctx.services)
        except ServiceNotFound:
            if ctx.journal is None:
                # Its caller is not durable and fails now: no one will resume
                # this run, and no worker may finish it after the caller's undos.
                await self.store.cancel(run_id)
            raise
        if record.status is RunStatus.COMPLETED:
            return record.output
        if record.status is RunStatus.PAUSED:
            msg = f"durable run {record.id} of {self.name!r} paused"
            signals = await self._awaited(record.id)
            raise FlowPaused(
                msg, path=ctx.path, run_id=record.id, wake_at=record.wake_at, signals=signals
            )
        msg = f"durable run {record.id} of {self.name!r} {record.status.value}: {record.error}"
        raise StepFailed(msg, path=ctx.path, run_id=record.id)

    async def _awaited(self, run_id: str) -> tuple[str, ...]:
        # The signals a paused run waits for, from its last paused event.
        history = await self.store.history(run_id)
        paused = next((e for e in reversed(history) if e.kind == PAUSED), None)
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            if paused is not None and paused.data is not None:
                return tuple(str(name) for name in json.loads(paused.data).get("signals", []))
        return ()

    # -- driving a claim -------------------------------------------------------

    async def _drive(
        self,
        record: RunRecord,
        claim: Claim,
        history: list[Event],
        value: Any,
        services: abc.Mapping[str, Any] | None,
    ) -> RunRecord:
        journal = RunJournal(self.store, record.id, claim, Codec.shared(), history)
        ctx = FlowContext(services=services, run_id=record.id, journal=journal, clock=self.clock)
        heartbeat = _Heartbeat(self.store, record.id, claim)
        try:
            return await self._outcome(record, claim, journal, ctx, value)
        except RunLocked as locked:
            if locked.run_id != record.id:
                # Another run's lease (a nested run another claim is working
                # on): what completed is stored, and this run keeps its lease
                # until it expires, so that no one takes it back at once to
                # meet the same lock again.
                with contextlib.suppress(BaseException):
                    await asyncio.shield(journal.flush())
                raise
            # The claim was lost (while running, or at the end): the run was
            # cancelled, or taken over.
            now = await self.store.get(record.id)
            if now.status is RunStatus.CANCELLED:
                return self._typed(now)
            raise
        except BaseException as exc:
            # Cancelled, or a bug: keep what completed, and hand the run back so
            # that it can be resumed at once (an error counts as an attempt).
            failed = not isinstance(exc, asyncio.CancelledError)
            with contextlib.suppress(Exception):
                await asyncio.shield(self._hand_back(journal, claim, exc, failed=failed))
            raise
        finally:
            heartbeat.stop()

    async def _outcome(
        self, record: RunRecord, claim: Claim, journal: RunJournal, ctx: FlowContext, value: Any
    ) -> RunRecord:
        # Run the tree, then end the claim as it came out: the run's last records
        # go with its end, in one transaction.
        codec = Codec.shared()

        async def end(
            status: RunStatus, event: NewEvent, output: Any = None, **fields: Any
        ) -> RunRecord:
            events = await journal.drain()
            try:
                final = await self.store.finish(
                    record.id, claim=claim, status=status, event=event, events=events, **fields
                )
            except RunLocked:
                raise  # the claim is gone: its records with it
            except BaseException:
                journal.restore(events)  # for the hand-back to store
                raise
            # The input and output as the values the run had, not the stored JSON.
            return evolve_record(final, input=value, output=output)

        try:
            out = await invoke(self.flow, ctx, None, value)
            out_json = codec.dumps(out, path=(), run_id=record.id)
        except FlowPaused as paused:
            data = {"wake_at": paused.wake_at, "signals": list(paused.signals)}
            data_json = codec.dumps(data, path=(), run_id=record.id)
            event = NewEvent(PAUSED, paused.path, data_json)
            return await end(
                RunStatus.PAUSED, event, wake_at=paused.wake_at, signals=paused.signals
            )
        except FlowError as failure:
            if interrupts(failure, True):  # noqa: FBT003 -- this run is durable
                raise  # not the run's failure: handed back as it is (see _drive)
            fields = json.dumps(error_fields(failure))
            event = NewEvent(RUN_FAILED, failure.path or None, fields)
            return await end(RunStatus.FAILED, event, error=str(failure))
        event = NewEvent(COMPLETED, None, out_json)
        return await end(RunStatus.COMPLETED, event, out, output_json=out_json)

    async def _hand_back(
        self, journal: RunJournal, claim: Claim, why: BaseException, *, failed: bool
    ) -> None:
        # What completed is stored, with a handed_back event saying why the run
        # stopped unfinished (for `systemflow runs show`), then the lease is given back.
        if isinstance(why, asyncio.CancelledError):
            reason = {"error": "the run's task was cancelled", "error_type": "CancelledError"}
        else:
            reason = error_fields(why)
        journal.note(NewEvent(HANDED_BACK, None, json.dumps(reason)))
        with contextlib.suppress(BaseException):  # whatever stopped it, release below
            await journal.flush()
        await self.store.release(journal.run_id, claim=claim, failed=failed)

    async def _refuse_version(self, record: RunRecord) -> None:
        history = await self.store.history(record.id)
        started = next((e for e in history if e.kind == STARTED), None)
        stored_shape: list[str] = []
        if started is not None and started.data is not None:
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                stored_shape = list(json.loads(started.data).get("shape", []))
        change = diff(stored_shape, self._shape) if stored_shape else "shape not recorded"
        msg = (
            f"run {record.id} of {record.name!r} was started with flow version "
            f"{record.fingerprint}, this flow is {self._fingerprint}: {change}. "
            "Resume with accept_version_change=True if the journal still fits."
        )
        raise FlowVersionMismatch(
            msg, run_id=record.id, stored=record.fingerprint, current=self._fingerprint
        )

    def _typed(self, record: RunRecord) -> RunRecord:
        codec = Codec.shared()
        output = record.output
        if record.status is RunStatus.COMPLETED:
            output = codec.structure(output, self.output_type, path=(), run_id=record.id)
        return evolve_record(
            record,
            input=codec.structure(record.input, self.input_type, path=(), run_id=record.id),
            output=output,
        )


@final
class _Heartbeat:
    """
    Strictly private: renews a claim's lease every third of it while a run works.

    A timer, not a task, until it fires: most runs end long before, and a task
    made and cancelled per run would cost more than the run's own bookkeeping.
    """

    __slots__ = ("_claim", "_handle", "_run_id", "_store", "_task")

    def __init__(self, store: StateStore, run_id: str, claim: Claim) -> None:
        self._store = store
        self._run_id = run_id
        self._claim = claim
        self._task: asyncio.Task[None] | None = None
        self._handle = asyncio.get_running_loop().call_later(self._every, self._beat)

    @property
    def _every(self) -> float:
        return self._claim.lease_seconds / 3

    def _beat(self) -> None:
        self._task = asyncio.ensure_future(self._renew())

    async def _renew(self) -> None:
        try:
            await self._store.heartbeat(self._run_id, claim=self._claim)
        except FlowError:
            return  # the claim lost the run: its next write will say so
        except Exception:  # noqa: BLE001 -- a bad moment of the database: try again later
            structlog.get_logger("systemflow").warning(
                "systemflow.heartbeat_failed", run_id=self._run_id, exc_info=True
            )
        self._handle = asyncio.get_running_loop().call_later(self._every, self._beat)

    def stop(self) -> None:
        self._handle.cancel()
        if self._task is not None:
            self._task.cancel()
