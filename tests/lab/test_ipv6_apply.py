"""IPv6 on a bridge and a container end to end: real traffic, `ip -j -6` agrees with `query`,
a pasted-back query plans nothing, and a failed apply puts the addresses back."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

from test_lxc_apply import clean, opdbus, query_lxc, sh, write  # noqa: F401 (clean: a fixture)

from op_dbus.lab import Lab, run_in_lab
from op_dbus.native.netlink import OWN_PROTO

BRIDGE, CT, CT_ID = "v6br", "v6ct", "933"
BRIDGE_IP, CT_IP, OTHER_IP = "fd42:933::1", "fd42:933::2", "fd42:934::1"
INTERNAL, INTERNAL_IP = "v6in", "fd42:935::1"
SLAAC_IP = "fd42:933::5:5"
NIC_IP, NIC_GW = "fd42:936::2", "fd42:936::1"
DAD_TRIES = 10
"""Pings tried while duplicate address detection holds the new addresses (about 1-2 s)."""


def state(bridge_ips: list[str], *, gateway: str | None = None, running: bool = True) -> dict:
    ipv6: dict[str, Any] = {"address": [{"ip": ip, "prefix": 64} for ip in bridge_ips]}
    if gateway:
        ipv6["gateway"] = gateway
    container = {
        "id": CT_ID,
        "name": CT,
        "veth": f"vi{CT_ID}",
        "bridge": BRIDGE,
        "running": running,
        "ipv6": {"address": [{"ip": CT_IP, "prefix": 64}], "gateway": BRIDGE_IP},
    }
    internal = {
        "name": INTERNAL,
        "type": "ovs-internal",
        "bridge": BRIDGE,
        "ipv6": {"address": [{"ip": INTERNAL_IP, "prefix": 64}]},
    }
    net = {"interfaces": [{"name": BRIDGE, "type": "ovs-bridge", "ipv6": ipv6}, internal]}
    return {"version": 1, "plugins": {"net": net, "lxc": {"containers": [container]}}}


def in_ct(lab: Lab, *argv: str, check: bool = False) -> Any:
    return run_in_lab(lab, "lxc-attach", "-P", str(lab.lxc_path), "-n", CT, "--", *argv,
                      check=check)  # fmt: skip


def pings(lab: Lab, *argv: str) -> bool:
    """Whether `argv` (a ping) succeeds within DAD_TRIES tries."""
    return any(run_in_lab(lab, *argv, check=False).returncode == 0 for _ in range(DAD_TRIES))


def global_addresses(lab: Lab, device: str) -> tuple[set[str], set[str]]:
    """(global, link-local) IPv6 addresses of `device` as `ip -j -6 addr` lists them."""
    links = json.loads(sh(lab, "ip", "-j", "-6", "addr", "show", "dev", device))
    info = [a for link in links for a in link["addr_info"]]
    found = {f"{a['local']}/{a['prefixlen']}" for a in info if a.get("scope") == "global"}
    return found, {a["local"] for a in info if a.get("scope") == "link"}


def default_routes6(lab: Lab) -> list[dict[str, Any]]:
    return json.loads(sh(lab, "ip", "-j", "-6", "route", "show", "default"))


def net_entry(lab: Lab, name: str = BRIDGE) -> dict[str, Any]:
    result = opdbus(lab, "query", "--plugin", "net", "--json")
    assert result.returncode == 0, result.stderr
    interfaces = json.loads(result.stdout)["state"]["plugins"]["net"]["interfaces"]
    return next(i for i in interfaces if i["name"] == name)


def test_a_container_and_its_bridge_talk_ipv6(clean: Lab, tmp_path: Path) -> None:  # noqa: F811
    result = opdbus(clean, "apply", write(tmp_path, state([BRIDGE_IP], gateway=CT_IP)))
    assert result.returncode == 0, result.stdout + result.stderr

    ping_ct = ("lxc-attach", "-P", str(clean.lxc_path), "-n", CT, "--", "ping6", "-c1", "-W2")
    assert pings(clean, *ping_ct, BRIDGE_IP)  # container -> bridge
    assert pings(clean, "ping", "-6", "-c1", "-W2", CT_IP)  # bridge (the host) -> container

    assert pings(clean, *ping_ct, INTERNAL_IP)  # the internal port: through the gateway
    found, link_local = global_addresses(clean, BRIDGE)
    assert found == {f"{BRIDGE_IP}/64"}
    assert link_local  # the kernel's own fe80:: address is there ...
    entry = net_entry(clean)
    assert entry["ipv6"] == {  # ... and not reported
        "enabled": True,
        "address": [{"ip": BRIDGE_IP, "prefix": 64}],
        "gateway": CT_IP,
    }
    assert global_addresses(clean, INTERNAL)[0] == {f"{INTERNAL_IP}/64"}
    assert net_entry(clean, INTERNAL)["ipv6"]["address"] == [{"ip": INTERNAL_IP, "prefix": 64}]
    ours = [r for r in default_routes6(clean) if r.get("dev") == BRIDGE]
    assert [(r["gateway"], str(r["protocol"])) for r in ours] == [(CT_IP, str(OWN_PROTO))]
    inside = in_ct(clean, "cat", "/proc/net/if_inet6", check=True).stdout
    assert ipaddress.IPv6Address(CT_IP).exploded.replace(":", "") in inside  # the kernel's list
    ct = query_lxc(clean)[CT]
    assert ct["ipv6"] == {"address": [{"ip": CT_IP, "prefix": 64}], "gateway": BRIDGE_IP}

    shown = opdbus(clean, "show")
    assert shown.returncode == 0, shown.stderr
    assert f"{BRIDGE_IP}/64" in shown.stdout and f"{CT_IP}/64" in shown.stdout

    # The query pasted back validates and plans nothing.
    document = opdbus(clean, "query", "--plugin", "net", "--plugin", "lxc", "--format", "json")
    assert document.returncode == 0, document.stderr
    pasted = tmp_path / "pasted.json"
    pasted.write_text(document.stdout)
    assert opdbus(clean, "validate", str(pasted)).returncode == 0
    again = opdbus(clean, "diff", str(pasted))
    assert again.returncode == 0, again.stdout + again.stderr

    # What router advertisements make (an address with lifetimes, a route of proto ra) is the
    # kernel's: not reported, so the same document still plans nothing, and prune keeps them.
    run_in_lab(clean, "ip", "-6", "addr", "add", f"{SLAAC_IP}/64", "dev", BRIDGE, "nodad",
               "valid_lft", "600", "preferred_lft", "600")  # fmt: skip
    run_in_lab(clean, "ip", "-6", "route", "add", "default", "via", "fe80::99", "dev", BRIDGE,
               "proto", "ra", "metric", "2048")  # fmt: skip
    assert net_entry(clean)["ipv6"] == entry["ipv6"]
    again = opdbus(clean, "diff", "--prune", str(pasted))
    assert again.returncode == 0, again.stdout + again.stderr

    # A partial file adds an address and removes none; --prune removes the undeclared one.
    more = write(tmp_path, state([OTHER_IP]), "more.json")
    assert opdbus(clean, "apply", more).returncode == 0
    assert global_addresses(clean, BRIDGE)[0] == {
        f"{BRIDGE_IP}/64",
        f"{OTHER_IP}/64",
        f"{SLAAC_IP}/64",
    }
    result = opdbus(clean, "apply", "--prune", "--yes", more)
    assert result.returncode == 0, result.stdout + result.stderr
    assert global_addresses(clean, BRIDGE)[0] == {f"{OTHER_IP}/64", f"{SLAAC_IP}/64"}
    assert any(str(r.get("protocol")) == "ra" for r in default_routes6(clean))


def test_a_later_failure_puts_the_ipv6_addresses_back(clean: Lab, tmp_path: Path) -> None:  # noqa: F811
    result = opdbus(clean, "apply", write(tmp_path, state([BRIDGE_IP], running=False)))
    assert result.returncode == 0, result.stdout + result.stderr
    # The fault: a device named like the container's host veth, so starting it (after the
    # bridge's new address and default route, in the same apply) fails.
    run_in_lab(clean, "ip", "link", "add", f"vi{CT_ID}", "type", "veth", "peer", "name", "v6fault")
    try:
        changed = state([BRIDGE_IP, OTHER_IP], gateway=CT_IP)
        result = opdbus(clean, "apply", write(tmp_path, changed, "changed.json"))
    finally:
        run_in_lab(clean, "ip", "link", "del", f"vi{CT_ID}", check=False)

    assert result.returncode == 4, result.stdout + result.stderr
    assert OTHER_IP in result.stdout, result.stdout  # the plan had the new address
    assert global_addresses(clean, BRIDGE)[0] == {f"{BRIDGE_IP}/64"}
    assert [r for r in default_routes6(clean) if r.get("dev") == BRIDGE] == []
    assert net_entry(clean)["ipv6"]["address"] == [{"ip": BRIDGE_IP, "prefix": 64}]
    assert query_lxc(clean)[CT]["running"] is False


def test_a_second_nic_speaks_ipv6_on_its_own_bridge(clean: Lab, tmp_path: Path) -> None:  # noqa: F811
    nics = [
        {"veth": "vi935", "bridge": BRIDGE},
        {"veth": "vi935b", "bridge": "v6br2", "ipv6": {"address": [{"ip": NIC_IP, "prefix": 64}]}},
    ]
    bridges = [
        {"name": BRIDGE, "type": "ovs-bridge"},
        {
            "name": "v6br2",
            "type": "ovs-bridge",
            "ipv6": {"address": [{"ip": NIC_GW, "prefix": 64}]},
        },
    ]
    document = {
        "version": 1,
        "plugins": {
            "net": {"interfaces": bridges},
            "lxc": {"containers": [{"id": "935", "name": "v6nic", "running": True, "nics": nics}]},
        },
    }
    result = opdbus(clean, "apply", write(tmp_path, document))
    assert result.returncode == 0, result.stdout + result.stderr

    argv = ("lxc-attach", "-P", str(clean.lxc_path), "-n", "v6nic", "--", "ping6", "-c1", "-W2")
    assert pings(clean, *argv, NIC_GW)
    inside = run_in_lab(clean, "lxc-attach", "-P", str(clean.lxc_path), "-n", "v6nic", "--",
                        "cat", "/proc/net/if_inet6").stdout  # fmt: skip
    hexed = ipaddress.IPv6Address(NIC_IP).exploded.replace(":", "")
    assert any(
        line.split()[0] == hexed and line.split()[-1] == "eth1" for line in inside.splitlines()
    )
    found = query_lxc(clean)["v6nic"]["nics"]
    assert found[1]["ipv6"] == {"address": [{"ip": NIC_IP, "prefix": 64}]}
    assert found[0]["ipv6"] == {"address": []}
    again = opdbus(clean, "diff", write(tmp_path, document))
    assert again.returncode == 0, again.stdout + again.stderr
