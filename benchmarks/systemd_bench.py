"""The systemd plugin on 50 declared units, against one `busctl` call per unit for the same reads.

Runs in a lab (its real systemd in nspawn): the one `OPDBUS_BENCH_LAB` names, else "opdbus-bench"
(taken down after only if this run brought it up). The goal (issue 3): the no-op re-apply of
50 units under 300 ms, and faster than the busctl loop.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from _common import bench_lab, median

from op_dbus.endpoints import Endpoints
from op_dbus.engine.apply import apply_plan
from op_dbus.engine.plan import make_plan
from op_dbus.exitcodes import ExitCode
from op_dbus.lab import Lab, run_in_lab
from op_dbus.native import systemd as sd
from op_dbus.native.dbus import connect_system_bus
from op_dbus.plugins.systemd.plugin import SystemdPlugin

COUNT = 50
RUNS = 7
UNIT_TEXT = "[Service]\nExecStart=/bin/sleep infinity\n[Install]\nWantedBy=multi-user.target\n"
NAMES = [f"opdbus-bench-{index:03}.service" for index in range(COUNT)]
DESIRED = {"units": {name: {"enabled": True, "active_state": "active"} for name in NAMES}}


def object_path(unit: str) -> str:
    """systemd's object path of a unit (bus_label_escape: [A-Za-z0-9] kept, others _xx)."""
    label = "".join(c if c.isascii() and c.isalnum() else f"_{ord(c):02x}" for c in unit)
    return f"{sd.PATH}/unit/{label}"


def busctl_loop(bus: str) -> None:
    """The baseline: the same four reads per unit, one busctl call per unit."""
    busctl = ["busctl", f"--address={bus}", "get-property", sd.SERVICE]
    properties = ["org.freedesktop.systemd1.Unit", "LoadState", "ActiveState", "SubState"]
    properties.append("UnitFileState")
    for name in NAMES:
        subprocess.run(
            [*busctl, object_path(name), *properties],
            capture_output=True,
            check=True,
        )


async def median_async(work: Callable[[], Awaitable[object]]) -> float:
    await work()
    samples = []
    for _ in range(RUNS):
        start = time.perf_counter()
        await work()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


async def _query(endpoints: Endpoints, units: list[str] | None = None) -> None:
    plugin = SystemdPlugin(endpoints)
    try:
        await plugin.query(None if units is None else {"units": {u: {} for u in units}})
    finally:
        await plugin.close()


async def _reapply(endpoints: Endpoints) -> None:
    """A fresh plugin (connect included), plan and apply: must find nothing to do."""
    plugin = SystemdPlugin(endpoints)
    try:
        plan = await make_plan({"systemd": DESIRED}, {"systemd": plugin})
        result = await apply_plan(plan, {"systemd": plugin})
        if result.exit_code != ExitCode.OK or plan.pending:
            raise RuntimeError(f"re-apply was not a no-op: {result.message}")
    finally:
        await plugin.close()


async def _converge(endpoints: Endpoints) -> float:
    plugin = SystemdPlugin(endpoints)
    try:
        start = time.perf_counter()
        plan = await make_plan({"systemd": DESIRED}, {"systemd": plugin})
        result = await apply_plan(plan, {"systemd": plugin})
        if result.exit_code != ExitCode.OK:
            raise RuntimeError(f"apply failed: {result.message}")
        return time.perf_counter() - start
    finally:
        await plugin.close()


async def _install(lab: Lab) -> None:
    for name in NAMES:
        (lab.units_dir / name).write_text(UNIT_TEXT)
    bus = await connect_system_bus(lab.system_bus)
    try:
        await sd.reload(bus)
    finally:
        bus.disconnect()


async def _remove(lab: Lab) -> None:
    """Stop, disable and delete the bench units."""
    bus = await connect_system_bus(lab.system_bus)
    try:
        loaded = await sd.list_units(bus)
        async with sd.JobWatcher(bus) as jobs:
            for name in NAMES:
                if name in loaded:
                    await jobs.wait(await jobs.stop(name), 30.0)
        await sd.disable(bus, NAMES)
        for name in NAMES:
            (lab.units_dir / name).unlink(missing_ok=True)
        await sd.reload(bus)
    finally:
        bus.disconnect()


def _cli_reapply(lab: Lab, state: Path) -> None:
    run_in_lab(lab, sys.executable, "-m", "op_dbus", "apply", str(state))


async def _measure(lab: Lab, state: Path) -> list[dict[str, object]]:
    endpoints = Endpoints(system_bus=lab.system_bus)
    await _install(lab)
    try:
        first = await _converge(endpoints)
        query = await median_async(lambda: _query(endpoints))
        scoped = await median_async(lambda: _query(endpoints, NAMES))
        reapply = await median_async(lambda: _reapply(endpoints))
        cli = median(lambda: _cli_reapply(lab, state), RUNS, warm_up=True)
        baseline = median(lambda: busctl_loop(lab.system_bus), RUNS, warm_up=True)
    finally:
        await _remove(lab)
    return [
        {"case": f"enable + start {COUNT} units (once)", "seconds": first, "baseline": None},
        {
            "case": "query, all units (engine)",
            "seconds": query,
            "baseline": baseline,
        },
        {"case": f"query scoped to the {COUNT} units", "seconds": scoped, "baseline": baseline},
        {
            "case": f"no-op re-apply of {COUNT} units",
            "seconds": reapply,
            "baseline": baseline,
            "goal": "< 300 ms and faster than the busctl loop",
            "met": reapply < 0.3 and reapply < baseline,
        },
        {"case": f"`op-dbus apply`, no-op, {COUNT} units", "seconds": cli, "baseline": baseline},
    ]


def run() -> list[dict[str, object]]:
    """Rows of case, seconds, baseline (the busctl loop)."""
    with bench_lab("opdbus-bench") as lab:
        state = lab.dir / "systemd-bench.json"
        try:
            state.write_text(json.dumps({"version": 1, "plugins": {"systemd": DESIRED}}))
            return asyncio.run(_measure(lab, state))
        finally:
            state.unlink(missing_ok=True)


if __name__ == "__main__":
    for row in run():
        print(row)
