"""
How SqlStateStore talks to PostgreSQL: inline or pooled, and what it does with a bad connection.

The store contract itself runs on both (the ``store`` fixture's ``postgresql``
and ``postgresql-pool``); these tests are about the connections.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import psycopg
import pytest
import sqlalchemy as sa

from systemflow.state import RunStatus, SqlStateStore
from systemflow.state._sql import _is_local

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
        ("postgresql+psycopg://u@/db?host=localhost,db.internal", False),
        ("postgresql+psycopg://u@/db?host=/tmp&host=localhost", True),
    ],
)
def test_inline_by_default_only_when_the_server_is_on_this_host(url: str, local: bool) -> None:
    assert _is_local(sa.make_url(url)) is local
    assert SqlStateStore(url).writes_inline is local


def test_inline_can_be_chosen_either_way() -> None:
    assert SqlStateStore("postgresql+psycopg://u@db.internal/db", inline=True).writes_inline
    assert not SqlStateStore("postgresql+psycopg://u@localhost/db", inline=False).writes_inline
    assert SqlStateStore("sqlite:///:memory:", inline=True).writes_inline


def test_sqlite_is_always_inline() -> None:
    with pytest.raises(ValueError, match=r"inline=False\) is for PostgreSQL"):
        SqlStateStore("sqlite:///:memory:", inline=False)


def _libpq(url: str) -> str:
    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


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
