"""
Measure worker processes (``systemflow worker``) on one PostgreSQL: throughput and signal latency.

What it measures, on a ``pgserver`` PostgreSQL started in a temporary directory
(stopped at the end), each measurement in a fresh schema:

1. Throughput: runs completed per second by 1 and by 2 worker processes
   (``python -m systemflow._cli worker bench_workers.py:throughput --concurrency 20``,
   this very file being the flows' module). The workers are started and
   listening first; then N runs of a flow of three trivial async steps are
   enqueued in one transaction (``Stateful.enqueue(connection=...)``), and the
   clock runs from its commit (``time.time()``) to the latest ``updated_at`` of
   the completed runs, which the worker sets in the transaction that completes
   the run (same machine, same clock). A plain psycopg connection polls every
   20 ms until all N are completed; the polls' timing does not enter the
   figure. The workers log every run (``run_ended``, as the command does) to a
   file. The two cases alternate within each repeat; the figure is the median
   over the repeats, and the ratio is of the medians. On Linux, the CPU used
   meanwhile is printed too: by each worker process, by PostgreSQL (its live
   processes, plus the backends that exited, reaped by the postmaster), by the
   benchmark itself, and by the whole machine (other processes included).
2. Signal-to-resume latency: runs of ``WaitForSignal("go") >> Step(stamp)``
   paused, one worker process running (idle otherwise). For each sample, one
   run is signalled (``await store.signal(...)``); ``stamp`` returns
   ``time.time()`` in the worker, which becomes the run's output, so the
   latency is that output minus the wall time at which ``signal`` returned
   (both processes read the same system clock). One run at a time, so no
   sample waits for another; median and p99 over the samples.

Targets: 2 workers at least 1.6x the runs/s of 1, and a signal-to-resume median
under 50 ms. The script prints PASS/FAIL lines and exits 0 either way, unless
``--check`` is given: then a missed target exits 1.

Run it from the repository root::

    python benchmarks/bench_workers.py            # full: 2,000 runs, 3 repeats, 100 samples
    python benchmarks/bench_workers.py --quick    # smoke run: 300 runs, 1 repeat, 20 samples
    python benchmarks/bench_workers.py --check    # exit 1 if a target is missed
    python benchmarks/bench_workers.py --concurrency 4   # each worker's runs in flight (20)
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Final

import psycopg
import sqlalchemy as sa

import systemflow as sf
from systemflow.state import InMemoryStateStore, SqlStateStore

TARGET_SPEEDUP: Final = 1.6
TARGET_LATENCY: Final = 0.050
CONCURRENCY: Final = 20
POLL_SECONDS: Final = 0.5
STARTUP_SECONDS: Final = 60.0  # the longest a worker may take to start, or a phase to finish


# --- the flows the worker processes run (this file is their module) ---------------------


async def one(x: int) -> int:
    """A trivial step."""
    return x + 1


async def two(x: int) -> int:
    """A trivial step."""
    return x * 2


async def three(x: int) -> int:
    """A trivial step."""
    return x - 1


async def stamp(payload: int) -> float:  # noqa: ARG001 -- the signal's payload
    """When the run resumed: the wall time in the worker, as the run's output."""
    return time.time()


_PLACEHOLDER = InMemoryStateStore()  # a worker takes the runs from its --db

throughput = sf.Stateful(
    sf.Step(one) >> sf.Step(two) >> sf.Step(three), store=_PLACEHOLDER, name="throughput"
)
latency = sf.Stateful(
    sf.WaitForSignal("go", payload_type=int) >> sf.Step(stamp), store=_PLACEHOLDER, name="latency"
)


# --- the database and the workers --------------------------------------------------------


