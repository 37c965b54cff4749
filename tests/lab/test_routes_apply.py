"""Static routes end to end: applied routes as `ip -j route` lists them (proto 73), traffic
that follows one, foreign routes on the same device and table surviving apply and --prune,
paste-back, and the rollback of a change the kernel refuses half-way.

The lab's upstream namespace holds the gateway 192.168.1.1; giving it a /32 on its `lo` makes
a destination that only a route via 192.168.1.1 reaches (the tests install no default route).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_net_apply import addresses, apply_ok, opdbus, reset, sh, state_file, vsctl

from op_dbus.lab import Lab, run_in_lab

BRIDGE = "rtbr0"
FAR = "198.51.100.7"  # on the upstream's lo: reachable only through a route via the gateway
TABLE = 4711


def bridge(routes: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": BRIDGE,
        "type": "ovs-bridge",
        "datapath": "netdev",
        "ports": ["eth0"],
        "ipv4": {"enabled": True, "address": [{"ip": "192.168.1.10", "prefix": 24}]},
        **extra,
    }
    if routes is not None:
        entry["routes"] = routes
    return entry


def net(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"interfaces": list(entries)}


def routes_in(lab: Lab, table: int | str = "main") -> list[dict[str, Any]]:
    """`ip -j route show table T dev rtbr0`, each as (dst, gateway, metric, protocol)."""
    found = json.loads(sh(lab, "ip", "-j", "route", "show", "table", str(table), "dev", BRIDGE))
    return sorted(
        (r["dst"], r.get("gateway", ""), r.get("metric", 0), str(r.get("protocol", "")))
        for r in found
        if r.get("protocol") != "kernel"
    )


def upstream(lab: Lab, *args: str) -> None:
    """`ip -n UPSTREAM ...`: acts in the lab's upstream namespace only."""
    subprocess.run(["ip", "-n", lab.upstream_netns, *args], check=True, capture_output=True)


@pytest.fixture
def route_lab(lab: Lab) -> Iterator[Lab]:
    reset(lab)
    upstream(lab, "addr", "replace", f"{FAR}/32", "dev", "lo")
    try:
        yield lab
    finally:
        upstream(lab, "addr", "del", f"{FAR}/32", "dev", "lo")
        reset(lab)
        run_in_lab(lab, "ip", "route", "flush", "table", str(TABLE), check=False)


def pings(lab: Lab, address: str) -> bool:
    return run_in_lab(lab, "ping", "-c", "1", "-W", "2", address, check=False).returncode == 0


def test_routes_apply_carry_traffic_read_back_and_paste_back(
    route_lab: Lab, tmp_path: Path
) -> None:
    declared = [
        {"to": FAR, "via": "192.168.1.1", "metric": 50},
        {"to": "203.0.113.0/24", "via": "192.168.1.1", "table": TABLE},
        {"to": "192.0.2.64/26"},  # on-link
    ]
    apply_ok(route_lab, state_file(tmp_path, net(bridge())))
    assert not pings(route_lab, FAR), "nothing routes there yet"

    apply_ok(route_lab, state_file(tmp_path, net(bridge(declared)), "routes.json"))

    assert routes_in(route_lab) == [
        ("192.0.2.64/26", "", 0, "73"),
        (f"{FAR}", "192.168.1.1", 50, "73"),
    ]
    assert routes_in(route_lab, TABLE) == [("203.0.113.0/24", "192.168.1.1", 0, "73")]
    assert pings(route_lab, FAR), "the traffic follows the route"
    get = json.loads(sh(route_lab, "ip", "-j", "route", "get", FAR))
    assert (get[0]["dev"], get[0]["gateway"]) == (BRIDGE, "192.168.1.1")

    query = opdbus(route_lab, "query", "--plugin", "net", "--format", "json")
    assert query.returncode == 0, query.stderr
    (entry,) = [
        e for e in json.loads(query.stdout)["plugins"]["net"]["interfaces"] if e["name"] == BRIDGE
    ]
    assert sorted(entry["routes"], key=lambda r: r["to"]) == [
        {"to": "192.0.2.64/26", "metric": 0, "table": 254},
        {"to": f"{FAR}/32", "via": "192.168.1.1", "metric": 50, "table": 254},
        {"to": "203.0.113.0/24", "via": "192.168.1.1", "metric": 0, "table": TABLE},
    ]
    pasted = tmp_path / "pasted.json"
    pasted.write_text(query.stdout)
    plan = opdbus(route_lab, "diff", str(pasted), "--json")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert json.loads(plan.stdout)["pending"] is False
    assert (
        opdbus(
            route_lab, "verify", state_file(tmp_path, net(bridge(declared)), "v.json")
        ).returncode
        == 0
    )

    show = opdbus(route_lab, "show")
    assert show.returncode == 0, show.stderr
    assert f"route 203.0.113.0/24 via 192.168.1.1 table {TABLE}" in show.stdout
    assert f"route {FAR}/32 via 192.168.1.1 metric 50" in show.stdout


