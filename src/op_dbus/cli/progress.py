"""A progress display for apply that appears only once the apply has run for a second.

Short applies print nothing extra; long ones (containers starting, vswitchd realising
bridges) show what the engine is doing, on stderr so `--json` output stays clean.
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console
    from rich.status import Status

    from op_dbus.engine.apply import ProgressEvent

SHOW_AFTER_SECONDS = 1.0


def describe(event: ProgressEvent) -> str:
    """One line for the status display."""
    prefix = "rolling back: " if event.rollback else ""
    if event.action is not None:
        return f"{prefix}{event.action.describe()} done"
    subject = event.plugin or "apply"
    return f"{prefix}{event.kind} {subject} {event.detail}".strip()


class ApplyProgress:
    """Context manager fed with engine ProgressEvents; a no-op when disabled."""

    def __init__(self, console: Console, *, enabled: bool = True) -> None:
        self.console = console
        self.enabled = enabled
        self.started = time.monotonic()
        self.status: Status | None = None
        self.last = "applying"

    def __enter__(self) -> ApplyProgress:
        self.started = time.monotonic()
        return self

    def update(self, event: ProgressEvent) -> None:
        if not self.enabled:
            return
        self.last = describe(event)
        if self.status is None and time.monotonic() - self.started >= SHOW_AFTER_SECONDS:
            self.status = self.console.status(self.last)
            self.status.start()
        if self.status is not None:
            self.status.update(self.last)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.status is not None:
            self.status.stop()
