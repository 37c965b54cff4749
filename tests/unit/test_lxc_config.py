"""What op-dbus writes into an LXC container's directory, and how it reads it back."""

from __future__ import annotations

import shlex
import subprocess
import unicodedata
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from op_dbus.native.lxc import parse_lxc_info
from op_dbus.native.lxc_config import (
    HOOK_DOWN,
    HOOK_START_HOST,
    HOOK_UP,
    MARKER,
    Nic,
    Spec,
    UnsafeValue,
    check_values,
    default_hwaddr,
    dhcp_line,
    hook_scripts,
    managed_block,
    parse,
    render,
    write_container_files,
)

# What `lxc-create -t busybox` wrote on Debian 12 (LXC 5.0), abridged.
TEMPLATE_CONFIG = """\
# Template used to create this container: /usr/share/lxc/templates/lxc-busybox
lxc.net.0.type = veth
lxc.net.0.link = lxcbr0
lxc.net.0.flags = up
lxc.apparmor.profile = generated
lxc.rootfs.path = dir:/var/lib/lxc/gateway/rootfs
lxc.signal.halt = SIGUSR1
lxc.uts.name = "gateway"
lxc.mount.auto = cgroup:mixed proc:mixed sys:ro
"""
RCS = "#!/bin/sh\n/bin/syslogd\n/bin/mount -a\n/bin/udhcpc\n"
SPEC = Spec(
    name="gateway",
    id="100",
    veth="vi100",
    bridge="mesh",
    hwaddr="02:00:00:00:00:64",
    addresses=(("10.0.0.2", 24),),
    gateway="10.0.0.1",
)
DIR = Path("/var/lib/lxc/gateway")


def test_default_hwaddr_is_stable_unicast_and_locally_administered() -> None:
    assert default_hwaddr("100") == "02:00:00:00:00:64"
    assert default_hwaddr("999999999") == "02:00:3b:9a:c9:ff"
    first = int(default_hwaddr("4242").split(":")[0], 16)
    assert first & 1 == 0 and first & 2 == 2
    assert default_hwaddr("100") != default_hwaddr("101")


def test_render_replaces_the_template_network_and_keeps_the_rest() -> None:
    text = render(TEMPLATE_CONFIG, SPEC, DIR)
    assert "lxc.net.0.link" not in text
    assert text.count("lxc.net.0.type") == 1
    assert 'lxc.uts.name = "gateway"' in text and "lxc.signal.halt = SIGUSR1" in text
    assert "lxc.net.0.veth.pair = vi100" in text
    assert "lxc.net.0.ipv4.address = 10.0.0.2/24 10.0.0.255" in text
    assert f"lxc.net.0.script.up = {DIR / HOOK_UP}" in text
    assert f"lxc.hook.start-host = {DIR / HOOK_START_HOST}" in text
    assert text.index(MARKER) > text.index("lxc.mount.auto")


def test_render_twice_is_render_once_and_replaces_the_old_block() -> None:
    once = render(TEMPLATE_CONFIG, SPEC, DIR)
    assert render(once, SPEC, DIR) == once
    moved = render(once, Spec(name="gateway", id="100", veth="vi7", bridge="other"), DIR)
    assert "vi100" not in moved and "10.0.0.2" not in moved
    assert moved.count(MARKER) == 1


def test_parse_reads_back_what_render_wrote() -> None:
    parsed = parse(render(TEMPLATE_CONFIG, SPEC, DIR))
    assert parsed.owned
    assert (parsed.id, parsed.bridge, parsed.template) == ("100", "mesh", "busybox")
    assert (parsed.veth, parsed.hwaddr, parsed.gateway) == ("vi100", SPEC.hwaddr, "10.0.0.1")
    assert parsed.addresses == [("10.0.0.2", 24)]
    assert parsed.autostart is False


def test_a_protected_port_is_recorded_read_back_and_set_by_the_up_hook() -> None:
    protected = replace(SPEC, protected=True)
    assert parse(render(TEMPLATE_CONFIG, protected, DIR)).protected is True
    assert parse(render(TEMPLATE_CONFIG, SPEC, DIR)).protected is False
    up = hook_scripts(protected, "unix:/db.sock")[HOOK_UP]
    assert up.rstrip().endswith("external_ids:op-dbus-container=gateway protected=true")
    assert "protected" not in hook_scripts(SPEC, "unix:/db.sock")[HOOK_UP]


