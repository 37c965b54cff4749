"""Verify the host against the desired state, with bounded retries.

Backends settle asynchronously (a unit takes a moment to become active, an address
appears after the link is up), so a mismatch is only final once it survives every attempt.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from op_dbus.errors import describe_error
from op_dbus.plugins.base import Mismatch, Plugin, Section


async def _verify_one(
    name: str, desired: Section, plugin: Plugin, attempts: int, delay: float
) -> tuple[str, list[Mismatch]]:
    mismatches: list[Mismatch] = []
    for attempt in range(attempts):
        if attempt:
            await asyncio.sleep(delay)
        try:
            mismatches = list(await plugin.verify(desired))
        except Exception as exc:
            # A backend that cannot be read is not verified; report it like a mismatch.
            mismatches = [Mismatch(name, "verify", "readable state", describe_error(exc))]
        if not mismatches:
            break
    return name, mismatches


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
