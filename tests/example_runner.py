"""
Load an example as a module, and run it as a program: what the example tests share.

It sits at the top of ``tests/`` (on ``sys.path`` through ``conftest.py``), so the
tests here and under ``tests/examples/`` import it alike: ``from example_runner import ...``.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping
    from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def load_example(stem: str) -> ModuleType:
    """Import ``examples/<stem>.py`` (examples are scripts, not a package)."""
    path = EXAMPLES / f"{stem}.py"
    name = f"examples_{stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # attrs and the codec resolve the module's annotations
    spec.loader.exec_module(module)
    return module


def run_example(
    stem: str, *args: str, cwd: Path = ROOT, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``examples/<stem>.py`` in a process of its own; durable ones get their own cwd."""
    return subprocess.run(
        [sys.executable, str(EXAMPLES / f"{stem}.py"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def field(result: subprocess.CompletedProcess[str], name: str) -> str:
    """The value of a ``name:  value`` line of a command's output."""
    for line in result.stdout.splitlines():
        if line.startswith(f"{name}:"):
            return line.partition(":")[2].strip()
    raise AssertionError(f"no {name!r} line in:\n{result.stdout}\n{result.stderr}")
