"""
Store fixtures: every store test runs on memory, a SQLite file and a real PostgreSQL.

PostgreSQL comes from ``pgserver`` (its binaries ship in the wheel): one server
per session in the session's temporary directory, and a fresh schema per test,
which is cheaper than a database.
"""

from __future__ import annotations

import uuid
import warnings
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
import sqlalchemy as sa

from systemflow.state._memory import InMemoryStateStore
from systemflow.state._sql import SqlStateStore

if TYPE_CHECKING:
    from collections import abc
    from pathlib import Path


@pytest.fixture(name="postgresql_uri", scope="session")
def _postgresql_uri(tmp_path_factory: pytest.TempPathFactory) -> abc.Iterator[str]:
    with warnings.catch_warnings():
        # platformdirs warns at import when XDG_RUNTIME_DIR is unset.
        warnings.simplefilter("ignore")
        import pgserver

    server = pgserver.get_server(tmp_path_factory.mktemp("pgdata"), cleanup_mode="stop")
    yield server.get_uri()  # postgresql://postgres:@/postgres?host=/socket/dir
    server.cleanup()


@pytest.fixture(name="postgresql_url")
def _postgresql_url(postgresql_uri: str) -> abc.Iterator[str]:
    """
    A SQLAlchemy URL for a fresh schema of the session's server, dropped after the test.
    """
    schema = f"t_{uuid.uuid4().hex}"
    with psycopg.connect(postgresql_uri, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    url = sa.make_url(postgresql_uri)
    # host=/dir in the query names the unix socket's directory: libpq reads it there.
    url = url.set(
        drivername="postgresql+psycopg",
        query={**url.query, "options": f"-csearch_path={schema}"},
    )
    yield url.render_as_string(hide_password=False)
    with psycopg.connect(postgresql_uri, autocommit=True) as admin:
        admin.execute(f"DROP SCHEMA {schema} CASCADE")


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


@pytest.fixture(name="store", params=["memory", "sqlite", "postgresql"])
async def _store(request: pytest.FixtureRequest) -> abc.AsyncIterator[Any]:
    if request.param == "memory":
        store: Any = InMemoryStateStore()
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
