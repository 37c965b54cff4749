"""The check after a try applies: does the host still reach what it must?

Like kubernetes-nmstate's probes: each default gateway the host had before the change, and
each it has after it, must answer a ping, and every configured target (`--probe-target
ADDR:PORT`) must accept a TCP connection. Pass: the agent confirms the try; fail: it rolls
the try back. Each check gets a few attempts: a changed link may take a moment to carry
traffic again.
"""

from __future__ import annotations

import asyncio
import ipaddress
import shutil
from dataclasses import dataclass
from typing import Any

from op_dbus.errors import InvalidInput
from op_dbus.native import netlink


@dataclass(frozen=True)
class ProbeOptions:
    gateway: bool = True
    targets: tuple[tuple[str, int], ...] = ()
    attempts: int = 3
    timeout: float = 1.0
    """Seconds one attempt of one check may take."""


def parse_target(text: str) -> tuple[str, int]:
    """`ADDR:PORT` with an IP address (it becomes a connect(), never a name lookup)."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
        number = int(port) if sep and port.isascii() and port.isdigit() else 0
    except ValueError:
        number = 0
    if not 1 <= number <= 65535:
        raise InvalidInput(f"--probe-target {text!r}: give ADDR:PORT with an IP address")
    return host, number


async def default_gateways() -> list[str]:
    """The gateways of the host's default routes now (what the probe will ping)."""
    state = await netlink.read_state()
    return sorted({r.gateway for r in state.default_routes if r.gateway})


@dataclass
class ProbeResult:
    checks: list[dict[str, Any]]

    @property
    def ok(self) -> bool:
        return all(c["ok"] for c in self.checks)

    def describe(self) -> str:
        failed = [c["check"] for c in self.checks if not c["ok"]]
        return "probes passed" if not failed else f"probe failed: {', '.join(failed)}"


async def run_probes(gateways: list[str], options: ProbeOptions) -> ProbeResult:
    checks = []
    if options.gateway:
        for gateway in gateways:
            ok = await _attempts(lambda g=gateway: _ping(g, options.timeout), options.attempts)
            checks.append({"check": f"gateway {gateway} answers ping", "ok": ok})
    for host, port in options.targets:
        ok = await _attempts(
            lambda h=host, p=port: _connect(h, p, options.timeout), options.attempts
        )
        checks.append({"check": f"{host}:{port} accepts TCP", "ok": ok})
    return ProbeResult(checks)


async def _attempts(check: Any, attempts: int) -> bool:
    for attempt in range(attempts):
        if await check():
            return True
        if attempt + 1 < attempts:
            await asyncio.sleep(0.5)
    return False


async def _ping(address: str, timeout: float) -> bool:
    ipaddress.IPv4Address(address)  # from the kernel's route table; never a name or option
    ping = shutil.which("ping")
    if ping is None:
        return False
    child = await asyncio.create_subprocess_exec(
        ping, "-n", "-c", "1", "-W", str(max(1, round(timeout))), address,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    return await child.wait() == 0


async def _connect(host: str, port: int, timeout: float) -> bool:
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True
