"""The check after a try applies: does the host still reach what it must?

Like kubernetes-nmstate's probes: each default gateway the host had before the change, and
each it has after it, must answer a ping, and every configured target (`--probe-target
ADDR:PORT`) must accept a TCP connection. Pass: the agent confirms the try; fail: it rolls
the try back. Each check gets a few attempts: a changed link may take a moment to carry
traffic again. The checks themselves are the engine's (engine/probe.py), which also probes
every change to addresses, routes or the uplink on its own.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from op_dbus.engine import probe
from op_dbus.errors import InvalidInput


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
    return await probe.gateways()


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
    """The engine's checks (engine/probe.py: an ICMP echo, a TCP connect), with the fleet's
    own attempts and timeout."""
    checks = []
    if options.gateway:
        for gateway in gateways:
            ok = await probe.retried(
                lambda g=gateway: probe.ping(g, options.timeout), options.attempts
            )
            checks.append({"check": f"gateway {gateway} answers ping", "ok": ok})
    for host, port in options.targets:
        ok = await probe.retried(
            lambda h=host, p=port: probe.connect(h, p, options.timeout), options.attempts
        )
        checks.append({"check": f"{host}:{port} accepts TCP", "ok": ok})
    return ProbeResult(checks)
