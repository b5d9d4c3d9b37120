"""
Store fixtures: every store test runs on memory, a SQLite file and a real PostgreSQL.

PostgreSQL comes from the systemflow pytest plugin (``systemflow.testing``):
``pgserver`` starts one server per session in the session's temporary
directory, and ``postgresql_url`` is a fresh schema per test, which is cheaper
than a database.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa

from systemflow.state._memory import InMemoryStateStore
from systemflow.state._sql import SqlStateStore

if TYPE_CHECKING:
    from collections import abc
    from pathlib import Path


@pytest.fixture(name="postgresql_uri", scope="session")
def _postgresql_uri(postgresql_server: str) -> str:
    """
    The libpq URI of the session's server: the systemflow plugin's ``postgresql_server``.

    ``postgresql_url`` (a fresh schema per test) comes from the plugin too.
    """
    return postgresql_server


@pytest.fixture(name="sqlite_url")
def _sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/s.sqlite3"


@pytest.fixture(name="sql_url", params=["sqlite", "postgresql"])
def _sql_url(request: pytest.FixtureRequest) -> str:
    """
    The URL of an empty database of each SQL kind.
    """
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


@pytest.fixture(name="store", params=["memory", "sqlite", "postgresql", "postgresql-pool"])
async def _store(request: pytest.FixtureRequest) -> abc.AsyncIterator[Any]:
    """
    Each store: memory, SQLite, PostgreSQL inline (the default on this host) and pooled.
    """
    if request.param == "memory":
        store: Any = InMemoryStateStore()
    elif request.param == "postgresql-pool":  # asyncio connections, as for a remote server
        store = SqlStateStore(request.getfixturevalue("postgresql_url"), inline=False)
    else:
        store = SqlStateStore(request.getfixturevalue(f"{request.param}_url"))
    yield store
    await store.close()


@pytest.fixture(name="sql_store")
async def _sql_store(sql_url: str) -> abc.AsyncIterator[SqlStateStore]:
    store = SqlStateStore(sql_url)
    yield store
    await store.close()


@pytest.fixture(name="raw_sql")
def _raw_sql(sql_url: str) -> abc.Callable[[str], None]:
    """
    Run a statement on the database behind ``sql_url``, as someone else would.
    """

    def run(statement: str) -> None:
        engine = sa.create_engine(sql_url)
        try:
            with engine.begin() as conn:
                conn.exec_driver_sql(statement)
        finally:
            engine.dispose()

    return run
