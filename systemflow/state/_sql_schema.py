"""
The tables of ``SqlStateStore`` and the statements it runs on them.

Each statement is built with SQLAlchemy Core by a function below, and compiled
once per store to its driver's SQL text (``Statements``); ``_sql`` says why.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, final

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

if TYPE_CHECKING:
    from collections import abc

    from sqlalchemy.sql.elements import ClauseElement

# -- the schema ------------------------------------------------------------------

metadata = sa.MetaData()

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # INTEGER PRIMARY KEY: the rowid
_INSTANT = sa.DateTime(timezone=True).with_variant(sa.BigInteger(), "sqlite")  # epoch µs

_runs = sa.Table(
    "runs",
    metadata,
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
    sa.Column("tenant", sa.Text),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    # The run's id is its key: on SQLite the table is that key's b-tree, one
    # b-tree less to write at every change of a run.
    sqlite_with_rowid=False,
)
_r = _runs.c


def _partial_index(name: str, column: sa.Column[Any], status: str) -> None:
    # Runs a worker looks for, by the instant they are due. A partial index
    # holds only the runs in one status: a change of status writes one entry
    # at most, and finished runs (most of the table) are in none.
    where = sa.and_(_r.status == sa.literal_column(f"'{status}'"), column.is_not(None))
    sa.Index(name, column, sqlite_where=where, postgresql_where=where)


_partial_index("ix_runs_leases", _r.lease_expires_at, "running")  # expired leases
_partial_index("ix_runs_wake", _r.wake_at, "paused")  # due timers, delivered signals
_partial_index("ix_runs_pending", _r.created_at, "pending")  # new runs, oldest first
sa.Index("ix_runs_name_created_at", _r.name, _r.created_at)  # listing, newest first

# Keyed by (run_id, seq): a run's history is one range of the key's b-tree, and
# an event is one entry in one b-tree (no second index to write). On PostgreSQL
# seq comes from an identity (increasing across the table); on SQLite, whose
# writers hold the database's lock from the start of a statement, it is the
# run's last seq + 1 (so 1, 2, 3... per run).
_events = sa.Table(
    "events",
    metadata,
    sa.Column("run_id", sa.Text, primary_key=True),
    sa.Column("seq", _ID, sa.Identity(), primary_key=True),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("path", sa.Text),  # JSON array of the path's segments, e.g. ["saga",0]
    sa.Column("data", sa.Text),
    sa.Column("at", _INSTANT, nullable=False),
    sqlite_with_rowid=False,
)

_signals = sa.Table(
    "signals",
    metadata,
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


def check_schema(conn: sa.Connection) -> None:
    """
    Refuse tables made by an earlier layout (``create_all`` never alters a table).

    Raises:
        RuntimeError: A table lacks a column, or its key differs; names them.
    """
    inspector = sa.inspect(conn)
    for table in metadata.sorted_tables:
        have = {column["name"] for column in inspector.get_columns(table.name)}
        missing = [column.name for column in table.columns if column.name not in have]
        key = inspector.get_pk_constraint(table.name)["constrained_columns"]
        wanted = [column.name for column in table.primary_key.columns]
        if missing or sorted(key) != sorted(wanted):
            what = f"lacks {', '.join(missing)}" if missing else f"is keyed by {', '.join(key)}"
            msg = (
                f"the table {table.name!r} {what}: it was made by an earlier systemflow. "
                "There are no migrations before 0.1: start from a new database "
                "(or delete the file)"
            )
            raise RuntimeError(msg)


# -- the statements --------------------------------------------------------------
#
# Every value is a named bindparam (a literal would become a parameter the caller
# does not know of); constants such as the status 'running' are parameters too.

_p = sa.bindparam
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
    _r.tenant,
    _r.attempts,
)


def _tenant_sees() -> sa.ColumnElement[bool]:
    # A store for a tenant sees its runs only; the unscoped store sees all.
    tenant = _p("tenant", type_=sa.Text)
    return sa.or_(tenant.is_(None), _r.tenant == tenant)


def _this_run() -> sa.ColumnElement[bool]:
    return sa.and_(_r.id == _p("run_id"), _tenant_sees())


def _held() -> sa.ColumnElement[bool]:
    return sa.and_(_this_run(), _r.lease_owner == _p("owner"), _r.status == _p("running"))


def _current_path() -> sa.ScalarSelect[Any]:
    # The path of the run's newest event that has one.
    return (
        sa.select(_e.path)
        .where(_e.run_id == _r.id, _e.path.is_not(None))
        .order_by(_e.seq.desc())
        .limit(1)
        .scalar_subquery()
    )


def _select_record(*where: sa.ColumnElement[bool]) -> sa.Select[Any]:
    return sa.select(*_RECORD_COLUMNS, _current_path()).where(*where)


def get_record() -> ClauseElement:
    return _select_record(_this_run())


def list_records(by_name: bool, by_status: bool) -> ClauseElement:
    where = [_tenant_sees()]
    where += [_r.name == _p("name")] if by_name else []
    where += [_r.status == _p("status")] if by_status else []
    return (
        _select_record(*where)
        .order_by(_r.created_at.desc(), _r.id.desc())
        .limit(_p("limit", type_=sa.Integer))
    )


def get_history() -> ClauseElement:
    return sa.select(*_EVENT_COLUMNS).where(_e.run_id == _p("run_id")).order_by(_e.seq)


def get_status() -> ClauseElement:
    return sa.select(_r.status).where(_this_run())


def lock_run() -> ClauseElement:
    # FOR NO KEY UPDATE on PostgreSQL (SQLite has BEGIN IMMEDIATE instead).
    return (
        sa.select(_r.status, _r.lease_owner, _r.name)
        .where(_this_run())
        .with_for_update(key_share=True)
    )


def get_lease() -> ClauseElement:
    return sa.select(_r.status, _r.version, _r.lease_owner, _r.lease_expires_at).where(_this_run())


def insert_run(dialect: str) -> ClauseElement:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return (
        insert(_runs)
        .values(
            id=_p("run_id"),
            name=_p("name"),
            status=_p("status"),
            tenant=_p("tenant"),
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


def insert_run_started() -> ClauseElement:
    # PostgreSQL: the run and its first event in one statement, one round trip.
    run = insert_run("postgresql").returning(_r.id).cte("new_run")  # type: ignore[attr-defined]
    first = sa.select(
        run.c.id,
        _p("kind", type_=sa.Text),
        sa.null(),
        _p("data", type_=sa.Text),
        _p("now", type_=_INSTANT),
    )
    return (
        _events.insert()
        .from_select(["run_id", "kind", "path", "data", "at"], first)
        .returning(_e.seq)
    )


def _next_seq(dialect: str, offset: int) -> Any:
    # SQLite: the run's last seq + ``offset``; PostgreSQL: the identity's next value.
    if dialect != "sqlite":
        return None
    prior = _events.alias("prior")
    last = sa.select(sa.func.coalesce(sa.func.max(prior.c.seq), 0))
    return last.where(prior.c.run_id == _p("run_id")).scalar_subquery() + offset


def insert_event(dialect: str) -> ClauseElement:
    values: dict[str, Any] = {
        "run_id": _p("run_id"),
        "kind": _p("kind"),
        "path": _p("path"),
        "data": _p("data"),
    }
    values["at"] = _p("at")
    seq = _next_seq(dialect, 1)
    if seq is not None:
        values["seq"] = seq
    return _events.insert().values(**values).returning(_e.seq)


def append_events(count: int, dialect: str) -> ClauseElement:
    # One SELECT per event, each inserting only while the claim holds the run
    # with at least half a lease left (``renew_after``).
    held: sa.Select[Any] = (
        sa.select(sa.literal_column("1"))
        .where(_held(), _r.lease_expires_at >= _p("renew_after"))
        .with_for_update(read=True)  # FOR SHARE on PostgreSQL: a takeover waits for us
    )
    if dialect == "sqlite" and count == 1:
        return _append_one_sqlite(held)
    columns = ["run_id", "kind", "path", "data", "at"]
    rows = []
    for i in range(count):
        values: list[Any] = [
            _p("run_id", type_=sa.Text),
            _p(f"kind_{i}", type_=sa.Text),
            _p(f"path_{i}", type_=sa.Text),
            _p(f"data_{i}", type_=sa.Text),
            _p("at", type_=_INSTANT),
        ]
        seq = _next_seq(dialect, i + 1)
        if seq is not None:
            values.append(seq)
        rows.append(sa.select(*values).where(sa.exists(held)))
    if dialect == "sqlite":
        columns.append("seq")
    source = rows[0] if count == 1 else sa.union_all(*rows)
    return _events.insert().from_select(columns, source).returning(_e.seq)


def _append_one_sqlite(held: sa.Select[Any]) -> ClauseElement:
    # The common append (one step's record) as INSERT ... VALUES: SQLite runs an
    # INSERT ... SELECT that reads its own table through a temporary table, a
    # quarter of the statement's cost. Not held: seq is NULL, and OR IGNORE
    # skips the row (a NULL key), so nothing is inserted or returned.
    seq = sa.case((sa.exists(held), _next_seq("sqlite", 1)), else_=sa.null())
    values = {
        "run_id": _p("run_id", type_=sa.Text),
        "kind": _p("kind_0", type_=sa.Text),
        "path": _p("path_0", type_=sa.Text),
        "data": _p("data_0", type_=sa.Text),
        "at": _p("at", type_=_INSTANT),
        "seq": seq,
    }
    insert = _events.insert().prefix_with("OR IGNORE", dialect="sqlite")
    return insert.values(**values).returning(_e.seq)


def _status_is(status: str) -> sa.ColumnElement[bool]:
    # A literal, not a parameter: the planner matches it to the partial indexes.
    return _r.status == sa.literal_column(f"'{status}'")


def due_runs(count: int) -> ClauseElement:
    # Runs of ``count`` flows (name_i and fingerprint_i: a worker takes only the
    # runs of the versions it has) that it may claim now: new, woken (timer due,
    # signal delivered), or abandoned (lease expired), longest waiting first.
    # Rows that another worker is claiming are skipped, not waited for (PostgreSQL).
    flows = [
        sa.and_(
            _r.name == _p(f"name_{i}", type_=sa.Text),
            _r.fingerprint == _p(f"fingerprint_{i}", type_=sa.Text),
        )
        for i in range(count)
    ]
    due = sa.or_(
        _status_is("pending"),
        sa.and_(_status_is("paused"), _r.wake_at <= _p("now")),
        sa.and_(_status_is("running"), _r.lease_expires_at < _p("now")),
    )
    return (
        sa.select(_r.id, _r.version, _r.attempts)
        .where(_tenant_sees(), sa.or_(*flows), due)
        .order_by(_r.updated_at)
        .limit(_p("limit", type_=sa.Integer))
        .with_for_update(skip_locked=True)
    )


def _unnest(**arrays: sa.types.TypeEngine[Any]) -> Any:
    # PostgreSQL: rows from parallel array parameters, e.g. unnest(:ids, :owners) AS c(id, owner).
    casts = [sa.cast(_p(name), postgresql.ARRAY(type_)) for name, type_ in arrays.items()]
    columns = [sa.column(name, type_) for name, type_ in arrays.items()]
    return sa.func.unnest(*casts).table_valued(*columns).render_derived(name="c")


def take_over_all() -> ClauseElement:
    # PostgreSQL: claim every run of the arrays at once (each at the version it
    # was read at, under its own owner) with its ``resumed`` event: one statement.
    c = _unnest(ids=sa.Text(), versions=sa.Integer(), owners=sa.Text(), expiries=_INSTANT)
    taken = (
        _runs.update()
        .where(_r.id == c.c.ids, _r.version == c.c.versions)
        .values(
            status=_p("running"),
            lease_owner=c.c.owners,
            lease_expires_at=c.c.expiries,
            wake_at=sa.null(),
            version=_r.version + 1,
            attempts=_r.attempts + 1,
            updated_at=_p("now"),
        )
        .returning(*_RECORD_COLUMNS)
        .cte("taken")
    )
    resumed = sa.select(
        taken.c.id,
        _p("kind", type_=sa.Text),
        sa.null(),
        sa.null(),
        _p("now", type_=_INSTANT),
    )
    added = (
        _events.insert()
        .from_select(["run_id", "kind", "path", "data", "at"], resumed)
        .returning(_e.seq)
        .cte("added")
    )
    return sa.select(*taken.c).where(sa.exists(sa.select(added.c.seq)))


def get_histories() -> ClauseElement:
    # PostgreSQL: the histories of the runs of an array, each oldest first.
    ids = sa.cast(_p("ids"), postgresql.ARRAY(sa.Text))
    return (
        sa.select(*_EVENT_COLUMNS).where(_e.run_id == sa.func.any(ids)).order_by(_e.run_id, _e.seq)
    )


def fail_run() -> ClauseElement:
    return (
        _runs.update()
        .where(_this_run())
        .values(
            status=_p("failed"),
            error=_p("error"),
            lease_owner=sa.null(),
            lease_expires_at=sa.null(),
            wake_at=sa.null(),
            version=_r.version + 1,
            updated_at=_p("now"),
        )
    )


def renew_lease() -> ClauseElement:
    return _runs.update().where(_held()).values(lease_expires_at=_p("expires"))


def take_over() -> ClauseElement:
    return (
        _runs.update()
        .where(_this_run(), _r.version == _p("version"))
        .values(
            status=_p("running"),
            lease_owner=_p("owner"),
            lease_expires_at=_p("expires"),
            wake_at=sa.null(),
            version=_r.version + 1,
            attempts=_r.attempts + 1,
            updated_at=_p("now"),
        )
    )


def finish_run() -> ClauseElement:
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
            attempts=0,
            updated_at=_p("now"),
        )
        .returning(*_RECORD_COLUMNS, _current_path().label("current_path"))
    )


def finish_run_with_events(count: int) -> ClauseElement:
    # PostgreSQL: the run's new status and its ``count`` last events in one
    # statement, one round trip (events ``kind_i``, ``path_i``, ``data_i``).
    done = finish_run().cte("done")  # type: ignore[attr-defined]
    rows = [
        sa.select(
            done.c.id,
            _p(f"kind_{i}", type_=sa.Text),
            _p(f"path_{i}", type_=sa.Text),
            _p(f"data_{i}", type_=sa.Text),
            _p("now", type_=_INSTANT),
        )
        for i in range(count)
    ]
    added = (
        _events.insert()
        .from_select(
            ["run_id", "kind", "path", "data", "at"], rows[0] if count == 1 else sa.union_all(*rows)
        )
        .returning(_e.seq)
        .cte("added")
    )
    return sa.select(*done.c).where(sa.exists(sa.select(added.c.seq)))


def wake_if_signalled(count: int) -> ClauseElement:
    # Due at once if one of the ``count`` signals the run waits for is here.
    names = [_p(f"signal_{i}", type_=sa.Text) for i in range(count)]
    waiting = sa.select(_s.id).where(_s.run_id == _p("run_id"), _waiting, _s.name.in_(names))
    return _runs.update().where(_this_run(), sa.exists(waiting)).values(wake_at=_p("now"))


def wake() -> ClauseElement:
    return (
        _runs.update()
        .where(_this_run())
        .values(wake_at=_p("now"), version=_r.version + 1, updated_at=_p("now"))
    )


def release() -> ClauseElement:
    return (
        _runs.update()
        .where(_this_run(), _r.lease_owner == _p("owner"))
        .returning(_r.name)
        .values(
            lease_owner=sa.null(),
            lease_expires_at=_p("now"),  # expired: due for the next worker at once
            version=_r.version + 1,
            # A hand-back is no failed attempt; a release after an error is.
            attempts=sa.case((_p("failed", type_=sa.Boolean), _r.attempts), else_=0),
            updated_at=_p("now"),
        )
    )


def cancel_run() -> ClauseElement:
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


def insert_signal() -> ClauseElement:
    return _signals.insert().values(
        run_id=_p("run_id"), name=_p("name"), payload=_p("payload"), sent_at=_p("now")
    )


def consume_signal() -> ClauseElement:
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


# -- compiled once per store -------------------------------------------------------


@final
class Statements:
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


NOTIFY_CHANNEL = "systemflow_runs"


def notify_workers() -> ClauseElement:
    # PostgreSQL: wake the workers that LISTEN (delivered when the transaction commits).
    return sa.select(sa.func.pg_notify(NOTIFY_CHANNEL, _p("name", type_=sa.Text)))
