"""
What the benchmark scripts share: the timing loop, a throwaway PostgreSQL, the verdict lines.

Strictly private to ``benchmarks/``. The scripts run as ``python
benchmarks/bench_X.py``, which puts this directory on ``sys.path``, so they
import it as ``_harness``. It holds:

- ``Case`` and ``measure``: one thing to time, and the loop that times many.
  ``measure`` calibrates each case to a timed run of about ``run_seconds``
  (or a fixed number of calls), then takes ``repeats`` rounds of samples with
  the cases interleaved, so machine noise hits them alike; before each timed
  run a case is warmed up with a tenth of its calls, then ``gc.collect()``
  runs (the GC stays enabled). Clock: ``time.perf_counter``.
- ``usable_cpus``, for the scripts' headers.
- ``temporary_postgres``: a ``pgserver`` PostgreSQL in a new temporary
  directory, stopped and removed at the end.
- ``new_parser`` and ``report_verdicts``: the ``--quick`` and ``--check``
  options, the PASS/FAIL lines and the exit code.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import shutil
import statistics
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence

    from pgserver.postgres_server import PostgresServer

    Call = Callable[..., Awaitable[object]]


# --- timing ------------------------------------------------------------------------------


@dataclass
class Case:
    """
    One thing to time: ``await fn(*args, **kwargs)``, looped ``number`` times per timed run.

    Give ``fn``, or ``make`` to build it: ``make`` is called at the first use,
    and again before every timed run when ``fresh`` (an in-memory store must
    start empty).
    """

    key: str
    fn: Call | None = None
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    make: Callable[[], Call] | None = None
    fresh: bool = False
    fixed_number: int | None = None  # calls per timed run; calibrated if None
    runs_per_repeat: int = 1
    number: int = 1
    samples: list[float] = field(default_factory=list)  # seconds per call, one per timed run

    def call(self) -> Call:
        """
        The function to time: ``fn``, made now if ``fresh`` or not made yet.
        """
        if self.make is not None and (self.fn is None or self.fresh):
            self.fn = self.make()
        if self.fn is None:
            msg = f"case {self.key!r} has neither fn nor make"
            raise ValueError(msg)
        return self.fn

    @property
    def median(self) -> float:
        """
        The median of the samples, in seconds per call.
        """
        return statistics.median(self.samples)


class Repeated(Protocol):
    """
    A measurement that times itself, once per round of ``measure`` (resume latencies).
    """

    async def repeat(self, *, timed: bool = True) -> None:
        """
        Take this round's samples (a warm-up, not kept, unless ``timed``).
        """


async def _loop(case: Case, fn: Call, number: int) -> float:
    args, kwargs = case.args, case.kwargs
    start = time.perf_counter()
    for _ in range(number):
        await fn(*args, **kwargs)
    return time.perf_counter() - start


async def _calibrate(case: Case, run_seconds: float) -> None:
    # Grow the loop until it lasts a tenth of a run, then scale to a full run.
    fn = case.call()
    if case.fixed_number is not None:
        case.number = case.fixed_number
        await _loop(case, fn, case.number)  # the first warm-up
        return
    number = 1
    while True:
        gc.collect()
        elapsed = await _loop(case, fn, number)
        if elapsed >= run_seconds / 10:
            case.number = max(1, round(number * run_seconds / elapsed))
            return
        number *= 4


async def measure(
    cases: list[Case],
    repeats: int,
    run_seconds: float,
    *,
    others: Sequence[Repeated] = (),
    min_warm_up: int = 0,
) -> None:
    """
    Calibrate the cases, then fill their samples over ``repeats`` interleaved rounds.

    Args:
        cases: What to time, in the order each round times them.
        repeats: How many rounds; each times every case ``runs_per_repeat``
            times, then runs each of ``others``.
        run_seconds: About how long a calibrated timed run lasts.
        others: Measurements that time themselves; each is warmed up once,
            untimed, after the calibration.
        min_warm_up: The fewest calls of the warm-up before a timed run (a
            tenth of the run's calls when that is more).
    """
    for case in cases:
        await _calibrate(case, run_seconds)  # doubles as the warm-up
    for other in others:
        await other.repeat(timed=False)
    for _ in range(repeats):
        for case in cases:  # interleaved: noise hits every case alike
            for _ in range(case.runs_per_repeat):
                fn = case.call()
                # Warm up, so the case runs in its own steady state, not the previous case's.
                await _loop(case, fn, max(min_warm_up, case.number // 10))
                gc.collect()
                case.samples.append(await _loop(case, fn, case.number) / case.number)
        for other in others:
            await other.repeat()


def usable_cpus() -> int:
    """
    How many CPUs this process may run on (the machine's count where that cannot be told).
    """
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 0


# --- PostgreSQL --------------------------------------------------------------------------


def _start_postgres(pgdata: Path) -> PostgresServer:
    with warnings.catch_warnings():
        # platformdirs warns at import when XDG_RUNTIME_DIR is unset.
        warnings.simplefilter("ignore")
        from pgserver.postgres_server import get_server  # noqa: PLC0415 -- a dev dependency

        return get_server(pgdata, cleanup_mode="stop")


@contextlib.contextmanager
def temporary_postgres(parent: Path | None) -> Iterator[tuple[Path, str]]:
    """
    Start a ``pgserver`` PostgreSQL in a new temporary directory; yield the directory and its URI.

    On the way out the server is stopped and the directory removed.

    Args:
        parent: Where to make the directory (``None``: the system's temporary directory).
    """
    directory = Path(tempfile.mkdtemp(prefix="systemflow-bench-", dir=parent))
    try:
        server = _start_postgres(directory / "pgdata")
        try:
            yield directory, server.get_uri()
        finally:
            server.cleanup()  # stops the server
    finally:
        shutil.rmtree(directory, ignore_errors=True)


# --- options and verdicts ----------------------------------------------------------------


def new_parser(
    doc: str | None, *, quick: str = "fewer, shorter runs (smoke test)"
) -> argparse.ArgumentParser:
    """
    An argument parser with ``--quick`` and ``--check``, described by a script's summary.

    Args:
        doc: The script's ``__doc__``, whose second line (the first holds the
            opening quotes) is the summary.
        quick: The help of ``--quick``.
    """
    parser = argparse.ArgumentParser(description=doc.splitlines()[1] if doc else None)
    parser.add_argument("--quick", action="store_true", help=quick)
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    return parser


def report_verdicts(verdicts: list[tuple[bool, str]], started: float, *, check: bool) -> int:
    """
    Print a PASS or FAIL line per verdict, then the time since ``started``; return the exit code.

    Args:
        verdicts: Whether each target was met, and what it says.
        started: The ``time.perf_counter()`` at which the benchmark began.
        check: Whether a missed target fails the run.

    Returns:
        1 if ``check`` and a target was missed, else 0.
    """
    for ok, text in verdicts:
        print(f"{'PASS' if ok else 'FAIL'} {text}")
    print(f"(benchmark took {time.perf_counter() - started:.1f} s)")
    missed = not all(ok for ok, _ in verdicts)
    return 1 if check and missed else 0
