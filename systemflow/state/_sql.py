"""
SqlStateStore: durable runs in SQLite or PostgreSQL, on SQLAlchemy 2 Core.

How it is built, and why:

- One code path, two thin drivers. Every operation is a function of a
  ``_Tx`` that runs statements built with SQLAlchemy Core from the tables
  below. ``_SqliteDriver`` runs it synchronously on the event loop's own
  thread; ``_PostgresDriver`` runs it inside ``AsyncConnection.run_sync`` of an
  asyncio engine on psycopg 3, which switches greenlets, not threads.
- SQLite runs on the loop, without aiosqlite or ``run_in_executor``. A commit in
  WAL mode with ``synchronous=NORMAL`` takes tens of microseconds; a hop to a
  worker thread and back costs 100-150 µs, which would multiply the cost of
  every checkpoint. The price: while another process holds the file's write
  lock, a write waits for it (``busy_timeout``, 5 s at most) and blocks the
  loop. Write transactions are a few statements long, so the wait is short.
- Statements are compiled once per store to the driver's SQL text and run on
  the DBAPI cursor. SQLAlchemy's per-call execution machinery costs about as
  much as a SQLite commit; going around it keeps a checkpoint within twice a
  bare ``sqlite3`` INSERT and COMMIT. The only values that need converting are
  timestamps: epoch microseconds on SQLite, ``timestamptz`` on PostgreSQL.
- Connections are in autocommit mode and transactions explicit: an operation
  that writes several rows runs in one (``BEGIN IMMEDIATE`` on SQLite, so
  processes sharing a file queue up at its start instead of failing halfway).
  A checkpoint needs none, because ``append`` is one statement:
  ``INSERT ... SELECT ... WHERE EXISTS`` (the run is held by this claim)
  ``RETURNING seq``. On PostgreSQL that is one round trip where a plain
  INSERT and COMMIT take three.
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
import datetime as dt
import functools
import json
import threading
import zlib
from pathlib import Path as FilePath
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar, final

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.pool import StaticPool

from .._core import SIGNAL, RunExists, RunFinished, RunLocked, RunNotFound, SerializationError
from ._memory import encode_payload
from ._model import CANCELLED, RESUMED, SIGNALLED, STARTED, Event, NewEvent, RunRecord, RunStatus

if TYPE_CHECKING:
    from collections import abc

    from sqlalchemy.ext.asyncio import AsyncEngine
    from sqlalchemy.sql.elements import ClauseElement

    from .._core import FlowError, Path
    from ._model import Claim

_T = TypeVar("_T")

_DEFAULT_FILE: Final = "systemflow.sqlite3"
_SYNCHRONOUS: Final = frozenset({"OFF", "NORMAL", "FULL", "EXTRA"})
_BUSY_TIMEOUT_MS: Final = 5000
_MAX_BATCH: Final = 100  # events per INSERT; a bigger append takes several, in one transaction
_EVENT_PARAMS: Final = [(f"kind_{i}", f"path_{i}", f"data_{i}") for i in range(_MAX_BATCH)]
_SCHEMA_LOCK: Final = zlib.crc32(b"systemflow.state schema")  # pg_advisory_xact_lock key
_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND: Final = dt.timedelta(microseconds=1)
_STATUSES: Final = {status.value: status for status in RunStatus}
_RUNNING: Final = RunStatus.RUNNING.value

# -- the schema ------------------------------------------------------------------

_metadata = sa.MetaData()

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # INTEGER PRIMARY KEY: the rowid
_INSTANT = sa.DateTime(timezone=True).with_variant(sa.BigInteger(), "sqlite")  # epoch µs

_runs = sa.Table(
    "runs",
    _metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("input", sa.Text, nullable=False),
    sa.Column("output", sa.Text),
    sa.Column("error", sa.Text),
    sa.Column("fingerprint", sa.Text, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("lease_owner", sa.Text),
    sa.Column("lease_expires_at", _INSTANT),
    sa.Column("wake_at", _INSTANT),
    sa.Column("created_at", _INSTANT, nullable=False),
    sa.Column("updated_at", _INSTANT, nullable=False),
    sa.Index("ix_runs_status_wake_at", "status", "wake_at"),
    sa.Index("ix_runs_status_lease_expires_at", "status", "lease_expires_at"),
    sa.Index("ix_runs_name_status_created_at", "name", "status", "created_at"),
)

_events = sa.Table(
    "events",
    _metadata,
    sa.Column("seq", _ID, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.Text, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("path", sa.Text),  # JSON array of the path's segments, e.g. ["saga",0]
    sa.Column("data", sa.Text),
    sa.Column("at", _INSTANT, nullable=False),
    sa.Index("ix_events_run_id_seq", "run_id", "seq"),
)

_signals = sa.Table(
    "signals",
    _metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("sent_at", _INSTANT, nullable=False),
    sa.Column("consumed_at", _INSTANT),
)
_waiting = _signals.c.consumed_at.is_(None)
sa.Index(
    "ix_signals_waiting",
    _signals.c.run_id,
    _signals.c.name,
    _signals.c.id,
    sqlite_where=_waiting,
    postgresql_where=_waiting,
)

# -- the statements --------------------------------------------------------------
#
# Every value is a named bindparam (a literal would become a parameter the caller
# does not know of); constants such as the status 'running' are parameters too.

_p = sa.bindparam
_r = _runs.c
_e = _events.c
_s = _signals.c
_EVENT_COLUMNS = (_e.seq, _e.run_id, _e.kind, _e.path, _e.data, _e.at)
_RECORD_COLUMNS = (
    _r.id,
    _r.name,
    _r.status,
    _r.input,
    _r.output,
    _r.error,
    _r.fingerprint,
    _r.version,
    _r.lease_owner,
    _r.lease_expires_at,
    _r.wake_at,
    _r.created_at,
    _r.updated_at,
)


def _this_run() -> sa.ColumnElement[bool]:
    return _r.id == _p("run_id")


def _held() -> sa.ColumnElement[bool]:
    return sa.and_(_this_run(), _r.lease_owner == _p("owner"), _r.status == _p("running"))


def _select_record(*where: sa.ColumnElement[bool]) -> sa.Select[Any]:
    current_path = (
        sa.select(_e.path)
        .where(_e.run_id == _r.id, _e.path.is_not(None))
        .order_by(_e.seq.desc())
        .limit(1)
        .scalar_subquery()
    )
    return sa.select(*_RECORD_COLUMNS, current_path).where(*where)


def _get_record() -> ClauseElement:
    return _select_record(_this_run())


def _list_records(by_name: bool, by_status: bool) -> ClauseElement:
    where = [_r.name == _p("name")] if by_name else []
    where += [_r.status == _p("status")] if by_status else []
    return (
        _select_record(*where)
        .order_by(_r.created_at.desc(), _r.id.desc())
        .limit(_p("limit", type_=sa.Integer))
    )


def _get_history() -> ClauseElement:
    return sa.select(*_EVENT_COLUMNS).where(_e.run_id == _p("run_id")).order_by(_e.seq)


def _get_status() -> ClauseElement:
    return sa.select(_r.status).where(_this_run())


def _lock_run() -> ClauseElement:
    # FOR NO KEY UPDATE on PostgreSQL (SQLite has BEGIN IMMEDIATE instead).
    return sa.select(_r.status, _r.lease_owner).where(_this_run()).with_for_update(key_share=True)


def _get_lease() -> ClauseElement:
    return sa.select(_r.status, _r.version, _r.lease_owner, _r.lease_expires_at).where(_this_run())


def _insert_run(dialect: str) -> ClauseElement:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return (
        insert(_runs)
        .values(
            id=_p("run_id"),
            name=_p("name"),
            status=_p("running"),
            input=_p("input"),
            fingerprint=_p("fingerprint"),
            version=1,
            lease_owner=_p("owner"),
            lease_expires_at=_p("expires"),
            created_at=_p("now"),
            updated_at=_p("now"),
        )
        .on_conflict_do_nothing(index_elements=[_r.id])
    )


def _insert_event() -> ClauseElement:
    return (
        _events.insert()
        .values(run_id=_p("run_id"), kind=_p("kind"), path=_p("path"), data=_p("data"), at=_p("at"))
        .returning(_e.seq)
    )


def _append_events(count: int) -> ClauseElement:
    # One SELECT per event, each inserting only while the claim holds the run
    # with at least half a lease left (``renew_after``).
    held: sa.Select[Any] = (
        sa.select(sa.literal_column("1"))
        .where(_held(), _r.lease_expires_at >= _p("renew_after"))
        .with_for_update(read=True)  # FOR SHARE on PostgreSQL: a takeover waits for us
    )
    rows = [
        sa.select(
            _p("run_id", type_=sa.Text),
            _p(f"kind_{i}", type_=sa.Text),
            _p(f"path_{i}", type_=sa.Text),
            _p(f"data_{i}", type_=sa.Text),
            _p("at", type_=_INSTANT),
        ).where(sa.exists(held))
        for i in range(count)
    ]
    source = rows[0] if count == 1 else sa.union_all(*rows)
    return (
        _events.insert()
        .from_select(["run_id", "kind", "path", "data", "at"], source)
        .returning(_e.seq)
    )


def _renew_lease() -> ClauseElement:
    return _runs.update().where(_held()).values(lease_expires_at=_p("expires"))


def _take_over() -> ClauseElement:
    return (
        _runs.update()
        .where(_this_run(), _r.version == _p("version"))
        .values(
            status=_p("running"),
            lease_owner=_p("owner"),
            lease_expires_at=_p("expires"),
            wake_at=sa.null(),
            version=_r.version + 1,
            updated_at=_p("now"),
        )
    )


def _finish_run() -> ClauseElement:
    return (
        _runs.update()
        .where(_held())
        .values(
            status=_p("status"),
            output=_p("output"),
            error=_p("error"),
            wake_at=_p("wake_at"),
            lease_owner=sa.null(),
            lease_expires_at=sa.null(),
            version=_r.version + 1,
            updated_at=_p("now"),
        )
    )


def _wake_if_signalled() -> ClauseElement:
    waiting = sa.select(_s.id).where(_s.run_id == _p("run_id"), _waiting)
    return _runs.update().where(_this_run(), sa.exists(waiting)).values(wake_at=_p("now"))


def _wake() -> ClauseElement:
    return (
        _runs.update()
        .where(_this_run())
        .values(wake_at=_p("now"), version=_r.version + 1, updated_at=_p("now"))
    )


def _release() -> ClauseElement:
    return (
        _runs.update()
        .where(_this_run(), _r.lease_owner == _p("owner"))
        .values(
            lease_owner=sa.null(),
            lease_expires_at=sa.null(),
            version=_r.version + 1,
            updated_at=_p("now"),
        )
    )


def _cancel_run() -> ClauseElement:
    unfinished = sa.or_(
        _r.status == _p("pending"), _r.status == _p("running"), _r.status == _p("paused")
    )
    return (
        _runs.update()
        .where(_this_run(), unfinished)
        .values(
            status=_p("cancelled"),
            lease_owner=sa.null(),
            lease_expires_at=sa.null(),
            wake_at=sa.null(),
            version=_r.version + 1,
            updated_at=_p("now"),
        )
    )


def _insert_signal() -> ClauseElement:
    return _signals.insert().values(
        run_id=_p("run_id"), name=_p("name"), payload=_p("payload"), sent_at=_p("now")
    )


def _consume_signal() -> ClauseElement:
    oldest = (
        sa.select(_s.id)
        .where(_s.run_id == _p("run_id"), _s.name == _p("name"), _waiting)
        .order_by(_s.id)
        .limit(1)
        .scalar_subquery()
    )
    return (
        _signals.update().where(_s.id == oldest).values(consumed_at=_p("now")).returning(_s.payload)
    )


# -- values in and out ------------------------------------------------------------


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@functools.lru_cache(maxsize=4096)  # a tree has few paths, and they repeat
def _dump_path(path: Path | None) -> str | None:
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


def _load_json(run_id: str, column: str, text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        msg = f"run {run_id}: column {column} holds invalid JSON ({exc})"
        raise SerializationError(msg, run_id=run_id) from exc


def _load_status(run_id: str, value: str) -> RunStatus:
    try:
        return _STATUSES[value]
    except (KeyError, TypeError):
        msg = f"run {run_id}: column runs.status holds {value!r}, which is not a run status"
        raise SerializationError(msg, run_id=run_id, type=RunStatus) from None


def _aware(value: dt.datetime, what: str) -> dt.datetime:
    if value.utcoffset() is None:
        msg = f"{what} must be a timezone-aware datetime, not {value!r}"
        raise ValueError(msg)
    return value


class _Instants(Protocol):
    def dump(self, value: dt.datetime) -> Any: ...

    def load(self, value: Any) -> dt.datetime: ...


@final
class _EpochMicros:
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
class _Timestamptz:
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


@final
class _Statements:
    """
    Strictly private: the statements of one store, compiled to its driver's SQL text.
    """

    __slots__ = ("_cache", "_dialect", "_logger")

    def __init__(self, dialect: sa.Dialect, logger: Any) -> None:
        self._dialect = dialect
        self._logger = logger  # the engine's logger when echo is on, else None
        self._cache: dict[tuple[Any, ...], tuple[str, dict[str, Any]]] = {}

    def get(
        self, build: abc.Callable[..., ClauseElement], args: tuple[Any, ...]
    ) -> tuple[str, dict[str, Any]]:
        key = (build, *args)
        found = self._cache.get(key)
        if found is None:
            compiled = build(*args).compile(dialect=self._dialect)
            text = str(compiled)
            if "POSTCOMPILE" in text:  # pragma: no cover -- a builder used an expanding IN
                msg = f"statement {build.__name__} needs values at run time: {text}"
                raise RuntimeError(msg)
            defaults = {name: value for name, value in compiled.params.items() if value is not None}
            found = self._cache[key] = (text, defaults)
        return found

    def log(self, sql: str, params: abc.Mapping[str, Any]) -> None:
        if self._logger is not None:
            self._logger.info("%s\n[systemflow] %r", sql, dict(params))


@final
class _Tx:
    """
    Strictly private: one operation of a store, on its driver's DBAPI cursor.

    The connection is in autocommit mode: a statement alone is a transaction
    of its own, and ``begin`` starts one that spans several.
    """

    __slots__ = ("_begin", "_cursor", "_open", "_statements", "dialect", "instants")

    def __init__(
        self,
        cursor: Any,
        statements: _Statements,
        instants: _Instants,
        dialect: str,
        begin: str,
    ) -> None:
        self._cursor = cursor
        self._statements = statements
        self._begin = begin  # BEGIN IMMEDIATE on SQLite: writers queue up at the start
        self._open = False
        self.instants = instants
        self.dialect = dialect

    def _command(self, sql: str) -> None:
        self._statements.log(sql, {})
        self._cursor.execute(sql)

    def begin(self) -> None:
        """
        Start a transaction: what follows, up to the commit, is atomic.
        """
        if not self._open:
            self._command(self._begin)
            self._open = True

    def commit(self) -> None:
        """
        Commit the transaction, if one is open.
        """
        if self._open:
            self._open = False
            self._command("COMMIT")

    def rollback(self) -> None:
        """
        Roll the transaction back, if one is open; errors are left to the caller's own.
        """
        if self._open:
            self._open = False
            with contextlib.suppress(Exception):  # the database may have rolled back already
                self._command("ROLLBACK")

    def run(self, op: abc.Callable[[_Tx], _T], *, atomic: bool) -> _T:
        """
        Run an operation, in one transaction if ``atomic``; roll back if it fails.
        """
        if atomic:
            self.begin()
        try:
            result = op(self)
            self.commit()
        except BaseException:
            self.rollback()
            raise
        return result

    def _execute(
        self, build: abc.Callable[..., ClauseElement], params: dict[str, Any], args: tuple[Any, ...]
    ) -> Any:
        sql, defaults = self._statements.get(build, args)
        if defaults:
            params = defaults | params
        self._statements.log(sql, params)
        cursor = self._cursor
        cursor.execute(sql, params)
        return cursor

    def rows(
        self, build: abc.Callable[..., ClauseElement], params: dict[str, Any], *args: Any
    ) -> list[Any]:
        """
        Run a statement; return its rows.
        """
        return list(self._execute(build, params, args).fetchall())

    def count(
        self, build: abc.Callable[..., ClauseElement], params: dict[str, Any], *args: Any
    ) -> int:
        """
        Run a statement; return how many rows it changed.
        """
        rowcount: int = self._execute(build, params, args).rowcount
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
            status=_load_status(run_id, row[2]),
            input=_load_json(run_id, "runs.input", row[3]),
            output=_load_json(run_id, "runs.output", row[4]),
            error=row[5],
            fingerprint=row[6],
            version=row[7],
            lease_owner=row[8],
            lease_expires_at=self.load(run_id, "runs.lease_expires_at", row[9]),
            wake_at=self.load(run_id, "runs.wake_at", row[10]),
            created_at=self.instant(run_id, "runs.created_at", row[11]),
            updated_at=self.instant(run_id, "runs.updated_at", row[12]),
            current_path=_load_path(run_id, "events.path", row[13]),
        )

    def event(self, row: abc.Sequence[Any]) -> Event:
        """
        Return the event of a row of ``_get_history``.
        """
        seq, run_id, kind, path, data, at = row
        column = f"events.path (seq {seq})"
        at = self.instant(run_id, f"events.at (seq {seq})", at)
        return Event(seq, run_id, kind, _load_path(run_id, column, path), data, at)

    def insert_event(self, run_id: str, event: NewEvent, at: dt.datetime) -> int:
        """
        Append one event whatever holds the run; return its sequence number.
        """
        params = {
            "run_id": run_id,
            "kind": event.kind,
            "path": _dump_path(event.path),
            "data": event.data,
            "at": self.instants.dump(at),
        }
        seq: int = self.rows(_insert_event, params)[0][0]
        return seq

    def get_record(self, run_id: str) -> RunRecord:
        """
        Return a run's record.
        """
        rows = self.rows(_get_record, {"run_id": run_id})
        if not rows:
            raise _not_found(run_id)
        return self.record(rows[0])

    def not_held(self, run_id: str) -> FlowError:
        """
        Return the error for a claim that does not hold ``run_id`` (it may not exist).
        """
        rows = self.rows(_get_status, {"run_id": run_id})
        if not rows:
            return _not_found(run_id)
        status = _load_status(run_id, rows[0][0])
        msg = f"run {run_id} is no longer held by this claim ({status.value})"
        return RunLocked(msg, run_id=run_id)


def _not_found(run_id: str) -> RunNotFound:
    msg = f"no run with id {run_id!r}"
    return RunNotFound(msg, run_id=run_id)


# -- the operations ---------------------------------------------------------------


def _create_run(
    tx: _Tx,
    *,
    run_id: str,
    name: str,
    input_json: str,
    fingerprint: str,
    claim: Claim,
    started_data: str | None,
) -> RunRecord:
    now = _now()
    expires = claim.expires(now)
    params = {
        "run_id": run_id,
        "name": name,
        "running": _RUNNING,
        "input": input_json,
        "fingerprint": fingerprint,
        "owner": claim.owner,
        "expires": tx.dump(expires),
        "now": tx.dump(now),
    }
    if not tx.count(_insert_run, params, tx.dialect):
        msg = f"a run with id {run_id!r} exists"
        raise RunExists(msg, run_id=run_id)
    tx.insert_event(run_id, NewEvent(STARTED, data=started_data or input_json), now)
    return RunRecord(
        id=run_id,
        name=name,
        status=RunStatus.RUNNING,
        input=_load_json(run_id, "runs.input", input_json),
        created_at=now,
        updated_at=now,
        fingerprint=fingerprint,
        version=1,
        lease_owner=claim.owner,
        lease_expires_at=expires,
    )


def _claim_run(
    tx: _Tx, run_id: str, claim: Claim, is_dead: abc.Callable[[str], bool]
) -> tuple[RunRecord, list[Event]]:
    rows = tx.rows(_get_lease, {"run_id": run_id})
    if not rows:
        raise _not_found(run_id)
    status_text, version, owner, expires_value = rows[0]
    status = _load_status(run_id, status_text)
    if status.is_finished:
        msg = f"run {run_id} is {status.value}: there is nothing to resume"
        raise RunFinished(msg, run_id=run_id, status=status.value)
    now = _now()
    expires = tx.load(run_id, "runs.lease_expires_at", expires_value)
    if (
        status is RunStatus.RUNNING
        and owner is not None
        and expires is not None
        and expires > now
        and not is_dead(owner)
    ):
        msg = f"run {run_id} is held by {owner} until {expires}"
        raise RunLocked(msg, run_id=run_id)
    params = {
        "run_id": run_id,
        "version": version,
        "running": _RUNNING,
        "owner": claim.owner,
        "expires": tx.dump(claim.expires(now)),
        "now": tx.dump(now),
    }
    if not tx.count(_take_over, params):
        msg = f"run {run_id} was claimed by another claim at the same time"
        raise RunLocked(msg, run_id=run_id)
    tx.insert_event(run_id, NewEvent(RESUMED), now)
    record = tx.get_record(run_id)
    return record, [tx.event(row) for row in tx.rows(_get_history, {"run_id": run_id})]


def _append(tx: _Tx, run_id: str, events: abc.Sequence[NewEvent], claim: Claim) -> list[int]:
    if not events:
        _heartbeat(tx, run_id, claim)
        return []
    now = _now()
    expires = claim.expires(now)
    # Renew the lease once less than half of it is left (see the module docstring).
    renew_after = tx.dump(now + (expires - now) / 2)
    seqs: list[int] = []
    if len(events) > _MAX_BATCH:
        tx.begin()  # several statements, one append
    for start in range(0, len(events), _MAX_BATCH):
        batch = events[start : start + _MAX_BATCH]
        params = {
            "run_id": run_id,
            "owner": claim.owner,
            "running": _RUNNING,
            "at": tx.dump(now),
            "renew_after": renew_after,
        }
        for (kind, path, data), new in zip(_EVENT_PARAMS, batch, strict=False):
            params[kind] = new.kind
            params[path] = _dump_path(new.path)
            params[data] = new.data
        rows = tx.rows(_append_events, params, len(batch))
        if not rows:
            tx.begin()  # renew, then insert again: together or not at all
            renewed = tx.dump(expires)
            held = {"run_id": run_id, "owner": claim.owner, "running": _RUNNING}
            if not tx.count(_renew_lease, held | {"expires": renewed}):
                raise tx.not_held(run_id)
            renew_after = params["renew_after"] = renewed
            rows = tx.rows(_append_events, params, len(batch))
        seqs += sorted(row[0] for row in rows)  # ascending seqs are the events' order
    return seqs


def _take_signal(tx: _Tx, run_id: str, signal: str, path: Path, claim: Claim) -> Event | None:
    rows = tx.rows(_lock_run, {"run_id": run_id})
    if not rows:
        raise _not_found(run_id)
    if rows[0][1] != claim.owner or rows[0][0] != _RUNNING:
        raise tx.not_held(run_id)
    now = _now()
    taken = tx.rows(_consume_signal, {"run_id": run_id, "name": signal, "now": tx.dump(now)})
    if not taken:
        return None
    payload: str = taken[0][0]
    seq = tx.insert_event(run_id, NewEvent(SIGNAL, path, payload), now)
    return Event(seq, run_id, SIGNAL, path, payload, now)


def _finish(
    tx: _Tx,
    *,
    run_id: str,
    claim: Claim,
    status: RunStatus,
    event: NewEvent,
    output_json: str | None,
    error: str | None,
    wake_at: dt.datetime | None,
) -> RunRecord:
    now = _now()
    params = {
        "run_id": run_id,
        "owner": claim.owner,
        "running": _RUNNING,
        "status": status.value,
        "output": output_json,
        "error": error,
        "wake_at": tx.dump(wake_at),
        "now": tx.dump(now),
    }
    if not tx.count(_finish_run, params):
        raise tx.not_held(run_id)
    if status is RunStatus.PAUSED:
        # A statement of its own, after the row is locked: on PostgreSQL it then
        # sees every signal committed before (see ``_signal``).
        tx.count(_wake_if_signalled, {"run_id": run_id, "now": tx.dump(now)})
    tx.insert_event(run_id, event, now)
    return tx.get_record(run_id)


def _heartbeat(tx: _Tx, run_id: str, claim: Claim) -> None:
    params = {
        "run_id": run_id,
        "owner": claim.owner,
        "running": _RUNNING,
        "expires": tx.dump(claim.expires(_now())),
    }
    if not tx.count(_renew_lease, params):
        raise tx.not_held(run_id)


def _release_run(tx: _Tx, run_id: str, claim: Claim) -> None:
    params = {"run_id": run_id, "owner": claim.owner, "now": tx.dump(_now())}
    if not tx.count(_release, params) and not tx.rows(_get_status, {"run_id": run_id}):
        raise _not_found(run_id)


def _signal(tx: _Tx, run_id: str, signal: str, payload: Any) -> None:
    rows = tx.rows(_lock_run, {"run_id": run_id})
    if not rows:
        raise _not_found(run_id)
    status = _load_status(run_id, rows[0][0])
    if status.is_finished:
        msg = f"run {run_id} is {status.value}: it takes no more signals ({signal!r})"
        raise RunFinished(msg, run_id=run_id, status=status.value)
    data = encode_payload(run_id, signal, payload)
    now = _now()
    params = {"run_id": run_id, "name": signal, "payload": data, "now": tx.dump(now)}
    tx.count(_insert_signal, params)
    tx.insert_event(run_id, NewEvent(SIGNALLED, data=json.dumps({"signal": signal})), now)
    if status is RunStatus.PAUSED:
        tx.count(_wake, {"run_id": run_id, "now": tx.dump(now)})


def _cancel(tx: _Tx, run_id: str) -> RunRecord:
    now = _now()
    params = {
        "run_id": run_id,
        "now": tx.dump(now),
        "cancelled": RunStatus.CANCELLED.value,
        "pending": RunStatus.PENDING.value,
        "running": _RUNNING,
        "paused": RunStatus.PAUSED.value,
    }
    if tx.count(_cancel_run, params):
        tx.insert_event(run_id, NewEvent(CANCELLED), now)
    return tx.get_record(run_id)


def _history(tx: _Tx, run_id: str) -> list[Event]:
    events = [tx.event(row) for row in tx.rows(_get_history, {"run_id": run_id})]
    if not events and not tx.rows(_get_status, {"run_id": run_id}):
        raise _not_found(run_id)
    return events


def _list_runs(tx: _Tx, name: str | None, status: RunStatus | None, limit: int) -> list[RunRecord]:
    params: dict[str, Any] = {"limit": limit}
    if name is not None:
        params["name"] = name
    if status is not None:
        params["status"] = status.value
    rows = tx.rows(_list_records, params, name is not None, status is not None)
    return [tx.record(row) for row in rows]


# -- the drivers ----------------------------------------------------------------------


class _Driver(Protocol):
    async def run(self, op: abc.Callable[[_Tx], _T], *, atomic: bool) -> _T: ...

    async def close(self) -> None: ...


@final
class _SqliteDriver:
    """
    Strictly private: runs transactions on one SQLite connection, on the caller's thread.
    """

    __slots__ = ("_connection", "_cursor", "_engine", "_lock", "_statements")

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        self._statements = _Statements(engine.dialect, engine.logger if engine.echo else None)
        self._lock = threading.Lock()  # one connection: one transaction at a time
        self._connection: Any = None  # the pool's proxy of the sqlite3 connection
        self._cursor: Any = None

    def _open(self) -> Any:
        with self._engine.connect() as conn:
            conn.exec_driver_sql("BEGIN IMMEDIATE")  # processes create the schema in turn
            _metadata.create_all(conn, checkfirst=True)
            conn.commit()
        self._connection = self._engine.raw_connection()
        self._cursor = self._connection.cursor()
        return self._cursor

    async def run(self, op: abc.Callable[[_Tx], _T], *, atomic: bool) -> _T:
        with self._lock:
            cursor = self._cursor if self._cursor is not None else self._open()
            tx = _Tx(cursor, self._statements, _EpochMicros, "sqlite", "BEGIN IMMEDIATE")
            return tx.run(op, atomic=atomic)

    async def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._cursor.close()
                self._connection.close()
                self._connection = self._cursor = None
            self._engine.dispose()


@final
class _PostgresDriver:
    """
    Strictly private: runs transactions on an asyncio engine's pool (psycopg 3).
    """

    __slots__ = ("_engine", "_ready", "_schema_lock", "_statements")

    def __init__(self, engine: AsyncEngine) -> None:
        sync = engine.sync_engine
        self._engine = engine
        self._statements = _Statements(sync.dialect, sync.logger if sync.echo else None)
        self._ready = False
        self._schema_lock = asyncio.Lock()

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
                    await conn.run_sync(_metadata.create_all, checkfirst=True)
            self._ready = True

    def _call(self, conn: sa.Connection, op: abc.Callable[[_Tx], _T], atomic: bool) -> _T:
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        tx = _Tx(cursor, self._statements, _Timestamptz, "postgresql", "BEGIN")
        return tx.run(op, atomic=atomic)

    async def run(self, op: abc.Callable[[_Tx], _T], *, atomic: bool) -> _T:
        if not self._ready:
            await self._create_schema()
        # The whole operation in one run_sync: each await of the asyncio
        # engine's API is a greenlet switch, and engine.begin() would add three.
        async with self._engine.connect() as conn:
            return await conn.run_sync(self._call, op, atomic)

    async def close(self) -> None:
        await self._engine.dispose()


# -- the store ----------------------------------------------------------------------


@final
class SqlStateStore:
    """
    Keeps durable runs in a SQL database: a local SQLite file, or PostgreSQL.

    The tables (``runs``, ``events``, ``signals``) are created on first use.
    Several processes may share one database: a run is held by one claim at a
    time, and the others get ``RunLocked``.

    On SQLite the store works on one connection, on the calling thread (a
    write waits up to 5 s for another process's). On PostgreSQL it keeps a
    pool of asyncio connections, which belong to the event loop that opened
    them: use a store from one loop, or ``close`` it before another.

    Args:
        url: A SQLAlchemy URL: ``sqlite:///path/to/file`` or
            ``postgresql+psycopg://user@host/db``. By default, the file
            ``systemflow.sqlite3`` in the current directory.
        synchronous: SQLite's ``PRAGMA synchronous`` (``OFF``, ``NORMAL``,
            ``FULL``, ``EXTRA``). ``NORMAL`` in WAL mode never corrupts the file;
            a power loss may undo the last commits. Ignored by PostgreSQL.
        echo: Log every statement (SQLAlchemy's ``echo``).

    Raises:
        ValueError: The URL names another database, or ``synchronous`` is unknown.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self, url: str | None = None, *, synchronous: str = "NORMAL", echo: bool = False
    ) -> None:
        if url is None:
            url = f"sqlite:///{FilePath.cwd() / _DEFAULT_FILE}"
        parsed = sa.make_url(url)
        self._url = parsed
        backend, driver = parsed.get_backend_name(), parsed.get_driver_name()
        self._driver: _Driver
        if backend == "sqlite" and driver == "pysqlite":
            self._driver = _SqliteDriver(_sqlite_engine(parsed, synchronous, echo))
        elif backend == "postgresql" and (driver == "psycopg" or parsed.drivername == backend):
            from sqlalchemy.ext.asyncio import create_async_engine  # noqa: PLC0415 -- optional

            engine = create_async_engine(
                parsed.set(drivername="postgresql+psycopg"),
                echo=echo,
                isolation_level="AUTOCOMMIT",  # transactions are explicit, as on SQLite
            )
            self._driver = _PostgresDriver(engine)
        else:
            msg = (
                f"SqlStateStore needs a sqlite:/// or postgresql+psycopg:// URL, "
                f"not {parsed.render_as_string(hide_password=True)!r}"
            )
            raise ValueError(msg)

    def __repr__(self) -> str:
        return f"SqlStateStore({self._url.render_as_string(hide_password=True)!r})"

    async def create_run(
        self,
        *,
        run_id: str,
        name: str,
        input_json: str,
        fingerprint: str,
        claim: Claim,
        started_data: str | None = None,
    ) -> RunRecord:
        """
        Record a new run, running under ``claim``, with its ``started`` event.

        The event's data is ``started_data``, or the input.

        Raises:
            RunExists: A run with this id exists.
            SerializationError: ``input_json`` is not JSON text (nothing is stored).
        """
        return await self._driver.run(
            lambda tx: _create_run(
                tx,
                run_id=run_id,
                name=name,
                input_json=input_json,
                fingerprint=fingerprint,
                claim=claim,
                started_data=started_data,
            ),
            atomic=True,
        )

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
        return await self._driver.run(
            lambda tx: _claim_run(tx, run_id, claim, is_dead), atomic=True
        )

    async def append(
        self, run_id: str, events: abc.Sequence[NewEvent], *, claim: Claim
    ) -> list[int]:
        """
        Append events in one transaction, renewing the lease once half of it is gone.

        Raises:
            RunLocked: ``claim`` no longer holds the run.
            RunNotFound: No such run.
        """
        return await self._driver.run(lambda tx: _append(tx, run_id, events, claim), atomic=False)

    async def take_signal(
        self, run_id: str, signal: str, path: Path, *, claim: Claim
    ) -> Event | None:
        """
        Consume the oldest unconsumed ``signal`` of the run into a ``signal`` event at ``path``.

        Raises:
            RunLocked: ``claim`` no longer holds the run.
        """
        return await self._driver.run(
            lambda tx: _take_signal(tx, run_id, signal, path, claim), atomic=True
        )

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
    ) -> RunRecord:
        """
        End a claim: set the status (paused, completed, failed), release the lease.

        Raises:
            RunLocked: ``claim`` no longer holds the run.
            ValueError: ``wake_at`` is a naive datetime.
        """
        if wake_at is not None:
            _aware(wake_at, "wake_at")
        return await self._driver.run(
            lambda tx: _finish(
                tx,
                run_id=run_id,
                claim=claim,
                status=status,
                event=event,
                output_json=output_json,
                error=error,
                wake_at=wake_at,
            ),
            atomic=True,
        )

    async def heartbeat(self, run_id: str, *, claim: Claim) -> None:
        """
        Renew the lease of a run that is still working.

        Raises:
            RunLocked: ``claim`` no longer holds the run.
        """
        await self._driver.run(lambda tx: _heartbeat(tx, run_id, claim), atomic=False)

    async def release(self, run_id: str, *, claim: Claim) -> None:
        """
        Give the lease back without changing the status (shutdown, cancellation).
        """
        await self._driver.run(lambda tx: _release_run(tx, run_id, claim), atomic=False)

    async def signal(self, run_id: str, signal: str, payload: Any) -> None:
        """
        Deliver a signal; it is kept until a ``WaitForSignal`` consumes it.

        Raises:
            RunNotFound: No such run.
            RunFinished: The run is over.
            SerializationError: The payload cannot be stored.
        """
        await self._driver.run(lambda tx: _signal(tx, run_id, signal, payload), atomic=True)

    async def cancel(self, run_id: str) -> RunRecord:
        """
        Mark a run cancelled (a finished run is returned unchanged).

        Raises:
            RunNotFound: No such run.
        """
        return await self._driver.run(lambda tx: _cancel(tx, run_id), atomic=True)

    async def get(self, run_id: str) -> RunRecord:
        """
        Return a run's record.

        Raises:
            RunNotFound: No such run.
        """
        return await self._driver.run(lambda tx: tx.get_record(run_id), atomic=False)

    async def history(self, run_id: str) -> list[Event]:
        """
        Return a run's events, oldest first.

        Raises:
            RunNotFound: No such run.
        """
        return await self._driver.run(lambda tx: _history(tx, run_id), atomic=False)

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
        return await self._driver.run(lambda tx: _list_runs(tx, name, status, limit), atomic=False)

    async def close(self) -> None:
        """
        Release connections (the store reconnects if used again).
        """
        await self._driver.close()


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
