"""
SqlStateStore: durable runs in SQLite or PostgreSQL, on SQLAlchemy 2 Core.

How it is built, and why:

- One code path, two thin drivers. Every operation (``_sql_ops``) is a
  generator over a ``Tx`` (``_sql_tx``), sans I/O: it yields the statements,
  built with SQLAlchemy Core from the tables of ``_sql_schema``, and is sent
  their results. ``run_on`` runs it on a DBAPI cursor on the caller's thread;
  ``run_on_async`` awaits each statement on a psycopg ``AsyncCursor``. No
  greenlets, no thread hops.
- Inline: SQLite, and PostgreSQL when the server is on this host, run on the
  loop's own thread, without aiosqlite or ``run_in_executor``. A commit in WAL
  mode with ``synchronous=NORMAL`` takes tens of microseconds; a hop to a
  worker thread and back costs 100-150 µs, which would multiply the cost of
  every checkpoint. On PostgreSQL an asyncio round trip costs psycopg about
  150 µs of CPU where the same statement on a blocking connection costs about
  75 µs; near the server, that difference is most of a checkpoint. The price:
  the loop waits for the database (a write waits up to 5 s for another
  process's lock), and operations of concurrent runs take turns. Write
  transactions are a few statements long, so the wait is short. A remote
  PostgreSQL gets a pool of asyncio connections instead: there the round trip
  is long and the loop must go on meanwhile.
- Statements are compiled once per store to the driver's SQL text and run on
  the DBAPI cursor (psycopg's own on PostgreSQL). SQLAlchemy's per-call
  execution machinery costs about as much as a SQLite commit. The only values
  that need converting are timestamps: epoch microseconds on SQLite,
  ``timestamptz`` on PostgreSQL.
- Connections are in autocommit mode and transactions explicit: an operation
  that writes several rows runs in one (``BEGIN IMMEDIATE`` on SQLite, so
  processes sharing a file queue up at its start instead of failing halfway).
  A checkpoint needs none, because ``append`` is one statement:
  ``INSERT ... SELECT ... WHERE EXISTS`` (the run is held by this claim)
  ``RETURNING seq``. On PostgreSQL that is one round trip where a plain
  INSERT and COMMIT take three; starting a run (the run's row and its first
  event) and finishing it (the new status and its event) are one statement
  each there too, data-modifying ``WITH`` queries. ``finish`` reads the
  record back from ``UPDATE ... RETURNING``.
- Indexes cost a page write each at every change: the runs table is keyed by
  its id alone (``WITHOUT ROWID`` on SQLite), and a worker finds due runs
  through partial indexes that hold only the runs in one status.
- ``append`` renews the lease once less than half of it is left: its condition
  also asks for that much lease; when it fails, an ``UPDATE`` renews the lease
  (or finds that the claim lost the run) and the insert runs again, in one
  transaction. A lease never runs out under a run that checkpoints, and most
  checkpoints do not rewrite the run's row.
- Concurrency. ``claim_run`` reads the row, decides, and updates it only if its
  version is still the one it read: of two claimers, one wins and the other
  gets ``RunLocked``. On PostgreSQL the check of ``append`` takes a
  ``FOR SHARE`` lock of the run's row, so a claim that takes the run over waits
  for a checkpoint in flight, then finds it in the history; ``signal``,
  ``take_signal`` and ``finish`` lock the row before they look at signals, so a
  signal sent while a run pauses always wakes it.
- No foreign keys: every write checks its run in the same statement, and a
  foreign key check would lock the run's row on PostgreSQL at every checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import threading
import zlib
from pathlib import Path as FilePath
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar, final

import sqlalchemy as sa
from sqlalchemy.pool import StaticPool

from ._lease import check_tenant
from ._sql_ops import (
    append,
    cancel,
    claim_due,
    claim_run,
    create_run,
    deliver_signal,
    finish,
    heartbeat,
    history,
    list_runs,
    release_run,
    take_signal,
)
from ._sql_schema import NOTIFY_CHANNEL, Statements, check_schema, metadata
from ._sql_tx import EpochMicros, Timestamptz, Tx, run_on, run_on_async

if TYPE_CHECKING:
    import datetime as dt
    from collections import abc

    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

    from .._core import Path
    from ._model import Claim, Event, NewEvent, RunRecord, RunStatus
    from ._sql_tx import Op

_T = TypeVar("_T")

_DEFAULT_FILE: Final = "systemflow.sqlite3"
_SYNCHRONOUS: Final = frozenset({"OFF", "NORMAL", "FULL", "EXTRA"})
_BUSY_TIMEOUT_MS: Final = 5000
_LISTEN_CONNECT_SECONDS: Final = 10  # a LISTEN connection that cannot be made: poll
_SCHEMA_LOCK: Final = zlib.crc32(b"systemflow.state schema")  # pg_advisory_xact_lock key

# -- the drivers ----------------------------------------------------------------------


class _Driver(Protocol):
    async def run(
        self, op: abc.Callable[[Tx], Op[_T]], *, atomic: bool, tenant: str | None
    ) -> _T: ...

    def joined(
        self, connection: sa.Connection, op: abc.Callable[[Tx], Op[_T]], tenant: str | None
    ) -> _T: ...

    async def close(self) -> None: ...

    @property
    def inline(self) -> bool: ...  # operations never await: they block the loop instead


@final
class _SqliteDriver:
    """
    Strictly private: runs transactions on one SQLite connection, on the caller's thread.
    """

    __slots__ = ("_connection", "_cursor", "_engine", "_lock", "_statements")

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        self._statements = Statements(engine.dialect, engine.logger if engine.echo else None)
        self._lock = threading.Lock()  # one connection: one transaction at a time
        self._connection: Any = None  # the pool's proxy of the sqlite3 connection
        self._cursor: Any = None

    def _open(self) -> Any:
        with self._engine.connect() as conn:
            conn.exec_driver_sql("BEGIN IMMEDIATE")  # processes create the schema in turn
            metadata.create_all(conn, checkfirst=True)
            check_schema(conn)
            conn.commit()
        self._connection = self._engine.raw_connection()
        self._cursor = self._connection.cursor()
        return self._cursor

    async def run(self, op: abc.Callable[[Tx], Op[_T]], *, atomic: bool, tenant: str | None) -> _T:
        with self._lock:
            cursor = self._cursor if self._cursor is not None else self._open()
            tx = Tx(self._statements, EpochMicros, "sqlite", "BEGIN IMMEDIATE", tenant=tenant)
            try:
                return run_on(cursor, tx.run(op, atomic=atomic))
            finally:
                if tx.in_transaction:  # interrupted between two statements (Ctrl-C)
                    with contextlib.suppress(Exception):  # the one connection: never left open
                        cursor.execute("ROLLBACK")

    def joined(
        self, connection: sa.Connection, op: abc.Callable[[Tx], Op[_T]], tenant: str | None
    ) -> _T:
        cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        tx = Tx(self._statements, EpochMicros, "sqlite", "", tenant=tenant, joined=True)
        return run_on(cursor, tx.run(op, atomic=False))

    async def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._cursor.close()
                self._connection.close()
                self._connection = self._cursor = None
            self._engine.dispose()

    @property
    def inline(self) -> bool:
        return True


@final
class _PostgresDriver:
    """
    Strictly private: runs transactions on psycopg 3 connections (SQLAlchemy creates the schema).

    Inline: one synchronous connection, on the caller's thread, like SQLite.
    Otherwise: asyncio connections, kept in a pool.
    """

    __slots__ = (
        "_conninfo",
        "_engine",
        "_free",
        "_generation",
        "_idle",
        "_inline",
        "_keep",
        "_lock",
        "_ready",
        "_schema_lock",
        "_slots",
        "_slots_total",
        "_statements",
    )

    def __init__(self, engine: AsyncEngine, conninfo: str, pool_size: int, *, inline: bool) -> None:
        from psycopg.pq import TransactionStatus  # noqa: PLC0415 -- only with PostgreSQL

        sync = engine.sync_engine
        self._engine = engine
        self._conninfo = conninfo
        self._idle = TransactionStatus.IDLE
        self._statements = Statements(sync.dialect, sync.logger if sync.echo else None)
        self._ready = False
        self._schema_lock = asyncio.Lock()
        self._inline = inline
        self._lock = threading.Lock()  # inline: one connection, one transaction at a time
        self._free: list[Any] = []  # the cursors of idle connections, the newest last
        self._generation = 0  # close() starts a new one: connections of an older one are closed
        self._keep = 1 if inline else pool_size  # idle connections kept
        self._slots_total = pool_size + pool_size // 2  # bursts: half as many more
        self._slots = asyncio.Semaphore(self._slots_total)

    async def _create_schema(self) -> None:
        async with self._schema_lock:
            if self._ready:
                return
            async with self._engine.connect() as conn:
                # One transaction (the engine is in autocommit mode otherwise),
                # behind a lock: concurrent CREATE TABLE IF NOT EXISTS collide.
                await conn.execution_options(isolation_level="READ COMMITTED")
                async with conn.begin():
                    await conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_SCHEMA_LOCK})")
                    await conn.run_sync(metadata.create_all, checkfirst=True)
                    await conn.run_sync(check_schema)
            await self._engine.dispose()  # its connection is not used again
            self._ready = True

    async def run(self, op: abc.Callable[[Tx], Op[_T]], *, atomic: bool, tenant: str | None) -> _T:
        if not self._ready:
            await self._create_schema()
        tx = Tx(self._statements, Timestamptz, "postgresql", "BEGIN", tenant=tenant)
        generation = self._generation
        if self._inline:
            with self._lock:
                cursor = self._free.pop() if self._free else self._connect()
                try:
                    return run_on(cursor, tx.run(op, atomic=atomic))
                finally:
                    self._put_back(cursor, generation, settled=True)
        async with self._slots:
            cursor = self._free.pop() if self._free else await self._connect_async()
            settled = False  # the operation ended on its own: the connection is as it was
            try:
                result = await run_on_async(cursor, tx.run(op, atomic=atomic))
            except Exception:
                settled = True
                raise
            else:
                settled = True
            finally:
                self._put_back(cursor, generation, settled=settled)
            return result

    def _connect(self) -> Any:
        import psycopg  # noqa: PLC0415 -- only with PostgreSQL

        conn = psycopg.connect(self._conninfo, autocommit=True)
        try:
            # A row another transaction holds is waited for 5 s at most, as
            # SQLite's busy_timeout: the loop is blocked meanwhile.
            conn.execute(f"SET lock_timeout = {_BUSY_TIMEOUT_MS}")
        except BaseException:
            conn.close()
            raise
        return conn.cursor()

    async def _connect_async(self) -> Any:
        import psycopg  # noqa: PLC0415 -- only with PostgreSQL

        conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
        return conn.cursor()

    def _put_back(self, cursor: Any, generation: int, *, settled: bool) -> None:
        # A connection is kept with its cursor, which is used again.
        pgconn = cursor.connection.pgconn
        idle = pgconn.transaction_status == self._idle  # not broken, not in a transaction
        current = generation == self._generation  # the store was not closed meanwhile
        if settled and idle and current and len(self._free) < self._keep:
            self._free.append(cursor)
        else:
            # A cancelled query, a broken connection, one too many: close it now
            # (synchronously: this may run in a task that is being cancelled).
            pgconn.finish()

    def joined(
        self, connection: sa.Connection, op: abc.Callable[[Tx], Op[_T]], tenant: str | None
    ) -> _T:
        cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        tx = Tx(self._statements, Timestamptz, "postgresql", "", tenant=tenant, joined=True)
        return run_on(cursor, tx.run(op, atomic=False))

    async def close(self) -> None:
        free, self._free = self._free, []
        self._generation += 1  # connections in use now are closed when they come back
        for cursor in free:
            cursor.connection.pgconn.finish()  # what close() does, without an await
        # Made anew: asyncio's primitives belong to the loop that first waited on
        # them, and a closed store may be used from another loop.
        self._slots = asyncio.Semaphore(self._slots_total)
        self._schema_lock = asyncio.Lock()
        await self._engine.dispose()

    @property
    def inline(self) -> bool:
        return self._inline


# -- the store ----------------------------------------------------------------------


@final
class SqlStateStore:
    """
    Keeps durable runs in a SQL database: a local SQLite file, or PostgreSQL.

    The tables (``runs``, ``events``, ``signals``) are created on first use.
    Several processes may share one database: a run is held by one claim at a
    time, and the others get ``RunLocked``.

    On SQLite the store works on one connection, on the calling thread (a
    write waits up to 5 s for another process's). On PostgreSQL it works
    *inline* like that when the server is on this host (see ``inline``), and
    otherwise keeps a pool of asyncio connections, which belong to the event
    loop that opened them: use a store from one loop, or ``close`` it before
    another.

    Args:
        url: A SQLAlchemy URL: ``sqlite:///path/to/file`` or
            ``postgresql+psycopg://user@host/db``. By default, the file
            ``systemflow.sqlite3`` in the current directory.
        synchronous: SQLite's ``PRAGMA synchronous`` (``OFF``, ``NORMAL``,
            ``FULL``, ``EXTRA``). ``NORMAL`` in WAL mode never corrupts the file;
            a power loss may undo the last commits. Ignored by PostgreSQL.
        echo: Log every statement (SQLAlchemy's ``echo``).
        pool_size: PostgreSQL, not inline: how many connections to keep open
            (opened as needed; half as many more may be opened for bursts), at
            least 1. A ``Worker`` needs one per run in flight, plus one.
            Ignored otherwise.
        inline: PostgreSQL: run each operation on one synchronous connection,
            on the calling thread, blocking the event loop for its round trips
            (a checkpoint is one), as SQLite always does; a row lock is waited
            for 5 s at most. It saves the asyncio machinery, about 75 µs of CPU
            per round trip, which is most of a checkpoint when the server is
            near; operations of concurrent runs then take turns. ``None`` (the
            default): inline when the server is on this host (a Unix socket,
            ``localhost``, ``127.0.0.1`` or ``::1``, as libpq reads the URL).
            Set ``False`` when round trips are long or many runs share a
            process; see the performance page of the docs.

    Raises:
        ValueError: The URL names another database, ``synchronous`` is unknown,
            ``pool_size`` is below 1, or ``inline=False`` is asked of SQLite.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        synchronous: str = "NORMAL",
        echo: bool = False,
        pool_size: int = 20,
        inline: bool | None = None,
    ) -> None:
        if url is None:
            url = f"sqlite:///{FilePath.cwd() / _DEFAULT_FILE}"
        parsed = sa.make_url(url)
        self._url = parsed
        backend, driver = parsed.get_backend_name(), parsed.get_driver_name()
        self._driver: _Driver
        self._conninfo = ""  # PostgreSQL: libpq's connection string
        if backend == "sqlite" and driver == "pysqlite":
            if inline is False:
                msg = "SqlStateStore(inline=False) is for PostgreSQL: SQLite always runs inline"
                raise ValueError(msg)
            self._driver = _SqliteDriver(_sqlite_engine(parsed, synchronous, echo))
        elif backend == "postgresql" and (driver == "psycopg" or parsed.drivername == backend):
            from psycopg.conninfo import make_conninfo  # noqa: PLC0415 -- only with PostgreSQL
            from sqlalchemy.ext.asyncio import create_async_engine  # noqa: PLC0415 -- optional

            if pool_size < 1:
                msg = f"pool_size must be at least 1, not {pool_size!r}"
                raise ValueError(msg)
            engine = create_async_engine(parsed.set(drivername="postgresql+psycopg"), echo=echo)
            # psycopg connects with what SQLAlchemy's dialect would pass it: the
            # URL's parts as libpq parameters (spaces, several hosts, options).
            params = engine.sync_engine.dialect.create_connect_args(engine.url)[1]
            params.pop("context", None)  # SQLAlchemy's adapters: a connection's, not libpq's
            self._conninfo = make_conninfo(**params)
            # Connections are opened as needed and kept: a connection opened per
            # operation (a new server process) costs more than the operation.
            self._driver = _PostgresDriver(
                engine,
                self._conninfo,
                pool_size,
                inline=_is_local(params) if inline is None else inline,
            )
        else:
            msg = (
                f"SqlStateStore needs a sqlite:/// or postgresql+psycopg:// URL, "
                f"not {parsed.render_as_string(hide_password=True)!r}"
            )
            raise ValueError(msg)

        self._tenant: str | None = None
        self._listener: Any = None  # PostgreSQL: the LISTEN connection of wait_for_work
        self._wakeup = asyncio.Event()  # set by this process's own signals and new runs

    @property
    def writes_inline(self) -> bool:
        """
        True when operations run inline (SQLite; PostgreSQL, see ``inline``): they never await.
        """
        return self._driver.inline

    def __repr__(self) -> str:
        url = self._url.render_as_string(hide_password=True)
        return (
            f"SqlStateStore({url!r})"
            if self._tenant is None
            else (f"SqlStateStore({url!r}).for_tenant({self._tenant!r})")
        )

    @property
    def tenant(self) -> str | None:
        """
        The tenant whose runs this store sees (``None``: every run).
        """
        return self._tenant

    def for_tenant(self, tenant: str) -> SqlStateStore:
        """
        Return a view of this store that sees and makes the runs of ``tenant`` only.

        It shares this store's connections (closing either closes both). Another
        tenant's run is unknown to it: ``RunNotFound``.
        """
        scoped = copy.copy(self)
        scoped._tenant = check_tenant(tenant)  # noqa: SLF001 -- our own class
        scoped._listener = None  # noqa: SLF001
        return scoped

    async def _run(self, op: abc.Callable[[Tx], Op[_T]], *, atomic: bool) -> _T:
        return await self._driver.run(op, atomic=atomic, tenant=self._tenant)

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

        The event's data is ``started_data``, or the input.

        Raises:
            RunExists: A run with this id exists.
            SerializationError: ``input_json`` is not JSON text (nothing is stored).
        """
        if claim is None:
            self._wakeup.set()
        return await self._run(
            lambda tx: create_run(
                tx,
                run_id=run_id,
                name=name,
                input_json=input_json,
                fingerprint=fingerprint,
                claim=claim,
                started_data=started_data,
            ),
            atomic=False,  # one statement on PostgreSQL; create_run begins on SQLite
        )

    async def enqueue_on(
        self,
        connection: sa.Connection | AsyncConnection,
        *,
        run_id: str,
        name: str,
        input_json: str,
        fingerprint: str,
        started_data: str | None = None,
    ) -> RunRecord:
        """
        Record a pending run in the caller's transaction on ``connection``.

        ``connection`` is a SQLAlchemy connection (sync or asyncio) to this
        store's database: the run exists if and only if the caller commits.
        Nothing is committed or rolled back here.

        Raises:
            RunExists: A run with this id exists.
            ValueError: ``connection`` is to another kind of database.
        """
        backend, driver = self._url.get_backend_name(), self._url.get_driver_name()
        kind = (connection.dialect.name, connection.dialect.driver)
        if kind != (backend, "psycopg" if backend == "postgresql" else driver):
            msg = (
                f"{self!r} cannot enqueue on a {'+'.join(kind)} connection: its statements "
                "are made for the store's own database and driver"
            )
            raise ValueError(msg)

        def op(tx: Tx) -> Op[RunRecord]:
            return create_run(
                tx,
                run_id=run_id,
                name=name,
                input_json=input_json,
                fingerprint=fingerprint,
                claim=None,
                started_data=started_data,
            )

        def enqueue(sync: sa.Connection) -> RunRecord:
            return self._driver.joined(sync, op, self._tenant)

        if isinstance(connection, sa.Connection):
            record = enqueue(connection)
        else:
            record = await connection.run_sync(enqueue)
        self._wakeup.set()
        return record

    async def claim_run(
        self, run_id: str, *, claim: Claim, is_dead: abc.Callable[[str], bool]
    ) -> tuple[RunRecord, list[Event]]:
        """
        Take the lease of a pending, paused or abandoned run; return it and its history.

        Raises:
            RunNotFound: No such run.
            RunLocked: Another live claim holds it.
            RunFinished: It completed, failed or was cancelled.
        """
        return await self._run(lambda tx: claim_run(tx, run_id, claim, is_dead), atomic=True)

    async def append(
        self, run_id: str, events: abc.Sequence[NewEvent], *, claim: Claim
    ) -> list[int]:
        """
        Append events in one transaction, renewing the lease once half of it is gone.

        Raises:
            RunLocked: ``claim`` no longer holds the run.
            RunNotFound: No such run.
        """
        return await self._run(lambda tx: append(tx, run_id, events, claim), atomic=False)

    async def take_signal(
        self, run_id: str, signal: str, path: Path, *, claim: Claim
    ) -> Event | None:
        """
        Consume the oldest unconsumed ``signal`` of the run into a ``signal`` event at ``path``.

        Raises:
            RunLocked: ``claim`` no longer holds the run.
        """
        return await self._run(lambda tx: take_signal(tx, run_id, signal, path, claim), atomic=True)

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
        End a claim: set the status (paused, completed, failed), release the lease.

        ``events`` (the run's last journal records) are appended before ``event``,
        in the same transaction (on PostgreSQL, in the same statement). A run
        that pauses for ``signals`` is due at once if one of them is here.

        Raises:
            RunLocked: ``claim`` no longer holds the run.
            ValueError: ``wake_at`` is a naive datetime.
        """
        if wake_at is not None:
            _aware(wake_at, "wake_at")
        return await self._run(
            lambda tx: finish(
                tx,
                run_id=run_id,
                claim=claim,
                status=status,
                event=event,
                output_json=output_json,
                error=error,
                wake_at=wake_at,
                signals=signals,
                events=events,
            ),
            atomic=False,  # one statement on PostgreSQL, unless pausing; finish begins if not
        )

    async def claim_due(
        self, flows: abc.Mapping[str, str], *, claims: abc.Sequence[Claim], max_attempts: int
    ) -> list[tuple[Claim, RunRecord, list[Event]]]:
        """
        Claim up to ``len(claims)`` due runs of these flows (name: fingerprint), one claim each.

        Only runs started with the flow's fingerprint are taken: a worker never
        replays a run of another version of the tree.

        Due: pending, paused with a timer due or a signal delivered, or running
        with an expired lease. A run whose last ``max_attempts`` claims all died
        is failed instead (an ``abandoned`` event says why). On PostgreSQL,
        rows another worker is claiming are skipped (``FOR UPDATE SKIP LOCKED``).
        """
        if not flows or not claims:
            return []
        return await self._run(lambda tx: claim_due(tx, flows, claims, max_attempts), atomic=False)

    async def wait_for_work(self, within: float) -> None:
        """
        Return when a run may have become due, or after ``within`` seconds.

        On PostgreSQL the first call starts listening for the notifications that
        new runs, signals and handed-back runs send, from any process; elsewhere
        only this process's own are seen, and ``within`` is the polling interval.
        """
        if self._url.get_backend_name() == "postgresql":
            await self._listen(within)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), within)
        self._wakeup.clear()

    async def _listen(self, within: float) -> None:
        import psycopg  # noqa: PLC0415 -- only with PostgreSQL

        try:
            if self._listener is None:
                listener = await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True, connect_timeout=_LISTEN_CONNECT_SECONDS
                )
                try:
                    await listener.execute(f"LISTEN {NOTIFY_CHANNEL}")
                except BaseException:
                    await listener.close()
                    raise
                self._listener = listener
            async for _ in self._listener.notifies(timeout=within, stop_after=1):
                pass
        except psycopg.Error:
            # The connection broke (or could not be made): poll this time, and
            # listen on a new connection next time.
            if self._listener is not None:
                with contextlib.suppress(psycopg.Error):
                    await self._listener.close()
                self._listener = None
            await asyncio.sleep(within)

    async def heartbeat(self, run_id: str, *, claim: Claim) -> None:
        """
        Renew the lease of a run that is still working.

        Raises:
            RunLocked: ``claim`` no longer holds the run.
        """
        await self._run(lambda tx: heartbeat(tx, run_id, claim), atomic=False)

    async def release(self, run_id: str, *, claim: Claim, failed: bool = False) -> None:
        """
        Give the lease back without changing the status; the run is due at once.

        A hand-back resets the run's attempts; one after an error (``failed``)
        counts as an attempt.
        """
        await self._run(lambda tx: release_run(tx, run_id, claim, failed=failed), atomic=True)
        self._wakeup.set()

    async def signal(self, run_id: str, signal: str, payload: Any) -> None:
        """
        Deliver a signal; it is kept until a ``WaitForSignal`` consumes it.

        Raises:
            RunNotFound: No such run.
            RunFinished: The run is over.
            SerializationError: The payload cannot be stored.
        """
        await self._run(lambda tx: deliver_signal(tx, run_id, signal, payload), atomic=True)
        self._wakeup.set()

    async def cancel(self, run_id: str) -> RunRecord:
        """
        Mark a run cancelled (a finished run is returned unchanged).

        Raises:
            RunNotFound: No such run.
        """
        return await self._run(lambda tx: cancel(tx, run_id), atomic=True)

    async def get(self, run_id: str) -> RunRecord:
        """
        Return a run's record.

        Raises:
            RunNotFound: No such run.
        """
        return await self._run(lambda tx: tx.get_record(run_id), atomic=False)

    async def history(self, run_id: str) -> list[Event]:
        """
        Return a run's events, oldest first.

        Raises:
            RunNotFound: No such run.
        """
        return await self._run(lambda tx: history(tx, run_id), atomic=False)

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
        return await self._run(lambda tx: list_runs(tx, name, status, limit), atomic=False)

    async def close(self) -> None:
        """
        Release connections (the store reconnects if used again).
        """
        if self._listener is not None:
            await self._listener.close()
            self._listener = None
        await self._driver.close()


