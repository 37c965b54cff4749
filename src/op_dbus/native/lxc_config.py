"""An LXC container's config file and hook scripts: what op-dbus writes and how it reads them back.

op-dbus owns one block at the end of `PATH/NAME/config`, opened by `MARKER`. The block holds
the container's only network (a veth whose host end has the declared name and a fixed MAC)
and comment lines recording who made the container and what was declared. The host end is
attached to its Open vSwitch bridge by hook scripts that liblxc itself runs at start and stop
(`script.up`/`script.down`), so a container started by hand, or by `lxc-autostart`, is wired
the same way. Everything outside the block is the template's and stays as it is.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shlex
import shutil
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from op_dbus.native.vswitch import PORT_OWNER_KEY

MARKER = "# --- op-dbus: managed below; edit the state file, not these lines ---"
OWNER_LINE = "# op-dbus-owner = op-dbus"
PROTECTED_LINE = "# op-dbus-protected"
HOOK_UP, HOOK_DOWN, HOOK_START_HOST = "op-dbus-net-up", "op-dbus-net-down", "op-dbus-start-host"
HOOK_ERRORS = "op-dbus-hook.err"
"""Beside the hooks: what the last start's hooks wrote on stderr. liblxc logs only "Script
exited with status 1"; a failed start reports this instead (the root cause)."""
CREATING = "op-dbus-creating"
"""Written into the container's directory before `lxc-create` runs and removed once the
config carries the owner mark: a creation cut short (op-dbus killed) is still known as ours."""
LXC_PARTIAL = "partial"
"""liblxc's own marker of a creation under way (locked while `lxc-create` runs)."""
SHELL_WORD = re.compile(r"[A-Za-z0-9._+:@%=,/-]+")
"""Characters no shell treats specially: liblxc splices hook paths, the container name and
the veth name into the line it runs with `/bin/sh -c` (`exec SCRIPT NAME net up veth  VETH`)."""
RCS = Path("rootfs/etc/init.d/rcS")
CPU_PERIOD_US = 100_000
MEMORY_KEYS = ("lxc.cgroup.memory.limit_in_bytes", "lxc.cgroup2.memory.max")
CPU_KEYS = ("lxc.cgroup.cpu.cfs_quota_us", "lxc.cgroup.cpu.cfs_period_us", "lxc.cgroup2.cpu.max")
DEFAULT_TEMPLATE = "busybox"


@dataclass(frozen=True)
class Nic:
    """One veth of a container (`lxc.net.N`, eth N inside), attached to `bridge` by a hook."""

    veth: str | None = None
    bridge: str | None = None
    hwaddr: str | None = None
    addresses: tuple[tuple[str, int], ...] = ()
    gateway: str | None = None
    vlan: int | None = None
    trunks: tuple[int, ...] = ()
    mtu: int | None = None
    addresses6: tuple[tuple[str, int], ...] = ()
    gateway6: str | None = None


@dataclass(frozen=True)
class Spec:
    """What a container should be: the state file's fields, defaults resolved."""

    name: str
    id: str
    veth: str | None = None
    bridge: str | None = None
    hwaddr: str | None = None
    addresses: tuple[tuple[str, int], ...] = ()
    gateway: str | None = None
    vlan: int | None = None
    trunks: tuple[int, ...] = ()
    mtu: int | None = None
    autostart: bool = False
    protected: bool = False
    """Its OVS port is `protected` (set by the up hook at every start)."""
    template: str = DEFAULT_TEMPLATE
    memory: int | None = None
    """MiB"""
    cpus: int | None = None
    more_nics: tuple[Nic, ...] = ()
    """eth1 and on (`nics[1:]`); eth0 is the fields above."""
    addresses6: tuple[tuple[str, int], ...] = ()
    gateway6: str | None = None

    @property
    def nics(self) -> tuple[Nic, ...]:
        first = Nic(
            *(self.veth, self.bridge, self.hwaddr, self.addresses, self.gateway, self.vlan),
            *(self.trunks, self.mtu, self.addresses6, self.gateway6),
        )
        return (first, *self.more_nics)