def test_foreign_routes_survive_apply_and_prune(route_lab: Lab, tmp_path: Path) -> None:
    ours = [
        {"to": "203.0.113.0/25", "via": "192.168.1.1", "table": TABLE},
        {"to": "198.51.100.0/28", "via": "192.168.1.1"},
    ]
    apply_ok(route_lab, state_file(tmp_path, net(bridge(ours))))
    for where in (["table", str(TABLE)], []):
        dst = "203.0.113.128/25" if where else "198.51.100.16/28"
        run_in_lab(route_lab, "ip", "route", "add", dst, "via", "192.168.1.1", "dev", BRIDGE,
                   *where, "proto", "static")  # fmt: skip
    foreign = [("198.51.100.16/28", "192.168.1.1", 0, "static")]
    foreign_table = [("203.0.113.128/25", "192.168.1.1", 0, "static")]

    # A partial file naming neither route, and one naming only the first: nothing goes.
    apply_ok(route_lab, state_file(tmp_path, net({"name": BRIDGE, "type": "ovs-bridge"}), "a"))
    apply_ok(route_lab, state_file(tmp_path, net(bridge(ours[:1])), "b.json"))
    assert len(routes_in(route_lab)) == 2 and len(routes_in(route_lab, TABLE)) == 2

    # Prune: the list is whole, our unlisted route goes, the foreign ones stay.
    apply_ok(route_lab, state_file(tmp_path, net(bridge(ours[:1])), "c.json"), "--prune")
    assert routes_in(route_lab) == foreign
    assert routes_in(route_lab, TABLE) == [
        ("203.0.113.0/25", "192.168.1.1", 0, "73"),
        *foreign_table,
    ]

    # Marked absent: ours goes without prune; the foreign one in that table stays.
    gone = [{"to": "203.0.113.0/25", "table": TABLE, "state": "absent"}]
    apply_ok(route_lab, state_file(tmp_path, net(bridge(gone)), "d.json"))
    assert routes_in(route_lab, TABLE) == foreign_table
    assert routes_in(route_lab) == foreign


def test_a_foreign_route_holding_the_slot_fails_the_apply_and_rolls_back(
    route_lab: Lab, tmp_path: Path
) -> None:
    apply_ok(route_lab, state_file(tmp_path, net(bridge())))
    run_in_lab(route_lab, "ip", "route", "add", "198.51.100.32/28", "via", "192.168.1.1",
               "dev", BRIDGE, "proto", "static")  # fmt: skip
    routes = [
        {"to": "198.51.100.48/28", "via": "192.168.1.1"},
        {"to": "198.51.100.32/28", "via": "192.168.1.1"},
    ]
    result = opdbus(route_lab, "apply", state_file(tmp_path, net(bridge(routes)), "b.json"))

    assert result.returncode == 4, result.stdout + result.stderr
    assert "did not create" in result.stdout + result.stderr
    assert routes_in(route_lab) == [("198.51.100.32/28", "192.168.1.1", 0, "static")]


