"""Small test units installed into the lab's systemd; removed again (stopped, unmasked) after.

Each unit exercises one behaviour: a long-running service, a oneshot that stays active, one
that fails at start, one whose start hangs, a static unit (no [Install]), an indirect one (only
Also=), an alias symlink to it, a socket (with its own service), a vendor unit that can be
masked and a unit made by a generator. `busctl_*` read the same state through busctl.
"""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from dbus_fast.aio import MessageBus

from op_dbus.lab import Lab
from op_dbus.native import systemd as sd
from op_dbus.native.dbus import call, connect_system_bus

PREFIX = "opdbus-t-"
LONG = f"{PREFIX}long.service"
ONESHOT = f"{PREFIX}oneshot.service"
FAILING = f"{PREFIX}fail.service"
HANGING = f"{PREFIX}hang.service"
STATIC = f"{PREFIX}static.service"
INDIRECT = f"{PREFIX}indirect.service"
ALIAS = f"{PREFIX}alias.service"
SOCKET = f"{PREFIX}sock.socket"
SOCKET_SERVICE = f"{PREFIX}sock.service"
VENDOR = f"{PREFIX}vendor.service"
"""Installed in the vendor directory (/usr/lib/systemd/system): a unit file in /etc cannot be
masked, since the mask is a /dev/null symlink of the same name there."""

GENERATED = f"{PREFIX}gen.service"
_GENERATOR = f"{PREFIX}generator"
_GENERATOR_SCRIPT = (
    "#!/bin/sh\n"
    "printf '[Service]\\nType=oneshot\\nRemainAfterExit=yes\\nExecStart=/bin/true\\n'"
    f' > "$1/{GENERATED}"\n'
)

_INSTALL = "[Install]\nWantedBy=multi-user.target\n"
_SLEEP = "[Service]\nExecStart=/bin/sleep infinity\n"
UNITS: dict[str, str] = {
    LONG: _SLEEP + _INSTALL,
    ONESHOT: f"[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/true\n{_INSTALL}",
    FAILING: f"[Service]\nType=oneshot\nExecStart=/bin/false\n{_INSTALL}",
    HANGING: "[Service]\nType=oneshot\nExecStart=/bin/sleep 60\n",
    STATIC: "[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/true\n",
    INDIRECT: f"{_SLEEP}[Install]\nAlso={ONESHOT}\n",
    SOCKET: f"[Socket]\nListenStream=/run/{PREFIX}sock\n[Install]\nWantedBy=sockets.target\n",
    SOCKET_SERVICE: _SLEEP,
}
ALL = (*UNITS, ALIAS, VENDOR, GENERATED)
_KEEP_LINKS = (INDIRECT, ALIAS, GENERATED)
"""Never disabled by the reset: disabling a unit also removes its alias symlinks."""


def _vendor_dir(lab: Lab) -> Path:
    return lab.rootfs / "usr/lib/systemd/system"


def _generators_dir(lab: Lab) -> Path:
    return lab.rootfs / "etc/systemd/system-generators"


def _write(lab: Lab) -> None:
    _generators_dir(lab).mkdir(exist_ok=True)
    generator = _generators_dir(lab) / _GENERATOR
    generator.write_text(_GENERATOR_SCRIPT)
    generator.chmod(0o755)
    for name, text in UNITS.items():
        (lab.units_dir / name).write_text(text)
    (lab.units_dir / ALIAS).unlink(missing_ok=True)
    (lab.units_dir / ALIAS).symlink_to(INDIRECT)
    (_vendor_dir(lab) / VENDOR).write_text(_SLEEP + _INSTALL)


def _remove(lab: Lab, names: list[str]) -> None:
    for name in names:
        (lab.units_dir / name).unlink(missing_ok=True)
    (_vendor_dir(lab) / VENDOR).unlink(missing_ok=True)
    (_generators_dir(lab) / _GENERATOR).unlink(missing_ok=True)


async def _stop(bus: MessageBus, names: list[str]) -> None:
    """Stop whichever of `names` systemd has loaded (StopUnit refuses units it has not)."""
    loaded = await sd.list_units(bus)
    async with sd.JobWatcher(bus) as jobs:
        for name in names:
            if name in loaded:
                await jobs.wait(await jobs.stop(name), 30.0)


async def _reset(bus: MessageBus, names: list[str]) -> None:
    """Back to installed-but-untouched: stopped, unmasked, disabled, not failed."""
    await _stop(bus, names)
    for runtime in (False, True):
        await sd.unmask(bus, names, runtime=runtime)
        await sd.disable(bus, [n for n in names if n not in _KEEP_LINKS], runtime=runtime)
    await sd.reload(bus)
    await call(bus, sd.SERVICE, sd.PATH, sd.MANAGER, "ResetFailed")


@asynccontextmanager
async def installed(lab: Lab) -> AsyncIterator[None]:
    """The test units, installed and loaded, in a reset state; removed again on exit."""
    names = list(ALL)
    bus = await connect_system_bus(lab.system_bus)
    try:
        _write(lab)
        await sd.reload(bus)
        await _reset(bus, names)
        yield
    finally:
        try:
            await _reset(bus, names)
        finally:
            _remove(lab, names)
            await sd.reload(bus)
            bus.disconnect()


async def reset(lab: Lab, names: list[str]) -> None:
    """Reset units this module did not install (stopped, unmasked, disabled)."""
    bus = await connect_system_bus(lab.system_bus)
    try:
        await _reset(bus, names)
    finally:
        bus.disconnect()


def busctl(lab: Lab, *args: str) -> str:
    argv = ["busctl", f"--address={lab.system_bus}", *args]
    return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=30).stdout


def busctl_file_state(lab: Lab, unit: str) -> str:
    """GetUnitFileState through busctl: `enabled`, `masked`, ... (unquoted)."""
    out = busctl(lab, "call", sd.SERVICE, sd.PATH, sd.MANAGER, "GetUnitFileState", "s", unit)
    return out.split(maxsplit=1)[1].strip().strip('"')


def busctl_active_state(lab: Lab, unit: str) -> str:
    """The unit's ActiveState through busctl (LoadUnit, then the property)."""
    out = busctl(lab, "call", sd.SERVICE, sd.PATH, sd.MANAGER, "LoadUnit", "s", unit)
    path = out.split(maxsplit=1)[1].strip().strip('"')
    unit_iface = "org.freedesktop.systemd1.Unit"
    prop = busctl(lab, "get-property", sd.SERVICE, path, unit_iface, "ActiveState")
    return prop.split(maxsplit=1)[1].strip().strip('"')
