"""Container backends behind one interface: liblxc's command-line tools (and Proxmox's pct).

Every command is an argv list run without a shell. The runner is a parameter so that a
backend that cannot run here (pct) is tested by the argv it builds and by parsing output
recorded on a real host.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from op_dbus.native.lxc_config import Parsed, Spec, parse, write_container_files

COMMAND_TIMEOUT = 60.0
STOP_TIMEOUT = 10
"""Seconds a clean shutdown may take before lxc-stop kills the container."""
VETH_GONE_TIMEOUT = 5.0
"""How long a start waits for the previous run's host veth to vanish ("File exists")."""


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str


Runner = Callable[[Sequence[str], float], Awaitable[Result]]


class LxcError(Exception):
    """A container command failed; the message names the command and its error output."""


async def run_process(argv: Sequence[str], timeout: float) -> Result:
    """Run `argv` (no shell), capture its output; kill it when it outlives `timeout`."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        return Result(-1, "", f"timed out after {timeout:.0f} s")
    return Result(proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace"))


@dataclass(frozen=True)
class Observed:
    """One container as the backend reports it, with what its config says."""

    name: str
    running: bool
    pid: int | None
    config: Parsed


class Driver(ABC):
    """What the lxc plugin needs from a container manager."""

    @abstractmethod
    async def list(self) -> list[Observed]:
        """Every container the backend manages (op-dbus's and others')."""

    @abstractmethod
    async def create(self, spec: Spec) -> None:
        """Create a stopped container from `spec.template`, configured per `spec`, marked owned."""

    @abstractmethod
    async def configure(self, spec: Spec) -> None:
        """Rewrite an owned container's network and autostart; takes effect at its next start."""

    async def start(self, name: str, veth: str | None = None) -> None:
        """Start the container, once its previous run's host veth `veth` is gone (or after
        `VETH_GONE_TIMEOUT`): starting with a fixed veth name before then fails ("File exists")."""
        if veth:
            await wait_link_gone(veth, VETH_GONE_TIMEOUT)
        await self._start(name)

    @abstractmethod
    async def _start(self, name: str) -> None: ...

    @abstractmethod
    async def stop(self, name: str) -> None: ...

    @abstractmethod
    async def destroy(self, name: str) -> None:
        """Stop (forcibly) and delete the container with its rootfs."""


def _failure(argv: Sequence[str], result: Result) -> LxcError:
    output = (result.stderr.strip() or result.stdout.strip()).splitlines()
    detail = "; ".join(output[-3:]) or f"exit code {result.returncode}"
    command = " ".join(argv)
    return LxcError(f"`{command[:117] + '...' if len(command) > 120 else command}`: {detail}")


async def _checked(runner: Runner, argv: Sequence[str]) -> Result:
    """Run `argv` with `runner`; LxcError when it fails."""
    result = await runner(argv, COMMAND_TIMEOUT)
    if result.returncode != 0:
        raise _failure(argv, result)
    return result


