"""The state file as pydantic models: what each field may hold, one field at a time.

Desired state is partial: every field a user leaves out is left alone by the plugins, which
is why nearly everything is optional and `sections()` dumps only what was written. Rules
that relate fields to each other live in `rules.py`, so they can run (and report) even when
some field here is wrong.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from op_dbus.model.fields import (
    Cidr,
    ContainerId,
    Cpus,
    ExternalIdKey,
    ExternalIdValue,
    Hostname,
    IfName,
    Ipv4,
    Ipv6,
    Ipv6Gateway,
    Mac,
    Memory,
    Mtu,
    Port,
    Prefix,
    Prefix6,
    Target,
    Template,
    TunnelKey,
    UdpPort,
    UnitName,
    Vlan,
    list_schema,
)
from op_dbus.model.openflow import FLOWS_MAX, FlowRule
from op_dbus.model.paths import describe
from op_dbus.model.route_fields import ROUTES_MAX, RouteMetric, RouteTable, RouteTo, RouteVia

InterfaceType = Literal[
    "ovs-bridge", "ovs-port", "ovs-internal", "ovs-patch", "ovs-tunnel", "ovs-bond"
]
BRIDGE_TYPE = "ovs-bridge"
PORT_TYPES = ("ovs-port", "ovs-internal", "ovs-patch", "ovs-tunnel", "ovs-bond")
VlanMode = Literal["access", "trunk", "native-tagged", "native-untagged"]
SECTION_ORDER = ("systemd", "net", "lxc", "firewall")
FIREWALL_LIST_MAX = 1024
"""At most this many entries in each firewall list: one transaction, kept reviewable."""
Presence = Literal["present", "absent"]
"""`state`: "absent" removes what op-dbus owns (docs/decisions.md, "What a file deletes")."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Address(_Model):
    ip: Ipv4
    prefix: Prefix


class InterfaceAddress(Address):
    """`state: absent` removes this address from its interface (addresses carry no owner)."""

    state: Presence = "present"


class InterfaceIpv4(_Model):
    """`dhcp: true` is refused (rules.py, docs/net.md): op-dbus runs no DHCP client.
    `dhcp: false` is accepted and means nothing more."""

    enabled: bool | None = None
    dhcp: bool | None = None
    address: list[InterfaceAddress] | None = None
    gateway: Ipv4 | None = None


class StaticRoute(_Model):
    """A route through its interface (docs/net.md, Static routes). Identified by `to`,
    `table` and `metric`; without `via` it is on-link. `state: absent` removes one op-dbus
    made (routes it makes carry its rtnetlink proto; others are never touched)."""

    to: RouteTo
    via: RouteVia | None = None
    metric: RouteMetric | None = None
    table: RouteTable | None = None
    state: Presence = "present"


class Address6(_Model):
    ip: Ipv6
    prefix: Prefix6


class InterfaceAddress6(Address6):
    """`state: absent` removes this address from its interface."""

    state: Presence = "present"


class InterfaceIpv6(_Model):
    """`enabled` is IPv6 on the device (its `disable_ipv6` sysctl, inverted). Link-local
    and autoconfigured addresses are the kernel's and never listed (docs/net.md, IPv6)."""

    enabled: bool | None = None
    address: list[InterfaceAddress6] | None = None
    gateway: Ipv6Gateway | None = None


class Tunnel(_Model):
    """An `ovs-tunnel`'s Interface: its `type` and `options` (docs/net.md, Tunnels)."""

    type: Literal["vxlan", "geneve", "gre"]
    remote_ip: Ipv4
    key: TunnelKey | None = None
    dst_port: UdpPort | None = None


class Bond(_Model):
    """An `ovs-bond`: one Port over several Interfaces (system devices), OVS's bond_mode/lacp."""

    interfaces: Annotated[list[IfName], Field(min_length=2, max_length=32)]
    mode: Literal["active-backup", "balance-slb", "balance-tcp"] | None = None
    lacp: Literal["active", "passive", "off"] | None = None


class Interface(_Model):
    """An OVS bridge, or a port declared on its own (`bridge` names the bridge it joins).

    `ports` on a bridge names existing interfaces to attach. None everywhere means
    "leave as is"; which fields each type allows is checked in rules.py. `state: absent`
    removes the bridge or port (only one op-dbus created).
    """

    name: IfName
    type: InterfaceType
    state: Presence = "present"
    ports: list[IfName] | None = None
    ipv4: InterfaceIpv4 | None = None
    ipv6: InterfaceIpv6 | None = None
    routes: Annotated[list[StaticRoute], list_schema(ROUTES_MAX)] | None = None
    bridge: IfName | None = None
    datapath: Literal["system", "netdev"] | None = None
    external_ids: dict[ExternalIdKey, ExternalIdValue] | None = None
    stp: bool | None = None
    fail_mode: Literal["standalone", "secure"] | None = None
    mtu: Mtu | None = None
    vlan: Vlan | None = None
    trunks: Annotated[list[Vlan], Field(max_length=4096)] | None = None
    vlan_mode: VlanMode | None = None
    peer: IfName | None = None
    tunnel: Tunnel | None = None
    bond: Bond | None = None
    openflow: Annotated[list[FlowRule], Field(max_length=FLOWS_MAX)] | None = None


