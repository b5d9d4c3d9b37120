import ast
import pathlib

import systemflow as sf

CONTRACT = {
    "Step", "step", "Call", "RetryPolicy", "Sequence", "Conditional", "Parallel",
    "Compensatable", "Instrumented", "walk", "FlowContext", "execute", "run",
    "FlowError", "StepFailed", "CompensationFailed", "FlowPaused", "FlowVersionMismatch",
    "RunLocked", "RunNotFound", "SerializationError", "FlowTimeout", "Flow",
    "Stateful", "WaitForSignal", "Sleep", "to_mermaid",
}  # fmt: skip
STATE_CONTRACT = {"InMemoryStateStore", "SqlStateStore", "RunStatus", "RunRecord"}


class TestExports:
    def test_all_is_sorted(self):
        """__all__ is sorted, so additions are easy to review."""
        assert sorted(sf.__all__) == sf.__all__

    def test_all_is_importable(self):
        """Every name in __all__ exists on the package."""
        missing = [name for name in sf.__all__ if not hasattr(sf, name)]

        assert [] == missing

    def test_contract_names_exported(self):
        """The names DESIGN.md's contract promises are exported."""
        assert set() == CONTRACT - set(sf.__all__)

    def test_state_contract_names_exported(self):
        """systemflow.state exports the stores and records DESIGN.md names, sorted."""
        import systemflow.state

        assert set() == STATE_CONTRACT - set(systemflow.state.__all__)
        assert sorted(systemflow.state.__all__) == systemflow.state.__all__

    def test_run_status_values(self):
        """RunStatus values are the lower-case words of the contract."""
        from systemflow.state import RunStatus

        assert ["pending", "running", "paused", "completed", "failed", "cancelled"] == [
            s.value for s in RunStatus
        ]

    def test_public_home_in_module(self):
        """Exported classes say systemflow, not the private module, in tracebacks."""
        wrong = [
            name
            for name in sf.__all__
            if isinstance(getattr(sf, name), type) and getattr(sf, name).__module__ != "systemflow"
        ]

        assert [] == wrong

    def test_errors_share_one_root(self):
        """Every exported error subclasses FlowError."""
        errors = [getattr(sf, n) for n in sf.__all__ if n.endswith(("Error", "Failed"))]
        errors += [sf.FlowPaused, sf.FlowVersionMismatch, sf.RunLocked, sf.RunNotFound]

        assert all(issubclass(e, sf.FlowError) for e in errors)

    def test_builtin_second_bases(self):
        """Errors a caller would catch as builtins are those builtins too."""
        assert issubclass(sf.FlowTimeout, TimeoutError)
        assert issubclass(sf.RunNotFound, LookupError)
        assert issubclass(sf.SerializationError, TypeError)

    def test_version(self):
        """__version__ comes from the package metadata."""
        assert isinstance(sf.__version__, str)
        assert sf.__version__


PACKAGE = pathlib.Path(sf.__file__).parent


def _imports(package_dir: pathlib.Path) -> dict[str, set[str]]:
    """Map each module of a package to the absolute names it imports (local imports too)."""
    found: dict[str, set[str]] = {}
    for path in package_dir.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        module = ".".join(parts)
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = parts[: len(parts) - node.level]
                    if path.name == "__init__.py":
                        base = parts[: len(parts) - node.level + 1]
                    names.add(".".join([*base, node.module] if node.module else base))
                else:
                    names.add(node.module or "")
        found[module] = names
    return found


class TestLayering:
    def test_core_imports_nothing_else(self):
        """The core depends on none of combinators, state, instrumentation, testing."""
        forbidden = tuple(
            f"systemflow.{p}" for p in ("combinators", "state", "instrumentation", "testing")
        )
        offenders = {
            module: sorted(n for n in names if n.startswith(forbidden))
            for module, names in _imports(PACKAGE / "_core").items()
        }

        assert {} == {m: n for m, n in offenders.items() if n}

    def test_diagrams_sit_above_the_core(self):
        """Diagrams may use the layers below them; none of those imports diagrams."""
        users = {
            module
            for package in ("_core", "combinators", "state", "instrumentation")
            for module, names in _imports(PACKAGE / package).items()
            if any(n.startswith("systemflow._diagrams") for n in names)
        }
        diagrams = set().union(*_imports(PACKAGE / "_diagrams").values())

        assert set() == users
        assert {"systemflow._core", "systemflow.combinators"} <= diagrams

    def test_layering_check_sees_relative_imports(self):
        """The import scanner resolves relative imports, so the check above can fail."""
        names = _imports(PACKAGE / "combinators")["systemflow.combinators._sequence"]

        assert "systemflow._core" in names
        assert "systemflow.combinators._node" in names

    def test_combinators_never_import_sqlalchemy(self):
        """Combinators never talk to a database."""
        offenders = {
            module: sorted(n for n in names if n.startswith("sqlalchemy"))
            for module, names in _imports(PACKAGE / "combinators").items()
        }

        assert {} == {m: n for m, n in offenders.items() if n}


def test_state_public_home():
    """systemflow.state's classes say systemflow.state (Stateful and Worker: systemflow)."""
    import systemflow.state

    homes = {name: getattr(systemflow.state, name).__module__ for name in systemflow.state.__all__}
    top = {"Stateful", "Worker"}  # exported by systemflow too: their home is there

    assert {"systemflow.state"} == {h for n, h in homes.items() if n not in top}
    assert {"systemflow"} == {homes[n] for n in top}
