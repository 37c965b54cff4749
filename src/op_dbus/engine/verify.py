"""Verify the host against the desired state, with bounded retries.

Backends settle asynchronously (a unit takes a moment to become active, an address
appears after the link is up, ovs-vswitchd reports an interface's MTU some time after it
applied the change), so a mismatch is only final once it survives every attempt. The waits
between attempts double: a busy host gets a generous bound (0.2 s first: 3 s over five
attempts) while a settled one answers at the first read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

from op_dbus.errors import describe_error
from op_dbus.plugins.base import Mismatch, Plugin, Section

Found = TypeVar("Found")


async def until_settled(
    check: Callable[[], Awaitable[Found]], attempts: int = 5, delay: float = 0.2
) -> Found:
    """`check()` until it finds nothing (a falsy result), at most `attempts` times, waiting
    `delay` and then twice as long each time; the last result."""
    found = await check()
    for attempt in range(1, attempts):
        if not found:
            break
        await asyncio.sleep(delay * 2 ** (attempt - 1))
        found = await check()
    return found


async def _verify_one(
    name: str, desired: Section, plugin: Plugin, attempts: int, delay: float
) -> tuple[str, list[Mismatch]]:
    async def check() -> list[Mismatch]:
        try:
            return list(await plugin.verify(desired))
        except Exception as exc:
            # A backend that cannot be read is not verified; report it like a mismatch.
            return [Mismatch(name, "verify", "readable state", describe_error(exc))]

    return name, await until_settled(check, attempts, delay)


async def verify_state(
    desired: dict[str, Section],
    plugins: Mapping[str, Plugin],
    *,
    attempts: int = 5,
    delay: float = 0.2,
) -> dict[str, list[Mismatch]]:
    """Mismatches per section that remain after `attempts` tries; empty dict: all verified."""
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    checks = [
        _verify_one(name, section, plugins[name], attempts, delay)
        for name, section in desired.items()
    ]
    results = await asyncio.gather(*checks)
    return {name: found for name, found in results if found}
