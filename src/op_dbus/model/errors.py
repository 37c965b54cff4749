"""What loading a state file reports: errors that refuse it, warnings that do not."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldError:
    """One problem in the user's document. `path` is spelled as the user wrote the document."""

    path: str
    message: str
    line: int | None = None
    """Where `path` points in the user's text (1-based), when it could be found."""
    column: int | None = None

    @property
    def place(self) -> str:
        """` (line 3, column 5)` when known, else ""."""
        return "" if self.line is None else f" (line {self.line}, column {self.column})"

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass(frozen=True)
class FieldWarning:
    """Something suspicious that does not stop the run (e.g. a bridge the file does not declare)."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class StateInputError(Exception):
    """The state input is unusable; carries every error found, not just the first."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(str(e) for e in self.errors))
