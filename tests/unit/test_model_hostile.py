"""Hostile values are refused at validation, at their path, with a message saying what is allowed.

Names, templates and external_ids reach liblxc's hook command lines (a shell expands them),
config lines, argv and OVSDB; addresses and memory reach netlink and cgroups. Each refusal
below was accepted by `validate` before and failed (or ran code) only at apply.
"""

from __future__ import annotations

import copy
import json
import unicodedata
from pathlib import Path
from typing import Any

import pytest

from op_dbus.model import StateInputError, parse_state

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FULL = json.loads((EXAMPLES / "full-mode.json").read_text())
ADDRESSED = json.loads((EXAMPLES / "full-mode-addressed.json").read_text())

BR0 = ("net", "interfaces", 0)
MESH = ("net", "interfaces", 1)
CT0 = ("lxc", "containers", 0)


def is_visible(char: str) -> bool:
    """Prints as itself (Unicode's own test, not the project's)."""
    return char.isprintable()


INVISIBLE = ["\u202e", "\u2066", "\u200b", "\u200d", "\u200e", "\ufeff", "\u2028", "\u00a0"]


def with_value(loc: tuple[Any, ...], value: Any, doc: dict[str, Any] = ADDRESSED) -> Any:
    """The addressed Full-mode example with one value set (or added) at `loc`."""
    doc = copy.deepcopy(doc)
    node = doc
    for part in loc[:-1]:
        node = node[part]
    node[loc[-1]] = value
    return doc


def problems(doc: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(StateInputError) as info:
        parse_state(json.dumps(doc))
    return [(e.path, e.message) for e in info.value.errors]


def refused(doc: dict[str, Any], path: str, *words: str) -> str:
    """The one message at `path`, which holds `words` and prints as it is."""
    found = problems(doc)
    assert [p for p, _ in found] == [path], found
    message = found[0][1]
    for word in words:
        assert word in message, message
    assert all(is_visible(c) for c in message), message
    return message


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.json")), ids=lambda p: p.name)
def test_every_example_validates_exactly_as_spelled(example: Path) -> None:
    doc = json.loads(example.read_text())
    loaded = parse_state(example.read_bytes())
    sections = doc.get("plugins", doc)
    assert loaded.state.sections() == {k: v for k, v in sections.items() if v is not None}


IFNAME_ALLOWED = "from A-Z, a-z, 0-9 and '-', '_', '.'"
IFNAME_FIELDS = [
    ((*CT0, "veth"), "lxc.containers[0].veth"),
    ((*CT0, "bridge"), "lxc.containers[0].bridge"),
    ((*BR0, "name"), "net.interfaces[0].name"),
    ((*BR0, "ports", 0), "net.interfaces[0].ports[0]"),
]
HOSTILE_NAMES = [
    ("v$(id>q)", '"$" is not allowed'),
    ("v`id`", '"`" is not allowed'),
    ("v;id", '";" is not allowed'),
    ("v|id", '"|" is not allowed'),
    ("v&", '"&" is not allowed'),
    ("v'x", '"\'" is not allowed'),
    ('v"x', '"\\"" is not allowed'),
    ("v\\x", '"\\\\" is not allowed'),
    ("v\nx", '"\\n" is not allowed'),
    ("v=x", '"=" is not allowed'),
    ("v#x", '"#" is not allowed'),
    ("v,x", '"," is not allowed'),
    ("v@x", '"@" is not allowed'),
    ("v*", '"*" is not allowed'),
    ("vé", '"é" is not allowed'),
    ("v\u0430", '"\u0430" is not allowed'),  # Cyrillic a: looks like "va"
    *((f"v{c}x", f'"\\u{ord(c):04x}" is not allowed') for c in INVISIBLE),
]


@pytest.mark.parametrize(("loc", "path"), IFNAME_FIELDS)
@pytest.mark.parametrize(("name", "words"), HOSTILE_NAMES)
def test_interface_names_are_an_allowlist(
    loc: tuple[Any, ...], path: str, name: str, words: str
) -> None:
    found = problems(with_value(loc, name))
    mine = [m for p, m in found if p == path]
    assert len(mine) == 1, found
    assert IFNAME_ALLOWED in mine[0] and words in mine[0], mine[0]
    assert all(is_visible(c) for p, m in found for c in p + m), found


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("lo", 'must not be "lo": that is the loopback device'),
        ("-n", "must not start with '-'"),
        ("--name", "must not start with '-'"),
        (".", 'must not be "." or ".."'),
        ("a" * 16, "at most 15 bytes"),
    ],
)
def test_interface_names_that_fit_the_alphabet_but_not_a_device(name: str, words: str) -> None:
    refused(with_value((*CT0, "veth"), name), "lxc.containers[0].veth", words)


