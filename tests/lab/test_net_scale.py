"""The net plugin at scale, in the lab with its ovs-vswitchd: waits that follow vswitchd, and
netlink read once per phase whatever the number of interfaces.

Results are cross-checked with `ovs-vsctl` and `ip -j`. No timing is asserted: a fixed wait
shows up as a failed apply, a read per interface as a count that grows.
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from native_fixtures import private_ovs
from test_net_apply import addresses, opdbus, reset, sh, state_file

from op_dbus.endpoints import Endpoints
from op_dbus.lab import Lab, run_in_lab
from op_dbus.plugins.base import ApplyError
from op_dbus.plugins.net import plugin as net
from op_dbus.plugins.net.plugin import NetPlugin

BUSY_BRIDGES = 300
"""Bridges someone else adds with `--no-wait` just before each apply, to keep vswitchd busy
(seconds of its work: each bridge is a datapath of its own)."""
OUR_PORTS = 500


def clear(lab: Lab) -> None:
    """No bridges left: one ovs-vsctl call deleting them all (hundreds of ports take vswitchd
    longer than the other tests' 10 s bound), then the other tests' reset."""
    args = []
    for bridge in sh(lab, "ovs-vsctl", "list-br").split():
        args += ["--", "del-br", bridge]
    if args:
        sh(lab, "ovs-vsctl", "--timeout=120", *args[1:])
    reset(lab)


@pytest.fixture
def net_lab(lab: Lab) -> Iterator[Lab]:
    clear(lab)
    try:
        yield lab
    finally:
        clear(lab)


def ofports(lab: Lab) -> dict[str, Any]:
    """Interface name -> ofport as ovs-vsctl reports it (-1 or [] while unassigned)."""
    listing = json.loads(
        sh(lab, "ovs-vsctl", "--format=json", "--columns=name,ofport", "list", "Interface")
    )
    return {name: ofport for name, ofport in listing["data"]}


def keep_vswitchd_busy(lab: Lab, prefix: str) -> None:
    """Another client adds BUSY_BRIDGES bridges in one call and does not wait."""
    args = []
    for i in range(BUSY_BRIDGES):
        bridge = f"{prefix}{i}"
        args += ["--", "add-br", bridge, "--", "set", "Bridge", bridge, "datapath_type=netdev"]
    sh(lab, "ovs-vsctl", "--no-wait", "--timeout=60", *args[1:])


def bridge_with_ports(bridge: str, count: int) -> list[dict[str, Any]]:
    ports = [
        {"name": f"{bridge}p{i}", "type": "ovs-internal", "bridge": bridge} for i in range(count)
    ]
    return [{"name": bridge, "type": "ovs-bridge", "datapath": "netdev"}, *ports]


def test_hundreds_of_ports_apply_while_vswitchd_is_busy_twice_in_a_row(
    net_lab: Lab, tmp_path: Path
) -> None:
    """vswitchd needs seconds for the bridges queued ahead of ours: the apply waits for its
    cur_cfg instead of verifying on a clock, and the second apply starts at once."""
    first = {"interfaces": bridge_with_ports("scale0", OUR_PORTS)}
    both = {"interfaces": [*first["interfaces"], *bridge_with_ports("scale1", OUR_PORTS)]}
    for number, (busy, section) in enumerate((("busya", first), ("busyb", both))):
        keep_vswitchd_busy(net_lab, busy)
        result = opdbus(net_lab, "apply", state_file(tmp_path, section, f"{number}.json"))
        assert result.returncode == 0, result.stdout + result.stderr
        assert "rolled back" not in result.stdout + result.stderr

    found = ofports(net_lab)
    ours = [p["name"] for p in both["interfaces"] if p["type"] == "ovs-internal"]
    assert len(ours) == 2 * OUR_PORTS
    unassigned = [name for name in ours if not isinstance(found.get(name), int) or found[name] < 0]
    assert unassigned == []
    devices = {link["ifname"] for link in json.loads(sh(net_lab, "ip", "-j", "link"))}
    assert set(ours) <= devices


READ_COUNTER = """
import atexit, sys
from op_dbus.native import netlink
reads = []
real = netlink._read
def counted(*args, **kwargs):
    reads.append(1)
    return real(*args, **kwargs)
netlink._read = counted
atexit.register(lambda: print("netlink reads:", len(reads)))
from op_dbus.cli.main import run
sys.argv = ["op-dbus", *sys.argv[1:]]
run()
"""


def netlink_reads(lab: Lab, *args: str) -> int:
    result = run_in_lab(lab, sys.executable, "-c", READ_COUNTER, *args, check=False)
    assert result.returncode in (0, 3), result.stdout + result.stderr
    return int(result.stdout.rsplit("netlink reads:", 1)[1])


def addressed_bridges(count: int) -> dict[str, Any]:
    entries = []
    for i in range(count):
        ipv4 = {"enabled": True, "address": [{"ip": f"10.88.{i}.1", "prefix": 24}]}
        entries.append(
            {"name": f"nlb{i}", "type": "ovs-bridge", "datapath": "netdev", "ipv4": ipv4}
        )
        entries.append({"name": f"nlp{i}", "type": "ovs-internal", "bridge": f"nlb{i}"})
    return {"interfaces": entries}


def test_netlink_reads_per_command_do_not_grow_with_the_interfaces(
    net_lab: Lab, tmp_path: Path
) -> None:
    """Plan, apply phase and verify read netlink once each, for 2 bridges as for 12."""
    counts = {}
    for count in (2, 12):
        path = state_file(tmp_path, addressed_bridges(count), f"{count}.json")
        counts[count] = [netlink_reads(net_lab, command, path) for command in ("apply", "diff")]
        found = addresses(net_lab)
        assert all(found[f"nlb{i}"] == {f"10.88.{i}.1/24"} for i in range(count))
        clear(net_lab)
    assert counts[12] == counts[2]
    apply_reads, diff_reads = counts[2]
    assert apply_reads <= 5  # plan, apply phase, verify, and the probes' before and after
    assert diff_reads == 1


async def test_a_vswitchd_that_never_applies_the_change_fails_the_apply_naming_cur_cfg(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """vswitchd stopped (SIGSTOP) after the lock check: it still holds its lock but never
    reports back, so the bounded wait ends in an error that says what did not come."""
    monkeypatch.setattr(net, "VSWITCHD_TIMEOUT", 1.0)
    with private_ovs(vswitchd=True) as ovs:
        assert ovs.vswitchd is not None
        plugin = NetPlugin(endpoints=Endpoints(ovsdb=ovs.target))
        desired = {"interfaces": bridge_with_ports("stuck0", 2)}
        try:
            actions = plugin.diff(await plugin.query(), desired)
            ovs.vswitchd.send_signal(signal.SIGSTOP)
            with pytest.raises(ApplyError) as caught:
                await plugin.apply(actions)
        finally:
            ovs.vswitchd.send_signal(signal.SIGCONT)
            await plugin.close()
        assert "ovs-vswitchd has not applied the change within 1 s" in caught.value.reason
        assert "cur_cfg is" in caught.value.reason and "waiting for" in caught.value.reason
        assert caught.value.done == actions  # committed: the rollback must undo it
        assert ovs.vsctl("list-ports", "stuck0").split() == ["stuck0p0", "stuck0p1"]