class UnsafeValue(ValueError):
    """A value that would change the meaning of a config line or of a hook's shell line.

    Validation refuses such values first; this is the writer's own last line of defence."""


@dataclass
class Parsed:
    """What a config file says: ownership, the recorded declaration, the first network.

    `incomplete`: op-dbus began creating the container and did not finish (see CREATING).
    `unreadable`: why the config could not be read (the container is then left alone)."""

    owned: bool = False
    incomplete: bool = False
    unreadable: str | None = None
    id: str | None = None
    bridge: str | None = None
    template: str | None = None
    veth: str | None = None
    hwaddr: str | None = None
    addresses: list[tuple[str, int]] = field(default_factory=list)
    gateway: str | None = None
    vlan: int | None = None
    trunks: list[int] = field(default_factory=list)
    mtu: int | None = None
    autostart: bool = False
    protected: bool = False
    memory: int | None = None
    cpus: int | None = None
    more_nics: list[Nic] = field(default_factory=list)
    addresses6: list[tuple[str, int]] = field(default_factory=list)
    gateway6: str | None = None


def memory_mib(value: int | str) -> int:
    """MiB from the state file's spelling: 512, "512M" or "2G"."""
    if isinstance(value, int):
        return value
    number = int(value[:-1])
    return number * 1024 if value.endswith("G") else number


def nic_hwaddr(ct_id: str, index: int) -> str:
    """NIC `index`'s default MAC: `default_hwaddr` with the index as its second byte."""
    mac = default_hwaddr(ct_id)
    return f"02:{index:02x}{mac[5:]}"


def legacy_cgroups() -> bool:
    """True on a cgroup v1 (or hybrid) host, where liblxc takes `lxc.cgroup.*` limits."""
    return Path("/sys/fs/cgroup/memory").is_dir()


def limit_lines(spec: Spec, cgroup_v1: bool) -> list[str]:
    """Memory and CPU limits in the keys of the host's cgroup version."""
    lines: list[str] = []
    if spec.memory is not None:
        key = MEMORY_KEYS[0] if cgroup_v1 else MEMORY_KEYS[1]
        lines.append(f"{key} = {int(spec.memory)}M")
    if spec.cpus is not None:
        quota = int(spec.cpus) * CPU_PERIOD_US
        if cgroup_v1:
            lines += [f"{CPU_KEYS[0]} = {quota}", f"{CPU_KEYS[1]} = {CPU_PERIOD_US}"]
        else:
            lines.append(f"{CPU_KEYS[2]} = {quota} {CPU_PERIOD_US}")
    return lines


def _mib(value: str) -> int | None:
    """MiB of a memory limit as liblxc takes it (bytes, or K/M/G); "max": no limit."""
    if value == "max":
        return None
    units = {"K": 1 / 1024, "M": 1, "G": 1024}
    if value[-1:].upper() in units:
        return int(int(value[:-1]) * units[value[-1].upper()])
    return int(value) // (1024 * 1024)


def default_hwaddr(ct_id: str) -> str:
    """A locally administered unicast MAC from the id (02:00 + id as 32 bits): stable across
    restarts, so peers' ARP caches stay right, and readable (id 100 -> 02:00:00:00:00:64)."""
    value = int(ct_id)
    return "02:00:" + ":".join(f"{(value >> s) & 0xFF:02x}" for s in (24, 16, 8, 0))


def plain(what: str, value: object) -> str:
    """`value` as text for one config line: no line breaks, NUL, or other control or
    invisible format characters (which would end the line or hide what it says)."""
    text = str(value)
    bad = next((c for c in text if unicodedata.category(c).startswith("C")), None)
    if bad is not None:
        raise UnsafeValue(f"{what}: {text!r} holds the control character {bad!r}")
    return text


def shell_word(what: str, value: object) -> str:
    """`value`, which liblxc will splice into a shell line: only SHELL_WORD characters."""
    text = plain(what, value)
    if not SHELL_WORD.fullmatch(text):
        raise UnsafeValue(
            f"{what}: {text!r} may hold only letters, digits and . _ + : @ % = , / -"
            " (liblxc passes it through a shell)"
        )
    return text


