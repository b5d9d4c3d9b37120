"""
The systemflow command in-process: main(argv) with captured output.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import structlog

from systemflow._cli import main

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "diagrams"))
from mermaid_syntax import parse  # the reader the diagram tests use


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


class TestRunsList:
    def test_table(self, setup, capsys):
        """runs list prints one line per run: id, name, status, time, path."""
        code, out, _ = run(capsys, "--db", setup.url, "runs", "list")

        header, *rows = out.splitlines()
        assert 0 == code
        assert header.split() == ["ID", "NAME", "STATUS", "UPDATED", "PATH"]
        assert {("run-done", "calc", "completed"), ("run-paused", "calc", "paused")} == {
            tuple(row.split()[:3]) for row in rows
        }
        assert any(row.endswith(" go") for row in rows)

    def test_filters_and_json(self, setup, capsys):
        """--status and --name filter; --json prints the records as data."""
        code, out, _ = run(
            capsys, "runs", "list", "--db", setup.url, "--status", "paused", "--json"
        )
        _, none, _ = run(capsys, "runs", "list", "--db", setup.url, "--name", "other")

        [record] = json.loads(out)
        assert 0 == code
        assert ("run-paused", "paused", 3, ["go"]) == (
            record["id"],
            record["status"],
            record["input"],
            record["current_path"],
        )
        assert f"no runs in {setup.url}\n" == none

    def test_database_from_environment(self, setup, capsys, monkeypatch):
        """Without --db, $SYSTEMFLOW_DB names the database."""
        monkeypatch.setenv("SYSTEMFLOW_DB", setup.url)

        code, out, _ = run(capsys, "runs", "list", "--json")

        assert 0 == code
        assert 2 == len(json.loads(out))


class TestRunsShow:
    def test_paused_run(self, setup, capsys):
        """runs show prints status, current path, what it waits for and the timeline."""
        code, out, _ = run(capsys, "--db", setup.url, "runs", "show", "run-paused")

        record, _, history = out.partition("\nhistory:\n")
        fields = dict(line.split(":", 1) for line in record.splitlines())
        assert 0 == code
        assert "paused" == fields["status"].strip()
        assert "go" == fields["current path"].strip()
        assert "signal go" == fields["waiting for"].strip()
        assert "3" == fields["input"].strip()
        events = [line.split()[2:4] for line in history.splitlines()[1:]]
        assert [["started", "input"], ["step", "double"], ["paused", "go"]] == events

    def test_completed_run_json(self, setup, capsys):
        """--json prints the record and every event, data parsed."""
        code, out, _ = run(capsys, "--db", setup.url, "runs", "show", "run-done", "--json")

        data = json.loads(out)
        assert 0 == code
        assert ("completed", 7) == (data["run"]["status"], data["run"]["output"])
        kinds = [e["kind"] for e in data["history"]]
        assert ["started", "step", "paused", "signalled", "resumed", "signal", "step"] == kinds[:7]
        assert {"kind": "signal", "path": ["go"], "data": 7} == {
            k: data["history"][5][k] for k in ("kind", "path", "data")
        }

    def test_failed_run_shows_error_and_undo(self, setup, capsys):
        """A failed run's show has its error; the timeline says what was undone."""
        run(capsys, "--db", setup.url, "runs", "signal", "run-paused", "go", "500")
        run(
            capsys,
            "--db",
            setup.url,
            "runs",
            "resume",
            "run-paused",
            "--flow",
            setup.target("durable"),
            "--services",
            setup.target("services"),
        )

        code, out, _ = run(capsys, "--db", setup.url, "runs", "show", "run-paused")

        assert 0 == code
        assert "status:        failed" in out
        assert "error:         Call 'check' at check" in out
        assert any("compensated" in line and line.endswith("undone") for line in out.splitlines())

    def test_unknown_run(self, setup, capsys):
        """An unknown run is exit code 1 and a one-line error naming it."""
        code, out, err = run(capsys, "--db", setup.url, "runs", "show", "nope")

        assert (1, "") == (code, out)
        assert "error: no run with id 'nope'\n" == err


