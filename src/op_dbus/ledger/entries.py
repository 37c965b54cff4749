"""Canonical JSON for ledger entries: the hashed bytes must not depend on who wrote them."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
"""UTC with microseconds: entries' times sort as text, so `ledger log --since` compares."""


def now_text() -> str:
    """Now, as entries (and the daemon's reports) write a time."""
    return datetime.now(UTC).strftime(TIME_FORMAT)


def canonical(value: Any) -> bytes:
    """Sorted keys, no insignificant whitespace, UTF-8; NaN and infinities are refused."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def digest(value: Any) -> str | None:
    """SHA-256 (hex) of the canonical form; None stays None so 'absent' is visible as such."""
    if value is None:
        return None
    return hashlib.sha256(canonical(value)).hexdigest()
