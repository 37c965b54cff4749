"""The lab's network namespaces: the lab's own with eth0, and an upstream one holding the gateway.

The veth pair is created inside the lab netns, so no device ever appears in the host's namespace.
Unless made bare, eth0 starts the way a real host's uplink does: with the host's address and
the default route through the gateway (what op-dbus must move into the bridge).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from op_dbus.lab.errors import LabError

GATEWAY = "192.168.1.1/24"
HOST_ADDRESS = "192.168.1.10/24"
UPSTREAM_IFNAME = "gw0"
NETNS_DIR = Path("/run/netns")


def exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise LabError(f"ip {' '.join(args)}: {result.stderr.strip()}")


def create(name: str, upstream: str, *, bare: bool = False) -> None:
    """Both namespaces, lo up in each, eth0 <-> gw0 with the gateway address upstream; eth0
    holds the host's address and default route when it is made (unless `bare`)."""
    for ns in (name, upstream):
        if not exists(ns):
            _ip("netns", "add", ns)
        _ip("-n", ns, "link", "set", "lo", "up")
    made = not _has_link(name, "eth0")
    if made:
        _ip("-n", name, "link", "add", "eth0", "type", "veth", "peer", "name", UPSTREAM_IFNAME,
            "netns", upstream)  # fmt: skip
    if GATEWAY.split("/")[0] not in _addresses(upstream, UPSTREAM_IFNAME):
        _ip("-n", upstream, "addr", "add", GATEWAY, "dev", UPSTREAM_IFNAME)
    _ip("-n", name, "link", "set", "eth0", "up")
    _ip("-n", upstream, "link", "set", UPSTREAM_IFNAME, "up")
    _no_tx_offload(upstream, UPSTREAM_IFNAME)
    if made and not bare:
        host_uplink(name, upstream)


def host_uplink(name: str, upstream: str) -> None:
    """eth0 as a real host's uplink: only the host's address, and the default route via the
    gateway (added when there is no default route). The gateway forgets the MAC address it
    knew for the host (a bridge's, before), as it would after a reboot."""
    _ip("-n", upstream, "neigh", "flush", "dev", UPSTREAM_IFNAME)
    _ip("-n", name, "-4", "addr", "flush", "dev", "eth0")
    _ip("-n", name, "addr", "add", HOST_ADDRESS, "dev", "eth0")
    _ip("-n", name, "link", "set", "eth0", "up")
    routes = subprocess.run(["ip", "-n", name, "route", "show", "default"],
                            capture_output=True, text=True, check=False)  # fmt: skip
    if not routes.stdout.strip():
        _ip("-n", name, "route", "add", "default", "via", GATEWAY.split("/")[0], "dev", "eth0")


def _no_tx_offload(ns: str, ifname: str) -> None:
    """TCP across OVS's userspace datapath needs tx checksumming off on the far veth end (lab.md).

    Without it ping works but every TCP segment from the gateway arrives with a bad checksum.
    """
    result = subprocess.run(
        ["ip", "netns", "exec", ns, "ethtool", "-K", ifname, "tx", "off"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise LabError(f"ethtool -K {ifname} tx off (package ethtool): {result.stderr.strip()}")


def healthy(name: str, upstream: str) -> bool:
    return (
        exists(name)
        and exists(upstream)
        and _has_link(name, "eth0")
        and GATEWAY.split("/")[0] in _addresses(upstream, UPSTREAM_IFNAME)
    )


def pids(name: str) -> list[int]:
    """PIDs of processes whose network namespace is `name` (what `ip netns pids` reports)."""
    if not exists(name):
        return []
    result = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True)
    return [int(p) for p in result.stdout.split()]


def delete(name: str) -> None:
    if exists(name):
        _ip("netns", "delete", name)


def _has_link(ns: str, ifname: str) -> bool:
    result = subprocess.run(["ip", "-n", ns, "link", "show", "dev", ifname], capture_output=True)
    return result.returncode == 0


def _addresses(ns: str, ifname: str) -> str:
    result = subprocess.run(
        ["ip", "-n", ns, "-br", "addr", "show", "dev", ifname], capture_output=True, text=True
    )
    return result.stdout
