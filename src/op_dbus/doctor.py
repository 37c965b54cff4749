"""`op-dbus doctor`: the seed's dependency matrix by mode, checked for real, with fixes.

Every component is probed through the same endpoints op-dbus itself would use (the system bus
address, the OVSDB target, the LXC path), each probe bounded by a timeout so that a socket
nobody answers cannot hang the doctor. Components the mode does not use are not probed.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from dbus_fast.aio import MessageBus
from dbus_fast.errors import DBusError

from op_dbus.endpoints import Endpoints
from op_dbus.exitcodes import ExitCode
from op_dbus.model.modes import Mode
from op_dbus.native.dbus import (
    activatable_names,
    connect_system_bus,
    get_properties,
    name_has_owner,
)
from op_dbus.native.ovsdb import OvsdbClient
from op_dbus.native.tool import tool_environment
from op_dbus.native.vswitch import VSWITCH_DB, ovs_summary

DEFAULT_TIMEOUT = 2.0


class Need(StrEnum):
    REQUIRED = "required"
    OPTIONAL = "optional"
    NOT_USED = "not-used"


class Status(StrEnum):
    OK = "ok"
    MISSING = "missing"
    NOT_USED = "not-used"
    OPTIONAL_MISSING = "optional-missing"


@dataclass(frozen=True)
class Component:
    """One row of the seed's dependency matrix, with why op-dbus needs it and how to get it."""

    key: str
    name: str
    needs: dict[Mode, Need]
    why: str
    fix_debian: str
    fix_nixos: str


def _row(agent: Need, standalone: Need, full: Need) -> dict[Mode, Need]:
    return {Mode.AGENT: agent, Mode.STANDALONE: standalone, Mode.FULL: full}


_R, _O, _N = Need.REQUIRED, Need.OPTIONAL, Need.NOT_USED

COMPONENTS: tuple[Component, ...] = (
    Component(
        "dbus",
        "D-Bus",
        _row(_R, _R, _R),
        "Core of op-dbus: plugins reach systemd and other services over the system bus",
        "apt-get install dbus && systemctl enable --now dbus",
        "services.dbus.enable = true;",
    ),
    Component(
        "systemd",
        "systemd",
        _row(_R, _R, _R),
        "Unit state and management (systemd plugin) through org.freedesktop.systemd1",
        "apt-get install systemd systemd-sysv, then boot with systemd as PID 1",
        "nothing to add: NixOS always boots systemd",
    ),
    Component(
        "openvswitch",
        "Open vSwitch",
        _row(_N, _R, _R),
        "Creates the ovsbr0 and mesh bridges for container networking (net plugin, OVSDB)",
        "apt-get install openvswitch-switch && systemctl enable --now openvswitch-switch",
        "virtualisation.vswitch.enable = true; virtualisation.vswitch.resetOnStart = false;",
    ),
    Component(
        "lxc",
        "LXC",
        _row(_N, _N, _R),
        "Runs the gateway/warp/xray containers, wired into OVS bridges by veth pairs",
        "apt-get install lxc lxcfs",
        "virtualisation.lxc.enable = true; virtualisation.lxc.lxcfs.enable = true;",
    ),
    Component(
        "proxmox",
        "Proxmox VE",
        _row(_N, _N, _O),
        "pct/pveam: container management with templates; without it op-dbus drives LXC directly",
        "install Proxmox VE (pct comes with pve-container); otherwise nothing: LXC is used",
        "not in nixpkgs: op-dbus uses LXC directly (virtualisation.lxc.enable = true;)",
    ),
    Component(
        "packagekit",
        "PackageKit",
        _row(_O, _O, _O),
        "Package queries and update status for some D-Bus plugins; not needed by the core",
        "apt-get install packagekit",
        "services.packagekit.enable = true;",
    ),
    Component(
        "netmaker",
        "Netmaker",
        _row(_N, _N, _O),
        "netclient joins the host to the Netmaker mesh network",
        "install netclient from Netmaker's apt repository (docs.netmaker.io)",
        "environment.systemPackages = [ pkgs.netclient ];",
    ),
)


@dataclass(frozen=True)
class Finding:
    """What a probe saw: is the component usable, and the evidence (versions, or the problem)."""

    ok: bool
    detail: str


@dataclass(frozen=True)
class ComponentReport:
    key: str
    name: str
    need: Need
    status: Status
    detail: str
    why: str
    fix_debian: str
    fix_nixos: str


