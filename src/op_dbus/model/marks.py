"""Where in the user's text an error's path points: line and column, for YAML and JSON alike.

Only on the error path: the document was already bounded and pre-scanned, and composing it
builds YAML nodes (no objects), so this is safe on hostile input. A path that goes past what
the document has (a missing field) points at the deepest part that exists.
"""

from __future__ import annotations

import json
import re

import yaml

from op_dbus.model.errors import FieldError
from op_dbus.model.paths import DOCUMENT

_PART = re.compile(r'\.?([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+)\]|\[("(?:[^"\\]|\\.)*")\]')


def path_parts(path: str) -> list[str | int] | None:
    """`a.b[0]["x.y"]` back into ["a", "b", 0, "x.y"] (None: not a path)."""
    parts: list[str | int] = []
    position = 0
    while position < len(path):
        match = _PART.match(path, position)
        if match is None:
            return None
        word, index, quoted = match.groups()
        if quoted is not None:
            try:  # a key with invisible characters is shown escaped in a non-JSON way
                word = json.loads(quoted)
            except json.JSONDecodeError:
                return None
        parts.append(word if word is not None else int(index))
        position = match.end()
    return parts


def _node_at(root: yaml.Node, parts: list[str | int]) -> yaml.Node:
    node = root
    for part in parts:
        child = None
        if isinstance(node, yaml.MappingNode):
            child = next((v for k, v in node.value if getattr(k, "value", None) == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            child = node.value[part] if part < len(node.value) else None
        if child is None:
            return node
        node = child
    return node


def with_marks(data: str | bytes, errors: list[FieldError]) -> list[FieldError]:
    """`errors` with the line and column each path points at, where the text has it."""
    try:
        root = yaml.compose(data, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return errors
    if root is None:
        return errors
    marked = []
    for error in errors:
        parts = None if error.path == DOCUMENT else path_parts(error.path)
        if parts is None or error.line is not None:
            marked.append(error)
            continue
        mark = _node_at(root, parts).start_mark
        marked.append(FieldError(error.path, error.message, mark.line + 1, mark.column + 1))
    return marked
