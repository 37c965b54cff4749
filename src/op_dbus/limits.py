"""Bounds every front end shares (a leaf: the CLI checks them before importing the engine)."""

TRY_MIN_SECONDS = 1
TRY_MAX_SECONDS = 24 * 3600
"""A try's confirmation window: at least a second (0 s would roll back before anyone could
confirm), at most a day (a longer one is a mistake)."""
