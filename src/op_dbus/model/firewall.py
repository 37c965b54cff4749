"""The `firewall` section: IP forwarding, NAT and an input filter, in the spirit of NixOS'
`networking.firewall` and `networking.nat` (docs/firewall.md).

Every value here ends up in an nftables rule (as JSON data, never as nft syntax), so each is
checked against an allowlist: interface names by the model's ifname rule, ports 1-65535,
IPv4 networks written with their host bits zero.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict

from op_dbus.model.errors import FieldError
from op_dbus.model.fields import Cidr, IfName, Port, Target, list_schema
from op_dbus.model.paths import Loc, describe, format_path, quoted

LIST_MAX = 1024
"""At most this many entries in each list: a rule set is one transaction, kept reviewable."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


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
    masquerade: Annotated[list[Masquerade], list_schema(LIST_MAX)] | None = None
    allow_tcp: Annotated[list[Port], list_schema(LIST_MAX)] | None = None
    allow_udp: Annotated[list[Port], list_schema(LIST_MAX)] | None = None
    trusted_interfaces: Annotated[list[IfName], list_schema(LIST_MAX)] | None = None
    forward_ports: Annotated[list[ForwardPort], list_schema(LIST_MAX)] | None = None


LISTS = ("masquerade", "allow_tcp", "allow_udp", "trusted_interfaces", "forward_ports")


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
    and lists longer than LIST_MAX, each at its path."""
    if not isinstance(section, dict):
        return []
    errors = []
    for field in LISTS:
        items = section.get(field)
        if not isinstance(items, list):
            continue
        if len(items) > LIST_MAX:
            errors.append(
                FieldError(
                    format_path((*base, field)),
                    f"must have at most {LIST_MAX} entries, got {len(items)}",
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
