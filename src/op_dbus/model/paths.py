"""Spelling locations inside a document the way users read them: `a.b[0]["x.y"]`."""

from __future__ import annotations

import json
import re
from typing import Any

from op_dbus.model.text import escaped

Loc = tuple[str | int, ...]

DOCUMENT = "<document>"
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_MAX_SHOWN = 60


def format_path(loc: Loc) -> str:
    """Lists index as `[i]`, keys as `.key`; keys that are not plain words are quoted."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.fullmatch(part):
            out += f".{part}" if out else part
        else:
            out += f"[{quoted(part)}]"
    return out or DOCUMENT


def quoted(text: str) -> str:
    """`text` as a JSON string, with every character that does not print as itself escaped
    (controls, bidi overrides, zero-width and other invisible ones): what a user reads is
    what the document holds, never reordered or hidden text."""
    return "".join(escaped(c) for c in json.dumps(text, ensure_ascii=False))


def describe(value: Any) -> str:
    """A short rendering of a user's value for messages (`got 33`, `got "x"`, `got a list`)."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if value is None:
        return "null"
    if isinstance(value, str):
        text = quoted(value)
    elif isinstance(value, bool | int | float):
        try:
            text = json.dumps(value, ensure_ascii=False, allow_nan=True)
        except ValueError:  # int too large to print
            text = "a very large number"
    else:
        text = f"a {type(value).__name__}"
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."
