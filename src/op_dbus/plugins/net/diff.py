"""The net plugin's diff: pure logic from (current, desired) sections to actions.

Resources are `bridge/NAME`, `port/NAME`, `openflow/BRIDGE` (openflow.py), `ipv4/NAME`,
`ipv6/NAME` and `routes/NAME` (routes.py). Desired is partial (docs/decisions.md, "What a file
deletes"): a field left out is left alone, a bridge's `ports`, an interface's `ipv4.address`
(and `ipv6.address`) and its `routes` list what must be there, not all there is (a bridge's
`openflow` is the whole of op-dbus's flows on it), and a bridge or port the file does not name
stays. An owned one (query marks rows `owned`) goes when marked `state: "absent"`, or with
`prune` (an authoritative document: the lists are then whole, and owned rows it does not name
are removed). With `exhaustive` (rollback), desired is a whole checkpoint: as with prune, and
every field it has is restored, each interface's addresses, gateways and routes too (an
interface it read addresses of and lists no routes for had none of op-dbus's).
"""

from __future__ import annotations

from typing import Any

from op_dbus.errors import Refused
from op_dbus.model.rules import DHCP_REFUSED
from op_dbus.model.state import BRIDGE_TYPE, PORT_TYPES
from op_dbus.native.vswitch import PORT_OWNER_KEY
from op_dbus.plugins.base import Action, ActionKind, Section
from op_dbus.plugins.net import migrate, routes
from op_dbus.plugins.net.openflow import flow_actions

PLUGIN = "net"
BRIDGE_FIELDS = ("datapath", "stp", "fail_mode", "mtu")
PORT_FIELDS = ("vlan", "trunks", "vlan_mode", "mtu", "peer", "tunnel", "bond")
DEFAULTS: dict[str, Any] = {"stp": False}
CLEARABLE = ("fail_mode", "vlan", "trunks", "vlan_mode")
"""Fields a rollback clears when the checkpoint has none (the others have no 'unset')."""


def _interfaces(section: Section | None) -> list[dict[str, Any]]:
    return list((section or {}).get("interfaces") or [])


def split(section: Section | None) -> tuple[dict[str, dict], dict[str, dict]]:
    """Bridges by name, and ports by name (each with its `bridge`) from a section.

    A name in a bridge's `ports` list is a port entry of type ovs-port unless the section
    declares that port on its own (type, vlan, external_ids...).
    """
    entries = _interfaces(section)
    bridges = {e["name"]: e for e in entries if e.get("type") == BRIDGE_TYPE}
    ports: dict[str, dict] = {}
    for bridge in bridges.values():
        for name in bridge.get("ports") or []:
            ports[name] = {"name": name, "type": "ovs-port", "bridge": bridge["name"]}
    for entry in entries:
        if entry.get("type") in PORT_TYPES:
            ports[entry["name"]] = {**ports.get(entry["name"], {}), **entry}
    return bridges, ports


def _containers_on(bridge: str, ports: dict[str, dict]) -> dict[str, list[str]]:
    """`{"containers": [...]}` naming the containers whose ports are on `bridge` (they lose
    their link when it goes), for the plan to show; {} when there are none."""
    names = sorted(
        owner
        for port in ports.values()
        if port["bridge"] == bridge
        and (owner := (port.get("external_ids") or {}).get(PORT_OWNER_KEY))
    )
    return {"containers": names} if names else {}


def check_desired(desired: Section) -> None:
    """Refuse what op-dbus cannot do (plan time, so nothing is touched)."""
    for index, entry in enumerate(_interfaces(desired)):
        if (entry.get("ipv4") or {}).get("dhcp") is True:
            raise Refused(f"net.interfaces[{index}].ipv4.dhcp", DHCP_REFUSED)


def _fields_changed(
    current: dict, desired: dict, names: tuple[str, ...], exhaustive: bool
) -> dict[str, Any]:
    changed: dict[str, Any] = {}
    for name in names:
        if name not in desired:
            if exhaustive and name in CLEARABLE and current.get(name) is not None:
                changed[name] = None
        elif name == "mtu" and desired[name] is None:
            continue
        elif (want := _wanted(name, current, desired, exhaustive)) != _normal(
            name, current.get(name, DEFAULTS.get(name))
        ):
            changed[name] = want
    return changed


