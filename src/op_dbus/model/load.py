"""Read a state file in either shape, validate everything, and resolve the run mode.

`parse_state` and `load_state` raise only StateInputError, carrying every error found
(parser, fields, rules, mode) with its path as the user wrote the document.

Every input is bounded before it is parsed: at most MAX_DOCUMENT_BYTES (read no further), a
regular file (a FIFO or a device is refused without blocking in open()), and, for YAML, a
pre-scan of libyaml's events that refuses a document nested too deeply or expanding through
aliases to more values than a state file has, before the pure-Python parser builds anything.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from dataclasses import dataclass
from typing import Literal

import yaml
from pydantic import ValidationError

from op_dbus.model.documents import MAX_DEPTH, MAX_NODES, decode
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


MAX_DOCUMENT_BYTES = 1 << 20
"""The largest state document accepted: 1 MiB holds ~14,000 OVS ports in JSON."""


def load_state(
    source: str | os.PathLike[str],
    *,
    mode: Mode | None = None,
    limit: int = MAX_DOCUMENT_BYTES,
) -> LoadedState:
    """Load from a path, or from standard input when `source` is "-"."""
    origin = "<stdin>" if os.fspath(source) == "-" else os.fspath(source)
    return parse_state(read_document(source, limit), mode=mode, origin=origin, limit=limit)


def read_document(source: str | os.PathLike[str], limit: int = MAX_DOCUMENT_BYTES) -> bytes:
    """At most `limit` bytes of a regular file (or of stdin for "-"); StateInputError else.

    The file's kind is checked before it is opened (open() on a FIFO waits for a writer, on
    a device it may do anything) and again on the opened descriptor, which is opened
    non-blocking in case the path was swapped in between."""
    name = os.fspath(source)
    try:
        if name == "-":
            stream = getattr(sys.stdin, "buffer", None)
            data = stream.read(limit + 1) if stream is not None else sys.stdin.read(limit + 1)
            data = data if isinstance(data, bytes) else data.encode()
        else:
            _check_regular(name, os.stat(name), limit)
            fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
            try:
                _check_regular(name, os.fstat(fd), limit)
                data = _read_at_most(fd, limit + 1)
            finally:
                os.close(fd)
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise StateInputError([FieldError(DOCUMENT, f"cannot read {name}: {reason}")]) from None
    if len(data) > limit:
        raise _too_big(name if name != "-" else "<stdin>", limit)
    return data


def _check_regular(name: str, info: os.stat_result, limit: int) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise StateInputError(
            [
                FieldError(
                    DOCUMENT, f"cannot read {name}: it is {_kind(info.st_mode)}, not a regular file"
                )
            ]
        )
    if info.st_size > limit:
        raise _too_big(name, limit)


def _kind(mode: int) -> str:
    kinds = {
        stat.S_ISDIR: "a directory",
        stat.S_ISFIFO: "a FIFO",
        stat.S_ISCHR: "a character device",
        stat.S_ISBLK: "a block device",
        stat.S_ISSOCK: "a socket",
    }
    return next((what for test, what in kinds.items() if test(mode)), "a special file")


def _read_at_most(fd: int, size: int) -> bytes:
    chunks: list[bytes] = []
    left = size
    while left > 0 and (chunk := os.read(fd, min(left, 1 << 16))):
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _too_big(origin: str, limit: int) -> StateInputError:
    return StateInputError([FieldError(DOCUMENT, size_problem(origin, limit))])


def size_problem(what: str, limit: int) -> str:
    """The refusal of a document over `limit` bytes, naming the limit."""
    return f"{what} is larger than the limit of {_size(limit)}"


def _size(count: int) -> str:
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= scale and count % scale == 0:
            return f"{count // scale} {unit}"
    return f"{count} bytes"


def parse_state(
    data: str | bytes,
    *,
    mode: Mode | None = None,
    origin: str = "<input>",
    limit: int = MAX_DOCUMENT_BYTES,
) -> LoadedState:
    """Validate a document; `mode=None` picks the least-privileged mode that covers it.

    A document over `limit` bytes, or one whose YAML pre-scan fails, is refused unparsed."""
    if len(data) > limit or (isinstance(data, str) and len(data.encode(errors="replace")) > limit):
        raise _too_big(origin, limit)
    problem = None if _is_json(data) else yaml_prescan(data)
    if problem is not None:
        raise StateInputError([FieldError(DOCUMENT, f"{origin} {problem}")])
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


def _is_json(data: str | bytes) -> bool:
    """JSON has no aliases, and the C parser bounds its own nesting: no pre-scan needed."""
    try:
        json.loads(data)
    except (ValueError, RecursionError):
        return False
    return True


def yaml_prescan(data: str | bytes) -> str | None:
    """Why this YAML is refused unparsed, or None (also for a syntax error: the parser proper
    reports that). Counts on libyaml's events, building nothing, the values the document
    has once every alias is expanded (mapping keys included) and how deep it nests."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    anchored: dict[str, int] = {}
    """anchor -> how many values its node stands for, aliases inside it expanded"""
    opened: list[tuple[str | None, int]] = []
    values = 0
    aliases = False
    try:
        for event in yaml.parse(data, Loader=loader):
            if isinstance(event, yaml.AliasEvent):
                values += anchored.get(event.anchor or "", 1)
                aliases = True
            elif isinstance(event, yaml.ScalarEvent):
                values += 1
                if event.anchor is not None:
                    anchored[event.anchor] = 1
            elif isinstance(event, yaml.CollectionStartEvent):
                values += 1
                opened.append((event.anchor, values))
                if len(opened) > MAX_DEPTH:
                    line = event.start_mark.line + 1 if event.start_mark else 0
                    return f"is nested more than {MAX_DEPTH} levels deep (line {line})"
            elif isinstance(event, yaml.CollectionEndEvent):
                anchor, start = opened.pop()
                if anchor is not None:
                    anchored[anchor] = values - start + 1
            if values > MAX_NODES:
                through = " once its YAML aliases are expanded" if aliases else ""
                return (
                    f"has more than {MAX_NODES} keys and values{through}; that is not a state file"
                )
    except yaml.YAMLError:
        return None
    return None
