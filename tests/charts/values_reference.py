"""Generates the values reference in docs/operations.md from values.yaml's comments and defaults.

    .venv/bin/python tests/charts/values_reference.py   # rewrites the section between the markers

tests/charts/test_docs.py fails when the committed table differs from what this produces.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
VALUES = REPO / "charts" / "scoregate" / "values.yaml"
SCHEMA = REPO / "charts" / "scoregate" / "values.schema.json"
DOC = REPO / "docs" / "operations.md"
BEGIN = "<!-- values-reference:begin (tests/charts/values_reference.py) -->"
END = "<!-- values-reference:end -->"
MAX_DEFAULT = 40


class _Walker:
    def __init__(self) -> None:
        self.lines = VALUES.read_text().splitlines()
        self.schema: dict[str, Any] = json.loads(SCHEMA.read_text())
        self.rows: dict[str, tuple[str, Any]] = {}

    def is_map_entry(self, path: str) -> bool:
        """Keys inside a map (resources, aliases, decision points) are data, not settings."""
        node = self.schema
        for part in path.replace("[]", ".[]").split("."):
            if part == "[]":
                node = node["items"]
            elif part in node.get("properties", {}):
                node = node["properties"][part]
            else:
                return True
        return False

    def comment_above(self, line: int) -> str:
        out: list[str] = []
        while line > 0 and self.lines[line - 1].strip().startswith("#"):
            line -= 1
            out.insert(0, self.lines[line].strip().lstrip("#").strip().removeprefix("-- "))
        return " ".join(out)

    def walk(self, node: yaml.Node, path: str) -> None:
        if isinstance(node, yaml.SequenceNode):
            for item in node.value:
                self.walk(item, f"{path}[]")
            return
        if not isinstance(node, yaml.MappingNode):
            return
        for key, value in node.value:
            here = f"{path}.{key.value}" if path else str(key.value)
            if self.is_map_entry(here):
                continue
            record = not isinstance(value, yaml.MappingNode) or not value.value
            if not record:
                first = f"{here}.{value.value[0][0].value}"
                record = self.is_map_entry(first)
            comment = self.comment_above(key.start_mark.line)
            if record and (here not in self.rows or not self.rows[here][0]):
                self.rows[here] = (comment, yaml.safe_load(yaml.serialize(value)))
            if not record:
                self.walk(value, here)


def table() -> str:
    walker = _Walker()
    walker.walk(yaml.compose(VALUES.read_text()), "")
    lines = ["| key | default | description |", "|---|---|---|"]
    for key, (comment, default) in walker.rows.items():
        shown = json.dumps(default)
        shown = "see values.yaml" if len(shown) > MAX_DEFAULT else f"`{shown}`"
        lines.append(f"| `{key}` | {shown} | {comment.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def section(doc: str) -> str:
    start, end = doc.index(BEGIN) + len(BEGIN), doc.index(END)
    return doc[start:end].strip("\n") + "\n"


def main() -> int:
    doc = DOC.read_text()
    start, end = doc.index(BEGIN) + len(BEGIN), doc.index(END)
    DOC.write_text(doc[:start] + "\n" + table() + doc[end:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