def _normal(name: str, value: Any) -> Any:
    """A field's value in one spelling: sets (trunks, a bond's interfaces) sorted, and keys
    written as null left out of a tunnel or bond."""
    if name == "trunks" and value is not None:
        return sorted(set(value))
    if name in ("tunnel", "bond") and value is not None:
        value = {k: v for k, v in value.items() if v is not None}
        if "interfaces" in value:
            value["interfaces"] = sorted(set(value["interfaces"]))
    return value


def _wanted(name: str, current: dict, desired: dict, exhaustive: bool) -> Any:
    """What `desired` asks for `name`. A bond's `mode` and `lacp` left out keep theirs (a
    rollback's checkpoint has every key it means)."""
    want = _normal(name, desired[name])
    if name == "bond" and want is not None and not exhaustive:
        kept = {k: v for k, v in (current.get("bond") or {}).items() if k != "interfaces"}
        want = {**kept, **{k: v for k, v in want.items() if v is not None}}
    return want


def _ids_changed(current: dict, desired: dict, exhaustive: bool) -> dict[str, Any]:
    if "external_ids" not in desired:
        return {}
    have, want = current.get("external_ids") or {}, desired["external_ids"] or {}
    changed: dict[str, Any] = {}
    to_set = {k: v for k, v in want.items() if have.get(k) != v}
    if to_set:
        changed["external_ids"] = to_set
    if exhaustive and (gone := sorted(set(have) - set(want))):
        changed["external_ids_remove"] = gone
    return changed


def _modify(
    resource: str, have: dict, want: dict, fields: tuple[str, ...], exhaustive: bool, key: dict
) -> list[Action]:
    """The MODIFY bringing `have` to `want`, as a list (empty when nothing differs); `key`
    identifies the row in the action's `after`."""
    changed = _fields_changed(have, want, fields, exhaustive)
    changed.update(_ids_changed(have, want, exhaustive))
    if not changed:
        return []
    before = {k: have.get(k) for k in changed if not k.endswith("_remove")}
    return [Action(PLUGIN, ActionKind.MODIFY, resource, before, {**key, **changed})]


def address_target(have: list[dict], want: list[dict], pruning: bool) -> list[dict[str, Any]]:
    """The addresses an interface ends with. The listed ones are added; those marked absent
    go; the others stay, unless `pruning` (then the list is the whole of them)."""
    keep = [] if pruning else [(a["ip"], a["prefix"]) for a in have]
    gone = {(a["ip"], a["prefix"]) for a in want if a.get("state") == "absent"}
    listed = [(a["ip"], a["prefix"]) for a in want if a.get("state") != "absent"]
    target = [a for a in dict.fromkeys([*keep, *listed]) if a not in gone]
    return [{"ip": ip, "prefix": prefix} for ip, prefix in target]


def _ip_changes(
    current: dict, desired: dict, family: str, exhaustive: bool, pruning: bool
) -> dict[str, Any]:
    """What the `ipv4` or `ipv6` (`family`) of one interface must change."""
    have, want = current.get(family) or {}, desired.get(family) or {}
    changes: dict[str, Any] = {}
    if want.get("enabled") is not None and want["enabled"] != have.get("enabled", False):
        changes["enabled"] = want["enabled"]
    if want.get("address") is not None:
        target = address_target(have.get("address") or [], want["address"], pruning)
        if {(a["ip"], a["prefix"]) for a in target} != {
            (a["ip"], a["prefix"]) for a in have.get("address") or []
        }:
            changes["address"] = target
    if ("gateway" in want or exhaustive) and want.get("gateway") != have.get("gateway"):
        changes["gateway"] = want.get("gateway")
    elif "address" in changes and want.get("gateway"):  # re-asserted after the change
        changes["gateway"] = want["gateway"]
    return changes


def _absent(section: Section) -> dict[str, dict[str, Any]]:
    """Interfaces the section marks `state: "absent"`, by name."""
    return {e["name"]: e for e in _interfaces(section) if e.get("state") == "absent"}


def _present(section: Section) -> Section:
    return {
        **section,
        "interfaces": [e for e in _interfaces(section) if e.get("state") != "absent"],
    }


def _unowned_refusal(kind: str, name: str) -> Refused:
    return Refused(
        f"{kind} {name}", 'state is "absent", but op-dbus did not create it; it never removes it'
    )


