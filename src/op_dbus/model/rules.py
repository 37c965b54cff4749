"""Rules that relate fields to each other (duplicates, bridge membership, subnets, conflicts).

They read the raw document rather than the models so that they still run, and report, when
some unrelated field is invalid: the user sees every error at once. Values of the wrong type
are skipped here; the field validators report those.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from op_dbus.model.errors import FieldError, FieldWarning
from op_dbus.model.fields import check_ipv4, check_ipv6, check_ipv6_gateway
from op_dbus.model.openflow import flow_rule_errors
from op_dbus.model.paths import Loc, describe, format_path, quoted
from op_dbus.model.route_rules import RouteRules
from op_dbus.model.state import BRIDGE_TYPE, FIREWALL_LIST_MAX, NIC_FIELDS, PORT_TYPES

_BRIDGE_ONLY = ("ports", "stp", "fail_mode", "datapath", "openflow")
_PORT_ONLY = ("vlan", "trunks", "vlan_mode")
_TYPE_ONLY = {"peer": "ovs-patch", "tunnel": "ovs-tunnel", "bond": "ovs-bond"}
"""Fields one port type needs (and only it may have)."""
VNI_MAX = 2**24 - 1
"""VXLAN's and Geneve's network identifier is 24 bits; GRE's key is 32."""
_ABSENT_KEEPS = ("name", "type", "state", "bridge")
"""What an interface marked `state: "absent"` may say besides: which one it is."""
FAMILIES = ("ipv4", "ipv6")
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def rule_errors(sections: Any, base: Loc) -> list[FieldError]:
    """Errors of the rules, for the mapping holding the sections located at `base`."""
    if not isinstance(sections, dict):
        return []
    rules = _Rules(base)
    net, lxc, systemd = (sections.get(name) for name in ("net", "lxc", "systemd"))
    rules.net(net)
    rules.lxc(lxc)
    rules.systemd(systemd)
    return rules.errors + firewall_rule_errors(sections.get("firewall"), (*base, "firewall"))


def rule_warnings(sections: Any, base: Loc) -> list[FieldWarning]:
    """What a user most likely did not mean, though op-dbus can do it: two bridges whose
    subnets overlap (the kernel routes the shared part through one of them), and a container
    address outside every subnet of its bridge (it reaches nobody on that bridge)."""
    if not isinstance(sections, dict):
        return []
    found: list[FieldWarning] = []
    for family in FAMILIES:
        found += _family_warnings(sections, base, family)
    return found


def _family_warnings(sections: dict[str, Any], base: Loc, family: str) -> list[FieldWarning]:
    """rule_warnings for the addresses of one family (`ipv4` or `ipv6`)."""
    found: list[FieldWarning] = []
    bridges: dict[str, list[tuple[IpNetwork, Loc]]] = {}
    for i, iface in _items(sections.get("net"), "interfaces"):
        name = _text(iface, "name")
        if iface.get("type") == BRIDGE_TYPE and name is not None:
            loc = (*base, "net", "interfaces", i, family, "address")
            bridges[name] = [(a.network, (*loc, j)) for j, a in _addresses(iface, family)]
    seen: list[tuple[str, IpNetwork, Loc]] = []
    for name, networks in bridges.items():
        for network, loc in networks:
            for other, other_net, other_loc in seen:
                if other != name and network.overlaps(other_net):
                    why = f"subnet {network} overlaps {other_net} of bridge {quoted(other)}"
                    found.append(
                        FieldWarning(format_path(loc), f"{why} at {format_path(other_loc)}")
                    )
        seen += [(name, network, loc) for network, loc in networks]
    for i, ct in _items(sections.get("lxc"), "containers"):
        subnets = [network for network, _ in bridges.get(_text(ct, "bridge") or "", [])]
        for j, address in _addresses(ct, family) if subnets else ():
            if not any(address.ip in network for network in subnets):
                loc = (*base, "lxc", "containers", i, family, "address", j)
                where = ", ".join(str(n) for n in subnets)
                why = f"{address} is outside the subnets of bridge {quoted(ct['bridge'])} ({where})"
                found.append(FieldWarning(format_path(loc), why))
    return found


