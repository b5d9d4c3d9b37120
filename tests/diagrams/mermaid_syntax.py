"""
A reader of the Mermaid subset to_mermaid writes: it refuses any other line.

Tests check diagrams through it, by structure, not by comparing whole texts.
"""

from __future__ import annotations

import re

import attrs

ID = r"[A-Za-z0-9_]+"
SHAPES = {  # opening bracket: (closing bracket, shape name); longest first
    "((": ("))", "circle"),
    "([": ("])", "stadium"),
    "[[": ("]]", "subroutine"),
    "{{": ("}}", "hexagon"),
    "[": ("]", "box"),
    "{": ("}", "decision"),
}
NODE = re.compile(
    rf"^({ID})(\(\(|\(\[|\[\[|\{{\{{|\[|\{{)\"([^\"]*)\"(\)\)|\]\)|\]\]|\}}\}}|\]|\}})$"
)
EDGE = re.compile(rf'^({ID}) (-->|-\.->)(?:\|"([^"]*)"\|)? ({ID})$')
SUBGRAPH = re.compile(rf'^subgraph ({ID}) \["([^"]*)"\]$')
CLASSDEF = re.compile(rf"^classDef ({ID}) (\S+)$")
CLASS = re.compile(rf"^class ({ID}(?:,{ID})*) ({ID})$")
LINKSTYLE = re.compile(r"^linkStyle (\d+(?:,\d+)*) (\S+)$")


def unescape(text: str) -> str:
    """Mermaid's reading of a label: #<code>; is that character, <br> a new line."""
    return re.sub(r"#(\d+);", lambda m: chr(int(m.group(1))), text.replace("<br>", "\n"))


@attrs.define
class Node:
    shape: str
    text: str
    subgraphs: tuple[str, ...]  # the boxes it is in, outermost first


@attrs.define
class Edge:
    source: str
    target: str
    label: str | None
    dashed: bool


@attrs.define
class Diagram:
    direction: str
    nodes: dict[str, Node] = attrs.field(factory=dict)
    edges: list[Edge] = attrs.field(factory=list)
    subgraphs: dict[str, tuple[str, tuple[str, ...]]] = attrs.field(factory=dict)  # title, parents
    class_defs: dict[str, str] = attrs.field(factory=dict)
    classes: dict[str, set[str]] = attrs.field(factory=dict)
    link_styles: list[int] = attrs.field(factory=list)

    def by_text(self, text: str) -> str:
        """The one node whose text contains ``text``."""
        found = [i for i, n in self.nodes.items() if text in n.text]
        assert 1 == len(found), f"{text!r} is in {found}"
        return found[0]

    def out(self, ident: str, *, dashed: bool = False) -> list[Edge]:
        return [e for e in self.edges if e.source == ident and e.dashed == dashed]

    def into(self, ident: str) -> list[Edge]:
        return [e for e in self.edges if e.target == ident and not e.dashed]

    def reachable(self, start: str, *, backwards: bool = False) -> set[str]:
        """Nodes reachable from ``start`` over solid edges."""
        seen, todo = {start}, [start]
        while todo:
            here = todo.pop()
            for e in self.edges:
                a, b = (e.target, e.source) if backwards else (e.source, e.target)
                if a == here and not e.dashed and b not in seen:
                    seen.add(b)
                    todo.append(b)
        return seen

    def state_of(self, ident: str) -> str | None:
        states = [name for name, ids in self.classes.items() if ident in ids]
        assert len(states) <= 1, f"{ident} has classes {states}"
        return states[0] if states else None


def parse(text: str) -> Diagram:
    """Read a diagram, checking that it is well formed; AssertionError says where not."""
    assert text.endswith("\n")
    first, *lines = text.splitlines()
    match = re.fullmatch(r"flowchart (TD|TB|BT|LR|RL)", first)
    assert match, first
    diagram = Diagram(match.group(1))
    stack: list[str] = []
    for number, raw in enumerate(lines, start=2):
        line = raw.strip()
        where = f"line {number}: {raw!r}"
        depth = len(stack) if line == "end" else len(stack) + 1
        assert raw == "    " * depth + line, f"indentation, {where}"
        if m := SUBGRAPH.match(line):
            ident = m.group(1)
            assert ident not in diagram.subgraphs, f"subgraph declared twice, {where}"
            diagram.subgraphs[ident] = (unescape(m.group(2)), tuple(stack))
            stack.append(ident)
        elif line == "end":
            assert stack, f"end without subgraph, {where}"
            stack.pop()
        elif m := NODE.match(line):
            ident, opening, label, closing = m.groups()
            assert SHAPES[opening][0] == closing, f"brackets do not match, {where}"
            assert ident not in diagram.nodes, f"node declared twice, {where}"
            diagram.nodes[ident] = Node(SHAPES[opening][1], unescape(label), tuple(stack))
        elif m := EDGE.match(line):
            source, arrow, label, target = m.groups()
            assert not stack, f"an edge in a subgraph pulls its ends into it, {where}"
            for end in (source, target):
                assert end in diagram.nodes, f"edge to a node not declared yet, {where}"
            diagram.edges.append(
                Edge(source, target, None if label is None else unescape(label), arrow == "-.->")
            )
        elif m := CLASSDEF.match(line):
            diagram.class_defs[m.group(1)] = m.group(2)
        elif m := CLASS.match(line):
            ids, name = m.group(1).split(","), m.group(2)
            assert name in diagram.class_defs, f"class not defined, {where}"
            assert all(i in diagram.nodes for i in ids), f"class of unknown node, {where}"
            diagram.classes.setdefault(name, set()).update(ids)
        elif m := LINKSTYLE.match(line):
            indices = [int(i) for i in m.group(1).split(",")]
            assert all(i < len(diagram.edges) for i in indices), f"no such edge, {where}"
            diagram.link_styles += indices
        else:
            raise AssertionError(f"not Mermaid that to_mermaid writes, {where}")
    assert not stack, f"subgraphs left open: {stack}"
    assert not set(diagram.nodes) & set(diagram.subgraphs), "a node and a subgraph share an id"
    assert "end" not in diagram.nodes
    return diagram
