"""Container backends behind one interface: liblxc's command-line tools (and Proxmox's pct).

Every command is an argv list run without a shell. The runner is a parameter so that a
backend that cannot run here (pct) is tested by the argv it builds and by parsing output
recorded on a real host.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import shlex
import shutil
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from op_dbus.native.lxc_config import (
    CREATING,
    HOOK_ERRORS,
    LXC_PARTIAL,
    OWNER_LINE,
    Parsed,
    Spec,
    UnsafeValue,
    check_values,
    parse,
    plain,
    replace_file,
    write_container_files,
)
from op_dbus.native.tool import communicate

COMMAND_TIMEOUT = 60.0
STOP_TIMEOUT = 10
"""Seconds a clean shutdown may take before lxc-stop kills the container."""
SYS_CLASS_NET = Path("/sys/class/net")
LIST_AT_ONCE = 16
"""How many `lxc-info` a listing runs at once (a few ms of CPU each)."""
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
    try:
        code, out, err = await communicate(argv, None, timeout)
    except TimeoutError:
        return Result(-1, "", f"timed out after {timeout:.0f} s")
    return Result(code, out.decode(errors="replace"), err.decode(errors="replace"))


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
        """Create a stopped container from `spec.template`: the costly part (a template
        unpacking a root filesystem). `finish` then configures it per `spec`."""

    @abstractmethod
    async def finish(self, spec: Spec) -> None:
        """Configure a container `create` made per `spec` and mark it owned and complete."""

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


HOOK_ERRORS_MAX_BYTES = 2000


def hook_errors(path: Path) -> str:
    """What a failed start's hooks wrote on stderr (bounded, one line), or ""."""
    try:
        with path.open("rb") as stream:
            text = stream.read(HOOK_ERRORS_MAX_BYTES).decode(errors="replace")
    except OSError:
        return ""
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


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
        """`TOOL -P PATH -n NAME EXTRA...`: the container first, so that what follows a `--`
        in EXTRA (a template's own arguments) can never be taken for it."""
        return [tool, "-P", str(self.path), "-n", name, *extra]

    async def list(self) -> list[Observed]:
        """Every container under the path, and each creation of op-dbus's cut short. One
        container whose config cannot be read is reported so (`unreadable`), not raised.
        Names from `lxc-ls -1`, state and pid from one `lxc-info` each, LIST_AT_ONCE at once:
        `lxc-ls -f` forks three times per running container for addresses never read here
        (0.4 s for 50 running containers, against 0.17 s)."""
        if not self.path.is_dir():
            return []
        await wait_for_creations(self.path, COMMAND_TIMEOUT)
        listed = (await self._run("lxc-ls", "-P", str(self.path), "-1")).stdout.split()
        slots = asyncio.Semaphore(LIST_AT_ONCE)

        async def observe(name: str) -> Observed | None:
            argv = self._lxc("lxc-info", name, "-s", "-p")
            async with slots:
                result = await self.runner(argv, COMMAND_TIMEOUT)
            if result.returncode != 0:
                if not (self.path / name / "config").is_file():
                    return None  # destroyed since lxc-ls listed it
                raise _failure(argv, result)
            state, pid = parse_lxc_info(result.stdout)
            return Observed(name, state == "RUNNING", pid, read_config(self.path / name))

        found = [o for o in await asyncio.gather(*map(observe, listed)) if o is not None]
        found += [  # cut short before lxc-create wrote a config: lxc-ls does not list those
            Observed(d.name, False, None, Parsed(owned=True, incomplete=True))
            for d in sorted(unfinished_creations(self.path))
            if d.name not in listed
        ]
        return found

    async def create(self, spec: Spec) -> None:
        """Mark the directory as op-dbus's (CREATING) before `lxc-create` runs, so a kill at
        any point leaves a container the next run knows as its own; that run finishes it
        (same template, lxc-create done) or discards it and starts again."""
        target = self.path / spec.name
        name, args = split_template(spec.template)
        if unfinished(target):
            if (target / "config").is_file() and creation_template(target) == spec.template:
                return  # lxc-create had done its part: `finish` completes it
            await self._discard(spec.name)
        if target.exists():
            raise LxcError(f"cannot create container {spec.name}: {target} already exists")
        check_values(spec, target, self.ovsdb)  # before anything is made
        self._mark_creating(target, spec.template)
        try:
            await self._run(*self._lxc("lxc-create", spec.name, "-t", name, "--", *args))
        except (LxcError, OSError):
            await self._discard(spec.name)  # a half-made container must not linger
            raise

    async def finish(self, spec: Spec) -> None:
        """Write the config and hooks (each file synced to disk: I/O waits that need no
        working slot), then clear CREATING. A failure discards the container: it holds no
        user data yet."""
        try:
            await self.configure(spec)
        except (LxcError, OSError, UnsafeValue):
            await self._discard(spec.name)
            raise
        (self.path / spec.name / CREATING).unlink()

    def _mark_creating(self, target: Path, template: str) -> None:
        """Make `target` appear already holding CREATING: built under a hidden name (which
        lxc-ls never lists, and a kill leaves behind for the next creation to clear), then
        renamed into place."""
        staging = target.with_name(f".{target.name}.op-dbus-new")
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir(parents=True, mode=0o755)
        intent = json.dumps({"owner": OWNER_LINE, "template": plain("template", template)})
        replace_file(staging / CREATING, intent + "\n", 0o600)
        staging.rename(target)

    async def _discard(self, name: str) -> None:
        """Remove an unfinished creation of op-dbus's: through liblxc while it has a config,
        then whatever is left of the directory (it holds no user data yet)."""
        target = self.path / name
        if (target / "config").is_file():
            await self.runner(self._lxc("lxc-destroy", name, "-f"), COMMAND_TIMEOUT)
        if unfinished(target):
            shutil.rmtree(target)

    async def configure(self, spec: Spec) -> None:
        # a worker thread: each file is synced to disk, and other containers' steps go on
        await asyncio.to_thread(write_container_files, spec, self.path / spec.name, self.ovsdb)

    async def _start(self, name: str) -> None:
        errors = self.path / name / HOOK_ERRORS
        errors.unlink(missing_ok=True)
        try:
            await self._run(*self._lxc("lxc-start", name, "-d"))
        except LxcError as exc:
            said = hook_errors(errors)
            if said:  # liblxc only says "failed to start": the hook says why
                raise LxcError(f"container {name} did not start: its hook failed: {said}") from exc
            raise

    async def stop(self, name: str) -> None:
        await self._run(*self._lxc("lxc-stop", name, "-t", str(STOP_TIMEOUT)))

    async def destroy(self, name: str) -> None:
        if unfinished(self.path / name):
            await self._discard(name)
        else:
            await self._run(*self._lxc("lxc-destroy", name, "-f"))