def test_limits_in_cgroup_v1_and_v2_keys_read_back_alike() -> None:
    spec = Spec(name="gateway", id="100", memory=64, cpus=2)
    v1, v2 = render(TEMPLATE_CONFIG, spec, DIR, True), render(TEMPLATE_CONFIG, spec, DIR, False)
    assert "lxc.cgroup.memory.limit_in_bytes = 64M" in v1
    assert "lxc.cgroup.cpu.cfs_quota_us = 200000" in v1
    assert "lxc.cgroup2.memory.max = 64M" in v2 and "lxc.cgroup2.cpu.max = 200000 100000" in v2
    for text in (v1, v2):
        assert (parse(text).memory, parse(text).cpus) == (64, 2)
    unlimited = render(v1, Spec(name="gateway", id="100"), DIR, True)
    assert "lxc.cgroup" not in unlimited
    assert parse(TEMPLATE_CONFIG + "lxc.cgroup2.memory.max = 1073741824\n").memory == 1024


def test_a_foreign_config_is_not_owned() -> None:
    parsed = parse(TEMPLATE_CONFIG + "lxc.net.0.veth.pair = byhand0\n")
    assert not parsed.owned
    assert (parsed.id, parsed.veth) == (None, "byhand0")


def test_hook_scripts_attach_with_the_container_mark_and_are_valid_sh() -> None:
    scripts = hook_scripts(SPEC, "unix:/run/lab x/db.sock")
    up = scripts[HOOK_UP]
    assert "'--db=unix:/run/lab x/db.sock'" in up
    assert 'add-port mesh "$5"' in up and "external_ids:op-dbus-container=gateway" in up
    assert '--if-exists del-port "$5"' in up  # a stale port never blocks a start
    assert '--if-exists del-port "$5"' in scripts[HOOK_DOWN]
    assert "-K eth0 tx off" in scripts[HOOK_START_HOST]
    for text in scripts.values():
        assert subprocess.run(["sh", "-n", "-c", text], check=False).returncode == 0
    unbridged = hook_scripts(Spec(name="x", id="100", veth="vi1"), "unix:/db.sock")[HOOK_UP]
    assert "add-port" not in unbridged


def test_dhcp_client_off_for_static_addresses_and_backgrounded_otherwise() -> None:
    static = dhcp_line(RCS, static=True)
    assert "\n# /bin/udhcpc" in static
    dynamic = dhcp_line(static, static=False)
    assert dynamic.endswith("/bin/udhcpc &\n")
    assert dhcp_line(dynamic, static=True) == static
    assert dynamic.startswith("#!/bin/sh\n/bin/syslogd\n")


def test_write_container_files(tmp_path: Path) -> None:
    (tmp_path / "config").write_text(TEMPLATE_CONFIG)
    (tmp_path / "rootfs/etc/init.d").mkdir(parents=True)
    (tmp_path / "rootfs/etc/init.d/rcS").write_text(RCS)
    write_container_files(SPEC, tmp_path, "unix:/db.sock")
    assert parse((tmp_path / "config").read_text()).veth == "vi100"
    for name in (HOOK_UP, HOOK_DOWN, HOOK_START_HOST):
        assert (tmp_path / name).stat().st_mode & 0o111
    assert "# /bin/udhcpc" in (tmp_path / "rootfs/etc/init.d/rcS").read_text()


