import pathlib
import re

ROOT = pathlib.Path(__file__).parent.parent


def _commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    return re.findall(r"```sh\n(.+?)\n```", readme)


class TestReadme:
    def test_two_commands(self):
        """The README gives exactly two commands: run the example, run the tests."""
        example, tests = _commands()

        assert example.endswith("examples/order_processing.py")
        assert tests.endswith("python -m pytest")

    def test_ci_runs_the_readme_test_command(self):
        """.ci/run runs the README's test command verbatim, as its last command."""
        _, tests = _commands()
        ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()

        assert tests == ci[-1]

    def test_example_exists(self):
        """The example the README runs is there."""
        example, _ = _commands()
        path = example.rsplit(" ", 1)[-1]

        assert (ROOT / path).is_file()
