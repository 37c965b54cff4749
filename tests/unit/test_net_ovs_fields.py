"""VLAN, trunk, patch, tunnel and bond fields: validation at their paths, diffs, operations."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from op_dbus.model import StateInputError, parse_state
from op_dbus.native.vswitch import OWNER_KEY
from op_dbus.plugins.base import ActionKind
from op_dbus.plugins.net.diff import diff_net
from op_dbus.plugins.net.ovs import interface_kind, port_columns

OWNED = {OWNER_KEY: "op-dbus"}
BRIDGE = {"name": "br0", "type": "ovs-bridge"}


def problems(*ports: dict[str, Any]) -> list[tuple[str, str]]:
    doc = {"net": {"interfaces": [BRIDGE, *ports]}}
    try:
        parse_state(json.dumps(doc))
    except StateInputError as exc:
        return [(e.path, e.message) for e in exc.errors]
    return []


def port(name: str, kind: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "type": kind, "bridge": "br0", **fields}


VXLAN = {"type": "vxlan", "remote_ip": "192.0.2.1", "key": 5}


def test_every_new_port_type_is_accepted_with_its_fields() -> None:
    assert (
        problems(
            port("p0", "ovs-internal", vlan=10, trunks=[20, 30], vlan_mode="native-untagged"),
            port("pa", "ovs-patch", peer="pb"),
            port("pb", "ovs-patch", peer="pa"),
            port("t0", "ovs-tunnel", tunnel={**VXLAN, "dst_port": 4790}),
            port(
                "g0",
                "ovs-tunnel",
                tunnel={"type": "gre", "remote_ip": "192.0.2.2", "key": 2**32 - 1},
            ),
            port(
                "b0",
                "ovs-bond",
                bond={"interfaces": ["e1", "e2"], "mode": "balance-tcp", "lacp": "active"},
            ),
        )
        == []
    )


@pytest.mark.parametrize(
    ("entry", "path", "words"),
    [
        (port("p0", "ovs-port", trunks=[4096]), "net.interfaces[1].trunks[0]", "VLAN tag from 0"),
        (port("p0", "ovs-port", trunks=[5, 5]), "net.interfaces[1].trunks", "twice"),
        (
            port("p0", "ovs-port", trunks=[5], vlan_mode="access"),
            "net.interfaces[1].trunks",
            "access",
        ),
        (port("p0", "ovs-port", vlan_mode="x"), "net.interfaces[1].vlan_mode", "one of"),
        (port("p0", "ovs-patch"), "net.interfaces[1].peer", "required on an ovs-patch"),
        (port("p0", "ovs-patch", peer="p0"), "net.interfaces[1].peer", "own peer"),
        (port("p0", "ovs-port", peer="x"), "net.interfaces[1].peer", "only an ovs-patch"),
        (port("p0", "ovs-patch", peer="p;rm"), "net.interfaces[1].peer", "not allowed"),
        (port("t0", "ovs-tunnel"), "net.interfaces[1].tunnel", "required"),
        (
            port("t0", "ovs-tunnel", tunnel={**VXLAN, "key": 2**24}),
            "net.interfaces[1].tunnel.key",
            "24-bit",
        ),
        (
            port("t0", "ovs-tunnel", tunnel={**VXLAN, "remote_ip": "127.0.0.1"}),
            "net.interfaces[1].tunnel.remote_ip",
            "loopback",
        ),
        (
            port("t0", "ovs-tunnel", tunnel={**VXLAN, "dst_port": 0}),
            "net.interfaces[1].tunnel.dst_port",
            "UDP port from 1",
        ),
        (
            port("t0", "ovs-tunnel", tunnel={**VXLAN, "options": {"a": "b"}}),
            "net.interfaces[1].tunnel.options",
            "unknown field",
        ),
        (
            port("t0", "ovs-tunnel", tunnel=VXLAN, ipv4={"enabled": True}),
            "net.interfaces[1].ipv4",
            "not allowed on an ovs-tunnel",
        ),
        (
            port("b0", "ovs-bond", bond={"interfaces": ["e1"]}),
            "net.interfaces[1].bond.interfaces",
            "at least 2",
        ),
        (
            port("b0", "ovs-bond", bond={"interfaces": ["e1", "e1"]}),
            "net.interfaces[1].bond.interfaces[1]",
            "twice",
        ),
        (
            port("b0", "ovs-bond", bond={"interfaces": ["e1", "br0"]}),
            "net.interfaces[1].bond.interfaces[1]",
            "also a bridge or port",
        ),
        (
            port("b0", "ovs-bond", bond={"interfaces": ["e1", "e2"], "mode": "round-robin"}),
            "net.interfaces[1].bond.mode",
            "one of",
        ),
        ({**BRIDGE, "name": "br1", "trunks": [1]}, "net.interfaces[1].trunks", "only ports"),
        (
            {**BRIDGE, "name": "br1", "bond": {"interfaces": ["a", "b"]}},
            "net.interfaces[1].bond",
            "ovs-bond",
        ),
    ],
)
def test_each_bad_value_is_named_at_its_path(entry: dict, path: str, words: str) -> None:
    found = problems(entry)
    assert [p for p, _ in found] == [path], found
    assert words in found[0][1], found


def test_a_patch_pair_must_name_each_other() -> None:
    found = problems(port("pa", "ovs-patch", peer="pb"), port("pb", "ovs-patch", peer="pc"))
    assert [p for p, _ in found] == ["net.interfaces[2].peer"] or [p for p, _ in found] == [
        "net.interfaces[1].peer"
    ], found


@given(st.integers())
def test_tunnel_keys_are_bounded_like_ovs(key: int) -> None:
    gre = port("g0", "ovs-tunnel", tunnel={"type": "gre", "remote_ip": "192.0.2.2", "key": key})
    assert (problems(gre) == []) == (0 <= key <= 2**32 - 1)


def current_port(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "type": "ovs-port",
        "bridge": "br0",
        "external_ids": OWNED,
        "owned": True,
        **extra,
    }


def current(*ports: dict[str, Any]) -> dict[str, Any]:
    bridge = {
        **BRIDGE,
        "ports": [],
        "datapath": "netdev",
        "external_ids": OWNED,
        "stp": False,
        "owned": True,
    }
    return {"interfaces": [bridge, *ports]}


def test_trunks_compare_as_a_set_and_a_rollback_clears_them() -> None:
    have = current(current_port("p0", trunks=[10, 20]))
    same = {"interfaces": [BRIDGE, port("p0", "ovs-port", trunks=[20, 10, 20])]}
    assert diff_net(have, same) == []
    (action,) = diff_net(have, current(current_port("p0")), exhaustive=True)
    assert action.after == {"name": "p0", "bridge": "br0", "trunks": None}
    assert port_columns(action.after) == {"trunks": ["set", []]}


def test_a_bond_left_without_mode_keeps_its_mode_and_a_rollback_clears_it() -> None:
    bond = {"interfaces": ["e1", "e2"], "mode": "balance-slb"}
    have = current(current_port("b0", type="ovs-bond", bond=bond))
    want = {
        "interfaces": [
            BRIDGE,
            port("b0", "ovs-bond", bond={"interfaces": ["e2", "e1"], "lacp": "active"}),
        ]
    }
    (action,) = diff_net(have, want)
    assert action.after["bond"] == {
        "interfaces": ["e1", "e2"],
        "mode": "balance-slb",
        "lacp": "active",
    }
    checkpoint = current(current_port("b0", type="ovs-bond", bond={"interfaces": ["e1", "e2"]}))
    (back,) = diff_net(have, checkpoint, exhaustive=True)
    assert port_columns(back.after) == {"bond_mode": ["set", []], "lacp": ["set", []]}


def test_a_changed_tunnel_replaces_type_and_every_option() -> None:
    have = current(current_port("t0", type="ovs-tunnel", tunnel={**VXLAN}))
    geneve = {"type": "geneve", "remote_ip": "192.0.2.9"}
    (action,) = diff_net(have, {"interfaces": [BRIDGE, port("t0", "ovs-tunnel", tunnel=geneve)]})
    assert action.kind == ActionKind.MODIFY
    assert interface_kind(action.after) == {
        "type": "geneve",
        "options": ["map", [["remote_ip", "192.0.2.9"]]],
    }
    assert diff_net(have, {"interfaces": [BRIDGE, port("t0", "ovs-tunnel", tunnel=VXLAN)]}) == []


def test_a_new_patch_port_is_created_with_its_peer() -> None:
    (action,) = diff_net(current(), {"interfaces": [BRIDGE, port("pa", "ovs-patch", peer="pb")]})
    assert action.kind == ActionKind.CREATE and action.after["peer"] == "pb"
    assert interface_kind(action.after) == {"type": "patch", "options": ["map", [["peer", "pb"]]]}