def status_for(need: Need, finding: Finding | None) -> Status:
    """Combine what the mode needs with what the probe found (None: not probed)."""
    if need is Need.NOT_USED:
        return Status.NOT_USED
    if finding is not None and finding.ok:
        return Status.OK
    return Status.MISSING if need is Need.REQUIRED else Status.OPTIONAL_MISSING


@dataclass(frozen=True)
class DoctorReport:
    mode: Mode
    components: tuple[ComponentReport, ...]

    @property
    def exit_code(self) -> int:
        """6 when a component the mode requires is missing (optional ones never fail)."""
        if any(c.status is Status.MISSING for c in self.components):
            return int(ExitCode.COMPONENT_MISSING)
        return int(ExitCode.OK)

    def needs_fixing(self) -> list[ComponentReport]:
        """Missing components, required first; what the human output lists fixes for."""
        missing = [c for c in self.components if c.status is Status.MISSING]
        return missing + [c for c in self.components if c.status is Status.OPTIONAL_MISSING]

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": str(self.mode),
            "exit_code": self.exit_code,
            "components": [
                {key: str(value) for key, value in asdict(c).items()} for c in self.components
            ],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def build_report(mode: Mode, findings: dict[str, Finding]) -> DoctorReport:
    """The report for `mode` from the probes' findings (pure: the matrix logic lives here)."""
    rows = []
    for component in COMPONENTS:
        need = component.needs[mode]
        finding = findings.get(component.key)
        if need is Need.NOT_USED:
            detail = f"not used in {mode} mode"
        elif finding is None:
            detail = "not checked"
        else:
            detail = finding.detail
        rows.append(
            ComponentReport(
                key=component.key,
                name=component.name,
                need=need,
                status=status_for(need, finding),
                detail=detail,
                why=component.why,
                fix_debian=component.fix_debian,
                fix_nixos=component.fix_nixos,
            )
        )
    return DoctorReport(mode, tuple(rows))


async def run_doctor(
    mode: Mode, endpoints: Endpoints, *, timeout: float = DEFAULT_TIMEOUT
) -> DoctorReport:
    """Probe every component `mode` uses (each within `timeout` seconds) and report."""
    used = {c.key for c in COMPONENTS if c.needs[mode] is not Need.NOT_USED}
    findings: dict[str, Finding] = {}
    bus: MessageBus | None = None
    try:
        async with asyncio.timeout(timeout):
            bus = await connect_system_bus(endpoints.system_bus, auth_timeout=timeout)
        findings["dbus"] = Finding(
            True, f"system bus at {endpoints.system_bus} ({bus.unique_name})"
        )
    except Exception as exc:
        findings["dbus"] = Finding(False, f"no system bus at {endpoints.system_bus}: {_why(exc)}")
    try:
        probes: dict[str, Callable[[], Awaitable[Finding]]] = {
            "systemd": lambda: _probe_systemd(bus),
            "openvswitch": lambda: _probe_ovs(endpoints, timeout),
            "lxc": lambda: _probe_lxc(endpoints),
            "proxmox": lambda: _probe_tool("pct"),
            "packagekit": lambda: _probe_packagekit(bus),
            "netmaker": lambda: _probe_tool("netclient"),
        }
        keys = [key for key in probes if key in used]
        results = await asyncio.gather(*(_bounded(probes[key], timeout) for key in keys))
        findings.update(zip(keys, results, strict=True))
    finally:
        if bus is not None:
            bus.disconnect()
    return build_report(mode, findings)


async def _bounded(probe: Callable[[], Awaitable[Finding]], timeout: float) -> Finding:
    try:
        async with asyncio.timeout(timeout):
            return await probe()
    except TimeoutError:
        return Finding(False, f"no answer within {timeout:g} s")
    except Exception as exc:  # a probe failure is a finding, never a doctor crash
        return Finding(False, _why(exc))


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer (timed out)"
    from op_dbus.errors import describe_error

    return describe_error(exc)


_NO_BUS = Finding(False, "cannot ask: the system bus is unreachable")


async def _probe_systemd(bus: MessageBus | None) -> Finding:
    if bus is None:
        return _NO_BUS
    try:
        props = await get_properties(
            bus,
            "org.freedesktop.systemd1",
            "/org/freedesktop/systemd1",
            "org.freedesktop.systemd1.Manager",
        )
    except DBusError as exc:
        return Finding(False, f"org.freedesktop.systemd1 does not answer on the bus: {exc.text}")
    return Finding(True, f"systemd {props['Version']}, SystemState={props['SystemState']}")


