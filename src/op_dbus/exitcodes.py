"""Exit codes shared by every command (architecture.md)."""

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    UNEXPECTED = 1
    INVALID_INPUT = 2
    CHANGES_PENDING = 3
    ROLLED_BACK = 4
    ROLLBACK_FAILED = 5
    COMPONENT_MISSING = 6
