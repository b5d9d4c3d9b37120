"""
Mermaid's lexical side: node ids made from paths, and escaped label text.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from .._core import Path, Segment

ROOT_ID: Final = "n"
"""The id of the root path; every other id starts with it."""

SEPARATOR: Final = "__"
"""Between the segments of an id. An encoded segment never holds it, nor starts or ends in ``_``."""

ROLE: Final = "___"
"""Before the role of an extra node of a path (``___join``, ``___undo``): no path makes it."""

_PLAIN = re.compile(r"[A-Za-z0-9]")
_ESCAPE: Final = "Z"  # starts and ends an escaped character: Z<hex>Z


def _escape_char(char: str) -> str:
    return f"{_ESCAPE}{ord(char):x}{_ESCAPE}"


def _segment(segment: Segment) -> str:
    if isinstance(segment, int):
        return str(segment)
    out: list[str] = []
    last = len(segment) - 1
    for i, char in enumerate(segment):
        if char == "_":
            # Alone and inside the segment it stays; at an end, or next to
            # another one, it could be read as a separator.
            alone = 0 < i < last and segment[i - 1] != "_" and segment[i + 1] != "_"
            out.append(char if alone else _escape_char(char))
        elif char == _ESCAPE or not _PLAIN.fullmatch(char):
            out.append(_escape_char(char))
        else:
            out.append(char)
    if segment.isdigit():  # not a name (check_name refuses it), but never an index's id
        out[0] = _escape_char(segment[0])
    return "".join(out) or _ESCAPE * 2


def node_id(path: Path, role: str | None = None) -> str:
    """
    Return the Mermaid id of the node at ``path``, or of one of its extra nodes.

    Ids are a pure function of the path (so stable across processes), use only
    ``[A-Za-z0-9_]``, and differ for different paths: ``("intake", "credit")``
    is ``n__intake__credit``, index segments are their digits, and characters
    outside ``[A-Za-z0-9]`` (and a ``_`` that could be mistaken for a
    separator) are written ``Z<hex code>Z``. ``role`` names an extra node of
    the same path: ``node_id(p, "join")`` is ``<id>___join``.
    """
    base = SEPARATOR.join([ROOT_ID, *map(_segment, path)])
    return base if role is None else f"{base}{ROLE}{role}"


# Mermaid reads "#<decimal>;" as a character, so '#' itself must be written so
# too; quotes would end the label; '<', '>' and '&' would be taken for HTML.
_SPECIAL: Final = frozenset('"#<>&`|;\\')


def escape(text: str) -> str:
    """
    Return ``text`` for a quoted Mermaid label: special characters as ``#<code>;``.

    Line breaks become ``<br>``; other characters, unicode included, stay.
    """
    lines = text.splitlines() or [""]
    return "<br>".join(
        "".join(f"#{ord(c)};" if c in _SPECIAL or not c.isprintable() else c for c in line)
        for line in lines
    )
