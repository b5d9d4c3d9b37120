"""
Fault and crash injection: make a node fail, or the process die at a checkpoint.

Failures go through the core's node hook: the node at a given path raises the
given exception instead of running, and the flow handles it like any failure
of that node (wrapped, journaled, compensated). Crashes go through a store
wrapper: right before or right after a given checkpoint is written, the store
raises ``SimulatedCrash``, a ``BaseException`` nothing in a flow catches, and
from then on the dead claim can write nothing more. A new claim (a resume, as
a new process would do it) takes the run over at once, because the wrapper
tells the store that the dead claim's owner is gone.
"""

from __future__ import annotations

import contextlib
import difflib
from typing import TYPE_CHECKING, Any, Literal, final

import attrs

from .._core import NODE_HOOK, SIGNAL, format_path, walk

if TYPE_CHECKING:
    from collections import abc

    from .._core import Flow, FlowContext, Path
    from ..state import Event, RunRecord, StateStore
    from ..state._model import Claim, NewEvent

When = Literal["before", "after"]


class SimulatedCrash(BaseException):
    """
    The process died here (in a test): raised by a crash-injecting store.

    A ``BaseException``, like ``KeyboardInterrupt``: no flow catches or
    compensates it, as nothing runs in a process that is gone.

    Attributes:
        point: Where the crash was injected.

    .. versionadded:: 0.1.0
    """

    def __init__(self, message: str, *, point: CrashPoint) -> None:
        super().__init__(message)
        self.point = point


def parse_path(path: Path | str) -> Path:
    """
    Return a path given as a tuple, or as rendered (``"saga/fulfil/payment"``, ``"<root>"``).

    Segments made of digits are indexes: names may not be all digits.
    """
    if not isinstance(path, str):
        return tuple(path)
    if path in {"", "<root>"}:
        return ()
    return tuple(int(seg) if seg.isdigit() else seg for seg in path.split("/"))


@final
@attrs.frozen
class CrashPoint:
    """
    Where to crash a durable run: right before or right after a node's checkpoint.

    The checkpoint is the first record the run writes at ``path`` (a step's
    output or failure, a branch decision, a timer's deadline, a consumed
    signal), unless ``kind`` names another (``"compensated"``: the record of
    the step's undo). Before it, the node's effect happened but is not
    recorded: a resumed run does it again. After it, a resumed run reuses it.

    Attributes:
        path: The node's path (a tuple, or rendered like ``"saga/fulfil/payment"``).
        when: ``"before"`` or ``"after"`` the checkpoint is written.
        kind: The kind of record to crash at; the first one at ``path`` if ``None``.

    .. versionadded:: 0.1.0
    """

    path: Path = attrs.field(converter=parse_path)
    when: When = attrs.field(default="after", kw_only=True)
    kind: str | None = attrs.field(default=None, kw_only=True)

    def __attrs_post_init__(self) -> None:
        """
        Refuse a ``when`` other than before or after.
        """
        if self.when not in {"before", "after"}:
            msg = f"CrashPoint: when must be 'before' or 'after', got {self.when!r}"
            raise ValueError(msg)

    def matches(self, path: Path | None, kind: str) -> bool:
        """
        Tell whether a record of ``kind`` at ``path`` is this point's checkpoint.
        """
        return path == self.path and (self.kind is None or self.kind == kind)

    def __str__(self) -> str:
        what = "checkpoint" if self.kind is None else f"{self.kind!r} record"
        return f"{self.when} the {what} of {format_path(self.path)}"


def _known_paths(flow: Flow[Any, Any]) -> list[Path]:
    return list(dict.fromkeys(path for path, _node in walk(flow)))


def check_paths(flow: Flow[Any, Any], paths: abc.Iterable[Path], what: str) -> None:
    """
    Refuse paths that are not in the tree, naming the closest ones that are.

    Raises:
        ValueError: A path is not a node of ``flow``.
    """
    known = _known_paths(flow)
    for path in paths:
        if path not in known:
            rendered = [format_path(p) for p in known]
            close = difflib.get_close_matches(format_path(path), rendered, n=3, cutoff=0.4)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            msg = f"{what} at {format_path(path)}: the flow has no node there{hint}"
            raise ValueError(msg)


def _instance(error: BaseException | type[BaseException], path: Path) -> BaseException:
    if isinstance(error, BaseException):
        return error
    return error(f"fault injected at {format_path(path)}")


@contextlib.contextmanager
def inject_failures(
    faults: abc.Mapping[Path, BaseException | type[BaseException]],
    hit: list[Path],
) -> abc.Iterator[None]:
    """
    Make the nodes at the paths of ``faults`` raise their exception instead of running.

    Each path reached is appended to ``hit``.
    """
    if not faults:
        yield
        return
    outer = NODE_HOOK.get()

    def hook(node: Flow[Any, Any], ctx: FlowContext) -> None:
        if outer is not None:
            outer(node, ctx)
        error = faults.get(ctx.path)
        if error is not None:
            hit.append(ctx.path)
            raise _instance(error, ctx.path)

    token = NODE_HOOK.set(hook)
    try:
        yield
    finally:
        NODE_HOOK.reset(token)


