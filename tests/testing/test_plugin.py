"""
The pytest plugin: fixtures for a harness and for stores, PostgreSQL included.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import systemflow as sf
from systemflow.state import InMemoryStateStore, RunStatus, SqlStateStore
from systemflow.testing import FakeClock, FlowHarness

PLUGIN = Path(sf.__file__).parent / "testing" / "_plugin.py"
FLOW = sf.Sequence(sf.Sleep(60, name="wait"), sf.Step(str.upper, inline=True, name="up"))


class TestFixtures:
    def test_flow_harness(self, flow_harness):
        """flow_harness is a FlowHarness with its own fake clock."""
        assert (FlowHarness, FakeClock) == (type(flow_harness), type(flow_harness.clock))

    def test_memory_store(self, memory_store):
        """memory_store is an in-memory state store."""
        assert isinstance(memory_store, InMemoryStateStore)

    async def test_durable_run_on_memory(self, memory_store, flow_harness):
        """A durable run goes through the harness on memory_store."""
        result = await flow_harness.durable(FLOW, store=memory_store).run("x")

        assert ("X", RunStatus.COMPLETED) == (result.output, result.record.status)

    async def test_durable_run_on_sqlite(self, sqlite_store, flow_harness, tmp_path):
        """sqlite_store keeps its runs in a SQLite file under tmp_path."""
        result = await flow_harness.durable(FLOW, store=sqlite_store).run("x")

        assert isinstance(sqlite_store, SqlStateStore)
        assert ("X", RunStatus.COMPLETED) == (result.output, result.record.status)
        assert (tmp_path / "systemflow.sqlite3").is_file()

    async def test_durable_run_on_postgresql(self, postgresql_store, flow_harness):
        """postgresql_store is a real PostgreSQL: a durable run completes on it."""
        result = await flow_harness.durable(FLOW, store=postgresql_store).run("x")

        assert isinstance(postgresql_store, SqlStateStore)
        assert ("X", RunStatus.COMPLETED) == (result.output, result.record.status)

    def test_postgresql_url_is_a_fresh_schema(self, postgresql_url, postgresql_server):
        """postgresql_url points at the session's server, in a schema of its own."""
        assert postgresql_url.startswith("postgresql+psycopg://")
        assert "search_path%3Dt_" in postgresql_url
        assert postgresql_server.startswith("postgresql://")


class TestMissingPgserver:
    def test_fails_naming_the_install_command(self, monkeypatch):
        """Without pgserver the PostgreSQL fixtures fail, saying what to install."""
        from systemflow.testing._plugin import import_pgserver

        monkeypatch.setitem(sys.modules, "pgserver", None)

        with pytest.raises(pytest.fail.Exception, match="pip install pgserver"):
            import_pgserver()


class TestImports:
    def test_plugin_imports_no_systemflow_at_module_level(self):
        """Pytest loads the plugin before coverage starts: it imports systemflow lazily."""
        tree = ast.parse(PLUGIN.read_text())
        top = [
            node
            for node in tree.body
            if isinstance(node, ast.Import | ast.ImportFrom)
            and (
                (getattr(node, "module", None) or "").startswith(("systemflow", "sqlalchemy"))
                or any(a.name.startswith(("systemflow", "sqlalchemy")) for a in node.names)
                or (isinstance(node, ast.ImportFrom) and node.level > 0)
            )
        ]

        assert [] == top