def _tool(name: str) -> str:
    """Absolute path of a tool for a hook script (liblxc runs hooks with op-dbus's PATH)."""
    return shutil.which(name) or name


def hook_scripts(spec: Spec, ovsdb: str) -> dict[str, str]:
    """The hook scripts' texts by file name. liblxc calls script.up/down with
    `NAME net up|down veth HOSTVETH`; start-host gets the container's PID as LXC_PID."""
    name = shell_word("container name", spec.name)
    db = shlex.quote(f"--db={plain('OVSDB endpoint', ovsdb)}")
    vsctl = f"{shlex.quote(_tool('ovs-vsctl'))} {db} --timeout=10"
    owner = shlex.quote(f"external_ids:{PORT_OWNER_KEY}={name}")
    head = "#!/bin/sh\n# Written by op-dbus for container {}: {}\n"
    protected = " protected=true" if spec.protected else ""
    errors = f'exec 2>"${{0%/*}}/{HOOK_ERRORS}"\n'  # the script's own directory
    scripts: dict[str, str] = {}
    for index, nic in enumerate(spec.nics):
        if nic.bridge:
            bridge = shlex.quote(plain("bridge", nic.bridge))
            columns = "".join(f" {c}" for c in vlan_columns(nic))
            up = (
                f'{vsctl} -- --if-exists del-port "$5" -- add-port {bridge} "$5"'
                f' -- set Port "$5" {owner}{protected}{columns}'
            )
        else:
            up = ":"
        what = "attach the host veth to its OVS bridge"
        scripts[up_hook(index)] = head.format(spec.name, what) + errors + f"exec {up}\n"
    nsenter, ethtool = shlex.quote(_tool("nsenter")), shlex.quote(_tool("ethtool"))
    offload = "".join(
        f'{nsenter} -t "$LXC_PID" -n {ethtool} -K eth{index} tx off\n'
        for index in range(len(spec.nics))
    )
    return {
        **scripts,
        HOOK_DOWN: head.format(spec.name, "detach the host veth from its OVS bridge")
        + f'exec {vsctl} -- --if-exists del-port "$5"\n',
        # TCP through OVS's userspace (netdev) datapath needs TX checksum offload off on the
        # container's end; harmless with the kernel datapath.
        HOOK_START_HOST: head.format(spec.name, "TX checksum offload off in the container")
        + errors.replace("2>", "2>>")
        + offload,
    }


def up_hook(index: int) -> str:
    """The start hook's file name of NIC `index` (each knows its own bridge and VLAN)."""
    return HOOK_UP if index == 0 else f"{HOOK_UP}.{index}"


def vlan_columns(nic: Nic) -> list[str]:
    """`ovs-vsctl set Port` arguments for the container port's VLAN fields (integers only)."""
    columns = [f"tag={int(nic.vlan)}"] if nic.vlan is not None else []
    if nic.trunks:
        columns.append(f"trunks={','.join(str(int(t)) for t in sorted(set(nic.trunks)))}")
    return columns


def managed_block(spec: Spec, container_dir: Path, cgroup_v1: bool) -> list[str]:
    """The lines op-dbus appends to the config (after `MARKER`). Every value is checked
    (UnsafeValue): nothing may end a line, and what liblxc hands to a shell (hook paths,
    the container name, the veth name) must be one plain shell word."""
    shell_word("container name", spec.name)
    lines = [
        MARKER,
        OWNER_LINE,
        f"# op-dbus-id = {plain('id', spec.id)}",
        f"# op-dbus-template = {plain('template', spec.template)}",
    ]
    if spec.protected:
        lines.append(f"{PROTECTED_LINE} = 1")
    for index, nic in enumerate(spec.nics):
        lines += _nic_lines(index, nic, container_dir)
    lines.append(f"lxc.hook.start-host = {shell_word('hook', container_dir / HOOK_START_HOST)}")
    lines += [f"lxc.start.auto = {1 if spec.autostart else 0}", *limit_lines(spec, cgroup_v1)]
    return lines