def test_parse_lxc_info() -> None:
    running = "State:          RUNNING\nPID:            6006\n"  # recorded: lxc-info -s -p
    assert parse_lxc_info(running) == ("RUNNING", 6006)
    assert parse_lxc_info("State:          STOPPED\n") == ("STOPPED", None)
    assert parse_lxc_info("") == ("", None)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("veth", "v$(id>q)"),  # liblxc splices the veth into the hook's shell line
        ("veth", "vi100;reboot"),
        ("veth", "vi`id`"),
        ("name", "gw$(id)"),  # the name is in every hook's path and its argv
        ("name", "gw\nlxc.hook.pre-start = /bin/sh"),
        ("template", "busybox\nlxc.hook.pre-start = /tmp/x"),
        ("bridge", "mesh\nlxc.net.0.link = lxcbr0"),
        ("hwaddr", "02:00:00:00:00:64\x00"),
        ("id", "100\u202e"),  # a bidi override hides what the line says
    ],
)
def test_the_writer_refuses_a_value_that_would_change_a_line_or_a_shell(
    field: str, value: str, tmp_path: Path
) -> None:
    spec = replace(SPEC, **{field: value})
    with pytest.raises(UnsafeValue, match=field if field != "name" else "container name"):
        check_values(spec, DIR, "unix:/db.sock")
    (tmp_path / "config").write_text(TEMPLATE_CONFIG)
    with pytest.raises(UnsafeValue):
        write_container_files(spec, tmp_path, "unix:/db.sock")
    assert (tmp_path / "config").read_text() == TEMPLATE_CONFIG, "nothing written"
    assert not (tmp_path / HOOK_UP).exists()


def test_the_writer_refuses_an_lxc_path_the_hook_shell_would_split() -> None:
    with pytest.raises(UnsafeValue, match=r"lxc\.net\.0\.script\.up"):
        check_values(SPEC, Path("/var/lib/my lxc/gateway"), "unix:/db.sock")


@settings(max_examples=300, deadline=None)
@given(
    veth=st.text(min_size=1, max_size=15),
    name=st.text(min_size=1, max_size=20),
    other=st.text(min_size=1, max_size=30),
)
def test_no_value_reaching_a_line_or_a_hook_shell_carries_syntax(
    veth: str, name: str, other: str
) -> None:
    """Whatever the values: every config line stays one line, and each word liblxc hands
    to `sh -c` (hook paths, the name, the veth) is read back by a shell as exactly itself."""
    spec = replace(SPEC, veth=veth, name=name, bridge=other, template=other, id=other)
    try:
        lines = managed_block(spec, Path("/var/lib/lxc") / name, cgroup_v1=True)
        scripts = hook_scripts(spec, "unix:/db.sock")
    except UnsafeValue:
        return
    for line in lines:
        assert "\n" not in line and "\r" not in line and "\x00" not in line
        assert not any(unicodedata.category(c).startswith("C") for c in line)
    words = [veth, name, *(str(Path("/var/lib/lxc") / name / h) for h in scripts)]
    for word in words:
        assert shlex.split(word) == [word] and shlex.quote(word) == word


def test_the_rootfs_cannot_point_op_dbus_at_a_host_file(tmp_path: Path) -> None:
    """rcS lives in the container's rootfs, which its root controls: a symlink there must
    not make op-dbus rewrite the file it points at."""
    host_file = tmp_path / "host-secret"
    host_file.write_text("/bin/udhcpc\nkeep me\n")
    container = tmp_path / "gateway"
    (container / "rootfs/etc/init.d").mkdir(parents=True)
    (container / "config").write_text(TEMPLATE_CONFIG)
    (container / "rootfs/etc/init.d/rcS").symlink_to(host_file)
    write_container_files(SPEC, container, "unix:/db.sock")
    assert host_file.read_text() == "/bin/udhcpc\nkeep me\n"
    (container / "rootfs/etc/init.d/rcS").unlink()
    (container / "rootfs/etc").rename(container / "rootfs/etc-real")
    (container / "rootfs/etc").symlink_to(tmp_path)
    (tmp_path / "init.d").mkdir()
    (tmp_path / "init.d/rcS").write_text("/bin/udhcpc\n")
    write_container_files(SPEC, container, "unix:/db.sock")
    assert (tmp_path / "init.d/rcS").read_text() == "/bin/udhcpc\n"


def test_files_are_replaced_whole(tmp_path: Path) -> None:
    (tmp_path / "config").write_text(TEMPLATE_CONFIG)
    write_container_files(SPEC, tmp_path, "unix:/db.sock")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["config", HOOK_UP, HOOK_DOWN, HOOK_START_HOST]
    ), "no temporary file left beside them"
    assert oct((tmp_path / "config").stat().st_mode & 0o777) == oct(0o644)


