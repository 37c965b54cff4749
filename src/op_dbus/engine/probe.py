"""Probes: does the host still reach what it reached before a change? (like kubernetes-nmstate)

Before a change that touches the uplink, routes or addresses, the engine notes which default
gateways answer an ICMP echo; after it, the default gateway must still answer (when one
answered before) and every configured target must answer: a ping for `ADDR`, a TCP connect
for `ADDR:PORT`. A probe that fails rolls the change back by itself. Targets are IP
addresses, never names: a probe makes no DNS lookup and passes nothing to a shell.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from op_dbus.errors import InvalidInput
from op_dbus.native import netlink

ATTEMPTS = 3
TIMEOUT = 1.0
"""Seconds one attempt of one check waits; a changed link may take a moment to carry
traffic again, so a check after the change gets ATTEMPTS of them."""
MAX_TARGETS = 16


@dataclass(frozen=True)
class Target:
    address: str
    port: int | None = None
    """None: an ICMP echo; else a TCP connect."""

    def describe(self) -> str:
        return self.address if self.port is None else f"{self.address}:{self.port}"


def parse_target(text: str) -> Target:
    """`ADDR` or `ADDR:PORT` (IPv4), checked strictly: it becomes a socket address only."""
    host, sep, port = text.partition(":")
    try:
        address = str(ipaddress.IPv4Address(host))
    except ValueError:
        address = ""
    number = int(port) if sep and port.isascii() and port.isdigit() and len(port) <= 5 else 0
    if not address or (sep and not 1 <= number <= 65535):
        raise InvalidInput(
            f"probe {text[:64]!r}: give an IPv4 address, or ADDR:PORT for a TCP check"
        )
    return Target(address, number if sep else None)


def parse_targets(texts: Iterable[str]) -> tuple[Target, ...]:
    texts = list(texts)
    if len(texts) > MAX_TARGETS:
        raise InvalidInput(f"at most {MAX_TARGETS} probe targets, got {len(texts)}")
    return tuple(parse_target(t) for t in texts)


@dataclass
class Baseline:
    """What answered before the change."""

    gateways: list[str] = field(default_factory=list)
    answered: list[str] = field(default_factory=list)


@dataclass
class ProbeResult:
    checks: list[dict[str, Any]]

    @property
    def ok(self) -> bool:
        return all(check["ok"] for check in self.checks)

    def describe(self) -> str:
        failed = [c["check"] for c in self.checks if not c["ok"]]
        return "probes passed" if not failed else f"probe failed: {'; '.join(failed)}"


async def gateways() -> list[str]:
    """The gateways of the default routes now."""
    state = await netlink.read_state()
    return sorted({r.gateway for r in state.default_routes if r.gateway})


async def baseline() -> Baseline:
    """The default gateways now, and which of them answer (one attempt each)."""
    found = await gateways()
    answers = await asyncio.gather(*(ping(g, TIMEOUT) for g in found))
    return Baseline(found, [g for g, ok in zip(found, answers, strict=True) if ok])


async def check(before: Baseline, targets: Iterable[Target]) -> ProbeResult:
    """After the change: a gateway answers if one answered before, and every target does."""
    checks: list[dict[str, Any]] = []
    if before.answered:
        now = await gateways()
        if not now:
            was = ", ".join(before.answered)
            checks.append(
                {"check": f"no default route any more (gateway {was} answered)", "ok": False}
            )
        for gateway in now:
            ok = await retried(lambda g=gateway: ping(g, TIMEOUT))
            checks.append({"check": f"default gateway {gateway} answers", "ok": ok})
    for target in targets:
        if target.port is None:
            ok = await retried(lambda t=target: ping(t.address, TIMEOUT))
        else:
            ok = await retried(lambda t=target: connect(t.address, t.port or 0, TIMEOUT))
        checks.append({"check": f"{target.describe()} answers", "ok": ok})
    return ProbeResult(checks)


async def retried(probe: Any, attempts: int = ATTEMPTS) -> bool:
    """Whether `probe()` passes within `attempts` tries, half a second apart."""
    for attempt in range(attempts):
        if await probe():
            return True
        if attempt + 1 < attempts:
            await asyncio.sleep(0.5)
    return False


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def _echo(address: str, timeout: float) -> bool:
    """One ICMP echo: a raw socket as root, else the unprivileged ping socket."""
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        raw = True
    except PermissionError:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
        raw = False
    ident = os.getpid() & 0xFFFF
    sequence = int.from_bytes(os.urandom(2), "big")
    payload = b"op-dbus probe"
    header = struct.pack("!BBHHH", 8, 0, 0, ident, sequence)
    packet = struct.pack("!BBHHH", 8, 0, _checksum(header + payload), ident, sequence) + payload
    deadline = time.monotonic() + timeout
    with sock:
        sock.sendto(packet, (address, 0))
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                data, (source, _) = sock.recvfrom(2048)
            except TimeoutError:
                return False
            if raw:
                data = data[(data[0] & 0x0F) * 4 :]
            if len(data) < 8 or source != address:
                continue
            kind, _, _, their_ident, their_sequence = struct.unpack("!BBHHH", data[:8])
            if kind == 0 and their_sequence == sequence and (not raw or their_ident == ident):
                return True
    return False


async def ping(address: str, timeout: float) -> bool:
    ipaddress.IPv4Address(address)  # a route's gateway or a checked target: never a name
    try:
        return await asyncio.to_thread(_echo, address, timeout)
    except OSError:  # unreachable network, no route: it does not answer
        return False


async def connect(address: str, port: int, timeout: float) -> bool:
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(address, port)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True