def test_an_unreachable_via_rolls_back_the_whole_change(route_lab: Lab, tmp_path: Path) -> None:
    """The kernel refuses a next hop it cannot reach (ENETUNREACH), after a new bridge, its
    address, and the re-routing of an existing route have been made: all of it is undone."""
    first = [{"to": FAR, "via": "192.168.1.1"}]
    apply_ok(route_lab, state_file(tmp_path, net(bridge(first))))
    changed = [
        {"to": FAR, "via": "192.168.1.2"},  # re-routed: added beside the old one, which goes
        {"to": "198.51.100.64/28", "via": "192.168.1.1", "table": TABLE},
        {"to": "198.51.100.80/28", "via": "10.250.0.1"},  # nothing on the link reaches it
    ]
    new = {
        "name": "rtbr1",
        "type": "ovs-bridge",
        "datapath": "netdev",
        "ipv4": {"enabled": True, "address": [{"ip": "10.251.0.1", "prefix": 24}]},
        "routes": [{"to": "10.252.0.0/16", "via": "10.251.0.2"}],
    }
    result = opdbus(route_lab, "apply", state_file(tmp_path, net(bridge(changed), new), "b.json"))

    assert result.returncode == 4, result.stdout + result.stderr
    assert "198.51.100.80/28 via 10.250.0.1" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert routes_in(route_lab) == [(FAR, "192.168.1.1", 0, "73")]
    assert routes_in(route_lab, TABLE) == []
    assert vsctl(route_lab, "list-br") == BRIDGE
    assert "rtbr1" not in addresses(route_lab)
    assert pings(route_lab, FAR)


def test_an_invalid_route_is_refused_with_its_path_before_anything_changes(
    route_lab: Lab, tmp_path: Path
) -> None:
    routes = [{"to": "10.9.0.0/16", "via": "192.168.1.1"}, {"to": "10.9.0.1/16", "via": "fe80::1"}]
    result = opdbus(route_lab, "apply", state_file(tmp_path, net(bridge(routes))))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "plugins.net.interfaces[0].routes[1].to: has host bits set" in result.stderr
    assert vsctl(route_lab, "list-br") == ""


def test_a_readdressed_bridge_takes_its_routes_to_the_new_subnet(
    route_lab: Lab, tmp_path: Path
) -> None:
    """The old subnet goes in the same apply that re-routes through the new one, and a route
    that stays keeps working however the kernel treats routes of a removed subnet."""

    def file(subnet: int, name: str) -> str:
        entry = {
            "name": "rtbr2",
            "type": "ovs-bridge",
            "datapath": "netdev",
            "ipv4": {"enabled": True, "address": [{"ip": f"10.{subnet}.0.1", "prefix": 24}]},
            "routes": [
                {"to": "10.63.0.0/16", "via": f"10.{subnet}.0.2"},
                {"to": "10.64.0.0/16"},
            ],
        }
        return state_file(tmp_path, net(entry), name)

    apply_ok(route_lab, file(61, "a.json"))
    apply_ok(route_lab, file(62, "b.json"), "--prune", "--yes")

    found = json.loads(sh(route_lab, "ip", "-j", "route", "show", "dev", "rtbr2", "proto", "73"))
    assert sorted((r["dst"], r.get("gateway", "")) for r in found) == [
        ("10.63.0.0/16", "10.62.0.2"),
        ("10.64.0.0/16", ""),
    ]
    assert opdbus(route_lab, "verify", file(62, "c.json")).returncode == 0