class LxcCliDriver(Driver):
    """liblxc's tools (`lxc-ls`, `lxc-create`, ...) on containers under one LXC path.

    liblxc's control socket is an abstract unix socket, per network namespace: op-dbus must
    run in the namespace the containers were started in (in the lab: `op-dbus lab exec`).
    """

    def __init__(self, lxc_path: str, ovsdb: str, runner: Runner = run_process) -> None:
        self.path = Path(lxc_path)
        self.ovsdb = ovsdb
        self.runner = runner

    async def _run(self, *argv: str) -> Result:
        return await _checked(self.runner, argv)

    def _lxc(self, tool: str, name: str, *extra: str) -> list[str]:
        return [tool, "-P", str(self.path), *extra, "-n", name]

    async def list(self) -> list[Observed]:
        if not self.path.is_dir():
            return []
        result = await self._run("lxc-ls", "-P", str(self.path), "-f", "-F", "NAME,STATE,PID")
        found: list[Observed] = []
        for name, state, pid in parse_lxc_ls(result.stdout):
            config = self.path / name / "config"
            parsed = parse(config.read_text()) if config.is_file() else Parsed()
            found.append(Observed(name, state == "RUNNING", pid, parsed))
        return found

    async def create(self, spec: Spec) -> None:
        target = self.path / spec.name
        if target.exists():
            raise LxcError(f"cannot create container {spec.name}: {target} already exists")
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            await self._run(*self._lxc("lxc-create", spec.name, *template_args(spec.template)))
            await self.configure(spec)
        except (LxcError, OSError):
            if target.exists():  # a half-made container must not linger unowned
                await self.runner(self._lxc("lxc-destroy", spec.name, "-f"), COMMAND_TIMEOUT)
            raise

    async def configure(self, spec: Spec) -> None:
        write_container_files(spec, self.path / spec.name, self.ovsdb)

    async def _start(self, name: str) -> None:
        await self._run(*self._lxc("lxc-start", name, "-d"))

    async def stop(self, name: str) -> None:
        await self._run(*self._lxc("lxc-stop", name, "-t", str(STOP_TIMEOUT)))

    async def destroy(self, name: str) -> None:
        await self._run(*self._lxc("lxc-destroy", name, "-f"))


def template_args(template: str) -> list[str]:
    """`-t NAME [-- ARGS]` from a template spelled like "busybox" or
    "download -d debian -r bookworm -a amd64" (split like a shell would, never run by one)."""
    name, *args = shlex.split(template)
    return ["-t", name, *(["--", *args] if args else [])]


def parse_lxc_ls(output: str) -> list[tuple[str, str, int | None]]:
    """(name, state, pid) rows of `lxc-ls -f -F NAME,STATE,PID` (pid "-" when stopped)."""
    rows: list[tuple[str, str, int | None]] = []
    for line in output.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 3:
            rows.append((parts[0], parts[1], int(parts[2]) if parts[2].isdigit() else None))
    return rows


async def wait_link_gone(name: str, timeout: float) -> None:
    """Wait until network device `name` no longer exists here, for at most `timeout` seconds.

    After a stop the kernel removes the host veth asynchronously; starting again with the
    same fixed name before then fails with "File exists"."""
    device = Path("/sys/class/net") / name
    deadline = time.monotonic() + timeout
    while device.exists() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


PCT_TAG = "op-dbus"
"""Proxmox marks op-dbus's containers with this tag (`pct set --tags`)."""


class PctDriver(Driver):
    """Proxmox VE's `pct`. The CT id is the container's `id`, its hostname the `name`.

    Proxmox names the host end of a container's veth `veth<ID>i0` and attaches it to the
    bridge of `net0` itself (OVS bridges included), so `veth` can only be that name; the
    template must be a volume such as `local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst`.
    """

    def __init__(self, runner: Runner = run_process) -> None:
        self.runner = runner

    async def _run(self, *argv: str) -> Result:
        return await _checked(self.runner, argv)

    async def _rows(self) -> list[tuple[str, str, str]]:
        return parse_pct_list((await self._run("pct", "list")).stdout)

    async def _vmid(self, name: str) -> str:
        for vmid, _, hostname in await self._rows():
            if name in (hostname, vmid):
                return vmid
        raise LxcError(f"pct: no container named {name}")

    async def list(self) -> list[Observed]:
        return await asyncio.gather(*(self._observe(*row) for row in await self._rows()))

    async def _observe(self, vmid: str, status: str, hostname: str) -> Observed:
        """One container from `pct config` (and `pct status`: the pid of a running one)."""
        config = parse_pct_config(vmid, (await self._run("pct", "config", vmid)).stdout)
        pid = None
        if status == "running":
            pid = parse_pct_pid((await self._run("pct", "status", vmid, "--verbose")).stdout)
        return Observed(hostname or vmid, status == "running", pid, config)

    async def create(self, spec: Spec) -> None:
        if ":" not in spec.template:
            raise LxcError(
                f"pct needs a template volume like local:vztmpl/NAME.tar.zst, got {spec.template!r}"
            )
        await self._run("pct", "create", spec.id, spec.template, *pct_options(spec))

    async def configure(self, spec: Spec) -> None:
        await self._run("pct", "set", spec.id, *pct_options(spec))

    async def _start(self, name: str) -> None:
        await self._run("pct", "start", await self._vmid(name))

    async def stop(self, name: str) -> None:
        vmid = await self._vmid(name)
        await self._run("pct", "shutdown", vmid, "--timeout", str(STOP_TIMEOUT), "--forceStop", "1")

    async def destroy(self, name: str) -> None:
        vmid = await self._vmid(name)
        await self._run("pct", "destroy", vmid, "--force", "1", "--purge", "1")


