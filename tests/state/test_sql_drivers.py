"""
How SqlStateStore talks to PostgreSQL: inline or pooled, and what it does with a bad connection.

The store contract itself runs on both (the ``store`` fixture's ``postgresql``
and ``postgresql-pool``); these tests are about the connections.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
import sqlalchemy as sa
from psycopg.conninfo import conninfo_to_dict

from systemflow import RunNotFound, SerializationError
from systemflow.state import RunStatus, SqlStateStore
from systemflow.state._model import Claim

if TYPE_CHECKING:
    from collections import abc


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("postgresql+psycopg://u@/db", True),  # libpq's default: a Unix socket
        ("postgresql+psycopg://u@/db?host=/run/postgresql", True),
        ("postgresql+psycopg://u@localhost/db", True),
        ("postgresql+psycopg://u@127.0.0.1:5433/db", True),
        ("postgresql+psycopg://u@[::1]/db", True),
        ("postgresql+psycopg://u@db.internal/db", False),
        ("postgresql+psycopg://u@10.0.0.7/db", False),
        ("postgresql+psycopg://u@/db?host=db.internal", False),
        ("postgresql+psycopg://u@/db?host=localhost:5432&host=db.internal:5433", False),
        ("postgresql+psycopg://u@/db?host=/tmp:5432&host=localhost:5433", True),
        ("postgresql+psycopg://u@/db?service=orders", False),  # a service file: any host
        ("postgresql+psycopg://u@/db?hostaddr=10.0.0.7", False),
    ],
)
def test_inline_by_default_only_when_the_server_is_on_this_host(
    url: str, local: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PGHOST", raising=False)
    assert SqlStateStore(url).writes_inline is local


@pytest.mark.parametrize(("pghost", "local"), [("db.internal", False), ("/var/run", True)])
def test_no_host_in_the_url_is_libpq_s_pghost(
    pghost: str, local: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGHOST", pghost)
    assert SqlStateStore("postgresql+psycopg://u@/db").writes_inline is local


def test_libpq_gets_the_url_s_parts_as_parameters() -> None:
    """Spaces, several hosts and options reach libpq as SQLAlchemy's dialect would pass them."""
    store = SqlStateStore(
        "postgresql+psycopg://us%20er:a%20b@/db?host=h1:5432&host=h2:5433"
        "&options=-c%20search_path%3Ds"
    )
    assert {
        "dbname": "db",
        "user": "us er",
        "password": "a b",
        "host": "h1,h2",
        "port": "5432,5433",
        "options": "-c search_path=s",
    } == conninfo_to_dict(store._conninfo)


def test_inline_can_be_chosen_either_way() -> None:
    assert SqlStateStore("postgresql+psycopg://u@db.internal/db", inline=True).writes_inline
    assert not SqlStateStore("postgresql+psycopg://u@localhost/db", inline=False).writes_inline
    assert SqlStateStore("sqlite:///:memory:", inline=True).writes_inline


def test_sqlite_is_always_inline() -> None:
    with pytest.raises(ValueError, match=r"inline=False\) is for PostgreSQL"):
        SqlStateStore("sqlite:///:memory:", inline=False)


def test_a_pool_holds_one_connection_at_least() -> None:
    with pytest.raises(ValueError, match="pool_size must be at least 1, not 0"):
        SqlStateStore("postgresql+psycopg://u@db.internal/db", pool_size=0)


def _libpq(url: str) -> str:
    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _with_options(url: str, options: str) -> str:
    return sa.make_url(url).update_query_dict({"options": options}).render_as_string(False)


@pytest.fixture(name="pg_store", params=[True, False], ids=["inline", "pool"])
async def _pg_store(
    request: pytest.FixtureRequest, postgresql_url: str
) -> abc.AsyncIterator[SqlStateStore]:
    store = SqlStateStore(postgresql_url, inline=request.param)
    yield store
    await store.close()


async def test_a_connection_the_server_ended_is_replaced(
    pg_store: SqlStateStore, postgresql_url: str
) -> None:
    """The operation on it fails (it may have run: no retry); the next one reconnects."""
    record = await pg_store.create_run(
        run_id="r-1", name="f", input_json="1", fingerprint="x", claim=None
    )
    with psycopg.connect(_libpq(postgresql_url), autocommit=True) as admin:
        ended = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND backend_type = 'client backend'"
        ).fetchall()
    assert ended  # the store's connection

    with pytest.raises(psycopg.OperationalError):
        await pg_store.get("r-1")
    assert record == await pg_store.get("r-1")