def _addresses(item: dict[str, Any], family: str = "ipv4") -> list[tuple[int, IpInterface]]:
    """The valid addresses of an interface's or a container's `ipv4` (or `ipv6`), with their
    positions."""
    section = item.get(family)
    listed = section.get("address") if isinstance(section, dict) else None
    pairs = [
        (j, _ip_interface(a, family))
        for j, a in enumerate(listed if isinstance(listed, list) else [])
    ]
    return [(j, a) for j, a in pairs if a is not None]


def _items(section: Any, key: str) -> list[tuple[int, dict[str, Any]]]:
    seq = section.get(key) if isinstance(section, dict) else None
    if not isinstance(seq, list):
        return []
    return [(i, item) for i, item in enumerate(seq) if isinstance(item, dict)]


def _text(item: dict[str, Any], key: str) -> str | None:
    value = item.get(key)
    return value if isinstance(value, str) and value else None


def _ip_interface(address: Any, family: str = "ipv4") -> IpInterface | None:
    """The address with its prefix, or None when either is invalid (the fields say why)."""
    if not isinstance(address, dict):
        return None
    ip, prefix = address.get("ip"), address.get("prefix")
    v6 = family == "ipv6"
    if type(prefix) is not int or not 1 <= prefix <= (128 if v6 else 32):
        return None
    try:
        if v6:
            return ipaddress.IPv6Interface(f"{check_ipv6(ip)}/{prefix}")
        return ipaddress.IPv4Interface(f"{check_ipv4(ip)}/{prefix}")
    except ValueError:
        return None


def _edge_of(ip: IpAddress, network: IpNetwork) -> str | None:
    """Which of `network`'s reserved addresses `ip` is ("network", "broadcast"), if any.
    Only IPv4 prefixes up to /30 have them: a /31 or /32 is all hosts (RFC 3021). IPv6 has
    no broadcast; its network address is the subnet-router anycast (RFC 4291), up to /126
    (a /127 is all hosts, RFC 6164)."""
    if isinstance(network, ipaddress.IPv6Network):
        if network.prefixlen >= 127 or ip != network.network_address:
            return None
        return "subnet-router anycast"
    if network.prefixlen >= 31:
        return None
    if ip == network.network_address:
        return "network"
    if ip == network.broadcast_address:
        return "broadcast"
    return None


def _address_problems(addresses: list[Any], family: str) -> list[tuple[int, str]]:
    """(index, why) for each address that is its own subnet's network or broadcast address."""
    problems = []
    for j, iface in enumerate(_ip_interface(a, family) for a in addresses):
        edge = _edge_of(iface.ip, iface.network) if iface else None
        if iface and edge:
            problems.append(
                (j, f"{iface.ip} is the {edge} address of {iface.network}, not a host address")
            )
    return problems


def _gateway_problem(section: dict[str, Any], owner: str, family: str) -> str | None:
    """Why the gateway cannot be the next hop of the declared subnets, or None if fine or
    unknowable. An IPv6 link-local gateway is on every link, so always a possible one."""
    gateway = section.get("gateway")
    addresses = section.get("address")
    addresses = [] if addresses is None else addresses
    if gateway is None or not isinstance(addresses, list):
        return None
    try:
        if family == "ipv6":
            gw: IpAddress = ipaddress.IPv6Address(check_ipv6_gateway(gateway))
        else:
            gw = ipaddress.IPv4Address(check_ipv4(gateway))
    except ValueError:
        return None
    if gw.is_link_local and family == "ipv6":
        return None
    ifaces = [_ip_interface(a, family) for a in addresses]
    if None in ifaces:
        return None
    own = next((j for j, i in enumerate(ifaces) if i and i.ip == gw), None)
    if own is not None:
        return (
            f"gateway {gateway} is this {owner}'s own address (address[{own}]): "
            "the gateway must be another host on the subnet"
        )
    inside = [i.network for i in ifaces if i and gw in i.network]
    if not inside:
        where = ", ".join(str(i.network) for i in ifaces if i) or "none is declared"
        return f"gateway {gateway} is not inside any subnet declared here ({where})"
    edge = _edge_of(gw, inside[0])
    if edge:
        return f"gateway {gateway} is the {edge} address of {inside[0]}, not a host address"
    return None