def test_lo_is_refused_as_a_port_and_a_bridge_too() -> None:
    refused(with_value((*BR0, "ports"), ["lo"]), "net.interfaces[0].ports[0]", '"lo"')
    refused(with_value((*MESH, "name"), "lo", FULL), "net.interfaces[1].name", '"lo"')


@pytest.mark.parametrize("name", ["a", "A.b_c-9", "vi100", "veth100i0", "a" * 15, "eth0.10", "..."])
def test_interface_names_inside_the_allowlist_are_kept(name: str) -> None:
    doc = with_value((*CT0, "veth"), name)
    assert parse_state(json.dumps(doc)).state.sections()["lxc"]["containers"][0]["veth"] == name


TEMPLATE_PATH = "lxc.containers[0].template"
TEMPLATE_WORDS = "must be words of A-Z, a-z, 0-9 and . _ / = : , + @ -"


@pytest.mark.parametrize(
    ("template", "words"),
    [
        ("busybox\nlxc.hook.pre-start = /bin/sh", '"\\n" is not allowed'),
        ("busybox\rx", '"\\r" is not allowed'),
        ("busybox\tx", '"\\t" is not allowed'),
        ("busybox 'unmatched", '"\'" is not allowed'),
        ('busybox "x y"', '"\\"" is not allowed'),
        ("busybox $(id>q)", '"$" is not allowed'),
        ("busybox `id`", '"`" is not allowed'),
        ("busybox; id", '";" is not allowed'),
        ("busybox # x", '"#" is not allowed'),
        ("busybox \\", '"\\\\" is not allowed'),
        ("busybox\u202e", '"\\u202e" is not allowed'),
        ("\u200bbusybox", '"\\u200b" is not allowed'),
        ("busybox\u00a0-d", '"\\u00a0" is not allowed'),
    ],
)
def test_template_holds_no_shell_or_config_syntax(template: str, words: str) -> None:
    refused(with_value((*CT0, "template"), template), TEMPLATE_PATH, TEMPLATE_WORDS, words)


@pytest.mark.parametrize(
    ("template", "words"),
    [
        ("busybox -n other", 'must not pass "-n": op-dbus sets it'),
        ("busybox -P /tmp", 'must not pass "-P"'),
        ("busybox -p /", 'must not pass "-p"'),
        ("busybox -t busybox", 'must not pass "-t"'),
        ("busybox -f /etc/shadow", 'must not pass "-f"'),
        ("busybox --name other", "--name"),
        ("busybox --name=other", "--name"),
        ("busybox --lxcpath=/tmp", "--lxcpath"),
        ("busybox --rootfs=/", "--rootfs"),
        ("busybox --ro=/", "short for) --rootfs"),
        ("busybox --pa /", "short for) --path"),
        ("busybox --mapped-uid 0", "--mapped-uid"),
        ("busybox --help", "--help"),
        ("busybox -- --rootfs=/", "separates the template's arguments"),
        ("busybox -p/", "write a short option alone"),
        ("busybox -rootfs=/", "write a short option alone"),
        ("download -ddebian", "write a short option alone"),
    ],
)
def test_template_cannot_override_what_op_dbus_passes(template: str, words: str) -> None:
    refused(with_value((*CT0, "template"), template), TEMPLATE_PATH, words)


@pytest.mark.parametrize(
    "template",
    ["/usr/share/lxc/templates/lxc-busybox", "./x", "../x", "Busybox", "-n", "a:b", "local:x/y"],
)
def test_template_starts_with_a_name_not_a_path(template: str) -> None:
    refused(with_value((*CT0, "template"), template), TEMPLATE_PATH, "must start with a template")


def test_template_is_bounded() -> None:
    refused(with_value((*CT0, "template"), "busybox " + "a" * 600), TEMPLATE_PATH, "at most 512")


