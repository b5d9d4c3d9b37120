"""
One operation of ``SqlStateStore``, sans I/O: ``Tx``, and the two loops that run it.

An operation yields the compiled statements of ``_sql_schema`` as queries
(SQL text, parameters, what to send back) and is sent their results; ``Tx``
converts values between Python and the database (instants, paths, JSON) and
reads rows into records and events.
``run_on`` runs an operation on a DBAPI cursor (SQLite, or the caller's own
connection); ``run_on_async`` awaits each query on a psycopg ``AsyncCursor``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeAlias, TypeVar, final

from .._core import RunLocked, RunNotFound, SerializationError
from ._model import Event, RunRecord, RunStatus
from ._sql_schema import get_record, get_status, insert_event

if TYPE_CHECKING:
    from collections import abc

    from sqlalchemy.sql.elements import ClauseElement

    from .._core import FlowError, Path
    from ._model import NewEvent
    from ._sql_schema import Statements

_T = TypeVar("_T")

_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND: Final = dt.timedelta(microseconds=1)
_STATUSES: Final = {status.value: status for status in RunStatus}

# -- values in and out ------------------------------------------------------------


@functools.lru_cache(maxsize=4096)  # a tree has few paths, and they repeat
def dump_path(path: Path | None) -> str | None:
    return None if path is None else json.dumps(list(path), separators=(",", ":"))


def _load_path(run_id: str, column: str, text: str | None) -> Path | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if isinstance(value, list) and all(type(seg) in (str, int) for seg in value):
        return tuple(value)
    msg = (
        f"run {run_id}: column {column} holds {text!r}, "
        "which is not a path (a JSON array of strings and integers)"
    )
    raise SerializationError(msg, run_id=run_id)


def load_json(run_id: str, column: str, text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        msg = f"run {run_id}: column {column} holds invalid JSON ({exc})"
        raise SerializationError(msg, run_id=run_id) from exc


def load_status(run_id: str, value: str) -> RunStatus:
    try:
        return _STATUSES[value]
    except (KeyError, TypeError):
        msg = f"run {run_id}: column runs.status holds {value!r}, which is not a run status"
        raise SerializationError(msg, run_id=run_id, type=RunStatus) from None


class _Instants(Protocol):
    def dump(self, value: dt.datetime) -> Any: ...

    def load(self, value: Any) -> dt.datetime: ...


@final
class EpochMicros:
    """
    Strictly private: SQLite keeps instants as integer microseconds since the epoch.
    """

    @staticmethod
    def dump(value: dt.datetime) -> Any:
        return (value - _EPOCH) // _MICROSECOND

    @staticmethod
    def load(value: Any) -> dt.datetime:
        return _EPOCH + dt.timedelta(microseconds=value)


@final
class Timestamptz:
    """
    Strictly private: PostgreSQL keeps instants as ``timestamptz``; read back in UTC.
    """

    @staticmethod
    def dump(value: dt.datetime) -> Any:
        return value

    @staticmethod
    def load(value: Any) -> dt.datetime:
        result: dt.datetime = value.astimezone(dt.UTC)
        return result


# -- one transaction --------------------------------------------------------------

ROWS: Final = 0  # what a Query wants back: the rows
COUNT: Final = 1  # the number of rows changed
NOTHING: Final = 2  # nothing (BEGIN, COMMIT, ROLLBACK)


# A statement for a driver to run: its SQL text, its parameters (None for
# BEGIN, COMMIT and ROLLBACK), and what to send back (ROWS, COUNT or NOTHING).
# A tuple: one is made per statement, on the path of every checkpoint.
Query: TypeAlias = "tuple[str, dict[str, Any] | None, int]"


# An operation, sans I/O: a generator that yields the queries to run and is
# sent each one's result (a list of rows, a row count, or None); a driver's
# error is thrown in at the yield. Its return value is the operation's result.
# One code path serves both drivers: SQLite runs the queries on its thread,
# PostgreSQL awaits them on psycopg's asyncio connection (no greenlets).
Op: TypeAlias = "abc.Generator[Query, Any, _T]"


@final
class Tx:
    """
    Strictly private: one operation of a store, as the queries it runs.

    The connection is in autocommit mode: a statement alone is a transaction
    of its own, and ``begin`` starts one that spans several.
    """

    __slots__ = (
        "_begin",
        "_joined",
        "_open",
        "_statements",
        "dialect",
        "instants",
        "tenant",
    )

    def __init__(
        self,
        statements: Statements,
        instants: _Instants,
        dialect: str,
        begin: str,
        *,
        tenant: str | None,
        joined: bool = False,
    ) -> None:
        self.tenant = tenant  # every statement sees this tenant's runs only (None: all)
        self._joined = joined  # in the caller's transaction: never begin, commit or roll back
        self._statements = statements
        self._begin = begin  # BEGIN IMMEDIATE on SQLite: writers queue up at the start
        self._open = False
        self.instants = instants
        self.dialect = dialect

    def _command(self, sql: str) -> Op[None]:
        self._statements.log(sql, {})
        yield (sql, None, NOTHING)

    def begin(self) -> Op[None]:
        """
        Start a transaction: what follows, up to the commit, is atomic.
        """
        if not self._open and not self._joined:
            self._open = True
            yield from self._command(self._begin)

    def commit(self) -> Op[None]:
        """
        Commit the transaction, if one is open (a COMMIT that fails is rolled back).
        """
        if self._open:
            yield from self._command("COMMIT")
            self._open = False

    @property
    def in_transaction(self) -> bool:
        """
        True while a transaction this Tx began may be open (from before its BEGIN to after COMMIT).
        """
        return self._open

    def rollback(self) -> Op[None]:
        """
        Roll the transaction back, if one is open; errors are left to the caller's own.
        """
        if self._open:
            self._open = False
            with contextlib.suppress(Exception):  # the database may have rolled back already
                yield from self._command("ROLLBACK")

    def run(self, op: abc.Callable[[Tx], Op[_T]], *, atomic: bool) -> Op[_T]:
        """
        Run an operation, in one transaction if ``atomic``; roll back if it fails.

        A driver that gives up on its connection (a cancelled query) closes the
        generator: nothing more is sent on that connection.
        """
        if atomic:
            yield from self.begin()
        try:
            result = yield from op(self)
            if self._open:
                yield from self.commit()
        except GeneratorExit:
            raise
        except BaseException:
            yield from self.rollback()
            raise
        return result

    def _query(
        self,
        build: abc.Callable[..., ClauseElement],
        params: dict[str, Any],
        args: tuple[Any, ...],
        want: int,
    ) -> Query:
        sql, defaults = self._statements.get(build, args)
        params = {**defaults, **params, "tenant": self.tenant}
        self._statements.log(sql, params)
        return (sql, params, want)

    def rows(
        self, build: abc.Callable[..., ClauseElement], params: dict[str, Any], *args: Any
    ) -> Op[list[Any]]:
        """
        Run a statement; return its rows.
        """
        rows: list[Any] = yield self._query(build, params, args, ROWS)
        return rows

    def inserted(
        self, build: abc.Callable[..., ClauseElement], params: dict[str, Any], *args: Any
    ) -> Op[list[int]]:
        """
        Run an ``INSERT ... RETURNING seq`` built as ``build(*args, dialect)``; return the seqs.
        """
        rows: list[Any] = yield self._query(build, params, (*args, self.dialect), ROWS)
        return sorted(row[0] for row in rows)  # ascending seqs are the events' order

    def count(
        self, build: abc.Callable[..., ClauseElement], params: dict[str, Any], *args: Any
    ) -> Op[int]:
        """
        Run a statement; return how many rows it changed.
        """
        rowcount: int = yield self._query(build, params, args, COUNT)
        return rowcount

    def dump(self, value: dt.datetime | None) -> Any:
        """
        Return an instant as the database keeps it.
        """
        return None if value is None else self.instants.dump(value)

    def load(self, run_id: str, column: str, value: Any) -> dt.datetime | None:
        """
        Return an instant the database kept (or ``None``), as an aware UTC datetime.
        """
        return None if value is None else self.instant(run_id, column, value)

    def instant(self, run_id: str, column: str, value: Any) -> dt.datetime:
        """
        Return an instant the database kept, as an aware UTC datetime.
        """
        try:
            return self.instants.load(value)
        except (TypeError, ValueError, OverflowError) as exc:
            msg = f"run {run_id}: column {column} holds {value!r}, which is not a timestamp"
            raise SerializationError(msg, run_id=run_id, type=dt.datetime) from exc

    def record(self, row: abc.Sequence[Any]) -> RunRecord:
        """
        Return the record of a row of ``_select_record``.
        """
        run_id: str = row[0]
        return RunRecord(
            id=run_id,
            name=row[1],
            status=load_status(run_id, row[2]),
            input=load_json(run_id, "runs.input", row[3]),
            output=load_json(run_id, "runs.output", row[4]),
            error=row[5],
            fingerprint=row[6],
            version=row[7],
            lease_owner=row[8],
            lease_expires_at=self.load(run_id, "runs.lease_expires_at", row[9]),
            wake_at=self.load(run_id, "runs.wake_at", row[10]),
            created_at=self.instant(run_id, "runs.created_at", row[11]),
            updated_at=self.instant(run_id, "runs.updated_at", row[12]),
            tenant=row[13],
            attempts=row[14],
            current_path=_load_path(run_id, "events.path", row[15]),
        )

    def event(self, row: abc.Sequence[Any]) -> Event:
        """
        Return the event of a row of ``get_history``.
        """
        seq, run_id, kind, path, data, at = row
        column = f"events.path (seq {seq})"
        at = self.instant(run_id, f"events.at (seq {seq})", at)
        return Event(seq, run_id, kind, _load_path(run_id, column, path), data, at)

    def insert_event(self, run_id: str, event: NewEvent, at: dt.datetime) -> Op[int]:
        """
        Append one event whatever holds the run; return its sequence number.
        """
        params = {
            "run_id": run_id,
            "kind": event.kind,
            "path": dump_path(event.path),
            "data": event.data,
            "at": self.instants.dump(at),
        }
        rows = yield from self.rows(insert_event, params, self.dialect)
        seq: int = rows[0][0]
        return seq

    def get_record(self, run_id: str) -> Op[RunRecord]:
        """
        Return a run's record.
        """
        rows = yield from self.rows(get_record, {"run_id": run_id})
        if not rows:
            raise not_found(run_id)
        return self.record(rows[0])

    def not_held(self, run_id: str) -> Op[FlowError]:
        """
        Return the error for a claim that does not hold ``run_id`` (it may not exist).
        """
        rows = yield from self.rows(get_status, {"run_id": run_id})
        if not rows:
            return not_found(run_id)
        status = load_status(run_id, rows[0][0])
        msg = f"run {run_id} is no longer held by this claim ({status.value})"
        return RunLocked(msg, run_id=run_id)


# -- the loops that run an operation -----------------------------------------------


def run_on(cursor: Any, op: Op[_T]) -> _T:
    """
    Run an operation on a DBAPI cursor, on this thread; any error is thrown into it.
    """
    execute = cursor.execute
    try:
        sql, params, want = next(op)
        while True:
            try:
                execute(sql, params or ())
                if want == ROWS:
                    result = cursor.fetchall()
                else:
                    result = cursor.rowcount if want == COUNT else None
            except BaseException as exc:  # noqa: BLE001 -- rolled back even on Ctrl-C, then re-raised
                sql, params, want = op.throw(exc)
            else:
                sql, params, want = op.send(result)
    except StopIteration as stop:
        value: _T = stop.value
        return value


async def run_on_async(cursor: Any, op: Op[_T]) -> _T:
    """
    Run an operation on a psycopg ``AsyncCursor``; a database error is thrown into it.

    Anything else (a cancellation) leaves the operation closed and the
    connection in an unknown state: the caller discards the connection.
    """
    try:
        sql, params, want = next(op)
        while True:
            try:
                await cursor.execute(sql, params)
                if want == ROWS:
                    result = await cursor.fetchall()
                else:
                    result = cursor.rowcount if want == COUNT else None
            except Exception as exc:  # noqa: BLE001 -- thrown into the operation, which re-raises
                sql, params, want = op.throw(exc)
            else:
                sql, params, want = op.send(result)
    except StopIteration as stop:
        value: _T = stop.value
        return value
    finally:
        op.close()


def not_found(run_id: str) -> RunNotFound:
    msg = f"no run with id {run_id!r}"
    return RunNotFound(msg, run_id=run_id)