class NetSection(_Model):
    interfaces: list[Interface] = Field(default_factory=list)


class ContainerIpv4(_Model):
    address: list[Address] | None = None
    gateway: Ipv4 | None = None


class ContainerIpv6(_Model):
    address: list[Address6] | None = None
    gateway: Ipv6Gateway | None = None


class Nic(_Model):
    """One of a container's NICs (eth0, eth1, ... in order), like the single-NIC fields."""

    veth: IfName | None = None
    bridge: IfName | None = None
    hwaddr: Mac | None = None
    vlan: Vlan | None = None
    trunks: Annotated[list[Vlan], Field(max_length=4096)] | None = None
    mtu: Mtu | None = None
    ipv4: ContainerIpv4 | None = None
    ipv6: ContainerIpv6 | None = None


NIC_FIELDS = ("veth", "bridge", "hwaddr", "vlan", "trunks", "mtu", "ipv4", "ipv6")
"""The single-NIC fields of a container, which `nics` replaces."""
NICS_MAX = 16


class Container(_Model):
    """An LXC container. Only `state: absent` destroys one; leaving it out never does."""

    id: ContainerId
    name: Hostname | None = None
    veth: IfName | None = None
    bridge: IfName | None = None
    running: bool | None = None
    state: Presence = "present"
    template: Template | None = None
    ipv4: ContainerIpv4 | None = None
    ipv6: ContainerIpv6 | None = None
    hwaddr: Mac | None = None
    protected: bool | None = None
    """OVS `Port.protected` on its port: protected ports cannot reach each other, only
    unprotected ones (a gateway container's, the bridge's own)."""
    vlan: Vlan | None = None
    trunks: Annotated[list[Vlan], Field(max_length=4096)] | None = None
    mtu: Mtu | None = None
    nics: Annotated[list[Nic], Field(min_length=1, max_length=NICS_MAX)] | None = None
    autostart: bool | None = None
    memory: Memory | None = None
    cpus: Cpus | None = None


class LxcSection(_Model):
    containers: list[Container] = Field(default_factory=list)


class Unit(_Model):
    enabled: bool | None = None
    active_state: Literal["active", "inactive"] | None = None
    masked: bool | None = None


class SystemdSection(_Model):
    units: dict[UnitName, Unit] = Field(default_factory=dict)


class Masquerade(_Model):
    """Traffic from `source` leaving through `out_interface` (any, when left out) takes the
    address of the interface it leaves by (nftables `masquerade`)."""

    source: Cidr
    out_interface: IfName | None = None


class ForwardPort(_Model):
    """Connections to `port` arriving on `in_interface` (any, when left out) go to `to`."""

    proto: Literal["tcp", "udp"]
    port: Port
    to: Target
    in_interface: IfName | None = None


class FirewallSection(_Model):
    """`enable` turns the input filter on (drop what nothing accepts); `allow_*` and
    `trusted_interfaces` are what it accepts. `forward` is net.ipv4.ip_forward."""

    enable: bool | None = None
    forward: bool | None = None
    masquerade: Annotated[list[Masquerade], list_schema(FIREWALL_LIST_MAX)] | None = None
    allow_tcp: Annotated[list[Port], list_schema(FIREWALL_LIST_MAX)] | None = None
    allow_udp: Annotated[list[Port], list_schema(FIREWALL_LIST_MAX)] | None = None
    trusted_interfaces: Annotated[list[IfName], list_schema(FIREWALL_LIST_MAX)] | None = None
    forward_ports: Annotated[list[ForwardPort], list_schema(FIREWALL_LIST_MAX)] | None = None


class Plugins(_Model):
    """The sections themselves: also, alone, the NixOS `stateConfig` shape of the file."""

    net: NetSection | None = None
    lxc: LxcSection | None = None
    systemd: SystemdSection | None = None
    firewall: FirewallSection | None = None


def _check_version(value: Any) -> int:
    if value != 1 or type(value) is not int:
        raise ValueError(f"must be 1 (the only state file version), got {describe(value)}")
    return value


class StateFile(_Model):
    version: Annotated[Literal[1], BeforeValidator(_check_version)] = 1
    plugins: Plugins

    def sections(self) -> dict[str, dict[str, Any]]:
        """Each present section as JSON data, holding only what the user wrote."""
        return {
            name: section.model_dump(mode="json", exclude_unset=True)
            for name in SECTION_ORDER
            if (section := getattr(self.plugins, name)) is not None
        }
