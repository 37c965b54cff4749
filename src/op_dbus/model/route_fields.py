"""Validated fields of a static route (`interfaces[].routes[]`): where to, via whom, which
table and metric. Family-aware: `to` decides IPv4 or IPv6, `via` must match (rules.py).
"""

from __future__ import annotations

import ipaddress
import string
from typing import Annotated, Any

from pydantic import BeforeValidator, WithJsonSchema

from op_dbus.model.fields import check_ipv4
from op_dbus.model.paths import describe

_CHARS = frozenset(string.hexdigits + ".:/")
ROUTE_TEXT_MAX = 64
"""The longest `to` or `via` looked at (an IPv6 network is at most 43 characters)."""
MAIN_TABLE = 254
TABLE_MAX = 2**32 - 1
RESERVED_TABLES = {0: "unspecified", 253: "default", 255: "local"}
"""Tables a route of op-dbus's never goes in: 0 means "any", 253 and 255 are the kernel's."""
METRIC_MAX = 2**32 - 1
ROUTES_MAX = 1024
"""At most this many routes per interface: one apply phase, kept reviewable."""


def _text(value: Any, what: str) -> str:
    """The string, bounded, of hex digits, '.', ':' and '/' only (no zone like `%eth0`)."""
    if not isinstance(value, str):
        raise ValueError(f"must be {what} (a string), got {describe(value)}")
    if len(value) > ROUTE_TEXT_MAX:
        raise ValueError(f"must be at most {ROUTE_TEXT_MAX} characters, got {len(value)}")
    bad = next((c for c in value if c not in _CHARS), None)
    if bad is not None:
        raise ValueError(f"must be {what}; {describe(bad)} is not allowed, got {describe(value)}")
    return value


def check_route_to(value: Any) -> str:
    """A network like 10.1.0.0/16 or 2001:db8::/48, host bits zero; a bare address is the
    host route /32 (/128) and is normalised to that spelling, which query lists back."""
    text = _text(value, "a network like 10.1.0.0/16")
    address, slash, prefix = text.partition("/")
    if slash and not (prefix.isascii() and prefix.isdigit() and len(prefix) <= 3):
        raise ValueError(f"must be a network like 10.1.0.0/16, got {describe(text)}")
    try:
        network = ipaddress.ip_network(text, strict=False)
        ipaddress.ip_address(address)  # no integers or packed forms in disguise
    except ValueError:
        raise ValueError(
            f"must be a network like 10.1.0.0/16 or 2001:db8::/48, got {describe(text)}"
        ) from None
    if network.network_address != ipaddress.ip_address(address):
        raise ValueError(f"has host bits set: {describe(text)} lies in {network}; write {network}")
    if network.is_multicast or network.is_loopback:
        kind = "multicast" if network.is_multicast else "loopback"
        raise ValueError(f"must be a unicast network, got the {kind} network {network}")
    return str(network)


def check_route_via(value: Any) -> str:
    """The next hop: a unicast host address (IPv6 link-local allowed: routers announce those)."""
    text = _text(value, "an address like 192.168.1.1")
    if ":" not in text:
        return check_ipv4(text)
    try:
        address = ipaddress.IPv6Address(text)
    except ValueError:
        raise ValueError(f"must be an address like 2001:db8::1, got {describe(text)}") from None
    if address.is_unspecified or address.is_multicast or address.is_loopback:
        raise ValueError(f"must be a unicast IPv6 address, got {describe(text)}")
    return str(address)


def check_table(value: Any) -> int:
    """A table number, or "main" (254, where routes go when no table is named)."""
    if value == "main":
        return MAIN_TABLE
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= TABLE_MAX:
        raise ValueError(
            f'must be "main" or a table number from 1 to {TABLE_MAX}, got {describe(value)}'
        )
    if value in RESERVED_TABLES:
        raise ValueError(
            f"must not be {value}: that is the kernel's {RESERVED_TABLES[value]} table"
            ' (write "main" or 254 for the main table)'
        )
    return value


def check_metric(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= METRIC_MAX:
        raise ValueError(f"must be an integer from 0 to {METRIC_MAX}, got {describe(value)}")
    return value


RouteTo = Annotated[
    str,
    BeforeValidator(check_route_to),
    WithJsonSchema(
        {
            "type": "string",
            "maxLength": ROUTE_TEXT_MAX,
            "pattern": r"^[0-9a-fA-F.:]+(/[0-9]{1,3})?$",
        }
    ),
]
RouteVia = Annotated[
    str,
    BeforeValidator(check_route_via),
    WithJsonSchema({"type": "string", "maxLength": ROUTE_TEXT_MAX, "pattern": r"^[0-9a-fA-F.:]+$"}),
]
RouteTable = Annotated[
    int,
    BeforeValidator(check_table),
    WithJsonSchema(
        {
            "anyOf": [
                {"const": "main"},
                {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": TABLE_MAX,
                    "not": {"enum": list(RESERVED_TABLES)},
                },
            ]
        }
    ),
]
RouteMetric = Annotated[
    int,
    BeforeValidator(check_metric),
    WithJsonSchema({"type": "integer", "minimum": 0, "maximum": METRIC_MAX}),
]