def _nic_lines(index: int, nic: Nic, container_dir: Path) -> list[str]:
    """The config lines of NIC `index`, and the comments recording its bridge and VLANs
    (suffixed `.N` from the second NIC on)."""
    net, mark = f"lxc.net.{index}", "" if index == 0 else f".{index}"
    lines = []
    if nic.bridge:
        lines.append(f"# op-dbus-bridge{mark} = {plain('bridge', nic.bridge)}")
    if nic.vlan is not None:
        lines.append(f"# op-dbus-vlan{mark} = {int(nic.vlan)}")
    if nic.trunks:
        lines.append(
            f"# op-dbus-trunks{mark} = {','.join(str(int(t)) for t in sorted(nic.trunks))}"
        )
    lines += [f"{net}.type = veth", f"{net}.name = eth{index}", f"{net}.flags = up"]
    if nic.veth:
        lines.append(f"{net}.veth.pair = {shell_word('veth', nic.veth)}")
    if nic.hwaddr:
        lines.append(f"{net}.hwaddr = {plain('hwaddr', nic.hwaddr)}")
    if nic.mtu is not None:
        lines.append(f"{net}.mtu = {int(nic.mtu)}")
    for ip, prefix in nic.addresses:
        address = ipaddress.IPv4Interface(f"{ip}/{prefix}")
        lines.append(f"{net}.ipv4.address = {address} {address.network.broadcast_address}")
    if nic.gateway:
        lines.append(f"{net}.ipv4.gateway = {ipaddress.IPv4Address(nic.gateway)}")
    for ip, prefix in nic.addresses6:
        lines.append(f"{net}.ipv6.address = {ipaddress.IPv6Interface(f'{ip}/{prefix}')}")
    if nic.gateway6:
        lines.append(f"{net}.ipv6.gateway = {ipaddress.IPv6Address(nic.gateway6)}")
    hooks = [(f"{net}.script.up", up_hook(index)), (f"{net}.script.down", HOOK_DOWN)]
    lines += [f"{key} = {shell_word(key, container_dir / script)}" for key, script in hooks]
    return lines


def _replaced(key: str) -> bool:
    """Template lines the managed block supersedes (its network, hooks and autostart)."""
    return (
        key.startswith("lxc.net.")
        or key in ("lxc.hook.start-host", "lxc.start.auto")
        or key in (*MEMORY_KEYS, *CPU_KEYS)
    )


def render(existing: str, spec: Spec, container_dir: Path, cgroup_v1: bool = True) -> str:
    """`existing` config with the template's network replaced by op-dbus's block."""
    kept: list[str] = []
    for line in existing.splitlines():
        if line.strip() == MARKER:
            break
        key = line.split("=", 1)[0].strip()
        if not _replaced(key):
            kept.append(line)
    while kept and not kept[-1].strip():
        kept.pop()
    return "\n".join([*kept, "", *managed_block(spec, container_dir, cgroup_v1)]) + "\n"


_NET_KEY = re.compile(r"lxc\.net\.([0-9]{1,2})\.(.+)")
_MARK_KEY = re.compile(r"# op-dbus-(bridge|vlan|trunks)(?:\.([0-9]{1,2}))?")