class Schema:
    """
    A fresh schema of the server: its SQLAlchemy URL, and a plain psycopg connection to poll.
    """

    def __init__(self, uri: str) -> None:
        """Create the schema."""
        self.name = f"b_{uuid.uuid4().hex}"
        self.uri = uri
        with psycopg.connect(uri, autocommit=True) as admin:
            admin.execute(f"CREATE SCHEMA {self.name}")
        url = sa.make_url(uri)
        url = url.set(
            drivername="postgresql+psycopg",
            query={**url.query, "options": f"-csearch_path={self.name}"},
        )
        self.url = url.render_as_string(hide_password=False)
        self.poller = psycopg.connect(
            self.url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True
        )

    def last_completed(self) -> float:
        """The latest ``updated_at`` of the completed runs, as a Unix time."""
        row = self.poller.execute(
            "SELECT extract(epoch FROM max(updated_at)) FROM runs WHERE status = 'completed'"
        ).fetchone()
        if not row or row[0] is None:
            msg = "no completed run"
            raise RuntimeError(msg)
        return float(row[0])

    def count(self, where: str) -> int:
        """How many runs match ``where``."""
        row = self.poller.execute(f"SELECT count(*) FROM runs WHERE {where}").fetchone()  # noqa: S608
        return int(row[0]) if row else 0

    def drop(self) -> None:
        """Close the poller, drop the schema."""
        self.poller.close()
        with psycopg.connect(self.uri, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {self.name} CASCADE")


class Cpu:
    """
    CPU seconds used so far (Linux ``/proc``): by some processes, by PostgreSQL, by the machine.
    """

    def __init__(self, pids: list[int]) -> None:
        """Take the first reading, of these processes and of the rest."""
        self.pids = pids
        self.available = Path("/proc/stat").exists()
        self.began = time.perf_counter()
        self.first = self._read()

    @staticmethod
    def _process(pid: int, *, children: bool = False) -> float:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0  # it exited meanwhile
        ticks = int(fields[11]) + int(fields[12])  # utime, stime
        if children:  # cutime, cstime: its children that exited (the postmaster's backends)
            ticks += int(fields[13]) + int(fields[14])
        return ticks / os.sysconf("SC_CLK_TCK")

    @classmethod
    def _postgres(cls) -> float:
        total = 0.0
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    name = (entry / "comm").read_text().strip()
                except OSError:
                    continue
                if name == "postgres":
                    total += cls._process(int(entry.name), children=True)
        return total

    @staticmethod
    def _busy() -> float:
        with Path("/proc/stat").open() as stat:
            ticks = [int(x) for x in stat.readline().split()[1:]]
        return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # not idle, iowait

    def _read(self) -> list[float]:
        if not self.available:
            return []
        return [
            *(self._process(pid) for pid in self.pids),
            self._process(os.getpid()),
            self._postgres(),
            self._busy(),
        ]

    def report(self) -> str:
        """The CPU used since the first reading, in % of one core."""
        if not self.available:
            return "(no /proc: CPU not measured)"
        elapsed = time.perf_counter() - self.began
        pct = [
            round((b - a) / elapsed * 100) for a, b in zip(self.first, self._read(), strict=True)
        ]
        *workers, bench, postgres, busy = pct
        return (
            f"CPU % of a core: workers {'+'.join(map(str, workers))}, postgres {postgres}, "
            f"benchmark {bench}; machine busy {busy} of {100 * (os.cpu_count() or 1)}"
        )


def _wait(predicate: Any, what: str, interval: float) -> float:
    # Poll until predicate() is true; return the time.perf_counter() when it was seen.
    deadline = time.perf_counter() + STARTUP_SECONDS
    while not predicate():
        if time.perf_counter() > deadline:
            msg = f"not within {STARTUP_SECONDS} s: {what}"
            raise RuntimeError(msg)
        time.sleep(interval)
    return time.perf_counter()


def start_workers(
    url: str, flow: str, count: int, logs: Path, concurrency: int = CONCURRENCY
) -> list[subprocess.Popen[bytes]]:
    """
    Start ``count`` worker processes for this module's ``flow``; return once all listen.
    """
    processes: list[tuple[subprocess.Popen[bytes], Path]] = []
    for _ in range(count):
        log = logs / f"worker-{uuid.uuid4().hex[:8]}.log"
        with log.open("wb") as out:
            command = [sys.executable, "-m", "systemflow._cli", "worker", f"{__file__}:{flow}"]
            options = ["--concurrency", str(concurrency), "--poll", str(POLL_SECONDS)]
            process = subprocess.Popen(  # noqa: S603 -- our own command
                [*command, "--db", url, *options],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        processes.append((process, log))
    for process, log in processes:
        _wait(
            lambda log=log: b"worker_started" in log.read_bytes(),
            f"worker {process.pid} started",
            0.01,
        )
    return [process for process, _ in processes]


def stop_workers(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM the workers; each must exit with 0 (a graceful stop)."""
    for process in processes:
        process.send_signal(signal.SIGTERM)
    for process in processes:
        if process.wait(timeout=STARTUP_SECONDS) != 0:
            msg = f"worker {process.pid} exited with {process.returncode}"
            raise RuntimeError(msg)


# --- the measurements --------------------------------------------------------------------


async def runs_per_second(
    uri: str, workers: int, runs: int, logs: Path, concurrency: int = CONCURRENCY
) -> float:
    """
    Start ``workers`` processes, enqueue ``runs`` in one transaction; return runs/s to the last.
    """
    schema = Schema(uri)
    store = SqlStateStore(schema.url)
    engine = sa.create_engine(schema.url)
    try:
        flow = throughput.with_store(store)
        await store.list_runs()  # the tables exist before the workers look
        processes = start_workers(schema.url, "throughput", workers, logs, concurrency)
        try:
            with engine.connect() as conn:
                with conn.begin():
                    for i in range(runs):
                        await flow.enqueue(i, connection=conn)
                began = time.time()  # the commit: the workers hear of the runs
            cpu = Cpu([process.pid for process in processes])
            _wait(lambda: schema.count("status = 'completed'") == runs, "all runs completed", 0.02)
            usage = cpu.report()
            ended = schema.last_completed()
        finally:
            stop_workers(processes)
        rate = runs / (ended - began)
        print(f"  {workers} worker(s): {rate:8.1f} runs/s   {usage}", flush=True)
        return rate
    finally:
        engine.dispose()
        await store.close()
        schema.drop()


async def signal_latencies(uri: str, samples: int, logs: Path) -> list[float]:
    """
    Seconds from ``store.signal`` returning to the signalled run's next step, one run at a time.
    """
    schema = Schema(uri)
    store = SqlStateStore(schema.url)
    try:
        flow = latency.with_store(store)
        await store.list_runs()
        processes = start_workers(schema.url, "latency", 1, logs)
        try:
            run_ids = [await flow.enqueue(0) for _ in range(samples)]
            _wait(lambda: schema.count("status = 'paused'") == samples, "all runs paused", 0.01)
            signalled: list[float] = []
            for done, run_id in enumerate(run_ids, start=1):
                await store.signal(run_id, "go", 1)
                signalled.append(time.time())
                _wait(
                    lambda done=done: schema.count("status = 'completed'") == done,
                    f"run {run_id} completed",
                    0.002,
                )
                await asyncio.sleep(0.01)  # let the worker go idle again
        finally:
            stop_workers(processes)
        outputs = [(await store.get(run_id)).output for run_id in run_ids]
        return [float(out) - at for out, at in zip(outputs, signalled, strict=True)]
    finally:
        await store.close()
        schema.drop()


def _p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


async def _run(
    uri: str, runs: int, repeats: int, samples: int, logs: Path, *, concurrency: int
) -> list[tuple[bool, str]]:
    rates: dict[int, list[float]] = {1: [], 2: []}
    for repeat in range(repeats):
        for workers in (1, 2) if repeat % 2 == 0 else (2, 1):
            print(f"  repeat {repeat + 1}:", end="", flush=True)
            rates[workers].append(await runs_per_second(uri, workers, runs, logs, concurrency))
    one_, two_ = statistics.median(rates[1]), statistics.median(rates[2])
    speedup = two_ / one_
    print(f"\nThroughput ({runs:,} runs of 3 trivial steps, median of {repeats} repeats):")
    print(f"  1 worker process:   {one_:8.1f} runs/s   (all: {_all(rates[1])})")
    print(f"  2 worker processes: {two_:8.1f} runs/s   (all: {_all(rates[2])})")
    print(f"  ratio 2/1:          {speedup:8.2f}x")

    lat = await signal_latencies(uri, samples, logs)
    median, p99 = statistics.median(lat), _p99(lat)
    print(f"\nSignal to resume ({samples} samples, one worker process, one run at a time):")
    print(
        f"  median {median * 1e3:6.1f} ms   p99 {p99 * 1e3:6.1f} ms   "
        f"min {min(lat) * 1e3:6.1f} ms   max {max(lat) * 1e3:6.1f} ms\n"
    )
    return [
        (
            speedup >= TARGET_SPEEDUP,
            f"2 workers {speedup:.2f}x of 1 (target at least {TARGET_SPEEDUP}x)",
        ),
        (
            median < TARGET_LATENCY,
            (
                f"signal-to-resume median {median * 1e3:.1f} ms "
                f"(target under {TARGET_LATENCY * 1e3:.0f} ms; p99 {p99 * 1e3:.1f} ms)"
            ),
        ),
    ]


def _load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def _all(values: list[float]) -> str:
    return ", ".join(f"{v:.0f}" for v in values)


def main(argv: list[str] | None = None) -> int:
    """
    Run the benchmark, print the figures and the verdicts; return the exit code.
    """
    # Imported here, not at the top: the worker processes load this file by its path
    # (``systemflow worker bench_workers.py:...``), without benchmarks/ on sys.path.
    from _harness import new_parser, report_verdicts, temporary_postgres  # noqa: PLC0415

    parser = new_parser(__doc__, quick="fewer runs and samples (smoke test)")
    parser.add_argument("--runs", type=int, help="runs per throughput measurement (2,000)")
    parser.add_argument("--repeats", type=int, help="throughput repeats (default 3, quick 1)")
    parser.add_argument("--samples", type=int, help="latency samples (default 100, quick 20)")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=CONCURRENCY,
        help=f"each worker's --concurrency in the throughput measurement ({CONCURRENCY})",
    )
    parser.add_argument("--dir", type=Path, help="where to make the temporary directory")
    options = parser.parse_args(argv)
    runs = options.runs or (300 if options.quick else 2_000)
    repeats = options.repeats or (1 if options.quick else 3)
    samples = options.samples or (20 if options.quick else 100)

    started = time.perf_counter()
    with temporary_postgres(options.dir) as (directory, uri):
        with psycopg.connect(uri) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        print(
            f"systemflow worker benchmark: Python {sys.version.split()[0]}, "
            f"PostgreSQL {row[0] if row else '?'} (pgserver, unix socket), "
            f"{os.cpu_count()} CPUs, load average {_load()}\n"
            f"  workers: --concurrency {options.concurrency} --poll {POLL_SECONDS}, "
            "logging every run to a file\n"
        )
        verdicts = asyncio.run(
            _run(uri, runs, repeats, samples, directory, concurrency=options.concurrency)
        )
    return report_verdicts(verdicts, started, check=options.check)


if __name__ == "__main__":
    sys.exit(main())