def pct_veth(vmid: str) -> str:
    return f"veth{vmid}i0"


def pct_options(spec: Spec) -> list[str]:
    """`pct create`/`pct set` options for `spec` (hostname, net0, onboot, limits, owner tag)."""
    if spec.veth not in (None, pct_veth(spec.id)):
        raise LxcError(
            f"pct names the host veth {pct_veth(spec.id)}; it cannot be called {spec.veth}"
        )
    net = ["name=eth0", "type=veth"]
    if spec.bridge:
        net.append(f"bridge={spec.bridge}")
    if spec.hwaddr:
        net.append(f"hwaddr={spec.hwaddr.upper()}")
    if spec.addresses:
        ip, prefix = spec.addresses[0]
        net.append(f"ip={ip}/{prefix}")
    if spec.gateway:
        net.append(f"gw={spec.gateway}")
    limits = [
        *(["--memory", str(spec.memory)] if spec.memory is not None else []),
        *(["--cores", str(spec.cpus)] if spec.cpus is not None else []),
    ]
    return [
        "--hostname", spec.name,
        "--net0", ",".join(net),
        "--onboot", "1" if spec.autostart else "0",
        *limits,
        "--tags", PCT_TAG,
    ]  # fmt: skip


def parse_pct_list(output: str) -> list[tuple[str, str, str]]:
    """(vmid, status, name) rows of `pct list` (the Lock column may be empty)."""
    rows: list[tuple[str, str, str]] = []
    for line in output.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 2 and parts[0].isdigit():
            rows.append((parts[0], parts[1], parts[-1] if len(parts) >= 3 else ""))
    return rows


def parse_pct_config(vmid: str, output: str) -> Parsed:
    """Ownership (the tag) and net0 from `pct config VMID`."""
    values = dict(
        (key.strip(), value.strip())
        for key, sep, value in (line.partition(":") for line in output.splitlines())
        if sep and not key.startswith("#")
    )
    parsed = Parsed(id=vmid, veth=pct_veth(vmid), autostart=values.get("onboot") == "1")
    parsed.owned = PCT_TAG in values.get("tags", "").replace(",", ";").split(";")
    net = dict(part.partition("=")[::2] for part in values.get("net0", "").split(",") if part)
    parsed.bridge = net.get("bridge")
    parsed.hwaddr = net["hwaddr"].lower() if "hwaddr" in net else None
    if "/" in net.get("ip", ""):
        ip, prefix = net["ip"].split("/")
        parsed.addresses.append((ip, int(prefix)))
    parsed.gateway = net.get("gw")
    parsed.memory = int(values["memory"]) if values.get("memory", "").isdigit() else None
    parsed.cpus = int(values["cores"]) if values.get("cores", "").isdigit() else None
    return parsed


def parse_pct_pid(output: str) -> int | None:
    """The `pid:` line of `pct status VMID --verbose`."""
    for line in output.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "pid" and value.strip().isdigit():
            return int(value.strip())
    return None