def test_a_foreign_config_with_unlimited_cgroup2_values_parses() -> None:
    text = TEMPLATE_CONFIG + "lxc.cgroup2.cpu.max = max 100000\nlxc.cgroup2.memory.max = max\n"
    parsed = parse(text)
    assert (parsed.cpus, parsed.memory) == (None, None)


def test_vlan_trunks_and_mtu_reach_the_hook_and_the_config_and_read_back() -> None:
    spec = Spec(
        name="ovm-a", id="100", veth="vi100", bridge="br0", vlan=10, trunks=(30, 20), mtu=1400
    )
    up = hook_scripts(spec, "unix:/run/db.sock")[HOOK_UP]
    assert up.rstrip().endswith("external_ids:op-dbus-container=ovm-a tag=10 trunks=20,30"), up
    block = managed_block(spec, Path("/var/lib/lxc/ovm-a"), cgroup_v1=False)
    assert "lxc.net.0.mtu = 1400" in block
    parsed = parse("\n".join(block))
    assert (parsed.vlan, parsed.trunks, parsed.mtu) == (10, [20, 30], 1400)
    plain = parse("\n".join(managed_block(Spec(name="b", id="101"), Path("/x"), cgroup_v1=False)))
    assert (plain.vlan, plain.trunks, plain.mtu) == (None, [], None)


def test_each_nic_gets_its_config_lines_and_its_own_start_hook_and_reads_back() -> None:
    second = Nic(veth="vi100b", bridge="br1", hwaddr="02:01:00:00:00:64", vlan=7, mtu=1300,
                 addresses=(("10.9.0.2", 24),))  # fmt: skip
    spec = Spec(name="ovm-a", id="100", veth="vi100", bridge="br0", more_nics=(second,))
    hooks = hook_scripts(spec, "unix:/run/db.sock")
    assert "add-port br0" in hooks[HOOK_UP] and "tag=" not in hooks[HOOK_UP]
    assert "add-port br1" in hooks[f"{HOOK_UP}.1"] and hooks[f"{HOOK_UP}.1"].rstrip().endswith(
        "tag=7"
    )
    assert "-K eth1 tx off" in hooks[HOOK_START_HOST]
    block = managed_block(spec, Path("/var/lib/lxc/ovm-a"), cgroup_v1=False)
    assert "lxc.net.1.veth.pair = vi100b" in block
    assert "lxc.net.1.script.up = /var/lib/lxc/ovm-a/op-dbus-net-up.1" in block
    assert "lxc.net.1.ipv4.address = 10.9.0.2/24 10.9.0.255" in block
    parsed = parse("\n".join(block))
    assert (parsed.veth, parsed.bridge, parsed.vlan) == ("vi100", "br0", None)
    assert parsed.more_nics == [second]


_nic = st.builds(
    Nic,
    veth=st.from_regex(r"[a-z][a-z0-9]{0,10}", fullmatch=True),
    bridge=st.from_regex(r"[a-z][a-z0-9]{0,10}", fullmatch=True),
    hwaddr=st.just("02:00:00:00:00:01"),
    addresses=st.just((("10.1.0.2", 24),)),
    gateway=st.none(),
    vlan=st.none() | st.integers(0, 4095),
    trunks=st.lists(st.integers(0, 4095), unique=True, max_size=4).map(lambda t: tuple(sorted(t))),
    mtu=st.none() | st.integers(68, 65535),
)


@settings(max_examples=50)
@given(st.lists(_nic, min_size=1, max_size=4))
def test_any_nics_read_back_as_written(nics: list) -> None:
    first, *more = nics
    spec = Spec(name="ovm-a", id="100", veth=first.veth, bridge=first.bridge, hwaddr=first.hwaddr,
                addresses=first.addresses, vlan=first.vlan, trunks=first.trunks, mtu=first.mtu,
                more_nics=tuple(more))  # fmt: skip
    parsed = parse("\n".join(managed_block(spec, Path("/var/lib/lxc/ovm-a"), cgroup_v1=False)))
    assert (parsed.veth, parsed.bridge, parsed.vlan, tuple(parsed.trunks), parsed.mtu) == (
        first.veth, first.bridge, first.vlan, first.trunks, first.mtu
    )  # fmt: skip
    assert parsed.more_nics == more
