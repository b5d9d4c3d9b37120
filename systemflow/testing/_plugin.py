"""
The systemflow pytest plugin (registered through the ``pytest11`` entry point).

Fixtures:

- ``flow_harness``: a ``FlowHarness`` with its own fake clock.
- ``memory_store``: an ``InMemoryStateStore``.
- ``sqlite_store``: a ``SqlStateStore`` on a SQLite file in the test's ``tmp_path``.
- ``postgresql_server``: (session) the libpq URI of a PostgreSQL server that
  ``pgserver`` starts once per test session, in its temporary directory.
- ``postgresql_url``: a SQLAlchemy URL to a fresh schema of that server,
  dropped after the test.
- ``postgresql_store``: a ``SqlStateStore`` on that schema.

Pytest imports this module before coverage starts, so it imports nothing from
systemflow (or SQLAlchemy) at module level: only inside the fixtures.
"""

# The fixtures import what they need (see above): pytest loads this module early.
# ruff: noqa: PLC0415

from __future__ import annotations

import uuid
import warnings
from typing import TYPE_CHECKING, Any, TypeVar, cast

import pytest

F = TypeVar("F", bound="abc.Callable[..., Any]")


def _async_fixture(fn: F) -> F:
    # pytest-asyncio's decorator, so the fixture works in its strict mode too.
    try:
        import pytest_asyncio
    except ImportError:  # pragma: no cover -- without pytest-asyncio, no async tests anyway
        return cast("F", pytest.fixture(fn))
    return cast("F", pytest_asyncio.fixture(fn))


if TYPE_CHECKING:
    from collections import abc
    from pathlib import Path

    from systemflow.state import InMemoryStateStore, SqlStateStore
    from systemflow.testing import FlowHarness


@pytest.fixture
def flow_harness() -> FlowHarness:
    """
    A ``FlowHarness``: run flows on mocks, under a fake clock (``flow_harness.clock``).
    """
    from systemflow.testing import FlowHarness

    return FlowHarness()


@pytest.fixture
def memory_store() -> InMemoryStateStore:
    """
    An empty ``InMemoryStateStore``.
    """
    from systemflow.state import InMemoryStateStore

    return InMemoryStateStore()


@_async_fixture
async def sqlite_store(tmp_path: Path) -> abc.AsyncIterator[SqlStateStore]:
    """
    A ``SqlStateStore`` on a new SQLite file under ``tmp_path``; closed after the test.
    """
    from systemflow.state import SqlStateStore

    store = SqlStateStore(f"sqlite:///{tmp_path / 'systemflow.sqlite3'}")
    yield store
    await store.close()


def import_pgserver() -> Any:
    """
    Import ``pgserver``, or fail the test saying how to install it.
    """
    try:
        with warnings.catch_warnings():
            # platformdirs warns at import when XDG_RUNTIME_DIR is unset.
            warnings.simplefilter("ignore")
            import pgserver
    except ImportError as exc:
        msg = (
            "the PostgreSQL fixtures of systemflow need pgserver, which runs a "
            "throwaway PostgreSQL server: pip install pgserver "
            f"(or pip install 'systemflow[test]'); importing it failed: {exc}"
        )
        pytest.fail(msg, pytrace=False)
    return pgserver


@pytest.fixture(scope="session")
def postgresql_server(tmp_path_factory: pytest.TempPathFactory) -> abc.Iterator[str]:
    """
    The libpq URI of a PostgreSQL server started once per session (``pgserver``).
    """
    pgserver = import_pgserver()
    server = pgserver.get_server(tmp_path_factory.mktemp("pgdata"), cleanup_mode="stop")
    yield server.get_uri()  # postgresql://postgres:@/postgres?host=/socket/dir
    server.cleanup()


@pytest.fixture
def postgresql_url(postgresql_server: str) -> abc.Iterator[str]:
    """
    A SQLAlchemy URL for a fresh schema of the session's server, dropped after the test.
    """
    import psycopg
    import sqlalchemy as sa

    schema = f"t_{uuid.uuid4().hex}"
    with psycopg.connect(postgresql_server, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    url = sa.make_url(postgresql_server)
    # host=/dir in the query names the unix socket's directory: libpq reads it there.
    url = url.set(
        drivername="postgresql+psycopg",
        query={**url.query, "options": f"-csearch_path={schema}"},
    )
    yield url.render_as_string(hide_password=False)
    with psycopg.connect(postgresql_server, autocommit=True) as admin:
        admin.execute(f"DROP SCHEMA {schema} CASCADE")


@_async_fixture
async def postgresql_store(postgresql_url: str) -> abc.AsyncIterator[SqlStateStore]:
    """
    A ``SqlStateStore`` on a fresh schema of the session's PostgreSQL; closed after the test.
    """
    from systemflow.state import SqlStateStore

    store = SqlStateStore(postgresql_url)
    yield store
    await store.close()
