"""Validated scalar types of the state file, each with the message a user should see.

Each type checks its input in a `BeforeValidator`, so the user gets one precise message
("must be an integer from 0 to 32, got 33") instead of pydantic's layered ones. The
schema annotations beside them only feed the JSON Schema; they never validate.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, WithJsonSchema

from op_dbus.model.paths import describe

IFNAME_MAX_BYTES = 15  # Linux IFNAMSIZ minus the terminating NUL
UNIT_NAME_MAX_BYTES = 255
UNIT_SUFFIXES = (
    ".service",
    ".socket",
    ".timer",
    ".target",
    ".mount",
    ".automount",
    ".path",
    ".swap",
    ".slice",
    ".scope",
    ".device",
)
RESERVED_EXTERNAL_ID_PREFIX = "op-dbus-"

_HOSTNAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_CT_ID = re.compile(r"[1-9][0-9]*")
_MAC = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}")
_MEMORY = re.compile(r"[1-9][0-9]*[MG]")
_UNIT_CHARS = re.compile(r"[A-Za-z0-9:_.\\@-]+")
CT_ID_MIN, CT_ID_MAX = 100, 999_999_999


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _ranged(low: int, high: int, what: str = "an integer") -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if not _is_int(value) or not low <= value <= high:
            raise ValueError(f"must be {what} from {low} to {high}, got {describe(value)}")
        return value

    return check


def _string(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be {what} (a string), got {describe(value)}")
    return value


def check_ifname(value: Any) -> str:
    """Linux's own rule (dev_valid_name), plus no control characters."""
    name = _string(value, "an interface name")
    if not name:
        raise ValueError("must not be empty")
    if name in (".", ".."):
        raise ValueError(f'must not be "." or "..", got {describe(name)}')
    if len(name.encode()) > IFNAME_MAX_BYTES:
        raise ValueError(
            f"must be at most {IFNAME_MAX_BYTES} bytes (the Linux interface name limit), "
            f"got {len(name.encode())}: {describe(name)}"
        )
    if any(c in "/:" or c.isspace() or ord(c) < 32 or ord(c) == 127 for c in name):
        raise ValueError(
            f"must not contain '/', ':', whitespace or control characters, got {describe(name)}"
        )
    return name


def check_hostname(value: Any) -> str:
    name = _string(value, "a container name")
    if not _HOSTNAME.fullmatch(name):
        raise ValueError(
            "must be a hostname label: 1 to 63 characters from a-z, 0-9 and '-', "
            f"not starting or ending with '-', got {describe(name)}"
        )
    return name


def check_ct_id(value: Any) -> str:
    """Spelled as a string like the seed (`id = "100"`); a bare number is refused, not guessed."""
    if _is_int(value):
        raise ValueError(
            f'must be a string of digits like "100" (quote it), got the number {value}'
        )
    text = _string(value, "a container id")
    if not _CT_ID.fullmatch(text) or not CT_ID_MIN <= int(text) <= CT_ID_MAX:
        raise ValueError(
            f'must be a string of digits from "{CT_ID_MIN}" to "{CT_ID_MAX}" '
            f"without leading zeros, got {describe(text)}"
        )
    return text


def check_ipv4(value: Any) -> str:
    text = _string(value, "an IPv4 address")
    try:
        address = ipaddress.IPv4Address(text)
    except ValueError:
        raise ValueError(
            f"must be an IPv4 address like 192.168.1.10, got {describe(text)}"
        ) from None
    if (
        address.is_unspecified
        or address.is_multicast
        or address == ipaddress.IPv4Address("255.255.255.255")
    ):
        raise ValueError(f"must be a unicast IPv4 address, got {describe(text)}")
    return text


def check_mac(value: Any) -> str:
    """A unicast, non-zero MAC (what Linux accepts on a veth), normalised to lower case."""
    text = _string(value, "a MAC address")
    if not _MAC.fullmatch(text):
        raise ValueError(f"must be a MAC address like 02:00:00:00:01:00, got {describe(text)}")
    if int(text[:2], 16) & 1 or text.replace(":", "").strip("0") == "":
        raise ValueError(f"must be a unicast, non-zero MAC address, got {describe(text)}")
    return text.lower()


