"""
The docs' examples run and print what the docs say they print.

Every ```python block of a page (``docs/**/*.md``) runs in order in one namespace; a
```text block right after it is its expected output (``...`` matches anything, like
doctest's ELLIPSIS). A block preceded by ``<!-- fresh process -->`` runs in a process of
its own (it sets process-wide things, like OpenTelemetry providers). Only fences at the
start of a line count; ``::: module`` lines (the API reference) are not code.

The site itself builds with ``mkdocs build --strict``: no broken link, no docstring that
mkdocstrings cannot read.
"""

from __future__ import annotations

import contextlib
import io
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).parent.parent
DOCS = ROOT / "docs"
FENCE = re.compile(r"^```(\w*)\s*$")


def _blocks(text: str) -> list[tuple[str, int, str, int]]:
    """(language, first code line, code, fence line index) of every fenced block."""
    lines = text.splitlines()
    found = []
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if match and match.group(1):
            j = i + 1
            while not lines[j].startswith("```"):
                j += 1
            found.append((match.group(1), i + 2, "\n".join(lines[i + 1 : j]) + "\n", i))
            i = j + 1
        else:
            i += 1
    return found


def _matches(expected: str, got: str) -> bool:
    pattern = ".*?".join(re.escape(part) for part in expected.split("..."))
    return re.fullmatch(pattern, got, re.DOTALL) is not None


def _run_page(path: pathlib.Path) -> list[str]:
    """Run one page's examples; return what went wrong."""
    text = path.read_text()
    lines = text.splitlines()
    blocks = _blocks(text)
    namespace: dict[str, object] = {"__name__": "__main__"}
    failures = []
    for k, (lang, lineno, code, fence_at) in enumerate(blocks):
        if lang != "python":
            continue
        before = [line for line in lines[:fence_at] if line.strip()]
        if before and before[-1].strip() == "<!-- fresh process -->":
            result = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, check=False
            )
            if result.returncode:
                failures.append(f"{path.name}:{lineno} failed:\n{result.stderr}")
            continue
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                exec(compile(code, f"{path.name}:{lineno}", "exec"), namespace)  # noqa: S102
        except Exception as exc:
            failures.append(f"{path.name}:{lineno} raised {type(exc).__name__}: {exc}")
            continue
        if k + 1 < len(blocks) and blocks[k + 1][0] == "text":
            end = lineno + code.count("\n")
            between = lines[end : blocks[k + 1][3]]
            if all(not line.strip() for line in between):
                expected = blocks[k + 1][2].rstrip()
                if not _matches(expected, out.getvalue().rstrip()):
                    failures.append(
                        f"{path.name}:{lineno} printed:\n{out.getvalue()}\nexpected:\n{expected}"
                    )
    return failures


PAGES = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.glob("**/*.md"))


@pytest.mark.parametrize("page", PAGES)
def test_page_examples_run(page):
    """Each page's Python examples run, and print the output shown under them."""
    # A process per page: pages configure process-wide things (OpenTelemetry, structlog).
    result = subprocess.run(
        [sys.executable, __file__, str(DOCS / page)], capture_output=True, text=True, check=False
    )

    assert "" == result.stdout
    assert 0 == result.returncode, result.stderr


def test_pages_have_examples():
    """The check above has something to check: the tutorial's examples are found."""
    blocks = _blocks((DOCS / "tutorial.md").read_text())

    assert sum(lang == "python" for lang, *_ in blocks) >= 10


def test_pages_below_docs_are_checked():
    """The per-combinator pages are among the pages checked, and the reference page is too."""
    assert {"combinators/parallel.md", "combinators/wait.md", "reference.md"} <= set(PAGES)


def test_reference_page_has_no_code_to_run():
    """The API reference's ``:::`` lines are directives, not fenced examples."""
    text = (DOCS / "reference.md").read_text()

    assert "::: systemflow.state" in text
    assert [] == _blocks(text)


def test_site_builds_strict(tmp_path):
    """``mkdocs build --strict`` builds the site: every link resolves, every docstring reads."""
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        check=False,
    )

    assert 0 == result.returncode, result.stderr
    assert (tmp_path / "reference" / "index.html").is_file()


def test_a_wrong_example_fails(tmp_path):
    """A page whose example prints something else than it says is reported."""
    page = tmp_path / "bad.md"
    page.write_text("```python\nprint(1 + 1)\n```\n\n```text\n3\n```\n")

    assert 1 == len(_run_page(page))


if __name__ == "__main__":
    problems = _run_page(pathlib.Path(sys.argv[1]))
    print("\n\n".join(problems), file=sys.stderr)  # noqa: T201
    sys.exit(1 if problems else 0)