def diff_net(
    current: Section, desired: Section, *, exhaustive: bool = False, prune: bool = False
) -> list[Action]:
    """Deletes (ports, then bridges), then bridge and port creates/modifies, then the moves of
    ports' addresses to their bridges (migrate.py), then ipv4 and ipv6, then routes (whose
    next hops the addresses make reachable).

    Owned bridges and ports go when marked absent, or, with `prune` (an authoritative
    document) or `exhaustive` (a checkpoint), when the document does not name them."""
    if not exhaustive:
        check_desired(desired)
    pruning = prune or exhaustive
    absent = _absent(desired)
    cur_bridges, cur_ports = split(current)
    want_bridges, want_ports = split(_present(desired))
    deletes: list[Action] = []
    upserts: list[Action] = []
    addresses: list[Action] = []

    for name in absent:
        row = cur_bridges.get(name) or cur_ports.get(name)
        if row is not None and not row.get("owned"):
            raise _unowned_refusal("bridge" if name in cur_bridges else "port", name)
    gone_bridges = {
        name
        for name, b in cur_bridges.items()
        if b.get("owned") and (name in absent or (pruning and name not in want_bridges))
    }
    for name, port in sorted(cur_ports.items()):
        if port["bridge"] in gone_bridges or not port.get("owned"):
            continue
        target = want_ports.get(name)
        if (
            name in absent
            or (target is None and pruning)
            or (target is not None and target["bridge"] != port["bridge"])
        ):
            deletes.append(Action(PLUGIN, ActionKind.DELETE, f"port/{name}", before=port))
    for name in sorted(gone_bridges):
        before = {**cur_bridges[name], **_containers_on(name, cur_ports)}
        deletes.append(Action(PLUGIN, ActionKind.DELETE, f"bridge/{name}", before=before))

    for name, want in want_bridges.items():
        have = cur_bridges.get(name)
        fields = {k: want[k] for k in (*BRIDGE_FIELDS, "external_ids", "owned") if k in want}
        if have is None:
            upserts.append(
                Action(PLUGIN, ActionKind.CREATE, f"bridge/{name}", None, {"name": name, **fields})
            )
            continue
        key = {"name": name}
        upserts += _modify(f"bridge/{name}", have, want, BRIDGE_FIELDS, exhaustive, key)

    for name, want in want_ports.items():
        have = cur_ports.get(name)
        keys = ("type", "bridge", *PORT_FIELDS, "external_ids", "owned")
        if have is None or have["bridge"] != want["bridge"]:
            if have is not None and not have.get("owned"):
                raise Refused(
                    f"port {name}",
                    f"it is on bridge {have['bridge']}, which op-dbus does not own;"
                    f" it will not move it to {want['bridge']}",
                )
            after = {"name": name, **{k: want[k] for k in keys if k in want}}
            upserts.append(Action(PLUGIN, ActionKind.CREATE, f"port/{name}", None, after))
            continue
        key = {"name": name, "bridge": have["bridge"]}
        upserts += _modify(f"port/{name}", have, want, PORT_FIELDS, exhaustive, key)

    current_all = {**cur_ports, **cur_bridges}
    for entry in _interfaces(_present(desired)):
        name = entry["name"]
        for family in ("ipv4", "ipv6"):
            if entry.get(family) is None:
                continue
            have = current_all.get(name, {})  # not there: created above, its addresses follow
            changes = _ip_changes(have, entry, family, exhaustive, pruning)
            if changes:
                before = {k: (have.get(family) or {}).get(k) for k in changes}
                after = {"name": name, **changes}
                resource = f"{family}/{name}"
                addresses.append(Action(PLUGIN, ActionKind.MODIFY, resource, before, after))
    moved = migrate.moves(want_ports, current, desired if exhaustive else None)
    return [
        *deletes,
        *upserts,
        *flow_actions(cur_bridges, want_bridges),
        *moved,
        *addresses,
        *_route_actions(current_all, desired, exhaustive, pruning),
    ]


def _route_actions(
    current: dict[str, dict], desired: Section, exhaustive: bool, pruning: bool
) -> list[Action]:
    found = []
    for entry in _interfaces(_present(desired)):
        declared = entry.get("routes")
        if declared is None and not (exhaustive and "ipv4" in entry):
            continue
        have = current.get(entry["name"], {}).get("routes") or []
        action = routes.route_action(entry["name"], have, declared or [], pruning)
        if action is not None:
            found.append(action)
    return found
