"""Running a system tool op-dbus talks to through its argv (nft, ovs-ofctl): no shell, input
on stdin, a bounded wait, bounded output, and the tool's own words when it refuses."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import Sequence


class ToolError(Exception):
    """The tool could not be run, did not finish, printed too much, or refused."""


def tool_environment() -> dict[str, str]:
    """The environment of every tool op-dbus runs: the caller's, in the C locale. The tools,
    and all they start (templates, hooks), then behave and word their output alike whoever
    runs op-dbus, and none of their processes loads a locale: busybox's LXC template alone
    starts ~270 of them (docs/decisions.md, "Tools run in the C locale")."""
    return {**os.environ, "LC_ALL": "C"}


def find_tool(name: str, package: str) -> str:
    """Where `name` is on PATH; ToolError naming the package to install when it is not."""
    path = shutil.which(name)
    if path is None:
        raise ToolError(f"{name} not found on PATH (install the {package} package)")
    return path


async def communicate(
    argv: Sequence[str], stdin: bytes | None, timeout: float
) -> tuple[int, bytes, bytes]:
    """Run `argv` (no shell, `tool_environment()`), stdin fed `stdin` (or none): its exit
    status, standard output and error. OSError when it cannot be started; TimeoutError once
    it has been killed for outliving `timeout`."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=tool_environment(),
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    return proc.returncode or 0, out, err


async def run_tool(
    argv: list[str], stdin: bytes | None, *, what: str, timeout: float, output_max: int
) -> bytes:
    """The standard output of `argv` (stdin fed `stdin`, or none); `what` names the command
    in messages."""
    try:
        code, out, err = await communicate(argv, stdin, timeout)
    except TimeoutError:  # before OSError, its base class
        raise ToolError(f"{what} did not finish within {timeout:g} s") from None
    except OSError as exc:
        raise ToolError(f"cannot run {argv[0]}: {exc.strerror}") from None
    if code:
        message = err.decode(errors="replace").strip() or f"exit status {code}"
        raise ToolError(f"{what}: {message}")
    if len(out) > output_max:
        raise ToolError(f"{what} printed more than {output_max} bytes")
    return out
