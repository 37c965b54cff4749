"""A bridge's `openflow` rules against a real ovs-vswitchd, cross-checked with `ovs-ofctl`.

op-dbus's flows carry its cookie; a flow added with ovs-ofctl under another cookie is
foreign and must survive every apply, prune and rollback. The rollback is forced by a real
failure after the flows went in (a foreign default route makes adding the file's gateway
fail), and real traffic shows a drop rule takes effect.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from test_lxc_apply import clean, opdbus, write  # noqa: F401 (clean: a fixture)
from test_lxc_vlan import pings
from test_net_apply import apply_ok, net_lab, state_file  # noqa: F401 (net_lab: a fixture)

from op_dbus.lab import Lab, run_in_lab
from op_dbus.plugins.net.openflow import COOKIE

BRIDGE = "ofbr1"
FOREIGN = "cookie=0x99,priority=7,ip,nw_dst=10.99.0.1,actions=NORMAL"
RULES: list[dict[str, Any]] = [
    {
        "priority": 200,
        "match": {"in_port": "ofp1", "proto": "tcp", "nw_src": "10.51.0.0/24", "tp_dst": 22},
        "actions": ["drop"],
    },
    {
        "table": 0,
        "match": {"proto": "arp", "dl_src": "02:00:00:00:51:01"},
        "actions": [{"output": "ofp2"}, "normal"],
    },
    {"table": 1, "priority": 10, "match": {"dl_vlan": 10}, "actions": [{"resubmit": 2}]},
]


def net(rules: list[dict[str, Any]] | None) -> dict[str, Any]:
    bridge: dict[str, Any] = {"name": BRIDGE, "type": "ovs-bridge"}
    if rules is not None:
        bridge["openflow"] = rules
    ports = [{"name": name, "type": "ovs-internal", "bridge": BRIDGE} for name in ("ofp1", "ofp2")]
    return {"interfaces": [bridge, *ports]}


def flows(lab: Lab, bridge: str = BRIDGE) -> list[str]:
    """`ovs-ofctl dump-flows` of the bridge: every flow, without counters, sorted."""
    out = run_in_lab(lab, "ovs-ofctl", "-O", "OpenFlow14", "--no-stats", "--names",
                     "dump-flows", bridge).stdout  # fmt: skip
    return sorted(line.strip() for line in out.splitlines() if line.strip())


def ours(lab: Lab) -> list[str]:
    return [line for line in flows(lab) if line.startswith(f"cookie={COOKIE:#x},")]


def foreign(lab: Lab) -> list[str]:
    return [line for line in flows(lab) if line.startswith("cookie=0x99,")]


def marked(lab: Lab) -> bool:
    ids = run_in_lab(lab, "ovs-vsctl", "get", "Bridge", BRIDGE, "external_ids").stdout
    return "op-dbus-openflow=" in ids  # ovs-vsctl: {op-dbus-openflow="true", ...}


def queried_flows(lab: Lab) -> list[dict[str, Any]]:
    result = opdbus(lab, "query", "--plugin", "net", "--json")
    assert result.returncode == 0, result.stderr
    entries = json.loads(result.stdout)["state"]["plugins"]["net"]["interfaces"]
    return next(e for e in entries if e["name"] == BRIDGE)["openflow"]


def test_rules_go_in_under_our_cookie_and_foreign_flows_survive(
    net_lab: Lab,  # noqa: F811
    tmp_path: Path,
) -> None:
    apply_ok(net_lab, state_file(tmp_path, net(None)))
    run_in_lab(net_lab, "ovs-ofctl", "add-flow", BRIDGE, FOREIGN)
    apply_ok(net_lab, state_file(tmp_path, net(RULES)))

    installed = ours(net_lab)
    assert len(installed) == 3, flows(net_lab)
    assert any("priority=200,tcp,in_port=ofp1,nw_src=10.51.0.0/24,tp_dst=22 actions=drop" in f
               for f in installed), installed  # fmt: skip
    assert any("table=1, priority=10,dl_vlan=10 actions=resubmit(,2)" in f for f in installed)
    assert len(foreign(net_lab)) == 1

    found = queried_flows(net_lab)
    assert len(found) == 3
    assert {"table": 0, "priority": 32768, "match": {"dl_src": "02:00:00:00:51:01",
            "proto": "arp"}, "actions": [{"output": "ofp2"}, "normal"]} in found  # fmt: skip
    pasted = net(found)
    diff = opdbus(net_lab, "diff", state_file(tmp_path, pasted, "pasted.json"))
    assert diff.returncode == 0, diff.stdout + diff.stderr
    assert opdbus(net_lab, "verify", state_file(tmp_path, net(RULES))).returncode == 0

    run_in_lab(net_lab, "ovs-ofctl", "del-flows", BRIDGE, f"cookie={COOKIE:#x}/-1,table=1")
    drift = opdbus(net_lab, "diff", state_file(tmp_path, net(RULES)))
    assert drift.returncode == 3, drift.stdout + drift.stderr
    assert "+ rule table 1, priority 10: dl_vlan 10 -> resubmit 2" in drift.stdout
    shown = opdbus(net_lab, "show", "--json")
    bridges = {b["name"]: b for b in json.loads(shown.stdout)["bridges"]}
    assert bridges[BRIDGE]["openflow"] == 2, shown.stdout

    apply_ok(net_lab, state_file(tmp_path, net(RULES[:1])), "--prune", "--yes")
    assert len(ours(net_lab)) == 1 and len(foreign(net_lab)) == 1
    apply_ok(net_lab, state_file(tmp_path, net(None)), "--prune", "--yes")  # openflow left out
    assert len(ours(net_lab)) == 1, "a bridge that does not declare openflow keeps its flows"
    assert marked(net_lab)
    apply_ok(net_lab, state_file(tmp_path, net([])))
    assert ours(net_lab) == [] and len(foreign(net_lab)) == 1
    assert not marked(net_lab), "a bridge without our rules is not read by a whole query"


def rules_beside_a_foreign_flow(lab: Lab, tmp_path: Path) -> tuple[list[str], dict[str, Any]]:
    """RULES applied beside a foreign flow: the bridge's flows then, and a net section that
    changes the rules (flood from ofp2) for the next apply."""
    apply_ok(lab, state_file(tmp_path, net(RULES)))
    run_in_lab(lab, "ovs-ofctl", "add-flow", BRIDGE, FOREIGN)
    return flows(lab), net([{"priority": 5, "match": {"in_port": "ofp2"}, "actions": ["flood"]}])


def test_a_later_failure_reinstalls_the_checkpointed_flows(
    net_lab: Lab,  # noqa: F811
    tmp_path: Path,
) -> None:
    before, changed = rules_beside_a_foreign_flow(net_lab, tmp_path)
    gateway = {"enabled": True, "address": [{"ip": "10.52.0.1", "prefix": 24}]}
    changed["interfaces"].append(
        {"name": "ofbr2", "type": "ovs-bridge", "ipv4": gateway | {"gateway": "10.52.0.254"}}
    )
    run_in_lab(net_lab, "ip", "route", "add", "default", "dev", "eth0")  # the fault
    try:
        result = opdbus(net_lab, "apply", state_file(tmp_path, changed, "changed.json"))
    finally:
        run_in_lab(net_lab, "ip", "route", "del", "default", "dev", "eth0")

    assert result.returncode == 4, result.stdout + result.stderr
    assert flows(net_lab) == before
    assert len(ours(net_lab)) == 3 and len(foreign(net_lab)) == 1


def test_a_flow_the_switch_refuses_rolls_back_the_bridges_bundled_before(
    net_lab: Lab,  # noqa: F811
    tmp_path: Path,
) -> None:
    before, changed = rules_beside_a_foreign_flow(net_lab, tmp_path)
    bad = [{"match": {"in_port": "nosuchport"}, "actions": ["drop"]}]  # the fault
    changed["interfaces"].append({"name": "ofbr3", "type": "ovs-bridge", "openflow": bad})
    result = opdbus(net_lab, "apply", state_file(tmp_path, changed, "unknown.json"))

    assert result.returncode == 4, result.stdout + result.stderr
    assert "nosuchport" in result.stdout + result.stderr
    assert "openflow/ofbr1" in result.stdout.split("Rollback did:")[1], result.stdout
    assert flows(net_lab) == before
    assert "ofbr3" not in run_in_lab(net_lab, "ovs-vsctl", "list-br").stdout.split()


CONTAINERS = {"ofc-a": ("920", "10.53.0.2"), "ofc-b": ("921", "10.53.0.3")}


def lxc_state(rules: list[dict[str, Any]]) -> dict[str, Any]:
    containers = [
        {
            "id": ct_id,
            "name": name,
            "veth": f"vi{ct_id}",
            "bridge": "ofbr",
            "running": True,
            "ipv4": {"address": [{"ip": ip, "prefix": 24}]},
        }
        for name, (ct_id, ip) in CONTAINERS.items()
    ]
    bridge = {"name": "ofbr", "type": "ovs-bridge", "openflow": rules}
    return {"version": 1, "plugins": {"net": {"interfaces": [bridge]},
                                      "lxc": {"containers": containers}}}  # fmt: skip


def test_a_drop_rule_blocks_traffic_between_two_containers(clean: Lab, tmp_path: Path) -> None:  # noqa: F811
    result = opdbus(clean, "apply", write(tmp_path, lxc_state([])))
    assert result.returncode == 0, result.stdout + result.stderr
    b = CONTAINERS["ofc-b"][1]
    assert pings(clean, "ofc-a", b)

    drop = {"priority": 100, "match": {"in_port": "vi920", "proto": "ip", "nw_dst": f"{b}/32"},
            "actions": ["drop"]}  # fmt: skip
    result = opdbus(clean, "apply", write(tmp_path, lxc_state([drop]), "drop.json"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert not pings(clean, "ofc-a", b)
    assert not pings(clean, "ofc-b", CONTAINERS["ofc-a"][1])  # the replies from a are dropped

    result = opdbus(clean, "apply", write(tmp_path, lxc_state([]), "open.json"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert pings(clean, "ofc-a", b)