class TestRunsSignalResumeCancel:
    @pytest.mark.parametrize(
        ("argv", "message"),
        [
            ("go 'forty' --flow {flows}:durable", "fits no wait for it: the WaitForSignal at go"),
            ("stop 1 --flow {flows}:durable", "waits for no signal 'stop' (it waits for: go)"),
            ("go 1 --flow {flows}:flow --name other", "not of 'other' (--flow)"),
            ("go 1 --name other", "--name goes with --flow"),
        ],
    )
    def test_signal_checked_by_the_flow(self, setup, capsys, argv, message):
        """With --flow a signal or payload the flow cannot take is refused, and not delivered."""
        argv = argv.replace("{flows}", setup.flows).replace("'forty'", '"forty"').split()

        code, _, err = run(capsys, "--db", setup.url, "runs", "signal", "run-paused", *argv)

        assert (1, True) == (code, message in err)
        code, out, _ = run(capsys, "--db", setup.url, "runs", "show", "run-paused", "--json")
        assert "signalled" not in [e["kind"] for e in json.loads(out)["history"]]

    def test_signal_through_the_flow(self, setup, capsys):
        """With --flow a fitting signal is delivered as without it."""
        code, out, _ = run(
            capsys,
            "--db",
            setup.url,
            "runs",
            "signal",
            "run-paused",
            "go",
            "40",
            "--flow",
            f"{setup.flows}:durable",
        )

        assert (0, "signal go delivered to run run-paused\n") == (code, out)

    def test_signal_then_resume(self, setup, capsys):
        """A signal is delivered; resume carries the run on to completion."""
        code, out, _ = run(capsys, "--db", setup.url, "runs", "signal", "run-paused", "go", "40")
        resumed = run(
            capsys,
            *("--db", setup.url, "runs", "resume", "run-paused"),
            *("--flow", setup.target("make_flow"), "--services", setup.target("make_services")),
        )

        assert (0, "signal go delivered to run run-paused\n") == (code, out)
        assert 0 == resumed[0]
        assert "status:        completed" in resumed[1]
        assert "output:        40" in resumed[1]

    def test_resume_that_fails(self, setup, capsys):
        """A resumed run that fails is exit code 1, with its error on stderr."""
        run(capsys, "--db", setup.url, "runs", "signal", "run-paused", "go", "500")

        code, out, err = run(
            capsys,
            *("--db", setup.url, "runs", "resume", "run-paused", "--flow", setup.target("flow")),
            *("--name", "calc", "--services", setup.target("services")),
        )

        assert 1 == code
        assert "status:        failed" in out
        assert err.startswith("error: run run-paused failed: Call 'check' at check")
        assert "500 is over 100" in err

    def test_resume_keeps_waiting(self, setup, capsys):
        """Resuming without the signal leaves the run paused (exit code 0)."""
        code, out, _ = run(
            capsys,
            "--db",
            setup.url,
            "runs",
            "resume",
            "run-paused",
            "--flow",
            setup.flows + ":durable",
        )

        assert 0 == code
        assert "status:        paused" in out
        assert "waiting for:   signal go" in out

    @pytest.mark.parametrize(
        ("argv", "message"),
        [
            ("runs resume run-done --flow {flows}:flow", "completed: there is nothing to resume"),
            ("runs cancel run-done", "run run-done is completed: there is nothing to cancel"),
            ("runs resume run-paused --flow {flows}:flow --name other", "not of 'other' (--flow)"),
            ("runs resume run-paused --flow {flows}:durable --name x", "but --name says 'x'"),
            ("runs resume run-paused --flow {flows}:not_a_flow", "is a int, not a flow"),
            ("runs resume run-paused --flow {flows}:broken", "RuntimeError: no flow today"),
            ("runs resume run-paused --flow {flows}:make_flow_async", "an async function"),
            ("runs resume run-paused --flow {flows}:missing", "no attribute missing (named in"),
            ("runs resume run-paused --flow {dir}/nothing.py:flow", "no Python file"),
            ("runs resume run-paused --flow no_such_module:flow", "cannot import no_such_module"),
            ("runs resume run-paused --flow {flows}:flow --services {flows}:not_a_flow", "mapping"),
            ("runs signal run-paused go {oops", "the payload of signal 'go' is not JSON"),
            ("runs signal run-done go 1", "run-done"),
            ("graph {flows}:durable --run nope", "no run with id 'nope'"),
        ],
    )
    def test_run_and_flow_problems(self, setup, capsys, argv, message):
        """Problems with the run or the flow are exit code 1 and one line on stderr."""
        argv = argv.replace("{flows}", setup.flows).replace("{dir}", str(setup.dir)).split()

        code, _, err = run(capsys, "--db", setup.url, *argv)

        assert 1 == code
        assert message in err
        assert err.startswith("error: ")
        assert 1 == err.count("\n")

    def test_cancel(self, setup, capsys):
        """A paused run can be cancelled; it is then over."""
        code, out, _ = run(capsys, "--db", setup.url, "runs", "cancel", "run-paused")
        _, shown, _ = run(capsys, "--db", setup.url, "runs", "show", "run-paused", "--json")

        assert (0, "run run-paused cancelled\n") == (code, out)
        assert "cancelled" == json.loads(shown)["run"]["status"]

    def test_version_change(self, setup, capsys):
        """A flow that changed is refused, and the option to accept it is named."""
        (setup.dir / "changed.py").write_text(
            "import systemflow as sf\n"
            "flow = sf.Compensatable(sf.WaitForSignal('go', name='go'), name='calc')\n"
        )
        argv = ["--db", setup.url, "runs", "resume", "run-paused", "--flow"]

        code, _, err = run(capsys, *argv, f"{setup.dir / 'changed.py'}:flow")
        accepted = run(capsys, *argv, f"{setup.dir / 'changed.py'}:flow", "--accept-version-change")

        assert 1 == code
        assert "was started with flow version" in err
        assert "--accept-version-change" in err
        assert 0 == accepted[0]