def test_ipv6_routes_apply_read_back_and_go_without_touching_a_foreign_one(
    route_lab: Lab, tmp_path: Path
) -> None:
    routes = [
        {"to": "2001:db8:77::/48"},
        {"to": "2001:db8:78::/48", "via": "fe80::2", "metric": 10},
    ]
    apply_ok(route_lab, state_file(tmp_path, net(bridge(routes))))
    run_in_lab(route_lab, "ip", "-6", "route", "add", "2001:db8:79::/48", "dev", BRIDGE,
               "proto", "static")  # fmt: skip

    def ipv6_routes() -> list[tuple[str, str, int, str]]:
        found = json.loads(sh(route_lab, "ip", "-6", "-j", "route", "show", "dev", BRIDGE))
        return sorted(
            (r["dst"], r.get("gateway", ""), r["metric"], str(r.get("protocol", "")))
            for r in found
            if r["dst"].startswith("2001:db8:")
        )

    assert ipv6_routes() == [
        ("2001:db8:77::/48", "", 1024, "73"),
        ("2001:db8:78::/48", "fe80::2", 10, "73"),
        ("2001:db8:79::/48", "", 1024, "static"),
    ]
    query = opdbus(route_lab, "query", "--plugin", "net", "--format", "json")
    pasted = tmp_path / "pasted.json"
    pasted.write_text(query.stdout)
    plan = opdbus(route_lab, "diff", str(pasted), "--json")
    assert json.loads(plan.stdout)["pending"] is False, plan.stdout

    apply_ok(route_lab, state_file(tmp_path, net(bridge([])), "b.json"), "--prune")
    assert ipv6_routes() == [("2001:db8:79::/48", "", 1024, "static")]


def test_a_failed_verify_takes_routes_back_to_the_checkpoint(
    route_lab: Lab, tmp_path: Path
) -> None:
    """The routes phase succeeds, then vswitchd cannot realise a port (no device nosuch0):
    the engine's rollback plans from the checkpoint, which read the bridge's addresses and
    had none of op-dbus's routes on it, so the new ones go and the old one comes back."""
    kept = {"to": "198.51.100.96/28", "via": "192.168.1.1"}
    apply_ok(route_lab, state_file(tmp_path, net(bridge([kept]))))
    changed = [
        {"to": "198.51.100.96/28", "state": "absent"},
        {"to": FAR, "via": "192.168.1.1", "table": TABLE},
    ]
    failing = bridge(changed, ports=["eth0", "nosuch0"])
    result = opdbus(route_lab, "apply", state_file(tmp_path, net(failing), "b.json"))

    assert result.returncode == 4, result.stdout + result.stderr
    assert "nosuch0" in result.stdout + result.stderr
    assert routes_in(route_lab, TABLE) == []
    assert routes_in(route_lab) == [("198.51.100.96/28", "192.168.1.1", 0, "73")]
    assert vsctl(route_lab, "list-ports", BRIDGE) == "eth0"

    # A checkpoint that lists no routes at all for the bridge: it had none of op-dbus's.
    apply_ok(route_lab, state_file(tmp_path, net(bridge([])), "c.json"), "--prune")
    assert routes_in(route_lab) == []
    failing = bridge([{"to": FAR, "via": "192.168.1.1"}], ports=["eth0", "nosuch0"])
    result = opdbus(route_lab, "apply", state_file(tmp_path, net(failing), "d.json"))
    assert result.returncode == 4, result.stdout + result.stderr
    assert routes_in(route_lab) == []


def test_a_pruned_bridge_comes_back_with_its_routes_when_the_apply_fails(
    route_lab: Lab, tmp_path: Path
) -> None:
    """Pruning bridge rtbr3 takes its device and routes with it; the apply then fails, and
    the rollback recreates the bridge, its address and its route from the checkpoint."""
    gone = {
        "name": "rtbr3",
        "type": "ovs-bridge",
        "datapath": "netdev",
        "ipv4": {"enabled": True, "address": [{"ip": "10.253.0.1", "prefix": 24}]},
        "routes": [{"to": "10.254.0.0/16", "via": "10.253.0.2", "table": TABLE}],
    }
    apply_ok(route_lab, state_file(tmp_path, net(bridge(), gone)))
    failing = net(bridge(ports=["eth0", "nosuch0"]))
    result = opdbus(route_lab, "apply", "--prune", "--yes", state_file(tmp_path, failing, "b"))

    assert result.returncode == 4, result.stdout + result.stderr
    assert sorted(vsctl(route_lab, "list-br").split()) == [BRIDGE, "rtbr3"]
    found = json.loads(sh(route_lab, "ip", "-j", "route", "show", "table", str(TABLE)))
    assert [(r["dst"], r["gateway"], r["dev"], r["protocol"]) for r in found] == [
        ("10.254.0.0/16", "10.253.0.2", "rtbr3", "73")
    ]