@final
class CrashingStore:
    """
    A state store that makes the process die at a checkpoint; everything else it passes on.

    Use it where a ``StateStore`` is expected (``typing.cast`` it for a type
    checker: it passes on what it does not change). ``arm(point)`` sets the
    next crash. When it fires, the claim that was
    writing is dead: it can write nothing more (its ``release`` is ignored, as
    a dead process releases nothing), and a later claim takes the run over at
    once, without waiting for the lease to expire.

    Attributes:
        inner: The store that keeps the runs.
        crashes: The points that fired, oldest first.

    .. versionadded:: 0.1.0
    """

    def __init__(self, inner: StateStore) -> None:
        self.inner = inner
        self.crashes: list[CrashPoint] = []
        self._armed: CrashPoint | None = None
        self._dead: set[str] = set()

    def __repr__(self) -> str:
        return f"CrashingStore({self.inner!r})"

    def arm(self, point: CrashPoint | None) -> None:
        """
        Crash at ``point`` (once), or at no point if ``None``.
        """
        self._armed = point

    @property
    def armed(self) -> CrashPoint | None:
        """
        The crash still to come, if any.
        """
        return self._armed

    def _die(self, claim: Claim, point: CrashPoint) -> SimulatedCrash:
        self._dead.add(claim.owner)
        self._armed = None
        self.crashes.append(point)
        return SimulatedCrash(f"simulated crash {point}", point=point)

    def _check_alive(self, claim: Claim, run_id: str) -> None:
        if claim.owner in self._dead:
            point = self.crashes[-1]
            msg = f"run {run_id}: the process that crashed {point} cannot write any more"
            raise SimulatedCrash(msg, point=point)

    def _due(self, pairs: abc.Iterable[tuple[Path | None, str]], when: When) -> CrashPoint | None:
        point = self._armed
        if point is None or point.when != when:
            return None
        return point if any(point.matches(path, kind) for path, kind in pairs) else None

    # -- the StateStore protocol: what a crash changes; the rest is passed on --

    def __getattr__(self, name: str) -> Any:
        # create_run, signal, get, history, cancel, list_runs, close, ...
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.inner, name)

    async def claim_run(
        self, run_id: str, *, claim: Claim, is_dead: abc.Callable[[str], bool], **options: Any
    ) -> tuple[RunRecord, list[Event]]:
        """
        Claim a run; a claim that crashed counts as a holder that is gone.
        """

        def gone(owner: str) -> bool:
            return owner in self._dead or is_dead(owner)

        return await self.inner.claim_run(run_id, claim=claim, is_dead=gone, **options)

    async def append(
        self, run_id: str, events: abc.Sequence[NewEvent], *, claim: Claim
    ) -> list[int]:
        """
        Append events, crashing before or after if one of them is the armed checkpoint.
        """
        self._check_alive(claim, run_id)
        pairs = [(event.path, event.kind) for event in events]
        point = self._due(pairs, "before")
        if point is not None:
            raise self._die(claim, point)
        seqs = await self.inner.append(run_id, events, claim=claim)
        point = self._due(pairs, "after")
        if point is not None:
            raise self._die(claim, point)
        return seqs

    async def finish(
        self, run_id: str, *, claim: Claim, events: abc.Sequence[NewEvent] = (), **fields: Any
    ) -> RunRecord:
        """
        End a claim (a dead claim cannot), with the run's last records.

        Crashes before or after writing them if one is the armed checkpoint.
        """
        self._check_alive(claim, run_id)
        pairs = [(event.path, event.kind) for event in events]
        point = self._due(pairs, "before")
        if point is not None:
            raise self._die(claim, point)
        record: RunRecord = await self.inner.finish(run_id, claim=claim, events=events, **fields)
        point = self._due(pairs, "after")
        if point is not None:
            raise self._die(claim, point)
        return record

    async def take_signal(
        self, run_id: str, signal: str, path: Path, *, claim: Claim
    ) -> Event | None:
        """
        Consume a signal, crashing before or after if its record is the armed checkpoint.
        """
        self._check_alive(claim, run_id)
        point = self._due([(path, SIGNAL)], "before")
        if point is not None:
            raise self._die(claim, point)
        event = await self.inner.take_signal(run_id, signal, path, claim=claim)
        point = self._due([(path, SIGNAL)], "after") if event is not None else None
        if point is not None:
            raise self._die(claim, point)
        return event

    async def heartbeat(self, run_id: str, *, claim: Claim) -> None:
        """
        Renew a lease (a dead claim renews nothing).
        """
        if claim.owner not in self._dead:
            await self.inner.heartbeat(run_id, claim=claim)

    async def release(self, run_id: str, *, claim: Claim, failed: bool = False) -> None:
        """
        Give a lease back (a dead claim gives nothing back: its process is gone).
        """
        if claim.owner not in self._dead:
            await self.inner.release(run_id, claim=claim, failed=failed)