_LOCAL_HOSTS: Final = frozenset({"localhost", "127.0.0.1", "::1"})


def _is_local(params: abc.Mapping[str, Any]) -> bool:
    # The server is on this host if libpq reaches it through a Unix socket (no
    # host, or a directory) or a loopback address; with several hosts, all must
    # be. No host in the URL: libpq takes $PGHOST. A service file or a hostaddr
    # may name any host: not local.
    if "service" in params or "hostaddr" in params:
        return False
    host = str(params.get("host") or os.environ.get("PGHOST") or "")
    return all(h in _LOCAL_HOSTS or h.startswith("/") or not h for h in host.split(","))


def _aware(value: dt.datetime, what: str) -> dt.datetime:
    if value.utcoffset() is None:
        msg = f"{what} must be a timezone-aware datetime, not {value!r}"
        raise ValueError(msg)
    return value


def _sqlite_engine(url: sa.URL, synchronous: str, echo: bool) -> sa.Engine:
    mode = synchronous.upper()
    if mode not in _SYNCHRONOUS:
        msg = f"synchronous must be one of {sorted(_SYNCHRONOUS)}, not {synchronous!r}"
        raise ValueError(msg)
    engine = sa.create_engine(
        url,
        echo=echo,
        poolclass=StaticPool,  # one connection: the store runs on one thread at a time
        paramstyle="named",  # compiled statements take dicts, like psycopg's
        connect_args={"check_same_thread": False, "timeout": _BUSY_TIMEOUT_MS / 1000},
    )

    @sa.event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # autocommit: transactions are explicit
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute(f"PRAGMA synchronous = {mode}")
        # INSERT ... SELECT ... RETURNING goes through a temporary table: in a
        # file, that doubles the cost of a checkpoint.
        cursor.execute("PRAGMA temp_store = MEMORY")
        cursor.close()

    return engine
