"""Read a state file in either shape, validate everything, and resolve the run mode.

`parse_state` and `load_state` raise only StateInputError, carrying every error found
(parser, fields, rules, mode) with its path as the user wrote the document.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import ValidationError

from op_dbus.model.documents import decode
from op_dbus.model.errors import FieldError, FieldWarning, StateInputError
from op_dbus.model.messages import field_errors
from op_dbus.model.modes import SECTIONS_BY_MODE, Mode, smallest_mode_for
from op_dbus.model.paths import DOCUMENT, Loc, describe, format_path
from op_dbus.model.rules import rule_errors
from op_dbus.model.state import SECTION_ORDER, Plugins, StateFile

Shape = Literal["plugins", "stateConfig"]


@dataclass(frozen=True)
class LoadedState:
    """A valid state, the mode it runs in, and which of the two shapes the user wrote."""

    state: StateFile
    mode: Mode
    shape: Shape
    warnings: list[FieldWarning]


def load_state(source: str | os.PathLike[str], *, mode: Mode | None = None) -> LoadedState:
    """Load from a path, or from standard input when `source` is "-"."""
    if os.fspath(source) == "-":
        stream = sys.stdin
        data: str | bytes = stream.buffer.read() if hasattr(stream, "buffer") else stream.read()
        return parse_state(data, mode=mode, origin="<stdin>")
    try:
        data = Path(source).read_bytes()
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise StateInputError([FieldError(DOCUMENT, f"cannot read {source}: {reason}")]) from None
    return parse_state(data, mode=mode, origin=os.fspath(source))


def parse_state(
    data: str | bytes, *, mode: Mode | None = None, origin: str = "<input>"
) -> LoadedState:
    """Validate a document; `mode=None` picks the least-privileged mode that covers it."""
    tree, errors = decode(data)
    if not errors and not isinstance(tree, dict):
        errors = [
            FieldError(DOCUMENT, f"must be a mapping of state sections, got {describe(tree)}")
        ]
    if errors:
        raise StateInputError([_with_origin(e, origin) for e in errors])
    shape: Shape = "plugins" if "plugins" in tree or "version" in tree else "stateConfig"
    base: Loc = ("plugins",) if shape == "plugins" else ()
    sections = tree.get("plugins") if shape == "plugins" else tree

    present = {
        n for n in SECTION_ORDER if isinstance(sections, dict) and sections.get(n) is not None
    }
    resolved = Mode(mode) if mode is not None else smallest_mode_for(present)
    errors = _mode_errors(present, resolved, base)
    state = None
    try:
        if shape == "plugins":
            state = StateFile.model_validate(tree)
        else:
            state = StateFile(plugins=Plugins.model_validate(tree))
    except ValidationError as exc:
        errors += field_errors(exc, StateFile if shape == "plugins" else Plugins)
    errors += rule_errors(sections, base)
    if errors or state is None:
        raise StateInputError(list(dict.fromkeys(errors)))
    warnings = []
    if not present:
        warnings.append(FieldWarning(DOCUMENT, "declares no sections: nothing will be managed"))
    return LoadedState(state=state, mode=resolved, shape=shape, warnings=warnings)


def _mode_errors(present: set[str], mode: Mode, base: Loc) -> list[FieldError]:
    return [
        FieldError(
            format_path((*base, name)),
            f"the {name} section needs {smallest_mode_for({name})} mode, but the mode is {mode}",
        )
        for name in SECTION_ORDER
        if name in present and name not in SECTIONS_BY_MODE[mode]
    ]


def _with_origin(error: FieldError, origin: str) -> FieldError:
    if error.path != DOCUMENT:
        return error
    return FieldError(error.path, f"{origin} {error.message}")