DHCP_REFUSED = (
    "is true, but op-dbus runs no DHCP client and starts none: declare static addresses"
    " (ipv4.address, ipv4.gateway), or leave this interface's ipv4 out for another tool"
)
"""Why `dhcp: true` is refused before anything runs (docs/net.md has the reasoning)."""
SECOND_GATEWAY = (
    "is a second default route: op-dbus sets one default route and removes its others,"
    " so two would keep replacing each other; declare {family}.gateway on one interface"
)
"""Why a second `ipv4.gateway` (or `ipv6.gateway`) among the interfaces is refused before
anything runs."""


class _Rules:
    def __init__(self, base: Loc) -> None:
        self.base = base
        self.errors: list[FieldError] = []
        self.interfaces: dict[str, tuple[str, Loc]] = {}  # name -> (type, loc of its name)
        self.port_names: dict[str, Loc] = {}  # entries of bridges' `ports` lists
        self.ips: dict[IpAddress, Loc] = {}  # every declared address, first seen
        self.patches: dict[str, Any] = {}  # ovs-patch name -> its peer
        self.absent: dict[str, Loc] = {}  # interfaces marked absent -> loc of their state

    def error(self, loc: Loc, message: str) -> None:
        self.errors.append(FieldError(format_path(loc), message))

    def net(self, net: Any) -> None:
        base = (*self.base, "net", "interfaces")
        items = _items(net, "interfaces")
        for i, iface in items:
            name, kind = _text(iface, "name"), iface.get("type")
            if name is None:
                continue
            if name in self.interfaces:
                first = format_path(self.interfaces[name][1])
                self.error(
                    (*base, i, "name"), f"duplicate interface name {quoted(name)} (also at {first})"
                )
            else:
                self.interfaces[name] = (kind if isinstance(kind, str) else "", (*base, i, "name"))
        self.absent = {
            name: (*base, i, "state")
            for i, iface in items
            if iface.get("state") == "absent" and (name := _text(iface, "name"))
        }
        claims: dict[str, tuple[str, Loc]] = {}  # port -> (bridge, loc of the claim)
        self.patches = {
            name: iface.get("peer")
            for _, iface in items
            if iface.get("type") == "ovs-patch" and (name := _text(iface, "name"))
        }
        for i, iface in items:
            if iface.get("type") == BRIDGE_TYPE:
                self._bridge(iface, (*base, i), claims)
        for i, iface in items:
            if iface.get("type") in PORT_TYPES:
                self._port(iface, (*base, i), claims)
        for i, iface in items:
            if iface.get("state") == "absent":
                self._absent(iface, (*base, i))
        for i, iface in items:
            self._link_down_for_ipv6(iface, (*base, i))
        for family in FAMILIES:
            gateways: list[Loc] = []
            for i, iface in items:
                if isinstance(iface.get(family), dict):
                    self._interface_ip(iface[family], (*base, i, family), family)
                    if iface[family].get("gateway") is not None:
                        gateways.append((*base, i, family, "gateway"))
            second = SECOND_GATEWAY.format(family=family)
            for loc in gateways[1:]:
                self.error(loc, f"{second} (the first is at {format_path(gateways[0])})")
        routes = RouteRules()
        for i, iface in items:
            routes.interface(iface, (*base, i))
        for loc, why in routes.errors:
            self.error(loc, why)

    def _bridge(self, iface: dict[str, Any], loc: Loc, claims: dict[str, tuple[str, Loc]]) -> None:
        name = _text(iface, "name") or ""
        if iface.get("bridge") is not None:
            self.error((*loc, "bridge"), "not allowed on an ovs-bridge: ports name their bridge")
        for field in _PORT_ONLY:
            if iface.get(field) is not None:
                self.error((*loc, field), "only ports (ovs-port, ovs-internal, ...) carry VLANs")
        for field in _TYPE_ONLY:
            if iface.get(field) is not None:
                self.error((*loc, field), f"only an {_TYPE_ONLY[field]} has {field}")
        for where, message in flow_rule_errors(iface.get("openflow"), name):
            self.error((*loc, "openflow", *where), message)
        ports = iface.get("ports")
        for j, port in enumerate(ports if isinstance(ports, list) else []):
            if not isinstance(port, str) or not port:
                continue
            here = (*loc, "ports", j)
            if port == name:
                self.error(here, f"bridge {quoted(name)} cannot be a port of itself")
            elif self.interfaces.get(port, ("",))[0] == BRIDGE_TYPE:
                self.error(here, f"{quoted(port)} is an ovs-bridge; a bridge cannot be a port")
            elif port in claims and claims[port][0] == name:
                self.error(
                    here,
                    f"port {quoted(port)} is listed twice (also at {format_path(claims[port][1])})",
                )
            elif port in claims:
                owner, where = claims[port]
                self.error(
                    here,
                    f"port {quoted(port)} is already claimed by bridge {quoted(owner)} at "
                    f"{format_path(where)}; a port belongs to one bridge",
                )
            else:
                claims[port] = (name, here)
                self.port_names[port] = here

    def _absent(self, iface: dict[str, Any], loc: Loc) -> None:
        """An interface to remove says only which one it is, and nothing else needs it."""
        for field in sorted(set(iface) - set(_ABSENT_KEEPS)):
            self.error((*loc, field), 'not allowed with state "absent": it is removed')
        name = _text(iface, "name") or ""
        if name in self.port_names:
            where = format_path(self.port_names[name])
            self.error((*loc, "state"), f'is "absent", but {where} lists it as a port')

    def _port(self, iface: dict[str, Any], loc: Loc, claims: dict[str, tuple[str, Loc]]) -> None:
        name, kind, bridge = _text(iface, "name") or "", iface["type"], iface.get("bridge")
        for field in _BRIDGE_ONLY:
            if iface.get(field) is not None:
                self.error(
                    (*loc, field), f"not allowed on an {kind}: only an ovs-bridge has {field}"
                )
        for family in FAMILIES:
            if kind != "ovs-internal" and iface.get(family) is not None:
                self.error(
                    (*loc, family),
                    f"not allowed on an {kind}: address the bridge or an ovs-internal port instead",
                )
        self._port_kind(iface, loc, kind, claims)
        if bridge is None:
            if iface.get("state") != "absent":
                self.error((*loc, "bridge"), f"is required on an {kind}: the bridge it joins")
            return
        if not isinstance(bridge, str) or not bridge:
            return
        declared = self.interfaces.get(bridge, ("",))[0]
        if iface.get("state") != "absent" and bridge in self.absent:
            self.error(
                (*loc, "bridge"),
                f'bridge {quoted(bridge)} is marked "absent" at {format_path(self.absent[bridge])}',
            )
        if bridge == name:
            self.error((*loc, "bridge"), f"port {quoted(name)} cannot be its own bridge")
        elif declared in PORT_TYPES:
            self.error(
                (*loc, "bridge"),
                f"{quoted(bridge or '')} is declared as an {declared}, not an ovs-bridge",
            )
        elif name in claims and claims[name][0] != bridge:
            owner, where = claims[name]
            self.error(
                (*loc, "bridge"),
                f"port {quoted(name)} is already claimed by bridge {quoted(owner)} at "
                f"{format_path(where)}; a port belongs to one bridge",
            )
        elif name:
            claims[name] = (bridge, (*loc, "bridge"))

    def _port_kind(
        self, iface: dict[str, Any], loc: Loc, kind: str, claims: dict[str, tuple[str, Loc]]
    ) -> None:
        """What one port type needs: a patch its peer, a tunnel its endpoint, a bond its
        members; and VLAN fields that agree with each other."""
        name = _text(iface, "name") or ""
        for field, owner in _TYPE_ONLY.items():
            if owner == kind and iface.get(field) is None:
                self.error((*loc, field), f"is required on an {kind}")
            elif owner != kind and iface.get(field) is not None:
                self.error((*loc, field), f"not allowed on an {kind}: only an {owner} has it")
        peer = iface.get("peer")
        if kind == "ovs-patch" and peer == name and name:
            self.error((*loc, "peer"), f"patch port {quoted(name)} cannot be its own peer")
        elif kind == "ovs-patch" and isinstance(peer, str) and peer in self.patches:
            back = self.patches[peer]
            if back != name:
                self.error(
                    (*loc, "peer"),
                    f"{quoted(peer)} is an ovs-patch of this file whose peer is "
                    f"{quoted(str(back))}, not {quoted(name)}: a patch pair names each other",
                )
        tunnel = iface.get("tunnel")
        if kind == "ovs-tunnel" and isinstance(tunnel, dict):
            key = tunnel.get("key")
            if tunnel.get("type") in ("vxlan", "geneve") and type(key) is int and key > VNI_MAX:
                self.error(
                    (*loc, "tunnel", "key"),
                    f"must be at most {VNI_MAX} for {tunnel['type']} (a 24-bit VNI), got {key}",
                )
        bond = iface.get("bond")
        members = bond.get("interfaces") if isinstance(bond, dict) else None
        seen: set[str] = set()
        for j, member in enumerate(members if isinstance(members, list) else []):
            if not isinstance(member, str) or not member:
                continue
            here = (*loc, "bond", "interfaces", j)
            if member in seen:
                self.error(here, f"{quoted(member)} is listed twice")
            elif member == name or member in self.interfaces or member in claims:
                self.error(here, f"{quoted(member)} is also a bridge or port of this file")
            seen.add(member)
        trunks = iface.get("trunks")
        if isinstance(trunks, list) and len(set(map(repr, trunks))) != len(trunks):
            self.error((*loc, "trunks"), "lists a VLAN twice")
        if trunks and iface.get("vlan_mode") == "access":
            self.error((*loc, "trunks"), 'not allowed with vlan_mode "access" (one VLAN, tagged)')

    def _link_down_for_ipv6(self, iface: dict[str, Any], loc: Loc) -> None:
        """`ipv4.enabled: false` takes the link down, which IPv6 addresses bring up: the two
        would undo each other at every apply."""
        ipv4, ipv6 = iface.get("ipv4"), iface.get("ipv6")
        if (
            not (isinstance(ipv4, dict) and isinstance(ipv6, dict))
            or ipv4.get("enabled") is not False
        ):
            return
        given = [f for f in ("address", "gateway") if ipv6.get(f)]
        if given:
            self.error(
                (*loc, "ipv4", "enabled"),
                f"is false, which takes the link down, but ipv6 sets {' and '.join(given)}",
            )

    def _interface_ip(self, section: dict[str, Any], loc: Loc, family: str) -> None:
        if section.get("dhcp") is True:
            self.error((*loc, "dhcp"), DHCP_REFUSED)
        if section.get("enabled") is False:
            given = [f for f in ("address", "gateway") if section.get(f)]
            if given:
                self.error((*loc, "enabled"), f"is false, but it also sets {' and '.join(given)}")
        self._host_addresses(section, loc, "interface", family)

    def _host_addresses(
        self, section: dict[str, Any], loc: Loc, owner: str, family: str = "ipv4"
    ) -> None:
        """The addresses and gateway of an interface or a container, each a usable host's;
        one address is not both kept and removed."""
        given = section.get("address")
        addresses = given if isinstance(given, list) else []
        for j, why in _address_problems(addresses, family):
            self.error((*loc, "address", j, "ip"), why)
        seen: dict[str, int] = {}
        for j, address in enumerate(addresses):
            iface = _ip_interface(address, family)
            if iface is None:
                continue
            if str(iface) in seen:
                first = format_path((*loc, "address", seen[str(iface)]))
                self.error((*loc, "address", j), f"{iface} is listed twice (also at {first})")
            seen.setdefault(str(iface), j)
        present = [a for a in addresses if not (isinstance(a, dict) and a.get("state") == "absent")]
        kept = {**section, "address": present} if isinstance(given, list) else section
        for j, address in _addresses({family: kept}, family):
            here = (*loc, "address", j, "ip")
            earlier = self.ips.setdefault(address.ip, here)
            if earlier != here and earlier[: len(loc)] != loc:  # twice in one list: said above
                where = format_path(earlier)
                self.error(here, f"{address.ip} is already declared at {where}; an address"
                           " belongs to one interface or container")  # fmt: skip
        problem = _gateway_problem(kept, owner, family)
        if problem:
            self.error((*loc, "gateway"), problem)

    def lxc(self, lxc: Any) -> None:
        base = (*self.base, "lxc", "containers")
        seen: dict[tuple[str, str], Loc] = {}
        for i, ct in _items(lxc, "containers"):
            nics = [(j, nic) for j, nic in _items(ct, "nics")]
            fields = [(f, ct, (*base, i, f)) for f in ("id", "name", "veth")]
            fields += [("veth", nic, (*base, i, "nics", j, "veth")) for j, nic in nics]
            for field, holder, loc in fields:
                value = _text(holder, field)
                if value is None:
                    continue
                if (field, value) in seen:
                    first = format_path(seen[field, value])
                    self.error(
                        loc, f"duplicate container {field} {quoted(value)} (also at {first})"
                    )
                else:
                    seen[field, value] = loc
            self._container(ct, (*base, i))
            for j, nic in nics:
                self._container(nic, (*base, i, "nics", j))
            self._nics(ct, nics, (*base, i))

    def _container(self, ct: dict[str, Any], loc: Loc) -> None:
        veth, bridge = _text(ct, "veth"), _text(ct, "bridge")
        if veth is not None:
            clash = self.interfaces.get(veth, ("", None))[1] or self.port_names.get(veth)
            if clash is not None:
                self.error(
                    (*loc, "veth"),
                    f"{quoted(veth)} collides with the interface name at {format_path(clash)}",
                )
        declared = self.interfaces.get(bridge or "", ("",))[0]
        if bridge in self.absent and ct.get("state") != "absent":
            self.error(
                (*loc, "bridge"),
                f'bridge {quoted(bridge)} is marked "absent" at {format_path(self.absent[bridge])}',
            )
        if declared in PORT_TYPES:
            self.error(
                (*loc, "bridge"),
                f"{quoted(bridge or '')} is declared as an {declared}, not an ovs-bridge",
            )
        if ct.get("state") == "absent" and ct.get("running") is True:
            self.error((*loc, "running"), 'is true, but state is "absent"')
        for family in FAMILIES:
            if isinstance(ct.get(family), dict):
                self._host_addresses(ct[family], (*loc, family), "container", family)

    def _nics(self, ct: dict[str, Any], nics: list[tuple[int, dict]], loc: Loc) -> None:
        """`nics` replaces the single-NIC fields, and only one NIC may carry the gateway."""
        if ct.get("nics") is None:
            return
        for field in NIC_FIELDS:
            if ct.get(field) is not None:
                self.error(
                    (*loc, field),
                    f"not allowed beside nics: write it as nics[0].{field} (or leave nics out)",
                )
        for family in FAMILIES:
            gateways = [j for j, nic in nics if (nic.get(family) or {}).get("gateway") is not None]
            for j in gateways[1:]:
                self.error(
                    (*loc, "nics", j, family, "gateway"),
                    f"is a second default route in this container (the first is"
                    f" nics[{gateways[0]}])",
                )

    def systemd(self, systemd: Any) -> None:
        units = systemd.get("units") if isinstance(systemd, dict) else None
        for name, unit in units.items() if isinstance(units, dict) else ():
            if not isinstance(unit, dict) or unit.get("masked") is not True:
                continue
            conflicts = ["enabled: true"] if unit.get("enabled") is True else []
            conflicts += ['active_state: "active"'] if unit.get("active_state") == "active" else []
            if conflicts:
                loc = (*self.base, "systemd", "units", str(name), "masked")
                self.error(loc, f"is true, but a masked unit cannot have {' or '.join(conflicts)}")


