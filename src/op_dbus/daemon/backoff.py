"""Backoff for resources that keep drifting back: another tool fighting us must not become a
hot loop. A resource repaired `threshold` times within `window` seconds is left alone for a
delay that doubles with every further repair (up to `cap`); a quiet `window` forgives it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class _History:
    repairs: list[float] = field(default_factory=list)
    hold_until: float = 0.0


class DriftBackoff:
    def __init__(
        self,
        *,
        threshold: int = 3,
        window: float = 60.0,
        base: float = 1.0,
        cap: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold, self.window, self.base, self.cap = threshold, window, base, cap
        self._clock = clock
        self._history: dict[str, _History] = {}

    def clear(self) -> None:
        """Forget every history (an intentional apply: the admin asked for this state)."""
        self._history.clear()

    def held(self, key: str) -> float:
        """Seconds until `key` may be repaired again (0: now)."""
        entry = self._history.get(key)
        return 0.0 if entry is None else max(0.0, entry.hold_until - self._clock())

    def repaired(self, key: str) -> float:
        """Note a repair of `key`; return the hold now imposed on it (0: none)."""
        now = self._clock()
        entry = self._history.setdefault(key, _History())
        entry.repairs = [t for t in entry.repairs if now - t < self.window] + [now]
        excess = len(entry.repairs) - self.threshold
        if excess < 0:
            return 0.0
        delay = min(self.cap, self.base * 2**excess)
        entry.hold_until = now + delay
        return delay