@pytest.mark.parametrize(
    ("template", "kept"),
    [
        ("busybox", "busybox"),
        ("busybox --busybox-path /bin/busybox", "busybox --busybox-path /bin/busybox"),
        ("download -d debian -r bookworm -a amd64", "download -d debian -r bookworm -a amd64"),
        (
            "  download  --dist=debian --release bookworm ",
            "download --dist=debian --release bookworm",
        ),
        ("download -d alpine -r 3.19 -a arm64 --variant default", None),
        ("local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst", None),
        ("ubuntu -r noble --mirror http://archive.ubuntu.com/ubuntu", None),
    ],
)
def test_templates_people_write_are_kept(template: str, kept: str | None) -> None:
    doc = with_value((*CT0, "template"), template)
    found = parse_state(json.dumps(doc)).state.sections()["lxc"]["containers"][0]["template"]
    assert found == (kept or template)


EXT = (*BR0, "external_ids")
EXT_PATH = "net.interfaces[0].external_ids"


@pytest.mark.parametrize(
    ("ids", "path", "words"),
    [
        ({"role": "a\u0000b"}, f"{EXT_PATH}.role", '"\\u0000" is not allowed'),
        ({"role": "a\nb"}, f"{EXT_PATH}.role", '"\\n" is not allowed'),
        ({"role": "a\u007fb"}, f"{EXT_PATH}.role", '"\\u007f" is not allowed'),
        ({"role": "mesh\u202e"}, f"{EXT_PATH}.role", '"\\u202e" is not allowed'),
        ({"role": "x" * 4097}, f"{EXT_PATH}.role", "at most 4096 bytes, got 4097"),
        ({"ro\u0000le": "x"}, f'{EXT_PATH}["ro\\u0000le"]', "external_ids key may only hold"),
        ({"ro\u200ble": "x"}, f'{EXT_PATH}["ro\\u200ble"]', '"\\u200b" is not allowed'),
        ({"my role": "x"}, f'{EXT_PATH}["my role"]', "no spaces"),
        ({"k" * 257: "x"}, None, "at most 256 bytes, got 257"),
    ],
)
def test_external_ids_hold_visible_bounded_text(
    ids: dict[str, str], path: str | None, words: str
) -> None:
    path = path or f"{EXT_PATH}.{'k' * 257}"
    refused(with_value(EXT, ids), path, words)


def test_external_ids_may_hold_any_visible_text() -> None:
    ids = {"owner-team": "équipe réseau", "net:zone": "東京 dc-1", "note": "x" * 4096}
    doc = with_value(EXT, ids)
    assert (
        parse_state(json.dumps(doc)).state.sections()["net"]["interfaces"][0]["external_ids"] == ids
    )


@pytest.mark.parametrize(
    ("loc", "key", "path"),
    [
        (("systemd", "units"), "open\u202evswitch.service", "systemd.units"),
        (CT0, "na\u200bme", "lxc.containers[0]"),
    ],
)
def test_a_key_with_invisible_characters_is_shown_escaped(
    loc: tuple[Any, ...], key: str, path: str
) -> None:
    doc = copy.deepcopy(ADDRESSED)
    node: Any = doc
    for part in loc:
        node = node[part]
    node[key] = {}
    found = problems(doc)
    escaped = "".join(c if is_visible(c) else f"\\u{ord(c):04x}" for c in key)
    assert [p for p, _ in found] == [f'{path}["{escaped}"]'], found
    assert all(is_visible(c) for p, m in found for c in p + m), found


@pytest.mark.parametrize("name", ["gate\u200bway", "gatew\u0430y", "gateway\u202e"])
def test_container_names_are_ascii_hostnames(name: str) -> None:
    refused(with_value((*CT0, "name"), name), "lxc.containers[0].name", "hostname label")


MEMORY_LIMIT = 'at most 8796093022208 MiB ("8589934592G", 2^63 bytes)'


@pytest.mark.parametrize(
    "memory",
    [
        "99999999999999999999G",
        "8589934593G",
        "8796093022209M",
        2**43 + 1,
        10**400,
        "9" * 5000 + "M",
    ],
)
def test_memory_is_bounded_by_what_a_cgroup_holds(memory: Any) -> None:
    refused(with_value((*CT0, "memory"), memory), "lxc.containers[0].memory", MEMORY_LIMIT)


@pytest.mark.parametrize("memory", ["8589934592G", "8796093022208M", 2**43, 1, "1M"])
def test_memory_up_to_the_bound_is_kept(memory: Any) -> None:
    doc = with_value((*CT0, "memory"), memory)
    assert parse_state(json.dumps(doc)).state.sections()["lxc"]["containers"][0]["memory"] == memory


BR0_ADDR = (*BR0, "ipv4", "address", 0)
CT0_ADDR = (*CT0, "ipv4", "address", 0)