def parse(text: str) -> Parsed:
    """Read back ownership, the networks (eth0 into the fields, the rest into `more_nics`)
    and the limits from any container's config."""
    parsed = Parsed()
    nics: dict[int, dict[str, Any]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line == OWNER_LINE:
            parsed.owned = True
            continue
        if "=" not in line:
            continue
        key, value = (part.strip() for part in line.split("=", 1))
        net, mark = _NET_KEY.fullmatch(key), _MARK_KEY.fullmatch(key)
        if key in ("# op-dbus-id", "# op-dbus-template"):
            setattr(parsed, key.removeprefix("# op-dbus-"), value)
        elif key == PROTECTED_LINE:
            parsed.protected = value == "1"
        elif mark:
            _nic_field(nics.setdefault(int(mark[2] or 0), {}), mark[1], value)
        elif net:
            _nic_field(nics.setdefault(int(net[1]), {}), net[2], value)
        elif key == "lxc.start.auto":
            parsed.autostart = value == "1"
        elif key in MEMORY_KEYS:
            parsed.memory = _mib(value)
        elif key == CPU_KEYS[0]:
            parsed.cpus = int(value) // CPU_PERIOD_US if int(value) > 0 else None
        elif key == CPU_KEYS[2]:
            quota, _, period = value.partition(" ")
            parsed.cpus = None if quota == "max" else int(quota) // int(period or CPU_PERIOD_US)
    for index in sorted(nics):
        if index == 0:
            for name, value in nics[0].items():
                setattr(parsed, name, list(value) if isinstance(value, tuple) else value)
        elif nics[index].get("veth") or nics[index].get("bridge"):
            parsed.more_nics.append(Nic(**nics[index]))
    return parsed


def _nic_field(nic: dict[str, Any], key: str, value: str) -> None:
    """One `lxc.net.N.KEY` (or op-dbus comment) value into `nic`'s Nic fields."""
    if key in ("bridge", "veth.pair"):
        nic[key.split(".")[0]] = value
    elif key == "hwaddr":
        nic["hwaddr"] = value.lower()
    elif key in ("vlan", "mtu") and value.isdigit():
        nic[key] = int(value)
    elif key == "trunks":
        nic["trunks"] = tuple(sorted(int(t) for t in value.split(",") if t.isdigit()))
    elif key == "ipv4.address":
        address = ipaddress.IPv4Interface(value.split()[0])
        found = (str(address.ip), address.network.prefixlen)
        nic["addresses"] = (*nic.get("addresses", ()), found)
    elif key == "ipv4.gateway":
        nic["gateway"] = value
    elif key == "ipv6.address":
        address6 = ipaddress.IPv6Interface(value.split()[0])
        found = (str(address6.ip), address6.network.prefixlen)
        nic["addresses6"] = (*nic.get("addresses6", ()), found)
    elif key == "ipv6.gateway":
        nic["gateway6"] = str(ipaddress.IPv6Address(value))


def check_values(spec: Spec, container_dir: Path, ovsdb: str) -> None:
    """Raise UnsafeValue if any value of `spec` cannot be written safely (writes nothing)."""
    managed_block(spec, container_dir, cgroup_v1=True)
    hook_scripts(spec, ovsdb)


def write_container_files(spec: Spec, container_dir: Path, ovsdb: str) -> None:
    """Rewrite the config's managed block and the hook scripts, and adjust the busybox
    template's DHCP client (`dhcp_line`). Everything is rendered (and checked) before
    anything is written, and each file is replaced whole: a kill leaves old or new."""
    config = container_dir / "config"
    files = {name: (text, 0o755) for name, text in hook_scripts(spec, ovsdb).items()}
    files["config"] = (render(config.read_text(), spec, container_dir, legacy_cgroups()), 0o644)
    rcs = container_dir / RCS
    if _inside(container_dir / RCS.parts[0], rcs) and rcs.is_file():
        files[str(RCS)] = (
            dhcp_line(rcs.read_text(), any(n.addresses or n.addresses6 for n in spec.nics)),
            rcs.stat().st_mode,
        )
    for name, (text, mode) in files.items():  # hooks first: the config names them
        replace_file(container_dir / name, text, mode)


def _inside(root: Path, path: Path) -> bool:
    """Whether `path` is a file of `root` itself: the rootfs belongs to the container's root,
    which could point a symlink at a host file for op-dbus (root on the host) to rewrite."""
    return not path.is_symlink() and path.resolve().is_relative_to(root.resolve())


def replace_file(path: Path, text: str, mode: int) -> None:
    """Write `path` through a new temporary file beside it, then rename it over `path`."""
    partial = path.with_name(f".{path.name}.op-dbus-new")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode & 0o7777)
    with os.fdopen(fd, "w") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    os.chmod(partial, mode & 0o7777)
    os.replace(partial, path)


def dhcp_line(rcs: str, static: bool) -> str:
    """The busybox template's rcS with its `udhcpc` turned off (static addresses: it would
    wipe them) or sent to the background (else it blocks init, and a clean stop then waits
    for lxc-stop's timeout)."""
    line = "# /bin/udhcpc  # off: op-dbus sets static addresses" if static else "/bin/udhcpc &"
    return "".join(
        line + "\n" if "/bin/udhcpc" in text else text for text in rcs.splitlines(keepends=True)
    )