def unfinished(container_dir: Path) -> bool:
    """Whether op-dbus began creating this container and has not finished."""
    return (container_dir / CREATING).is_file()


def unfinished_creations(lxc_path: Path) -> list[Path]:
    return [marker.parent for marker in lxc_path.glob(f"*/{CREATING}")]


def creation_template(container_dir: Path) -> str | None:
    """The template an unfinished creation was started with."""
    try:
        return json.loads((container_dir / CREATING).read_text())["template"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def read_config(container_dir: Path) -> Parsed:
    """What a container's config says; an unfinished creation of op-dbus's counts as owned
    (and its config, not op-dbus's yet, is not held against it: the create rewrites it)."""
    config = container_dir / "config"
    try:
        parsed = parse(config.read_text()) if config.is_file() else Parsed()
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        parsed = Parsed(unreadable=f"{config}: {reason}")
    if unfinished(container_dir):
        parsed.owned = parsed.incomplete = True
        parsed.unreadable = None
    return parsed


def creation_ongoing(container_dir: Path) -> bool:
    """Whether an `lxc-create` still runs for this container: liblxc holds a lock on its
    `partial` file for as long as it does (and leaves the file behind when it is killed)."""
    try:
        fd = os.open(container_dir / LXC_PARTIAL, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # closing drops the probe's own lock
    return False


async def wait_for_creations(lxc_path: Path, timeout: float) -> None:
    """Wait (at most `timeout` s) for op-dbus's own creations that an `lxc-create` is still
    carrying out, e.g. one left running by an op-dbus that was killed meanwhile."""
    deadline = time.monotonic() + timeout
    while any(creation_ongoing(d) for d in unfinished_creations(lxc_path)):
        if time.monotonic() > deadline:
            return
        await asyncio.sleep(0.1)


RESERVED_TEMPLATE_OPTIONS = ("path", "name", "rootfs", "mapped-uid", "mapped-gid")
"""Options lxc-create itself gives every template; a template's arguments must not repeat
them (GNU getopt also takes any unambiguous prefix, e.g. `--pa=/`)."""


def split_template(template: str) -> tuple[str, list[str]]:
    """The template's name and its own arguments, from "busybox" or
    "download -d debian -r bookworm -a amd64" (split like a shell would, never run by one).
    They go to `lxc-create -n NAME -t TEMPLATE -- ARGS...`."""
    try:
        name, *args = shlex.split(template)
    except ValueError as exc:  # validation refuses these first
        raise LxcError(f"template {template!r}: {exc}") from None
    for arg in args:
        option = arg.removeprefix("--").partition("=")[0]
        reserved = arg.startswith("--") and len(option) >= 2
        if arg[:2] in ("-n", "-p", "-P") or (
            reserved and any(o.startswith(option) for o in RESERVED_TEMPLATE_OPTIONS)
        ):
            raise LxcError(f"template {template!r}: {arg} is lxc-create's to set, not the file's")
    return name, args


def colon_fields(output: str) -> dict[str, str]:
    """The `key: value` lines of a tool's output (`lxc-info`, `pct config`, `pct status`),
    stripped; lines without a colon and `#` comments left out."""
    return {
        key.strip(): value.strip()
        for key, sep, value in (line.partition(":") for line in output.splitlines())
        if sep and not key.startswith("#")
    }


def parse_lxc_info(output: str) -> tuple[str, int | None]:
    """(state, pid) from `lxc-info -s -p` ("State: RUNNING", "PID: 6006"; no PID line when
    stopped)."""
    fields = colon_fields(output)
    pid = fields.get("PID", "")
    return fields.get("State", ""), int(pid) if pid.isdigit() else None


def host_links() -> set[str]:
    """The names of the network devices of this network namespace."""
    return set(os.listdir(SYS_CLASS_NET))


async def wait_link_gone(name: str, timeout: float) -> None:
    """Wait until network device `name` no longer exists here, for at most `timeout` seconds.

    After a stop the kernel removes the host veth asynchronously; starting again with the
    same fixed name before then fails with "File exists"."""
    device = SYS_CLASS_NET / name
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
        output = (await self._run("pct", "config", vmid)).stdout
        try:
            config = parse_pct_config(vmid, output)
        except ValueError as exc:  # one odd config must not make the others unreadable
            config = Parsed(id=vmid, unreadable=f"pct config {vmid}: {exc}")
        pid = None
        if status == "running":
            pid = parse_pct_pid((await self._run("pct", "status", vmid, "--verbose")).stdout)
        return Observed(hostname or vmid, status == "running", pid, config)

    async def create(self, spec: Spec) -> None:
        volume, args = split_template(spec.template)
        if ":" not in volume or args:
            raise LxcError(
                "pct needs a template volume like local:vztmpl/NAME.tar.zst and no"
                f" arguments, got {spec.template!r}"
            )
        await self._run("pct", "create", spec.id, volume, *pct_options(spec))

    async def finish(self, spec: Spec) -> None:
        """Nothing left: `pct create` configured the container and pct owns it."""

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
    if spec.more_nics:
        raise LxcError("pct: a container with more than one NIC (nics[1:]) is not supported yet")
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
    if spec.addresses6:
        ip, prefix = spec.addresses6[0]
        net.append(f"ip6={ip}/{prefix}")
    if spec.gateway6:
        net.append(f"gw6={spec.gateway6}")
    if spec.vlan is not None:
        net.append(f"tag={int(spec.vlan)}")
    if spec.trunks:
        net.append(f"trunks={';'.join(str(int(t)) for t in sorted(spec.trunks))}")
    if spec.mtu is not None:
        net.append(f"mtu={int(spec.mtu)}")
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
    values = colon_fields(output)
    parsed = Parsed(id=vmid, veth=pct_veth(vmid), autostart=values.get("onboot") == "1")
    parsed.owned = PCT_TAG in values.get("tags", "").replace(",", ";").split(";")
    net = dict(part.partition("=")[::2] for part in values.get("net0", "").split(",") if part)
    parsed.bridge = net.get("bridge")
    parsed.hwaddr = net["hwaddr"].lower() if "hwaddr" in net else None
    if "/" in net.get("ip", ""):
        ip, prefix = net["ip"].split("/")
        parsed.addresses.append((ip, int(prefix)))
    parsed.gateway = net.get("gw")
    if "/" in net.get("ip6", ""):
        ip, prefix = net["ip6"].split("/")
        parsed.addresses6.append((ip, int(prefix)))
    parsed.gateway6 = net.get("gw6")
    parsed.vlan = int(net["tag"]) if net.get("tag", "").isdigit() else None
    parsed.trunks = sorted(int(t) for t in net.get("trunks", "").split(";") if t.isdigit())
    parsed.mtu = int(net["mtu"]) if net.get("mtu", "").isdigit() else None
    parsed.memory = int(values["memory"]) if values.get("memory", "").isdigit() else None
    parsed.cpus = int(values["cores"]) if values.get("cores", "").isdigit() else None
    return parsed


def parse_pct_pid(output: str) -> int | None:
    """The `pid:` line of `pct status VMID --verbose`."""
    pid = colon_fields(output).get("pid", "")
    return int(pid) if pid.isdigit() else None
