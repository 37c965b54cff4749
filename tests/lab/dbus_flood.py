"""A hostile local user: floods org.opdbus with documents built to stall it, then reports.

Run by test_daemon_lab.py as uid 65534 (`setpriv`), so it goes through the lab's real
dbus-daemon and its policy like any unprivileged caller. Several connections each send Diff
calls back to back for a bounded time, cycling through: an oversized document (the issue's
25 MB once, then 2 MiB), a YAML alias bomb, a document nested too deeply, and a valid state
document just under the size limit (the costliest one that must be parsed); then one of each
alone. Prints one JSON object: how many replies of each kind came back.

    python dbus_flood.py ADDRESS SECONDS [CONNECTIONS]
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import time
from collections import Counter

from dbus_fast import BusType, Message, MessageType
from dbus_fast.aio import MessageBus

CALL_TIMEOUT = 60.0


def alias_bomb(breadth: int = 10, depth: int = 7) -> str:
    """~400 bytes that expand to 10^8 values."""
    lines = [f"a0: &a0 [{', '.join(['x'] * breadth)}]"]
    for level in range(1, depth + 1):
        lines.append(f"a{level}: &a{level} [{', '.join([f'*a{level - 1}'] * breadth)}]")
    return "\n".join(lines) + "\n"


def too_deep(levels: int = 200) -> str:
    return "".join(f"{' ' * i}k:\n" for i in range(levels)) + " " * levels + "x\n"


def near_limit(limit: int = 1 << 20) -> str:
    """A valid net section in YAML, as many ports as fit in ~90% of the limit."""
    head = "version: 1\nplugins:\n  net:\n    interfaces:\n"
    ports, body, size = [], [], len(head)
    while size < limit * 0.9:
        name = f"fl{len(ports)}"
        ports.append(name)
        body.append(f"    - {{name: {name}, type: ovs-internal, bridge: fldbr0}}\n")
        size += len(body[-1]) + len(name) + 2
    bridge = f"    - {{name: fldbr0, type: ovs-bridge, ports: [{', '.join(ports)}]}}\n"
    return head + bridge + "".join(body)


def kind(reply: Message | None) -> str:
    if reply is None:
        return "timeout"
    if reply.message_type != MessageType.ERROR:
        return "answered"
    text = str(reply.body[0]) if reply.body else ""
    for key in ("larger than the limit", "aliases are expanded", "nested more than", "Busy"):
        if key in text or key in reply.error_name:
            return f"{reply.error_name}: {key}"
    return f"{reply.error_name}: {text[:80]}"


async def caller(
    address: str, deadline: float, once: list[str], documents: list[str], seen: Counter
) -> None:
    bus = await MessageBus(bus_address=address, bus_type=BusType.SYSTEM).connect()
    try:
        for document in itertools.chain(once, itertools.cycle(documents)):
            if time.monotonic() > deadline:
                return
            call = Message(
                destination="org.opdbus",
                path="/org/opdbus/state",
                interface="org.opdbus.StateManager",
                member="Diff",
                signature="s",
                body=[document],
            )
            try:
                reply = await asyncio.wait_for(bus.call(call), CALL_TIMEOUT)
            except TimeoutError:
                reply = None
            seen[kind(reply)] += 1
    finally:
        bus.disconnect()


async def flood(address: str, seconds: float, connections: int) -> Counter:
    """The flood, then one of each document alone (while flooding, most meet a busy slot)."""
    seen: Counter = Counter()
    deadline = time.monotonic() + seconds
    mixed = [alias_bomb(), "#" * (2 << 20), too_deep(), near_limit()]
    huge = ["#" * (25 * 10**6)]  # the 25 MB, once
    await asyncio.gather(
        *(
            caller(address, deadline, huge if i == 0 else [], mixed[i:] + mixed[:i], seen)
            for i in range(connections)
        )
    )
    await caller(address, time.monotonic() + CALL_TIMEOUT, mixed, [], seen)
    return seen


if __name__ == "__main__":
    address, seconds = sys.argv[1], float(sys.argv[2])
    connections = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    print(json.dumps(asyncio.run(flood(address, seconds, connections))))
