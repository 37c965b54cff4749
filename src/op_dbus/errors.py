"""One error vocabulary for every surface: each kind has its exit code and its D-Bus error name.

The engine and the plugins raise these; the CLI maps them to exit codes, the daemon to D-Bus
errors, and a client of the daemon maps the D-Bus names back, so a refusal reads the same
whichever way a request came in. Messages are for people: they name the resource and never
carry an exception class name.
"""

from __future__ import annotations

import re
from typing import ClassVar

from op_dbus.exitcodes import ExitCode

DBUS_PREFIX = "org.opdbus.Error."
ERRNO = re.compile(r"\[Errno -?\d+\] ")
"""How Python writes an OS error number into a message (`[Errno 111] `): noise to people."""
WITHOUT_MESSAGE: dict[type[BaseException], str] = {
    TimeoutError: "timed out",
    EOFError: "the connection closed",
    ConnectionError: "the connection failed",
    PermissionError: "permission denied",
}
NEEDS_ROOT = "needs root (run as root or through the daemon)"


def describe_error(exc: BaseException) -> str:
    """A one-line reason for people: the error's own words, never its Python class name. An
    OS error reads as the OS says it (`Permission denied: /run/x`, no `[Errno 13]`, also
    where one is quoted inside another's message), and a refused permission says what
    would do instead."""
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror + (f": {exc.filename}" if exc.filename else "")
    else:
        text = str(exc)
    text = ERRNO.sub("", text)
    if not text:
        kind = next((k for k in type(exc).__mro__ if k in WITHOUT_MESSAGE), None)
        text = WITHOUT_MESSAGE[kind] if kind else "failed without saying why"
    if isinstance(exc, PermissionError):
        text += f"; {NEEDS_ROOT}"
    return text


class OpError(Exception):
    """Base of op-dbus's own errors: `message` is what the user reads."""

    code: ClassVar[ExitCode] = ExitCode.UNEXPECTED
    dbus_name: ClassVar[str] = DBUS_PREFIX + "Failed"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(OpError):
    """The request itself is wrong (a state document, an argument); nothing was changed."""

    code = ExitCode.INVALID_INPUT
    dbus_name = DBUS_PREFIX + "InvalidInput"


class Refused(OpError):
    """A plugin or the engine will not do what was asked, for a reason about one resource."""

    code = ExitCode.INVALID_INPUT
    dbus_name = DBUS_PREFIX + "Refused"

    def __init__(self, resource: str, reason: str) -> None:
        super().__init__(f"{resource}: {reason}")
        self.resource = resource
        self.reason = reason


class Unconfirmed(Refused):
    """The plan has dangerous actions nobody acknowledged; nothing was changed. Its own kind,
    so a front end can ask and try again with the consent."""

    dbus_name = DBUS_PREFIX + "Unconfirmed"


class AccessDenied(OpError):
    """The caller may not make this request (changes need root)."""

    code = ExitCode.INVALID_INPUT
    dbus_name = DBUS_PREFIX + "AccessDenied"


class Busy(OpError):
    """Another writer holds the host-wide apply lock past the wait."""

    dbus_name = DBUS_PREFIX + "Busy"


class NothingPending(OpError):
    """`confirm` or `rollback` with no try waiting."""

    dbus_name = DBUS_PREFIX + "NothingPending"


class ComponentMissing(OpError):
    """A backend the request needs cannot be reached."""

    code = ExitCode.COMPONENT_MISSING
    dbus_name = DBUS_PREFIX + "ComponentMissing"


KINDS: dict[str, type[OpError]] = {
    kind.dbus_name: kind
    for kind in (
        OpError,
        InvalidInput,
        Refused,
        Unconfirmed,
        AccessDenied,
        Busy,
        NothingPending,
        ComponentMissing,
    )
}


BUS_ACCESS_DENIED = "org.freedesktop.DBus.Error.AccessDenied"
"""What the bus itself answers when its policy refuses a call."""


def from_dbus(name: str, text: str) -> OpError:
    """The error a D-Bus error reply of the daemon stands for (unknown names: OpError)."""
    if name == BUS_ACCESS_DENIED:
        return AccessDenied(f"{text}: needs root (run as root)")
    kind = KINDS.get(name, OpError)
    if issubclass(kind, Refused):
        resource, _, reason = text.partition(": ")
        return kind(resource, reason)
    return kind(text)
