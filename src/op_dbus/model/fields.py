"""Validated scalar types of the state file, each with the message a user should see.

Each type checks its input in a `BeforeValidator`, so the user gets one precise message
("must be an integer from 0 to 32, got 33") instead of pydantic's layered ones. The
schema annotations beside them only feed the JSON Schema; they never validate.
"""

from __future__ import annotations

import ipaddress
import re
import string
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, WithJsonSchema

from op_dbus.model.paths import describe
from op_dbus.model.text import first_invisible

IFNAME_MAX_BYTES = 15  # Linux IFNAMSIZ minus the terminating NUL
IFNAME_CHARS = frozenset(string.ascii_letters + string.digits + "-_.")
IFNAME_RULE = f"must be 1 to {IFNAME_MAX_BYTES} characters from A-Z, a-z, 0-9 and '-', '_', '.'"
LOOPBACK = "lo"
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
EXTERNAL_ID_KEY_MAX_BYTES = 256
EXTERNAL_ID_VALUE_MAX_BYTES = 4096

_HOSTNAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_CT_ID = re.compile(r"[1-9][0-9]*")
_CIDR = re.compile(r"[0-9]{1,3}(\.[0-9]{1,3}){3}(/[0-9]{1,2})?")
_PORT = re.compile(r"[1-9][0-9]{0,4}")
PORT_MAX = 65535
TABLE_MAX = 253
"""OpenFlow tables 0..253 (254 and 255 are reserved)."""
_MAC = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}")
_MEMORY = re.compile(r"[1-9][0-9]*[MG]")
MEMORY_MAX_MIB = 2**43  # 2^63 bytes
_TEMPLATE_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")
_TEMPLATE_VOLUME = re.compile(r"[a-z][a-z0-9._-]*:vztmpl/[A-Za-z0-9][A-Za-z0-9._+-]*")
TEMPLATE_PUNCTUATION = ". _ / = : , + @ -"
TEMPLATE_CHARS = frozenset(
    string.ascii_letters + string.digits + TEMPLATE_PUNCTUATION.replace(" ", "")
)
TEMPLATE_MAX_CHARS = 512
OWNED_SHORT_OPTIONS = frozenset("nptfBPolqh")
"""lxc-create's -n -t -f -B -P -o -l -q -h and the templates' -p (path) -n (name) -h."""
OWNED_LONG_OPTIONS = (
    *("name", "path", "rootfs", "mapped-uid", "mapped-gid", "help"),  # the template's
    *("template", "config", "bdev", "dir", "lxcpath", "logfile", "logpriority", "quiet"),
    *("rcfile", "version", "usage", "lvname", "vgname", "thinpool", "rbdname", "rbdpool"),
    *("zfsroot", "fstype", "fssize"),  # lxc-create's
)
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
    """An allowlist, not Linux's blocklist: these names reach liblxc's hook command lines
    (which a shell expands), config lines, argv and OVSDB, so only what every one of them takes
    unquoted is allowed."""
    name = _string(value, "an interface name")
    if not name:
        raise ValueError("must not be empty")
    bad = next((c for c in name if c not in IFNAME_CHARS), None)
    if bad is not None:
        raise ValueError(f"{IFNAME_RULE}; {describe(bad)} is not allowed, got {describe(name)}")
    if len(name) > IFNAME_MAX_BYTES:
        raise ValueError(
            f"must be at most {IFNAME_MAX_BYTES} bytes (the Linux interface name limit), "
            f"got {len(name)}: {describe(name)}"
        )
    if name in (".", ".."):
        raise ValueError(f'must not be "." or "..", got {describe(name)}')
    if name.startswith("-"):
        raise ValueError(
            f"must not start with '-' (it would read as an option on a command line), "
            f"got {describe(name)}"
        )
    if name == LOOPBACK:
        raise ValueError(
            f'must not be "{LOOPBACK}": that is the loopback device, which always exists '
            "and cannot be a bridge, a port or a veth"
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
    if address.is_loopback:
        raise ValueError(
            f"must not be a loopback address (127.0.0.0/8 belongs to lo), got {describe(text)}"
        )
    return text


def _ipv6(value: Any) -> ipaddress.IPv6Address:
    """An IPv6 address that can be a host's: not ::, multicast, ::1 or an IPv4-mapped one."""
    text = _string(value, "an IPv6 address")
    try:
        address = ipaddress.IPv6Address(text)
    except ValueError:
        raise ValueError(
            f"must be an IPv6 address like 2001:db8::10, got {describe(text)}"
        ) from None
    if address.is_unspecified or address.is_multicast or address.ipv4_mapped is not None:
        raise ValueError(f"must be a unicast IPv6 address, got {describe(text)}")
    if address.is_loopback:
        raise ValueError(
            f"must not be the loopback address ::1 (it belongs to lo), got {describe(text)}"
        )
    return address


def check_ipv6(value: Any) -> str:
    """A host's IPv6 address, written back compressed and in lower case (as netlink and
    `ip` list it), so that a diff compares one spelling. Link-local addresses (fe80::/10)
    are the kernel's own, one per link: op-dbus neither sets nor reports them."""
    address = _ipv6(value)
    if address.is_link_local:
        raise ValueError(
            f"must not be a link-local address (fe80::/10): the kernel makes each link's"
            f" own, and op-dbus leaves them alone, got {describe(value)}"
        )
    return str(address)


def check_ipv6_gateway(value: Any) -> str:
    """A next hop: like an address, but link-local is allowed (routers usually are)."""
    return str(_ipv6(value))


def check_cidr(value: Any) -> str:
    """An IPv4 network like 10.0.0.0/24 (a bare address is a /32, and is spelled so): host
    bits must be zero, so what is written is what nftables lists back."""
    text = _string(value, "an IPv4 network")
    if not _CIDR.fullmatch(text):
        raise ValueError(f"must be an IPv4 network like 10.0.0.0/24, got {describe(text)}")
    try:
        network = ipaddress.IPv4Network(text, strict=False)
    except ValueError:
        raise ValueError(
            f"must be an IPv4 network like 10.0.0.0/24, got {describe(text)}"
        ) from None
    if str(network.network_address) != text.split("/")[0]:
        raise ValueError(f"has host bits set: {describe(text)} lies in {network}; write {network}")
    return str(network)


def check_target(value: Any) -> str:
    """Where a forwarded port goes: "IP" (the same port) or "IP:PORT"."""
    text = _string(value, 'a target like "10.0.0.101:80"')
    ip, colon, port = text.partition(":")
    check_ipv4(ip)
    if colon and not (_PORT.fullmatch(port) and int(port) <= PORT_MAX):
        raise ValueError(f"must end in a port from 1 to {PORT_MAX} after ':', got {describe(text)}")
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
    """MiB as a positive integer, or a size like "512M" or "2G"; at most 2^63 bytes, about
    the most a cgroup limit holds (the kernel caps it at LONG_MAX bytes): more is a typo."""
    if isinstance(value, str) and _MEMORY.fullmatch(value):
        digits = value[:-1]  # bounded before int(): a longer number is too large anyway
        too_long = len(digits) > len(str(MEMORY_MAX_MIB))
        mib = MEMORY_MAX_MIB + 1 if too_long else int(digits) * (1024 if value[-1] == "G" else 1)
    elif _is_int(value) and value > 0:
        mib = value
    else:
        raise ValueError(
            f'must be a positive integer (MiB) or a size like "512M" or "2G", got {describe(value)}'
        )
    if mib > MEMORY_MAX_MIB:
        raise ValueError(
            f'must be at most {MEMORY_MAX_MIB} MiB ("{MEMORY_MAX_MIB // 1024}G", 2^63 bytes), '
            f"got {describe(value)}"
        )
    return value


def _host_prefix(family: str, bits: int) -> Callable[[Any], int]:
    """A host address's prefix: 1..bits. 0 would make every address of the family on-link
    (a default route is `ipvN.gateway`), so it gets its own message."""
    in_range = _ranged(1, bits)

    def check(value: Any) -> int:
        if _is_int(value) and value == 0:
            raise ValueError(
                f"must be from 1 to {bits}, got 0: prefix 0 on a host address would make every "
                f"IP{family[2:]} address on-link (a default route is {family}.gateway)"
            )
        return in_range(value)

    return check


check_prefix = _host_prefix("ipv4", 32)
check_prefix6 = _host_prefix("ipv6", 128)


def check_template(value: Any) -> str:
    """Words of an allowlist, split like a shell would split them (and never given to one):
    a template cannot carry a config line, a quote, or an option that takes over what
    op-dbus passes to lxc-create and to the template. Kept with single spaces between words."""
    text = _string(value, "a template")
    if not text.strip():
        raise ValueError("must not be empty")
    if len(text) > TEMPLATE_MAX_CHARS:
        raise ValueError(f"must be at most {TEMPLATE_MAX_CHARS} characters, got {len(text)}")
    bad = next((c for c in text if c != " " and c not in TEMPLATE_CHARS), None)
    if bad is not None:
        raise ValueError(
            f"must be words of A-Z, a-z, 0-9 and {TEMPLATE_PUNCTUATION} separated by spaces "
            f"(no quotes, shell or config syntax); {describe(bad)} is not allowed, "
            f"got {describe(text)}"
        )
    first, *args = text.split()
    if not (_TEMPLATE_NAME.fullmatch(first) or _TEMPLATE_VOLUME.fullmatch(first)):
        raise ValueError(
            "must start with a template name like busybox or download (a-z, 0-9, '.', '_', "
            "'-'), or for pct a volume like local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst,"
            f" got {describe(first)}"
        )
    for arg in args:
        owned = _owned_option(arg)
        if owned:
            raise ValueError(f"must not pass {describe(arg)}: {owned}")
    return " ".join([first, *args])


def _owned_option(arg: str) -> str | None:
    """Why `arg` would take over an option op-dbus or lxc-create passes, or None. A long
    option counts abbreviated too (getopt takes any unambiguous prefix), with or without
    `=VALUE`; a short one must stand alone (`-d debian`), so `-pPATH` cannot hide one, nor a
    template's single-dash long option (`getopt -a`)."""
    owns = "op-dbus sets it for lxc-create and the template"
    if arg == "--":
        return "op-dbus itself separates the template's arguments"
    if arg.startswith("--"):
        name = arg[2:].split("=", 1)[0]
        taken = next((o for o in OWNED_LONG_OPTIONS if name and o.startswith(name)), None)
        return f"it is (short for) --{taken}; {owns}" if taken else None
    if len(arg) > 2 and arg.startswith("-"):
        return "write a short option alone and its value as the next word, e.g. -d debian"
    if len(arg) == 2 and arg[0] == "-" and arg[1] in OWNED_SHORT_OPTIONS:
        return owns
    return None


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
    """A key names something a plan shows: visible characters only, no space, bounded."""
    key = _string(value, "an external_ids key")
    if not key:
        raise ValueError("external_ids key must not be empty")
    _check_visible(key, "external_ids key", EXTERNAL_ID_KEY_MAX_BYTES, spaces=False)
    if key.startswith(RESERVED_EXTERNAL_ID_PREFIX):
        raise ValueError(
            f"external_ids keys starting with {RESERVED_EXTERNAL_ID_PREFIX!r} are reserved "
            f"for op-dbus's own ownership marks, got {describe(key)}"
        )
    return key


def check_external_id_value(value: Any) -> str:
    """Free text for OVSDB (which drops a connection on a NUL), shown in plans: bounded,
    and only characters that print as themselves."""
    text = _string(value, "an external_ids value")
    _check_visible(text, "external_ids value", EXTERNAL_ID_VALUE_MAX_BYTES, spaces=True)
    return text


def _check_visible(text: str, what: str, max_bytes: int, *, spaces: bool) -> None:
    size = len(text.encode())
    if size > max_bytes:
        raise ValueError(f"{what} must be at most {max_bytes} bytes, got {size}")
    bad = first_invisible(text) or (" " if not spaces and " " in text else None)
    if bad is not None:
        allowed = "visible characters and spaces" if spaces else "visible characters, no spaces"
        raise ValueError(
            f"{what} may only hold {allowed} (no control, format, bidi or zero-width "
            f"characters); {describe(bad)} is not allowed, got {describe(text)}"
        )


def _schema(**extra: Any) -> Any:
    return Field(json_schema_extra=extra)


def list_schema(max_items: int) -> Any:
    """The JSON Schema bound of a list (the rules check it, with the list's path)."""
    return _schema(maxItems=max_items)


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
    _schema(
        minLength=1,
        maxLength=IFNAME_MAX_BYTES,
        pattern=r"^(?!-)(?!\.{1,2}$)(?!lo$)[A-Za-z0-9_.-]+$",
    ),
]
Hostname = Annotated[
    str, BeforeValidator(check_hostname), _schema(pattern=f"^{_HOSTNAME.pattern}$")
]
ContainerId = Annotated[str, BeforeValidator(check_ct_id), _schema(pattern=r"^[1-9][0-9]{2,8}$")]
Ipv4 = Annotated[str, BeforeValidator(check_ipv4), _schema(format="ipv4")]
Prefix = Annotated[int, BeforeValidator(check_prefix), _schema(minimum=1, maximum=32)]
Ipv6 = Annotated[str, BeforeValidator(check_ipv6), _schema(format="ipv6")]
Ipv6Gateway = Annotated[str, BeforeValidator(check_ipv6_gateway), _schema(format="ipv6")]
Prefix6 = Annotated[int, BeforeValidator(check_prefix6), _schema(minimum=1, maximum=128)]
Mtu = _bounded(68, 65535)
Vlan = _bounded(0, 4095, "a VLAN tag")
TunnelKey = _bounded(0, 2**32 - 1, "a tunnel key")
UdpPort = _bounded(1, 65535, "a UDP port")
Cpus = _bounded(1, 4096, "a CPU count")
FlowTable = _bounded(0, TABLE_MAX, "a table")
FlowPriority = _bounded(0, 65535, "a priority")
Port = _bounded(1, PORT_MAX, "a port")
Cidr = Annotated[str, BeforeValidator(check_cidr), _schema(pattern=f"^{_CIDR.pattern}$")]
Target = Annotated[
    str, BeforeValidator(check_target), _schema(pattern=r"^[0-9.]{7,15}(:[1-9][0-9]{0,4})?$")
]
Mac = Annotated[str, BeforeValidator(check_mac), _schema(pattern=f"^{_MAC.pattern}$")]
Memory = Annotated[
    int | str,
    BeforeValidator(check_memory),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 1, "maximum": MEMORY_MAX_MIB, "description": "MiB"},
                {"type": "string", "pattern": f"^{_MEMORY.pattern}$"},
            ]
        }
    ),
]
Template = Annotated[
    str,
    BeforeValidator(check_template),
    _schema(minLength=1, maxLength=TEMPLATE_MAX_CHARS, pattern=r"^[A-Za-z0-9._/=:,+@ -]+$"),
]
UnitName = Annotated[
    str, BeforeValidator(check_unit_name), _schema(pattern=_UNIT_PATTERN, maxLength=255)
]
ExternalIdKey = Annotated[
    str,
    BeforeValidator(check_external_id_key),
    _schema(minLength=1, maxLength=EXTERNAL_ID_KEY_MAX_BYTES),
]
ExternalIdValue = Annotated[
    str,
    BeforeValidator(check_external_id_value),
    _schema(maxLength=EXTERNAL_ID_VALUE_MAX_BYTES),
]