@pytest.mark.parametrize(
    ("loc", "value", "path", "words"),
    [
        (BR0_ADDR, {"ip": "127.0.0.1", "prefix": 8}, "net.interfaces[0].ipv4.address[0].ip",
         "loopback address (127.0.0.0/8"),
        (CT0_ADDR, {"ip": "127.1.2.3", "prefix": 24}, "lxc.containers[0].ipv4.address[0].ip",
         "loopback"),
        ((*BR0, "ipv4", "gateway"), "127.0.0.1", "net.interfaces[0].ipv4.gateway", "loopback"),
        (BR0_ADDR, {"ip": "192.168.1.0", "prefix": 24}, "net.interfaces[0].ipv4.address[0].ip",
         "192.168.1.0 is the network address of 192.168.1.0/24, not a host address"),
        (BR0_ADDR, {"ip": "192.168.1.255", "prefix": 24}, "net.interfaces[0].ipv4.address[0].ip",
         "192.168.1.255 is the broadcast address of 192.168.1.0/24"),
        (CT0_ADDR, {"ip": "10.0.0.0", "prefix": 24}, "lxc.containers[0].ipv4.address[0].ip",
         "network address of 10.0.0.0/24"),
        (CT0_ADDR, {"ip": "10.0.0.255", "prefix": 24}, "lxc.containers[0].ipv4.address[0].ip",
         "broadcast address of 10.0.0.0/24"),
        (CT0_ADDR, {"ip": "10.0.0.3", "prefix": 30}, "lxc.containers[0].ipv4.address[0].ip",
         "broadcast address of 10.0.0.0/30"),
        (BR0_ADDR, {"ip": "192.168.1.10", "prefix": 0}, "net.interfaces[0].ipv4.address[0].prefix",
         "must be from 1 to 32, got 0: prefix 0 on a host address"),
        (CT0_ADDR, {"ip": "10.0.0.100", "prefix": 0}, "lxc.containers[0].ipv4.address[0].prefix",
         "prefix 0"),
        ((*BR0, "ipv4", "gateway"), "192.168.1.10", "net.interfaces[0].ipv4.gateway",
         "gateway 192.168.1.10 is this interface's own address (address[0])"),
        ((*CT0, "ipv4", "gateway"), "10.0.0.100", "lxc.containers[0].ipv4.gateway",
         "gateway 10.0.0.100 is this container's own address (address[0])"),
        ((*BR0, "ipv4", "gateway"), "192.168.1.255", "net.interfaces[0].ipv4.gateway",
         "gateway 192.168.1.255 is the broadcast address of 192.168.1.0/24"),
        ((*CT0, "ipv4", "gateway"), "10.0.0.0", "lxc.containers[0].ipv4.gateway",
         "gateway 10.0.0.0 is the network address of 10.0.0.0/24"),
    ],
)  # fmt: skip
def test_host_addresses_are_usable_hosts(
    loc: tuple[Any, ...], value: Any, path: str, words: str
) -> None:
    refused(with_value(loc, value), path, words)


@pytest.mark.parametrize(
    "ipv4",
    [
        {"address": [{"ip": "10.0.0.0", "prefix": 31}], "gateway": "10.0.0.1"},  # RFC 3021
        {"address": [{"ip": "10.0.0.5", "prefix": 31}], "gateway": "10.0.0.4"},
        {"address": [{"ip": "10.0.0.7", "prefix": 32}]},
        {"address": [{"ip": "10.0.0.9", "prefix": 1}]},  # not mesh's 10.0.0.1: one owner each
        {"address": [{"ip": "10.0.0.2", "prefix": 30}], "gateway": "10.0.0.1"},
    ],
)
def test_edge_addresses_that_are_hosts_are_kept(ipv4: dict[str, Any]) -> None:
    doc = with_value((*CT0, "ipv4"), ipv4)
    assert parse_state(json.dumps(doc)).state.sections()["lxc"]["containers"][0]["ipv4"] == ipv4


def test_no_message_quotes_an_invisible_character_raw() -> None:
    everything = "".join(INVISIBLE) + "\u0000\u001b[31m"
    doc = with_value((*CT0, "veth"), f"v{everything}")
    doc = with_value((*CT0, "template"), f"busybox{everything}", doc)
    doc = with_value(EXT, {f"k{everything}": f"v{everything}"}, doc)
    for path, message in problems(doc):
        shown = path + message
        assert not [c for c in shown if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")]
        assert "\x1b" not in shown