class TestGraph:
    def test_prints_the_diagram(self, setup, capsys):
        """graph prints the flow's Mermaid diagram, no database needed."""
        code, out, _ = run(
            capsys,
            "--db",
            "sqlite:////nonexistent/x.db",
            "graph",
            setup.target("flow"),
            "--direction",
            "LR",
        )

        diagram = parse(out)
        assert 0 == code
        assert "LR" == diagram.direction
        assert "↩ calc: compensatable (undone on failure)" in diagram.subgraphs["n"][0]
        assert {} == diagram.classes

    def test_coloured_by_a_run(self, setup, capsys):
        """With --run, the nodes are coloured by that run of the database."""
        code, out, _ = run(
            capsys, "--db", setup.url, "graph", setup.target("durable"), "--run", "run-paused"
        )

        diagram = parse(out)
        assert 0 == code
        assert {"n__go"} == diagram.classes["paused"]
        assert {"n__double"} == diagram.classes["completed"]

    def test_module_on_the_working_directory(self, setup, capsys, monkeypatch):
        """MODULE may be a module name, found in the working directory; ATTR may be dotted."""
        (setup.dir / "cli_wd_flows.py").write_text(
            "import systemflow as sf\nclass Holder:\n    flow = sf.Step(abs, name='absolute')\n"
        )
        monkeypatch.chdir(setup.dir)
        monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in {"", str(setup.dir)}])

        code, out, _ = run(capsys, "graph", "cli_wd_flows:Holder.flow")

        assert 0 == code
        assert "absolute\n(abs)" == parse(out).nodes["n"].text

    def test_run_of_another_flow(self, setup, capsys):
        """A run of another Stateful name cannot colour this one."""
        (setup.dir / "other.py").write_text(
            "import systemflow as sf\n"
            "from systemflow.state import InMemoryStateStore\n"
            "flow = sf.Stateful(sf.Step(abs), store=InMemoryStateStore(), name='other')\n"
        )

        code, _, err = run(
            capsys,
            "--db",
            setup.url,
            "graph",
            f"{setup.dir / 'other.py'}:flow",
            "--run",
            "run-paused",
        )

        assert 1 == code
        assert "error: run run-paused is a run of 'calc', not of 'other'\n" == err


class TestUsage:
    @pytest.mark.parametrize(
        "argv",
        [
            [],
            ["runs"],
            ["runs", "list", "--status", "sleeping"],
            ["runs", "list", "--limit", "0"],
            ["runs", "resume", "run-paused"],
            ["graph", "no-colon"],
            ["graph", "module:not an attr"],
        ],
    )
    def test_usage_errors(self, setup, capsys, argv):
        """A wrong command line is exit code 2, with argparse's usage."""
        code, out, err = run(capsys, *argv)

        assert (2, "") == (code, out)
        assert "usage: systemflow" in err

    def test_help(self, capsys):
        """--help prints the commands and the exit codes."""
        code, out, _ = run(capsys, "--help")

        assert 0 == code
        assert "runs" in out
        assert "graph" in out
        assert "exit status:" in out

    def test_database_url_of_another_kind(self, capsys):
        """A --db URL SqlStateStore does not take is a usage error."""
        code, _, err = run(capsys, "--db", "mysql://host/db", "runs", "list")

        assert 2 == code
        assert "systemflow: error: --db: SqlStateStore needs a sqlite:/// or postgresql" in err

    @pytest.mark.parametrize(
        ("url", "reason"),
        [
            ("sqlite:////nonexistent/dir/runs.sqlite3", "unable to open database file"),
            ("postgresql+psycopg://nobody:secret@127.0.0.1:1/db", "Connection refused"),
        ],
    )
    def test_unreachable_database(self, capsys, url, reason):
        """A database that cannot be reached is one line naming it (no password), exit code 1."""
        code, _, err = run(capsys, "--db", url, "runs", "list")

        assert 1 == code
        assert err.startswith(f"error: cannot use the database {url.replace('secret', '***')}: ")
        assert reason in err
        assert 1 == err.count("\n")


def test_logging_configuration_is_restored(setup, capsys):
    """main() sends logs to stderr while it runs, and leaves structlog as it found it."""
    before = structlog.get_config()

    run(capsys, "--db", setup.url, "runs", "list")

    assert before == structlog.get_config()
