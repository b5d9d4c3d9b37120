"""
A tiny flow module in a temporary directory, a SQLite file, and runs of the flow in it.
"""

from __future__ import annotations

import asyncio
import importlib.util
import textwrap
from typing import TYPE_CHECKING

import attrs
import pytest

from systemflow.state import SqlStateStore

if TYPE_CHECKING:
    from pathlib import Path

FLOWS = textwrap.dedent(
    """
    import systemflow as sf
    from systemflow.state import InMemoryStateStore


    def double(x: int) -> int:
        return x * 2


    def forget(x: int, out: int) -> None:
        pass


    class Limits:
        async def check(self, x: int) -> int:
            if x > 100:
                raise ValueError(f"{x} is over 100")
            return x


    flow = sf.Compensatable(
        sf.Step(double, compensate=forget, name="double"),
        sf.WaitForSignal("go", payload_type=int, name="go"),
        sf.Call("limits", "check", name="check"),
        name="calc",
    )
    durable = sf.Stateful(flow, store=InMemoryStateStore(), name="calc")
    services = {"limits": Limits()}


    def make_flow():
        return flow


    def make_services():
        return services


    def broken():
        raise RuntimeError("no flow today")


    async def make_flow_async():
        return flow


    not_a_flow = 42
    """
)


@attrs.frozen
class Setup:
    """Where the flow module is, the database URL, and the runs made."""

    dir: Path
    url: str
    paused: str  # a run waiting for the signal "go"
    completed: str

    @property
    def flows(self) -> str:
        return str(self.dir / "flows.py")

    def target(self, attr: str) -> str:
        return f"{self.flows}:{attr}"


def make_runs(tmp_path: Path) -> Setup:
    (tmp_path / "flows.py").write_text(FLOWS)
    spec = importlib.util.spec_from_file_location("cli_test_flows", tmp_path / "flows.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    url = f"sqlite:///{tmp_path / 'runs.sqlite3'}"

    async def start() -> tuple[str, str]:
        store = SqlStateStore(url)
        durable = attrs.evolve(module.durable, store=store)
        try:
            paused = await durable.start(3, run_id="run-paused", services=module.services)
            done = await durable.start(5, run_id="run-done", services=module.services)
            await store.signal(done.id, "go", 7)
            done = await durable.resume(done.id, services=module.services)
        finally:
            await store.close()
        return paused.id, done.id

    paused, completed = asyncio.run(start())
    return Setup(tmp_path, url, paused, completed)


@pytest.fixture(name="setup")
def _setup(tmp_path: Path) -> Setup:
    return make_runs(tmp_path)
