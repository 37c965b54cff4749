"""Bounds on what callers may ask of the daemon, shared with the CLI, which checks first."""

from __future__ import annotations

MIN_TRY_SECONDS = 1
MAX_TRY_SECONDS = 24 * 3600
"""A try's confirmation window: at least a second, at most a day (a longer one is a mistake,
and a window of 0 s would roll back before anyone could confirm)."""


def try_seconds_problem(seconds: int) -> str | None:
    """Why `seconds` is not a valid confirmation window, or None."""
    if MIN_TRY_SECONDS <= seconds <= MAX_TRY_SECONDS:
        return None
    return (
        f"the confirmation window must be {MIN_TRY_SECONDS} to {MAX_TRY_SECONDS} s (24 h), "
        f"got {seconds}"
    )
