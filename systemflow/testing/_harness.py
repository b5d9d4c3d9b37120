"""
FlowHarness: run a flow in a test, and see what it did.

A harness owns a fake clock. ``run`` executes a tree on mocked services and
returns a ``FlowResult``: the output or the error, the calls the mocks
received, the steps compensated, the path that failed. ``durable`` wraps a
tree in ``Stateful`` over an in-memory (or given) store, with the same clock
and a store that can simulate crashes, for tests of pauses, signals, timers
and resumption.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast, final

import attrs
import structlog
import structlog.testing

from .._core import (
    COMPENSATED,
    FAILED,
    CompensationFailed,
    FlowContext,
    FlowError,
    StepFailed,
    invoke,
    new_run_id,
)
from ..state import InMemoryStateStore, RunStatus, Stateful
from ._clock import FakeClock
from ._faults import CrashingStore, SimulatedCrash, check_paths, inject_failures, parse_path
from ._mock import MockService, ServiceCall, _next_seq

if TYPE_CHECKING:
    from collections import abc

    from .._core import Flow, Path
    from ..state import Event, RunRecord, StateStore
    from ._faults import CrashPoint

_MAX_WAKES = 1_000  # timers one durable ``run`` may skip before it gives up


@final
@attrs.frozen
class FlowResult:
    """
    How a run under test ended, and what it did on the way.

    Attributes:
        output: The flow's output (``None`` if it failed or paused).
        error: What it failed with, if it failed. For a durable run, a
            ``StepFailed`` carrying the run's error message.
        calls: The calls the run made to the ``MockService`` instances among
            its services, in the order they happened.
        compensated: The paths of the steps undone, in the order they were
            undone (newest first).
        failed_path: The path of the node whose failure failed the flow.
        logs: The structlog events the run logged, as dicts (not printed).
        record: The durable run's record, for durable runs.
        crashes: The simulated crashes of a durable run, oldest first.
        faults_hit: The paths where an injected failure fired, in order.

    .. versionadded:: 0.1.0
    """

    output: Any = None
    error: BaseException | None = None
    calls: tuple[ServiceCall, ...] = ()
    compensated: tuple[Path, ...] = ()
    failed_path: Path | None = None
    logs: tuple[dict[str, Any], ...] = ()
    record: RunRecord | None = None
    crashes: tuple[CrashPoint, ...] = ()
    faults_hit: tuple[Path, ...] = ()

    @property
    def ok(self) -> bool:
        """
        True if the flow returned an output (a paused durable run is not ok).
        """
        if self.record is not None:
            return self.record.status is RunStatus.COMPLETED
        return self.error is None

    def unwrap(self) -> Any:
        """
        Return the output, or raise the error the flow failed with.
        """
        if self.error is not None:
            raise self.error
        return self.output


def failed_path_of(error: BaseException) -> Path:
    """
    The path of the node that failed the flow: a failed saga's original failure's path.
    """
    if isinstance(error, CompensationFailed) and isinstance(error.original, FlowError):
        return error.original.path
    return error.path if isinstance(error, FlowError) else ()


def _mocks(services: abc.Mapping[str, Any] | None) -> list[MockService]:
    if not services:
        return []
    return [s for s in services.values() if isinstance(s, MockService)]


def _calls_since(seq: int, mocks: abc.Iterable[MockService]) -> tuple[ServiceCall, ...]:
    calls = [c for mock in mocks for c in mock.calls if c.seq > seq]
    return tuple(sorted(calls, key=lambda c: c.seq))


def _faults(flow: Flow[Any, Any], faults: Any) -> dict[Path, Any]:
    parsed = {parse_path(path): error for path, error in (faults or {}).items()}
    check_paths(flow, parsed, "an injected failure")
    return parsed


class _Capture:
    """
    Strictly private: a structlog processor that keeps events instead of printing them.
    """

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __call__(self, _logger: Any, method: str, event: Any) -> Any:
        self.events.append({**event, "log_level": method})
        raise structlog.DropEvent


@final
class FlowHarness:
    """
    Runs flows in tests: on mocked services, under a fake clock, with injected faults.

    Usable from any test (the ``flow_harness`` pytest fixture makes one);
    ``FlowTestCase`` wraps one.

    Attributes:
        clock: The fake clock every run of this harness uses.

    .. versionadded:: 0.1.0
    """

    def __init__(self, *, clock: FakeClock | None = None) -> None:
        self.clock = FakeClock() if clock is None else clock

    def __repr__(self) -> str:
        return f"FlowHarness(clock={self.clock!r})"

    async def run(
        self,
        flow: Flow[Any, Any],
        input: Any,
        *,
        services: abc.Mapping[str, Any] | None = None,
        faults: abc.Mapping[Path | str, BaseException | type[BaseException]] | None = None,
        run_id: str | None = None,
    ) -> FlowResult:
        """
        Execute ``flow`` on ``input`` and return how it ended; a failure is returned, not raised.

        Args:
            flow: The tree to run.
            input: Its input.
            services: What steps find in ``ctx.services`` (mocks, fakes, anything).
            faults: Paths whose node fails with the given exception (or an
                instance of the given class) instead of running, as if every
                attempt failed.
            run_id: The run's id (a new UUIDv7 if not given).

        Raises:
            ValueError: A fault names a path that is not in the tree.
        """
        parsed = _faults(flow, faults)
        capture = _Capture()
        logger = structlog.wrap_logger(
            None, processors=[capture], wrapper_class=structlog.BoundLogger
        )
        ctx = FlowContext(
            services=services,
            run_id=new_run_id() if run_id is None else run_id,
            logger=logger,
            clock=self.clock,
        )
        start = _next_seq()
        hit: list[Path] = []
        output: Any = None
        error: FlowError | None = None
        with inject_failures(parsed, hit):
            try:
                output = await invoke(flow, ctx, None, input)
            except FlowError as exc:
                error = exc
        compensated = tuple(
            parse_path(event["step"])
            for event in capture.events
            if event.get("event") == "systemflow.compensated"
        )
        return FlowResult(
            output=output,
            error=error,
            calls=_calls_since(start, _mocks(services)),
            compensated=compensated,
            failed_path=None if error is None else failed_path_of(error),
            logs=tuple(capture.events),
            faults_hit=tuple(hit),
        )

    def durable(
        self,
        flow: Flow[Any, Any],
        *,
        name: str | None = None,
        store: StateStore | None = None,
    ) -> DurableFlow:
        """
        Make ``flow`` durable for a test: ``Stateful`` on this harness's clock.

        ``flow`` may already be a ``Stateful``: it keeps its name and types,
        and runs on ``store`` if given, else on its own store.

        Args:
            flow: The tree, or a ``Stateful``.
            name: The runs' name (default: the Stateful's, else ``"flow-under-test"``).
            store: Where runs are kept (default: a new ``InMemoryStateStore``).
        """
        if isinstance(flow, Stateful):
            inner = CrashingStore(flow.store if store is None else store)
            stateful = attrs.evolve(
                flow,
                store=cast("StateStore", inner),
                clock=self.clock,
                name=flow.name if name is None else name,
            )
        else:
            inner = CrashingStore(InMemoryStateStore() if store is None else store)
            stateful = Stateful(flow, store=inner, name=name or "flow-under-test", clock=self.clock)
        return DurableFlow(stateful, inner, self.clock)


@final
class DurableFlow:
    """
    A durable flow under test: start, signal, skip time, crash and resume its runs.

    Made by ``FlowHarness.durable``. Runs are kept in ``store`` (which can
    simulate crashes), and their timers read the harness's fake clock.

    Attributes:
        stateful: The ``Stateful`` that runs the flow.
        store: The crash-injecting store around the real one.
        clock: The harness's fake clock.

    .. versionadded:: 0.1.0
    """

    def __init__(self, stateful: Stateful, store: CrashingStore, clock: FakeClock) -> None:
        self.stateful = stateful
        self.store = store
        self.clock = clock
        self._hit: list[Path] = []
        self._logs: list[dict[str, Any]] = []

    def __repr__(self) -> str:
        return f"DurableFlow({self.stateful!r}, store={self.store.inner!r})"

    async def start(
        self,
        input: Any,
        *,
        run_id: str | None = None,
        services: abc.Mapping[str, Any] | None = None,
        crash_at: CrashPoint | None = None,
        faults: abc.Mapping[Path | str, BaseException | type[BaseException]] | None = None,
    ) -> RunRecord:
        """
        Start a run; return its record when it completes, fails, pauses or crashes.

        After a simulated crash the record is as the dead process left it:
        ``running``, its lease held by the dead claim. ``resume`` takes it over.

        Args:
            input: The run's input.
            run_id: The run's id (a new UUIDv7 if not given).
            services: What the steps call.
            crash_at: Where the process dies, if anywhere.
            faults: Paths whose node fails with the given exception (see ``FlowHarness.run``).
        """
        run_id = new_run_id() if run_id is None else run_id
        return await self._drive(
            run_id,
            crash_at,
            faults,
            lambda: self.stateful.start(input, run_id=run_id, services=services),
        )

    async def resume(
        self,
        run_id: str,
        *,
        services: abc.Mapping[str, Any] | None = None,
        crash_at: CrashPoint | None = None,
        faults: abc.Mapping[Path | str, BaseException | type[BaseException]] | None = None,
        accept_version_change: bool = False,
    ) -> RunRecord:
        """
        Resume a run, as a new process would: a crashed run is taken over at once.
        """
        return await self._drive(
            run_id,
            crash_at,
            faults,
            lambda: self.stateful.resume(
                run_id, services=services, accept_version_change=accept_version_change
            ),
        )

    async def _drive(
        self,
        run_id: str,
        crash_at: CrashPoint | None,
        faults: Any,
        call: abc.Callable[[], abc.Awaitable[RunRecord]],
    ) -> RunRecord:
        parsed = _faults(self.stateful.flow, faults)
        if crash_at is not None:
            check_paths(self.stateful.flow, [crash_at.path], "a crash")
        self.store.arm(crash_at)
        try:
            # A durable run logs through structlog's global configuration:
            # keep its events for the result instead of printing them.
            with structlog.testing.capture_logs() as events, inject_failures(parsed, self._hit):
                try:
                    return await call()
                finally:
                    self._logs.extend(dict(event) for event in events)
        except SimulatedCrash:
            return await self.stateful.get(run_id)
        finally:
            self.store.arm(None)

    async def signal(self, run_id: str, signal: str, payload: Any = None) -> None:
        """
        Deliver a signal to a run (resume it to let it consume the signal).
        """
        await self.stateful.store.signal(run_id, signal, payload)

    async def fast_forward(
        self, run_id: str, *, services: abc.Mapping[str, Any] | None = None
    ) -> RunRecord:
        """
        Move the clock to the run's wake-up time (its earliest timer) and resume it.

        A run with no timer due is resumed as it is.
        """
        record = await self.stateful.get(run_id)
        if record.wake_at is not None:
            self.clock.advance_to(record.wake_at)
        return await self.resume(run_id, services=services)

    async def run(
        self,
        input: Any,
        *,
        services: abc.Mapping[str, Any] | None = None,
        run_id: str | None = None,
        crash_at: CrashPoint | None = None,
        faults: abc.Mapping[Path | str, BaseException | type[BaseException]] | None = None,
        skip_timers: bool = True,
    ) -> FlowResult:
        """
        Start a run and carry it as far as it goes: through a crash, and past its timers.

        A crashed run is resumed (as a new process, with the same services);
        a run paused on a timer is fast-forwarded, unless ``skip_timers`` is
        false. A run waiting for a signal is returned paused.
        """
        run_id = new_run_id() if run_id is None else run_id
        start = _next_seq()
        crashes = len(self.store.crashes)
        hits = len(self._hit)
        logs = len(self._logs)
        armed = crash_at  # until it fires: a point after a timer fires in a later resume

        async def until_stopped(record: RunRecord) -> RunRecord:
            nonlocal armed
            if len(self.store.crashes) > crashes and armed is not None:
                armed = None  # it fired: the run is resumed as by a new process
            if record.status is RunStatus.RUNNING:
                record = await self.resume(run_id, services=services, faults=faults)
            return record

        record = await until_stopped(
            await self.start(input, run_id=run_id, services=services, crash_at=armed, faults=faults)
        )
        wakes = 0
        while skip_timers and record.status is RunStatus.PAUSED and record.wake_at is not None:
            wakes += 1
            if wakes > _MAX_WAKES:
                msg = f"run {run_id} still sleeps after {_MAX_WAKES} timers; is it a loop?"
                raise RuntimeError(msg)
            self.clock.advance_to(record.wake_at)
            record = await until_stopped(
                await self.resume(run_id, services=services, crash_at=armed, faults=faults)
            )
        result = await self.result(run_id, services=services, since=start)
        return attrs.evolve(
            result,
            crashes=tuple(self.store.crashes[crashes:]),
            faults_hit=tuple(self._hit[hits:]),
            logs=tuple(self._logs[logs:]),
        )

    async def history(self, run_id: str) -> list[Event]:
        """
        Return a run's events, oldest first.
        """
        return await self.stateful.store.history(run_id)

    async def compensated(self, run_id: str) -> list[Path]:
        """
        The paths of the steps a run undid, in the order it undid them.
        """
        return [e.path for e in await self.history(run_id) if e.kind == COMPENSATED and e.path]

    async def result(
        self,
        run_id: str,
        *,
        services: abc.Mapping[str, Any] | None = None,
        since: int = 0,
    ) -> FlowResult:
        """
        Describe a run as a ``FlowResult``, for the same assertions as ``FlowHarness.run``.

        Args:
            run_id: The run.
            services: Its services: the calls of the mocks among them are included.
            since: Only calls made after this call sequence number.
        """
        record = await self.stateful.get(run_id)
        history = await self.history(run_id)
        error: StepFailed | None = None
        failed_path: Path | None = None
        if record.status is RunStatus.FAILED:
            failed = [e.path for e in history if e.kind == FAILED and e.path is not None]
            failed_path = failed[-1] if failed else (history[-1].path or ())
            error = StepFailed(record.error or "the run failed", path=failed_path, run_id=run_id)
        return FlowResult(
            output=record.output if record.status is RunStatus.COMPLETED else None,
            error=error,
            calls=_calls_since(since, _mocks(services)),
            compensated=tuple(e.path for e in history if e.kind == COMPENSATED and e.path),
            failed_path=failed_path,
            record=record,
            crashes=tuple(self.store.crashes),
            faults_hit=tuple(self._hit),
            logs=tuple(self._logs),
        )