FIREWALL_LISTS = ("masquerade", "allow_tcp", "allow_udp", "trusted_interfaces", "forward_ports")


def _identity(field: str, item: Any) -> Any:
    """What makes two entries of `field` the same rule (None: not comparable; the fields
    say why)."""
    if field == "masquerade" and isinstance(item, dict):
        return (item.get("source"), item.get("out_interface"))
    if field == "forward_ports" and isinstance(item, dict):
        return (item.get("proto"), item.get("port"), item.get("in_interface"))
    return item if isinstance(item, (int, str)) else None


def firewall_rule_errors(section: Any, base: Loc) -> list[FieldError]:
    """Entries that repeat another (the same port twice, one port forwarded to two places),
    and lists longer than FIREWALL_LIST_MAX, each at its path."""
    if not isinstance(section, dict):
        return []
    errors = []
    for field in FIREWALL_LISTS:
        items = section.get(field)
        if not isinstance(items, list):
            continue
        if len(items) > FIREWALL_LIST_MAX:
            errors.append(
                FieldError(
                    format_path((*base, field)),
                    f"must have at most {FIREWALL_LIST_MAX} entries, got {len(items)}",
                )
            )
            continue
        seen: dict[Any, int] = {}
        for i, item in enumerate(items):
            key = _identity(field, item)
            if key is None:
                continue
            if key in seen:
                first = format_path((*base, field, seen[key]))
                what = quoted(item) if isinstance(item, str) else describe(item)
                if isinstance(item, dict):
                    what = "this rule"
                errors.append(
                    FieldError(format_path((*base, field, i)), f"repeats {what} (also at {first})")
                )
            else:
                seen[key] = i
    return errors