async def _probe_packagekit(bus: MessageBus | None) -> Finding:
    name = "org.freedesktop.PackageKit"
    if bus is None:
        return _NO_BUS
    if await name_has_owner(bus, name):
        return Finding(True, f"{name} is running")
    if name in await activatable_names(bus):
        return Finding(True, f"{name} is activatable")
    return Finding(False, f"{name} is neither running nor activatable on the system bus")


async def _probe_ovs(endpoints: Endpoints, timeout: float) -> Finding:
    async with OvsdbClient(timeout=timeout) as client:
        await client.connect(endpoints.ovsdb)
        dbs = await client.list_dbs()
        if VSWITCH_DB not in dbs:
            return Finding(False, f"ovsdb-server at {endpoints.ovsdb} has no Open_vSwitch db")
        summary = await ovs_summary(client)
    parts = [f"ovsdb-server at {endpoints.ovsdb}"]
    parts += [f"{key} {summary[key]}" for key in ("ovs_version", "db_version") if summary[key]]
    pid, problem = vswitchd_pid(Path(endpoints.ovs_rundir))
    if pid is None:
        return Finding(False, "; ".join([*parts, problem]))
    datapaths = ", ".join(summary["datapath_types"]) or "none reported"
    return Finding(True, "; ".join([*parts, f"ovs-vswitchd pid {pid}", f"datapaths: {datapaths}"]))


def vswitchd_pid(rundir: Path) -> tuple[int | None, str]:
    """The PID of a live ovs-vswitchd from its pidfile, or None and why not."""
    pidfile = rundir / "ovs-vswitchd.pid"
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None, f"ovs-vswitchd not running (no pidfile {pidfile})"
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return None, f"ovs-vswitchd not running (stale pidfile {pidfile}: no process {pid})"
    if comm != "ovs-vswitchd" or state in ("Z", "X"):
        return None, f"ovs-vswitchd not running (stale pidfile {pidfile}: pid {pid} is {comm})"
    return pid, ""


LXC_TOOLS = ("lxc-create", "lxc-start", "lxc-stop", "lxc-info", "lxc-ls", "lxc-attach")
NAMESPACES = ("uts", "ipc", "pid", "net", "user", "mnt", "cgroup")


async def _probe_lxc(endpoints: Endpoints) -> Finding:
    """What lxc-checkconfig checks that needs no kernel config file; veth is not tried."""
    problems = []
    missing_tools = [tool for tool in LXC_TOOLS if shutil.which(tool) is None]
    if missing_tools:
        problems.append(f"not on PATH: {', '.join(missing_tools)}")
    path_problem = _creatable_dir(Path(endpoints.lxc_path))
    if path_problem:
        problems.append(path_problem)
    missing_ns = [ns for ns in NAMESPACES if not Path(f"/proc/self/ns/{ns}").exists()]
    if missing_ns:
        problems.append(f"kernel lacks namespaces: {', '.join(missing_ns)}")
    cgroups = cgroup_versions(Path("/proc/self/mounts").read_text())
    if not cgroups:
        problems.append("no cgroup hierarchy mounted")
    if problems:
        return Finding(False, "; ".join(problems))
    version = await _tool_version("lxc-info")
    return Finding(
        True,
        f"LXC {version}; path {endpoints.lxc_path}; namespaces ok; "
        f"cgroup {'+'.join(cgroups)} (veth not tried)",
    )


def _creatable_dir(path: Path) -> str:
    """'' if `path` is a directory or could be created; else the problem."""
    if path.is_dir():
        return ""
    if path.exists():
        return f"LXC path {path} is not a directory"
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if parent.is_dir() and os.access(parent, os.W_OK | os.X_OK):
        return ""
    return f"LXC path {path} does not exist and cannot be created under {parent}"


def cgroup_versions(mounts: str) -> list[str]:
    """Which cgroup versions are mounted ('v1', 'v2'), from /proc/self/mounts text."""
    types = {line.split()[2] for line in mounts.splitlines() if len(line.split()) > 2}
    return [v for v, fstype in (("v1", "cgroup"), ("v2", "cgroup2")) if fstype in types]


async def _tool_version(tool: str) -> str:
    process = await asyncio.create_subprocess_exec(
        tool,
        "--version",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env=tool_environment(),
    )
    try:
        out, _ = await process.communicate()
    finally:
        if process.returncode is None:  # cancelled by the probe's timeout
            process.kill()
            await process.wait()
    return out.decode().strip() or "version unknown"


async def _probe_tool(tool: str) -> Finding:
    path = shutil.which(tool)
    return Finding(True, path) if path else Finding(False, f"{tool} not on PATH")