def check_memory(value: Any) -> int | str:
    """MiB as a positive integer, or a size string like "512M" or "2G"."""
    if _is_int(value) and value > 0:
        return value
    if isinstance(value, str) and _MEMORY.fullmatch(value):
        return value
    raise ValueError(
        f'must be a positive integer (MiB) or a size like "512M" or "2G", got {describe(value)}'
    )


def check_template(value: Any) -> str:
    text = _string(value, "a template name")
    if not text.strip():
        raise ValueError("must not be empty")
    return text


def check_unit_name(value: Any) -> str:
    """systemd's unit_name_is_valid(), less its finer points on instance names."""
    name = _string(value, "a unit name")
    if not name:
        raise ValueError("unit name must not be empty")
    if "/" in name:
        raise ValueError(f"unit name must not contain '/', got {describe(name)}")
    if len(name.encode()) > UNIT_NAME_MAX_BYTES:
        raise ValueError(f"unit name must be at most {UNIT_NAME_MAX_BYTES} bytes")
    suffix = next((s for s in UNIT_SUFFIXES if name.endswith(s)), None)
    if suffix is None:
        raise ValueError(
            f"unit name must end in one of {', '.join(UNIT_SUFFIXES)}, got {describe(name)}"
        )
    stem = name[: -len(suffix)]
    if not stem or stem.startswith("@") or stem.count("@") > 1 or not _UNIT_CHARS.fullmatch(stem):
        raise ValueError(
            "unit name may only use A-Z a-z 0-9 and : _ . \\ - (plus one '@' for an instance) "
            f"before its suffix, got {describe(name)}"
        )
    if stem.endswith("@"):
        raise ValueError(
            f"{describe(name)} is a template: it cannot be started or enabled by itself; "
            "name an instance, e.g. getty@tty1.service"
        )
    return name


def check_external_id_key(value: Any) -> str:
    key = _string(value, "an external_ids key")
    if not key:
        raise ValueError("external_ids key must not be empty")
    if key.startswith(RESERVED_EXTERNAL_ID_PREFIX):
        raise ValueError(
            f"external_ids keys starting with {RESERVED_EXTERNAL_ID_PREFIX!r} are reserved "
            f"for op-dbus's own ownership marks, got {describe(key)}"
        )
    return key


def _schema(**extra: Any) -> Any:
    return Field(json_schema_extra=extra)


def _bounded(low: int, high: int, what: str = "an integer") -> Any:
    return Annotated[
        int, BeforeValidator(_ranged(low, high, what)), _schema(minimum=low, maximum=high)
    ]


_UNIT_PATTERN = (
    r"^[A-Za-z0-9:_.\\-]+(@[A-Za-z0-9:_.\\-]*)?("
    + "|".join(re.escape(s) for s in UNIT_SUFFIXES)
    + ")$"
)

IfName = Annotated[
    str,
    BeforeValidator(check_ifname),
    _schema(minLength=1, maxLength=IFNAME_MAX_BYTES, pattern=r"^[^/:\s]+$"),
]
Hostname = Annotated[
    str, BeforeValidator(check_hostname), _schema(pattern=f"^{_HOSTNAME.pattern}$")
]
ContainerId = Annotated[str, BeforeValidator(check_ct_id), _schema(pattern=r"^[1-9][0-9]{2,8}$")]
Ipv4 = Annotated[str, BeforeValidator(check_ipv4), _schema(format="ipv4")]
Prefix = _bounded(0, 32)
Mtu = _bounded(68, 65535)
Vlan = _bounded(0, 4095, "a VLAN tag")
Cpus = _bounded(1, 4096, "a CPU count")
Mac = Annotated[str, BeforeValidator(check_mac), _schema(pattern=f"^{_MAC.pattern}$")]
Memory = Annotated[
    int | str,
    BeforeValidator(check_memory),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 1, "description": "MiB"},
                {"type": "string", "pattern": f"^{_MEMORY.pattern}$"},
            ]
        }
    ),
]
Template = Annotated[str, BeforeValidator(check_template), _schema(minLength=1)]
UnitName = Annotated[
    str, BeforeValidator(check_unit_name), _schema(pattern=_UNIT_PATTERN, maxLength=255)
]
ExternalIdKey = Annotated[str, BeforeValidator(check_external_id_key), _schema(minLength=1)]
