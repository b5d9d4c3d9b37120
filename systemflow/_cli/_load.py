"""
Finding the user's objects named on the command line as ``MODULE:ATTR``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import sys
from collections import abc
from pathlib import Path
from typing import TYPE_CHECKING, Any, final

import attrs

if TYPE_CHECKING:
    from types import ModuleType

    from .._core import Flow


@final
class CliError(Exception):
    """
    Strictly private: a problem the command reports in one line, exit code 1.
    """


@final
@attrs.frozen
class Target:
    """
    Strictly private: ``MODULE:ATTR`` as given; ``MODULE`` may be a ``.py`` file's path.
    """

    module: str
    attr: str

    def __str__(self) -> str:
        return f"{self.module}:{self.attr}"


def target(text: str) -> Target:
    """
    Read ``MODULE:ATTR`` (an argparse type: a malformed one is a usage error).
    """
    module, _, attr = text.rpartition(":")
    if not module or not attr or not all(part.isidentifier() for part in attr.split(".")):
        msg = f"expected MODULE:ATTR, like shop.flows:checkout or flows.py:checkout, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return Target(module, attr)


def _from_file(name: str, option: str) -> ModuleType:
    path = Path(name).resolve()
    spec = importlib.util.spec_from_file_location(path.stem, path)
    if spec is None or spec.loader is None or not path.is_file():
        msg = f"no Python file {name} (named in {option})"
        raise CliError(msg)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module  # annotations and attrs classes look it up there
    spec.loader.exec_module(module)
    return module


def _import(name: str, option: str) -> ModuleType:
    # Like `python -m`, look in the working directory first: the console script
    # does not put it on sys.path.
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        if name.endswith(".py"):
            return _from_file(name, option)
        return importlib.import_module(name)
    except CliError:
        raise
    except Exception as exc:
        msg = f"cannot import {name} (named in {option}): {type(exc).__name__}: {exc}"
        raise CliError(msg) from exc


def load(where: Target, option: str) -> Any:
    """
    Import ``where``'s module and return its attribute (a dotted one too).

    Raises:
        CliError: The module cannot be imported, or has no such attribute.
    """
    value = _import(where.module, option)
    for part in where.attr.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            msg = f"{where.module} has no attribute {where.attr} (named in {option})"
            raise CliError(msg) from None
    return value


def load_as(where: Target, option: str, accepts: abc.Callable[[object], bool], what: str) -> Any:
    """
    Return what ``where`` names if ``accepts`` it, else what it returns if it is a function.

    Raises:
        CliError: It is neither ``what`` nor a function of no arguments that
            returns one, or the function fails.
    """
    value = load(where, option)
    if not accepts(value) and callable(value):
        try:
            value = value()
        except Exception as exc:
            msg = f"{where} (named in {option}) failed: {type(exc).__name__}: {exc}"
            raise CliError(msg) from exc
        if inspect.iscoroutine(value):
            value.close()  # never awaited: no warning, nothing ran
            msg = (
                f"{where} (named in {option}) is an async function: name {what}, "
                "or a plain function of no arguments that returns one"
            )
            raise CliError(msg)
    if not accepts(value):
        msg = (
            f"{where} (named in {option}) is a {type(value).__name__}, not {what} "
            "(nor a function of no arguments that returns one)"
        )
        raise CliError(msg)
    return value


def load_flow(where: Target, option: str) -> Flow[Any, Any]:
    """
    Return the flow ``where`` names: a flow object, or what a function of no arguments returns.

    Raises:
        CliError: It is neither, or the function fails.
    """
    flow: Flow[Any, Any] = load_as(where, option, _is_flow, "a flow")
    return flow


def load_services(where: Target | None) -> abc.Mapping[str, Any] | None:
    """
    Return the services ``--services`` names (a mapping, or a function returning one), if given.

    Raises:
        CliError: It is neither, or the function fails.
    """
    if where is None:
        return None
    services: abc.Mapping[str, Any] = load_as(
        where, "--services", lambda value: isinstance(value, abc.Mapping), "a mapping"
    )
    return services


def _is_flow(value: object) -> bool:
    return not isinstance(value, type) and callable(getattr(value, "execute", None))
