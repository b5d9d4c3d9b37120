"""
The systemflow command as users run it: a process per command, against a SQLite file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from systemflow.state._sql import _DEFAULT_FILE

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "diagrams"))
from mermaid_syntax import parse  # the reader the diagram tests use

ROOT = Path(__file__).resolve().parent.parent.parent
SCRIPT = Path(sys.executable).parent / "systemflow"  # the console script pip installed


def systemflow(
    *args: str, cwd: Path, script: bool = False, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    command = [str(SCRIPT)] if script else [sys.executable, "-m", "systemflow._cli"]
    environ = {k: v for k, v in os.environ.items() if k != "SYSTEMFLOW_DB"}
    return subprocess.run(
        [*command, *args],
        cwd=cwd,
        env={**environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_help(tmp_path):
    """python -m systemflow._cli --help lists the commands and exit codes."""
    result = systemflow("--help", cwd=tmp_path)

    assert 0 == result.returncode
    assert "runs" in result.stdout
    assert "graph" in result.stdout
    assert "exit status:" in result.stdout


def test_installed_script_uses_the_default_file(tmp_path):
    """The installed script, without --db, uses SqlStateStore()'s file in the working directory."""
    result = systemflow("runs", "list", cwd=tmp_path, script=True)

    assert 0 == result.returncode, result.stderr
    assert f"no runs in sqlite:///{tmp_path / _DEFAULT_FILE}\n" == result.stdout
    assert (tmp_path / _DEFAULT_FILE).is_file()


def test_signal_resume_show(setup):
    """Across processes: a signal is delivered, the run resumed to completion, then shown."""
    db = ("--db", setup.url)

    signalled = systemflow(*db, "runs", "signal", "run-paused", "go", "41", cwd=setup.dir)
    resumed = systemflow(
        *db,
        *("runs", "resume", "run-paused", "--flow", "flows.py:durable"),
        *("--services", "flows.py:services"),
        cwd=setup.dir,
    )
    shown = systemflow(*db, "runs", "show", "run-paused", "--json", cwd=setup.dir)

    assert 0 == signalled.returncode, signalled.stderr
    assert 0 == resumed.returncode, resumed.stderr
    assert "status:        completed" in resumed.stdout
    data = json.loads(shown.stdout)
    assert ("completed", 41) == (data["run"]["status"], data["run"]["output"])
    assert "signalled" in [e["kind"] for e in data["history"]]


def test_failed_resume_logs_on_stderr(setup):
    """A resume that fails exits 1; with -v the compensation log goes to stderr, not stdout."""
    db = ("--db", setup.url)
    systemflow(*db, "runs", "signal", "run-paused", "go", "500", cwd=setup.dir)

    result = systemflow(
        *db,
        *("runs", "resume", "run-paused", "-v", "--flow", "flows.py:flow", "--name", "calc"),
        *("--services", "flows.py:make_services"),
        cwd=setup.dir,
    )

    assert 1 == result.returncode
    assert "status:        failed" in result.stdout
    assert "systemflow." not in result.stdout
    assert "systemflow.compensated" in result.stderr
    assert "error: run run-paused failed: " in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["runs", "show", "nope"], 1, "error: no run with id 'nope'\n"),
        (["runs", "signal", "run-paused", "go", "{not json"], 1, "is not JSON"),
        (
            ["runs", "cancel", "run-done"],
            1,
            "run run-done is completed: there is nothing to cancel",
        ),
        (["runs", "list", "--status", "asleep"], 2, "invalid choice: 'asleep'"),
    ],
)
def test_errors(setup, args, code, message):
    """Run problems exit 1 with one line on stderr; usage errors exit 2; never a traceback."""
    result = systemflow("--db", setup.url, *args, cwd=setup.dir)

    assert code == result.returncode
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert "" == result.stdout


def test_unreachable_database(tmp_path):
    """A database that cannot be opened is one line on stderr and exit code 1."""
    url = f"sqlite:///{tmp_path / 'missing' / 'dir' / 'runs.sqlite3'}"

    result = systemflow("--db", url, "runs", "list", cwd=tmp_path)

    assert 1 == result.returncode
    assert f"error: cannot use the database {url}: unable to open database file\n" == (
        result.stderr
    )


def test_loan_example_run(tmp_path):
    """A run the loan example started is shown, and drawn paused at its two documents."""
    example = ROOT / "examples" / "loan_application.py"
    started = subprocess.run(
        [sys.executable, str(example), "start", "--applicant", "Jane Smith", "--amount", "40000"],
        cwd=tmp_path,
        env={**os.environ, "LOAN_COOLING_OFF_SECONDS": "0"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    run_id = next(
        line.split()[-1] for line in started.stdout.splitlines() if line.startswith("run id:")
    )

    shown = systemflow("runs", "show", run_id, cwd=tmp_path)
    drawn = systemflow("graph", f"{example}:build_flow", "--run", run_id, cwd=tmp_path)

    assert "waiting for:   signal document:identity, signal document:income" in shown.stdout
    paused = parse(drawn.stdout).classes["paused"]
    waits = (
        "n__intake__documents__without_address__identity",
        "n__intake__documents__without_address__income",
    )
    assert set(waits) == paused
