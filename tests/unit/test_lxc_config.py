"""What op-dbus writes into an LXC container's directory, and how it reads it back."""

from __future__ import annotations

import subprocess
from pathlib import Path

from op_dbus.native.lxc import parse_lxc_ls
from op_dbus.native.lxc_config import (
    HOOK_DOWN,
    HOOK_START_HOST,
    HOOK_UP,
    MARKER,
    Spec,
    default_hwaddr,
    dhcp_line,
    hook_scripts,
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


def test_parse_lxc_ls() -> None:
    recorded = (
        "NAME        STATE   PID  \n"
        "gateway     RUNNING 6006 \n"
        "warp        STOPPED -    \n"
    )  # fmt: skip
    assert parse_lxc_ls(recorded) == [("gateway", "RUNNING", 6006), ("warp", "STOPPED", None)]
    assert parse_lxc_ls("") == []
