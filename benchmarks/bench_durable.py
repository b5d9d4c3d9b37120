"""
Measure what durable runs cost per checkpoint, against plain database writes timed in the same run.

What it measures (every step is trivial, ``async def step(x: int) -> int: return x``,
so the figures are the cost of checkpointing, not of work; this module has
``from __future__ import annotations``, like most typed code, so the step's
annotations are strings):

1. A ``Stateful(Sequence(10 steps))`` run, ``start`` to completion, on
   ``SqlStateStore`` over SQLite (a file, WAL, ``synchronous=NORMAL``: the
   default), over SQLite with ``synchronous="FULL"``, and over PostgreSQL
   (a ``pgserver`` server started in a temporary directory, stopped at the
   end), both as the store runs on it by default here (inline: the server is
   on this host) and pooled (``inline=False``: asyncio connections, as for a
   remote server; no target, against the same floor). Reported:
   microseconds per checkpointed step (the run's time / its 10
   checkpoints), the fixed cost per run (a run of ``Sequence()``, no steps:
   ``create_run`` and ``finish``), the marginal cost per step ((10-step run -
   0-step run) / 10) and the ratios to the floor: one plain INSERT and COMMIT
   of an event-like row (run_id, kind, path, data, at) by the fastest ordinary
   client: Python's ``sqlite3`` on a file in the same directory (WAL, the same
   ``synchronous``), and psycopg 3 (a sync connection, autocommit off, one
   INSERT then ``commit()``) against the same PostgreSQL server. For context,
   the same runs on ``InMemoryStateStore`` (the library's own cost, no
   database) and the plain ``execute`` of the sequence (no ``Stateful``).
2. Group commit: a ``Stateful(Parallel(1,000 steps))`` run against a
   ``Stateful(Sequence(1,000 steps))`` run (1,000 checkpoints, one by one):
   milliseconds per run, microseconds per step, and how many ``append`` calls
   (one transaction each) and events per call the store saw (the store is
   wrapped to count them).
3. Resume latency: runs paused on ``WaitForSignal`` after 10 journaled steps;
   the time of ``await store.signal(...)`` plus ``await flow.resume(run_id)``
   to completion, one run per sample: median and p90.

Every run-time figure is the median of several timed runs (``time.perf_counter``).
The cases are interleaved within each repeat, so machine noise hits runs and
floors alike; before each timed run a case is warmed up with a tenth of its
calls, then ``gc.collect()`` runs (the GC stays enabled). A timed run loops
for about 0.4 s (0.03 s with ``--quick``), except the 1,000-step runs: one
call per timed run, 3 timed runs per repeat for ``Parallel``. In-memory cases
get a new store before each timed run, so runs do not pile up in memory.
Resume latencies are single calls, several per repeat, pooled.

Targets (per checkpointed step, the 10-step run / 10): at most 2x the floor on
SQLite (``synchronous=NORMAL``), at most 1.5x on PostgreSQL. The script prints
PASS/FAIL lines and exits 0 either way, unless ``--check`` is given: then a
missed target exits 1.

Run it from the repository root::

    python benchmarks/bench_durable.py            # full: 7 repeats, about 1.5 minutes
    python benchmarks/bench_durable.py --quick    # smoke run: 3 repeats, under 30 s
    python benchmarks/bench_durable.py --check    # exit 1 if a target is missed
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import platform
import sqlite3
import statistics
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import psycopg
import sqlalchemy as sa
from _harness import Case, measure, new_parser, report_verdicts, temporary_postgres, usable_cpus

import systemflow as sf
from systemflow.state import InMemoryStateStore, RunStatus, SqlStateStore, StateStore

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from systemflow.state._model import Claim, NewEvent

STEPS: Final = 10
MANY: Final = 1_000
TARGET_SQLITE: Final = 2.0
TARGET_POSTGRES: Final = 1.5
SIGNAL: Final = "go"
PG_EVENTS_DDL: Final = (
    "CREATE TABLE floor_events (seq BIGSERIAL PRIMARY KEY, run_id TEXT NOT NULL, "
    "kind TEXT NOT NULL, path TEXT, data TEXT, at TIMESTAMPTZ NOT NULL)"
)
SQLITE_EVENTS_DDL: Final = (
    "CREATE TABLE floor_events (seq INTEGER PRIMARY KEY, run_id TEXT NOT NULL, "
    "kind TEXT NOT NULL, path TEXT, data TEXT, at INTEGER NOT NULL)"
)
EVENTS_INDEX_DDL: Final = "CREATE INDEX ix_floor_events_run_id_seq ON floor_events (run_id, seq)"


# --- the work: trivial steps, the flows, the floors -------------------------------------


async def step(x: int) -> int:
    """
    The trivial async step.
    """
    return x


def chain(count: int) -> sf.Sequence:
    """
    A ``Sequence`` of ``count`` trivial steps (``Sequence()``, which returns its input, for 0).
    """
    return sf.Sequence(*[sf.Step(step) for _ in range(count)])


def pausing() -> sf.Sequence:
    """
    10 trivial steps, then a wait for the signal ``go`` (its payload is the output).
    """
    return sf.Sequence(chain(STEPS), sf.WaitForSignal(SIGNAL, payload_type=int))


class CountingStore:
    """
    A store that counts the ``append`` calls made through it (one transaction each on SQL).
    """

    def __init__(self, inner: StateStore) -> None:
        """
        Wrap ``inner``; count from zero.
        """
        self.inner = inner
        self.appends = 0
        self.events = 0

    async def append(self, run_id: str, events: Sequence[NewEvent], *, claim: Claim) -> list[int]:
        """
        Count, then append through the store.
        """
        self.appends += 1
        self.events += len(events)
        return await self.inner.append(run_id, events, claim=claim)

    def __getattr__(self, name: str) -> Any:
        """
        Everything but ``append`` goes to the store as it is.
        """
        return getattr(self.inner, name)


class SqliteFloor:
    """
    The SQLite floor: one INSERT of an event row and a COMMIT, with Python's ``sqlite3``.
    """

    def __init__(self, path: Path, synchronous: str) -> None:
        """
        Open ``path`` in WAL mode with ``synchronous``; create the table of event rows.

        The connection keeps the module's default transaction handling: it
        sends BEGIN before the INSERT, and ``commit()`` ends the transaction.
        """
        self.conn = sqlite3.connect(path)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute(f"PRAGMA synchronous = {synchronous}")
        self.conn.execute(SQLITE_EVENTS_DDL)
        self.conn.execute(EVENTS_INDEX_DDL)
        self.conn.commit()
        self.run_id = str(uuid.uuid4())

    async def insert(self) -> None:
        """
        INSERT one row, COMMIT.
        """
        self.conn.execute(
            "INSERT INTO floor_events (run_id, kind, path, data, at) VALUES (?, ?, ?, ?, ?)",
            (self.run_id, "step", "[3]", "1", time.time_ns() // 1000),
        )
        self.conn.commit()

    def close(self) -> None:
        """
        Close the connection.
        """
        self.conn.close()


class PostgresFloor:
    """
    The PostgreSQL floor: one INSERT of an event row and a COMMIT, with sync psycopg 3.
    """

    def __init__(self, uri: str) -> None:
        """
        Connect to ``uri`` (autocommit off: psycopg sends BEGIN before the INSERT).
        """
        self.conn = psycopg.connect(uri)
        self.cursor = self.conn.cursor()
        self.cursor.execute(PG_EVENTS_DDL)
        self.cursor.execute(EVENTS_INDEX_DDL)
        self.conn.commit()
        self.run_id = str(uuid.uuid4())

    async def insert(self) -> None:
        """
        INSERT one row, COMMIT.
        """
        self.cursor.execute(
            "INSERT INTO floor_events (run_id, kind, path, data, at) VALUES (%s, %s, %s, %s, %s)",
            (self.run_id, "step", "[3]", "1", dt.datetime.now(dt.UTC)),
        )
        self.conn.commit()

    def close(self) -> None:
        """
        Close the connection.
        """
        self.conn.close()


# --- the backends -------------------------------------------------------------------------


@dataclass
class Backend:
    """
    One kind of store: its label, how to make it, and its floor (none for memory).
    """

    key: str
    label: str
    new_store: Callable[[], StateStore]
    fresh: bool = False  # a new store before every timed run (runs in memory pile up)
    floor: SqliteFloor | PostgresFloor | None = None
    floor_of: str | None = None  # no floor of its own: this backend's floor (same database)
    stores: list[StateStore] = field(default_factory=list)

    def store(self) -> StateStore:
        """
        The backend's store: a new one if ``fresh``, else always the same one.
        """
        if self.fresh:
            return self.new_store()  # not kept: nothing to close, and its runs go with it
        if not self.stores:
            self.stores.append(self.new_store())
        return self.stores[0]

    async def close(self) -> None:
        """
        Close the stores and the floor's connection.
        """
        for store in self.stores:
            await store.close()
        if self.floor is not None:
            self.floor.close()


# --- timing ------------------------------------------------------------------------------


@dataclass
class Counts:
    """
    What a store saw, run by run: ``append`` calls and the events they carried.
    """

    appends: list[int] = field(default_factory=list)
    events: list[int] = field(default_factory=list)


@dataclass
class ResumeCase:
    """
    Resume latency: pause ``per_repeat`` runs (untimed), then time each signal + resume.
    """

    key: str
    backend: Backend
    per_repeat: int
    samples: list[float] = field(default_factory=list)  # seconds, one per resumed run

    async def _paused(self, flow: sf.Stateful, count: int) -> list[str]:
        ids = []
        for _ in range(count):
            record = await flow.start(1)
            if record.status is not RunStatus.PAUSED:
                msg = f"{self.key}: expected a paused run, got {record.status.value}"
                raise RuntimeError(msg)
            ids.append(record.id)
        return ids

    async def repeat(self, *, timed: bool = True) -> None:
        """
        Pause runs, then resume them one by one, timing each (unless warming up).
        """
        store = self.backend.store()
        flow = sf.Stateful(pausing(), store=store, name="resume")
        ids = await self._paused(flow, self.per_repeat)
        gc.collect()
        for run_id in ids:
            started = time.perf_counter()
            await store.signal(run_id, SIGNAL, 7)
            record = await flow.resume(run_id)
            elapsed = time.perf_counter() - started
            if record.status is not RunStatus.COMPLETED or record.output != 7:
                msg = f"{self.key}: resume gave {record.status.value} {record.output!r}"
                raise RuntimeError(msg)
            if timed:
                self.samples.append(elapsed)


# --- the cases ---------------------------------------------------------------------------


def _floor_case(key: str, floor: SqliteFloor | PostgresFloor) -> Case:
    return Case(key, floor.insert)


def _run_case(key: str, backend: Backend, flow: sf.Sequence, check: object) -> Case:
    def make() -> Callable[[], Awaitable[object]]:
        durable = sf.Stateful(flow, store=backend.store(), name=key.replace(":", "-"))

        async def run() -> object:
            record = await durable.start(1)
            if record.status is not RunStatus.COMPLETED or record.output != check:
                msg = f"{key}: the run {record.status.value} with {record.output!r}"
                raise RuntimeError(msg)
            return record

        return run

    return Case(key, make=make, fresh=backend.fresh)


def _group_case(
    key: str, backend: Backend, flow: sf.Sequence | sf.Parallel, counts: Counts, runs: int
) -> Case:
    def make() -> Callable[[], Awaitable[object]]:
        counter = CountingStore(backend.store())
        durable = sf.Stateful(flow, store=counter, name=key.replace(":", "-"))

        async def run() -> object:
            appends, events = counter.appends, counter.events
            record = await durable.start(1)
            if record.status is not RunStatus.COMPLETED:
                msg = f"{key}: the run {record.status.value}: {record.error}"
                raise RuntimeError(msg)
            counts.appends.append(counter.appends - appends)
            counts.events.append(counter.events - events)
            return record

        return run

    return Case(key, make=make, fresh=backend.fresh, fixed_number=1, runs_per_repeat=runs)


@dataclass
class Plan:
    """
    Everything to time, by key, and the group-commit counts.
    """

    backends: list[Backend]
    cases: list[Case] = field(default_factory=list)
    resumes: list[ResumeCase] = field(default_factory=list)
    counts: dict[str, Counts] = field(default_factory=dict)

    def case(self, key: str) -> Case:
        """
        The case named ``key``.
        """
        return next(case for case in self.cases if case.key == key)


def _plan(backends: list[Backend], resumes_per_repeat: int) -> Plan:
    plan = Plan(backends)
    seq = chain(STEPS)

    async def plain() -> object:
        return await sf.execute(seq, 1)

    plan.cases.append(Case("plain", plain))
    parallel = sf.Parallel(*[sf.Step(step) for _ in range(MANY)])
    sequence = chain(MANY)
    for backend in backends:
        b = backend.key
        if backend.floor is not None:
            plan.cases.append(_floor_case(f"{b}:floor", backend.floor))
        plan.cases.append(_run_case(f"{b}:run0", backend, chain(0), 1))
        plan.cases.append(_run_case(f"{b}:run10", backend, chain(STEPS), 1))
    for backend in backends:
        b = backend.key
        if b == "sqlite-full":
            continue  # group commit and resumes: the default SQLite, PostgreSQL, memory
        for kind, flow, runs in (("parallel", parallel, 3), ("sequence", sequence, 1)):
            counts = plan.counts[f"{b}:{kind}"] = Counts()
            plan.cases.append(_group_case(f"{b}:{kind}", backend, flow, counts, runs))
        plan.resumes.append(ResumeCase(f"{b}:resume", backend, resumes_per_repeat))
    return plan


# --- reporting -----------------------------------------------------------------------------


def _us(seconds: float, width: int = 10) -> str:
    return f"{seconds * 1e6:{width}.1f}"


def _ms(seconds: float, width: int = 10) -> str:
    return f"{seconds * 1e3:{width}.2f}"


def _spread(samples: list[float], scale: float = 1e6, unit: str = "us") -> str:
    return f"(min {min(samples) * scale:.1f}, max {max(samples) * scale:.1f} {unit})"


def _p90(samples: list[float]) -> float:
    if len(samples) < 2:
        return samples[0]
    return statistics.quantiles(samples, n=10)[-1]


@dataclass
class Info:
    """
    Where the benchmark ran: versions, settings, the directory of the databases.
    """

    directory: Path
    postgres: dict[str, str]


def _header(info: Info, repeats: int, run_seconds: float, resumes: int) -> None:
    cpus = usable_cpus()
    print("systemflow durable-run benchmark")
    print(
        f"  {platform.python_implementation()} {platform.python_version()} on "
        f"{platform.system()} {platform.release()} {platform.machine()}, {cpus} CPUs usable, "
        f"systemflow {sf.__version__}"
    )
    print(
        f"  SQLite {sqlite3.sqlite_version} (Python sqlite3), SQLAlchemy {sa.__version__}, "
        f"psycopg {psycopg.__version__}"
    )
    pg = info.postgres
    print(
        f"  PostgreSQL {pg['server_version']} (pgserver, unix socket): "
        f"synchronous_commit={pg['synchronous_commit']}, fsync={pg['fsync']}, "
        f"wal_sync_method={pg['wal_sync_method']}"
    )
    print(f"  databases in {info.directory}")
    print(
        "  steps: async def step(x: int) -> int, in this module (from __future__ import\n"
        "  annotations: string annotations, as in most typed code)"
    )
    print(
        f"  median of {repeats} repeats per case, each timed run looping for ~{run_seconds:g} s\n"
        "  (cases interleaved; a warm-up and gc.collect() before each timed run; GC enabled;\n"
        f"  time.perf_counter; 1,000-step runs: one call per timed run; resume latency:\n"
        f"  {resumes} single resumes per repeat, pooled)"
    )
    print()


LABELS: Final = {
    "memory": "in memory (no database)",
    "sqlite-normal": "SQLite WAL, synchronous=NORMAL",
    "sqlite-full": "SQLite WAL, synchronous=FULL",
    "postgres": "PostgreSQL, synchronous_commit=on",
    "postgres-pool": "PostgreSQL, pooled (inline=False)",
}


def _report_runs(plan: Plan) -> dict[str, float]:
    """
    Section 1; returns the ratio (per checkpointed step / floor) of each SQL backend.
    """
    print(f"1. Stateful(Sequence({STEPS} async steps)), start to completion, us")
    print(
        f"   {'store':<34}{'run':>9}{'0-step':>9}{'/ckpt':>9}{'marg.':>9}"
        f"{'floor':>9}{'ckpt/fl':>9}{'marg/fl':>9}"
    )
    ratios = {}
    for backend in plan.backends:
        b = backend.key
        run10, run0 = plan.case(f"{b}:run10").median, plan.case(f"{b}:run0").median
        per_ckpt, marginal = run10 / STEPS, (run10 - run0) / STEPS
        line = (
            f"   {LABELS[b]:<34}{_us(run10, 9)}{_us(run0, 9)}{_us(per_ckpt, 9)}{_us(marginal, 9)}"
        )
        floor_key = backend.floor_of or (b if backend.floor is not None else None)
        if floor_key is not None:
            floor = plan.case(f"{floor_key}:floor").median
            ratios[b] = per_ckpt / floor
            line += f"{_us(floor, 9)}{per_ckpt / floor:8.2f}x{marginal / floor:8.2f}x"
        print(line)
    plain = plan.case("plain").median
    label = "plain execute(Sequence), no Stateful"
    print(f"   {label:<34}{_us(plain, 9)}{'':9}{_us(plain / STEPS, 9)}")
    print(
        "   run = the 10-step run; 0-step = a run of Sequence() (create_run + finish: the fixed\n"
        "   cost per run); /ckpt = run / 10 checkpoints; marg. = (run - 0-step) / 10;\n"
        "   floor = one INSERT of an event row + COMMIT (sqlite3, same directory, same\n"
        "   synchronous; psycopg 3 sync, autocommit off, same server); ckpt/fl, marg/fl = ratios"
    )
    print("   spread over the repeats (ckpt/fl: each repeat's run against its own floor):")
    for backend in plan.backends:
        floor_key = backend.floor_of or (backend.key if backend.floor is not None else None)
        if floor_key is not None:
            b = backend.key
            floors = plan.case(f"{floor_key}:floor").samples
            runs = plan.case(f"{b}:run10").samples
            paired = [run / STEPS / floor for run, floor in zip(runs, floors, strict=True)]
            print(
                f"     {LABELS[b]}: floor {_spread(floors)}, run {_spread(runs)},\n"
                f"       ckpt/fl min {min(paired):.2f}x, max {max(paired):.2f}x"
            )
    print()
    return ratios


def _report_group(plan: Plan) -> None:
    print(
        f"2. Group commit: Stateful(Parallel({MANY:,} steps)) vs Stateful(Sequence({MANY:,} steps))"
    )
    print(
        f"   {'store':<34}{'tree':<10}{'ms/run':>9}{'us/step':>9}{'appends':>9}"
        f"{'ev/append':>11}{'seq/par':>9}"
    )
    for backend in plan.backends:
        b = backend.key
        if f"{b}:parallel" not in plan.counts:
            continue
        par, seq = plan.case(f"{b}:parallel").median, plan.case(f"{b}:sequence").median
        for kind, median in (("parallel", par), ("sequence", seq)):
            counts = plan.counts[f"{b}:{kind}"]
            appends = statistics.median(counts.appends)
            per_append = sum(counts.events) / max(1, sum(counts.appends))
            label = LABELS[b] if kind == "parallel" else ""
            ratio = f"{seq / par:8.1f}x" if kind == "sequence" else ""
            spread = f"{min(counts.appends)}-{max(counts.appends)}"
            shown = f"{appends:g}" if min(counts.appends) == max(counts.appends) else spread
            print(
                f"   {label:<34}{kind:<10}{_ms(median, 9)}{_us(median / MANY, 9)}{shown:>9}"
                f"{per_append:11.1f}{ratio}"
            )
    print(
        "   appends = store.append calls per run (one transaction each; plus create_run and\n"
        "   finish); ev/append = events per call; us/step = run / 1,000"
    )
    print()


def _report_resumes(plan: Plan) -> None:
    print(
        f"3. Resume latency: signal + resume of a run paused on WaitForSignal after {STEPS} "
        "journaled steps, ms"
    )
    print(f"   {'store':<34}{'median':>9}{'p90':>9}{'min':>9}{'max':>9}{'samples':>9}")
    for resume in plan.resumes:
        samples = resume.samples
        print(
            f"   {LABELS[resume.backend.key]:<34}{_ms(statistics.median(samples), 9)}"
            f"{_ms(_p90(samples), 9)}{_ms(min(samples), 9)}{_ms(max(samples), 9)}{len(samples):9}"
        )
    print()


def _report(plan: Plan) -> list[tuple[bool, str]]:
    ratios = _report_runs(plan)
    _report_group(plan)
    _report_resumes(plan)
    verdicts = [
        (
            ratios["sqlite-normal"] <= TARGET_SQLITE,
            (
                f"SQLite (WAL, NORMAL): {ratios['sqlite-normal']:.2f}x the floor per "
                f"checkpointed step <= {TARGET_SQLITE:g}x"
            ),
        ),
        (
            ratios["postgres"] <= TARGET_POSTGRES,
            (
                f"PostgreSQL: {ratios['postgres']:.2f}x the floor per checkpointed step "
                f"<= {TARGET_POSTGRES:g}x"
            ),
        ),
    ]
    print(f"(no target) SQLite (WAL, FULL): {ratios['sqlite-full']:.2f}x its FULL floor")
    print(
        f"(no target) PostgreSQL pooled (inline=False, as for a remote server): "
        f"{ratios['postgres-pool']:.2f}x the floor"
    )
    return verdicts


# --- main --------------------------------------------------------------------------------


def _postgres_settings(uri: str) -> dict[str, str]:
    names = ("server_version", "synchronous_commit", "fsync", "wal_sync_method")
    settings = {}
    with psycopg.connect(uri, autocommit=True) as conn:
        for name in names:
            row = conn.execute(f"SHOW {name}").fetchone()
            settings[name] = "?" if row is None else str(row[0])
    return settings


def _backends(directory: Path, uri: str) -> list[Backend]:
    pg_url = (
        sa.make_url(uri).set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    )
    return [
        Backend("memory", LABELS["memory"], InMemoryStateStore, fresh=True),
        Backend(
            "sqlite-normal",
            LABELS["sqlite-normal"],
            lambda: SqlStateStore(f"sqlite:///{directory}/normal.sqlite3"),
            floor=SqliteFloor(directory / "floor-normal.sqlite3", "NORMAL"),
        ),
        Backend(
            "sqlite-full",
            LABELS["sqlite-full"],
            lambda: SqlStateStore(f"sqlite:///{directory}/full.sqlite3", synchronous="FULL"),
            floor=SqliteFloor(directory / "floor-full.sqlite3", "FULL"),
        ),
        Backend(
            "postgres",
            LABELS["postgres"],
            lambda: SqlStateStore(pg_url),  # inline: the server is on this host
            floor=PostgresFloor(uri),
        ),
        Backend(
            "postgres-pool",
            LABELS["postgres-pool"],
            lambda: SqlStateStore(pg_url, inline=False),
            floor_of="postgres",
        ),
    ]


async def _run(
    directory: Path, uri: str, repeats: int, run_seconds: float, resumes: int
) -> list[tuple[bool, str]]:
    backends = _backends(directory, uri)
    try:
        plan = _plan(backends, resumes)
        await measure(plan.cases, repeats, run_seconds, others=plan.resumes)
        return _report(plan)
    finally:
        for backend in backends:
            await backend.close()


def main(argv: list[str] | None = None) -> int:
    """
    Run the benchmark, print the tables and the verdicts; return the exit code.
    """
    parser = new_parser(__doc__)
    parser.add_argument("--repeats", type=int, help="timed runs per case (default 7, quick 3)")
    parser.add_argument(
        "--dir", type=Path, help="where to make the temporary directory of the databases"
    )
    options = parser.parse_args(argv)
    repeats = options.repeats or (3 if options.quick else 7)
    run_seconds = 0.03 if options.quick else 0.4
    resumes = 10 if options.quick else 20

    started = time.perf_counter()
    with temporary_postgres(options.dir) as (directory, uri):
        _header(Info(directory, _postgres_settings(uri)), repeats, run_seconds, resumes)
        verdicts = asyncio.run(_run(directory, uri, repeats, run_seconds, resumes))
    return report_verdicts(verdicts, started, check=options.check)


if __name__ == "__main__":
    sys.exit(main())
