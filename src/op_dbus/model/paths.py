"""Spelling locations inside a document the way users read them: `a.b[0]["x.y"]`."""

from __future__ import annotations

import json
import re
from typing import Any

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
            out += f"[{json.dumps(part, ensure_ascii=False)}]"
    return out or DOCUMENT


def describe(value: Any) -> str:
    """A short rendering of a user's value for messages (`got 33`, `got "x"`, `got a list`)."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if value is None:
        return "null"
    if isinstance(value, bool | int | float | str):
        try:
            text = json.dumps(value, ensure_ascii=False, allow_nan=True)
        except ValueError:  # int too large to print
            text = "a very large number"
    else:
        text = f"a {type(value).__name__}"
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."
