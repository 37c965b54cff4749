"""OVSDB's framing: a byte stream of concatenated JSON values, with no delimiter.

Our own decoder rather than the PyPI `ovs` IDL's: the standard library's `json` (C) parses
OVSDB replies 23x faster than `ovs`'s pure-Python parser on this machine kind (architecture.md).
"""

from __future__ import annotations

import codecs
import gc
import json
import re
from typing import Any

# A JSON string (possibly with escapes), or a lone quote when the string is not complete yet,
# or one bracket. Everything else between them is irrelevant for finding where a value ends.
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|"|[{}\[\]]')
# Where one top-level value ends and the next begins: JSON allows a closing bracket followed
# by an opening one nowhere else, except inside strings (a false hit costs one extra attempt).
_BOUNDARY = re.compile(r"[}\]]\s*[{\[]")
# Past this size an unfinished value is tried anyway (then at every doubling), so a server
# sending endless garbage that never ends in a bracket is caught without quadratic retries.
_BLIND_TRY_SIZE = 1 << 20


class JsonStreamDecoder:
    """Split a byte stream of concatenated JSON objects (no delimiter) into decoded values.

    OVSDB frames nothing: a message ends where its top-level object closes. Scanning for that
    end in Python costs ~25 ms for a 500 kB reply, ten times what the C `json` decoder needs to
    parse it, so the decoder itself is the scanner. It is tried only when a value may have just
    closed: the text ends in a closing bracket, or the new bytes hold one followed by an opening
    bracket (JSON allows that pair only between values). A failed try is told apart from bad
    JSON by where the parse stopped.
    """

    def __init__(self) -> None:
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self._pieces: list[str] = []  # the unconsumed text, joined only for a try
        self._size = 0
        self._last = ""  # the last non-whitespace character received
        self._tried_at = 0  # text size at the last try that found the value unfinished
        self._json = json.JSONDecoder()

    def feed(self, data: bytes) -> list[Any]:
        """Add bytes; return every value completed by them (raises ValueError on bad JSON)."""
        text = self._utf8.decode(data)
        tail = text.rstrip()
        if not tail:  # whitespace closes nothing; between values it is not even kept
            if self._pieces:
                self._pieces.append(text)
                self._size += len(text)
            return []
        if not self._pieces:
            self._check_start(text.lstrip())
        may_have_closed = tail[-1] in "}]" or _BOUNDARY.search(self._last + text) is not None
        self._last = tail[-1]
        self._pieces.append(text)
        self._size += len(text)
        if not (may_have_closed or self._blind_try_due()):
            return []
        buf = "".join(self._pieces).lstrip()
        values: list[Any] = []
        while buf:
            self._check_start(buf)
            value, end = self._try_decode(buf)
            if end is None:
                break
            values.append(value)
            buf = buf[end:].lstrip()
        self._pieces, self._size = ([buf], len(buf)) if buf else ([], 0)
        self._tried_at = len(buf) if buf else 0
        return values

    def _blind_try_due(self) -> bool:
        return self._size >= max(2 * self._tried_at, _BLIND_TRY_SIZE)

    @staticmethod
    def _check_start(buf: str) -> None:
        if buf and buf[0] not in "{[":
            raise ValueError(f"expected a JSON object, got {buf[:20]!r}")

    def _try_decode(self, buf: str) -> tuple[Any, int | None]:
        """The first value and where it ends, or (None, None) while it is unfinished."""
        collecting = gc.isenabled()
        gc.disable()  # a big reply is ~100k new containers, none cyclic: the collector's walks
        try:  # over them would double the parse time
            return self._json.raw_decode(buf)
        except json.JSONDecodeError as exc:
            if exc.pos >= len(buf) or exc.msg.startswith("Unterminated string"):
                return None, None
            if _first_value_closes(buf):
                raise  # JSONDecodeError is a ValueError
            return None, None  # a number, literal or \\u escape cut short
        finally:
            if collecting:
                gc.enable()


def _first_value_closes(buf: str) -> bool:
    """Whether the brackets of the value at the start of `buf` balance (strings skipped)."""
    depth = 0
    for match in _TOKEN.finditer(buf):
        token = match.group()
        if token == '"':  # a string that has not fully arrived yet
            return False
        if token in "{[":
            depth += 1
        elif token in "}]":
            depth -= 1
            if depth == 0:
                return True
    return False