async def test_a_cancelled_operation_leaves_no_connection_behind(postgresql_url: str) -> None:
    """Pooled: a query cancelled while it waits is rolled back and its connection closed."""
    store = SqlStateStore(postgresql_url, inline=False)
    try:
        await store.create_run(run_id="r-2", name="f", input_json="1", fingerprint="x", claim=None)
        async with await psycopg.AsyncConnection.connect(_libpq(postgresql_url)) as holder:
            await holder.execute("SELECT 1 FROM runs WHERE id = 'r-2' FOR UPDATE")
            signalling = asyncio.create_task(store.signal("r-2", "go", 1))  # waits for the row
            await asyncio.sleep(0.2)
            assert not signalling.done()
            signalling.cancel()
            with pytest.raises(asyncio.CancelledError):
                await signalling
            await holder.rollback()

        assert [] == store._driver._free  # type: ignore[attr-defined]  # its connection closed, not kept
        await store.signal("r-2", "go", 2)
        kinds = [event.kind for event in await store.history("r-2")]
        assert ["started", "signalled"] == kinds  # the cancelled signal was not delivered
        assert RunStatus.PENDING is (await store.get("r-2")).status
    finally:
        await store.close()


@pytest.mark.parametrize("inline", [True, False], ids=["inline", "pool"])
async def test_a_url_with_spaces_works(postgresql_url: str, inline: bool) -> None:
    """libpq's documented form of options has a space: "-c search_path=..."."""
    schema = sa.make_url(postgresql_url).query["options"].split("=", 1)[1]
    url = sa.make_url(_with_options(postgresql_url, f"-c search_path={schema}"))
    spaced = "a b"  # pgserver trusts local connections: any password will do
    store = SqlStateStore(url.set(password=spaced).render_as_string(False), inline=inline)
    try:
        await store.create_run(run_id="r-3", name="f", input_json="1", fingerprint="x", claim=None)
        assert "r-3" == (await store.get("r-3")).id
    finally:
        await store.close()


def test_a_closed_store_works_from_another_loop(postgresql_url: str) -> None:
    """Pooled: its semaphore and lock are made anew by close(), for the next loop."""
    store = SqlStateStore(postgresql_url, pool_size=2, inline=False)

    async def burst() -> list[Any]:
        try:  # more operations at once than connections: they wait on the semaphore
            return await asyncio.gather(*(store.list_runs() for _ in range(20)))
        finally:
            await store.close()

    assert 20 * [[]] == asyncio.run(burst())
    assert 20 * [[]] == asyncio.run(burst())


async def test_a_connection_in_use_at_close_is_closed_when_it_comes_back(
    postgresql_url: str,
) -> None:
    store = SqlStateStore(postgresql_url, inline=False)
    await store.create_run(run_id="r-4", name="f", input_json="1", fingerprint="x", claim=None)
    async with await psycopg.AsyncConnection.connect(_libpq(postgresql_url)) as holder:
        await holder.execute("SELECT 1 FROM runs WHERE id = 'r-4' FOR UPDATE")
        signalling = asyncio.create_task(store.signal("r-4", "go", 1))
        await asyncio.sleep(0.2)
        await store.close()
        await holder.rollback()
    await signalling  # it went on, on its own connection
    assert [] == store._driver._free  # type: ignore[attr-defined]
    assert ["started", "signalled"] == [e.kind for e in await store.history("r-4")]
    await store.close()


@pytest.mark.parametrize("claim", [None, Claim("w", 30)], ids=["pending", "claimed"])
async def test_an_input_that_is_not_json_stores_nothing(sql_url: str, claim: Claim | None) -> None:
    store = SqlStateStore(sql_url)
    try:
        with pytest.raises(SerializationError, match=r"runs\.input holds invalid JSON"):
            await store.create_run(
                run_id="r-5", name="f", input_json="{not json", fingerprint="x", claim=claim
            )
        with pytest.raises(RunNotFound):
            await store.get("r-5")
    finally:
        await store.close()


async def test_sqlite_never_keeps_a_transaction_an_operation_left_open(sqlite_url: str) -> None:
    """An operation stopped between two statements (a Ctrl-C there) is rolled back."""
    store = SqlStateStore(sqlite_url)
    driver: Any = store._driver

    def broken(tx: Any) -> Any:
        yield from tx.begin()
        yield ("SELECT 1",)  # not a query: the driver's loop fails, not the operation

    with pytest.raises(ValueError, match="not enough values to unpack"):
        await driver.run(broken, atomic=False, tenant=None)
    assert not driver._connection.dbapi_connection.in_transaction
    await store.create_run(run_id="r-6", name="f", input_json="1", fingerprint="x", claim=None)
    assert RunStatus.PENDING is (await store.get("r-6")).status
    await store.close()
