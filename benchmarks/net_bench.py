"""One bridge with N internal ports: `op-dbus apply` against ovs-vsctl, whole processes.

Cases at each N (10, 100, 1000), against a private ovsdb-server alone and with ovs-vswitchd
(in a network namespace of its own, netdev datapath):
- create: op-dbus apply vs one batched ovs-vsctl call, and vs one ovs-vsctl call per port;
- no-op re-apply: op-dbus apply vs one batched `--may-exist add-br -- --may-exist add-port ...`;
- query: `op-dbus query --plugin net --json` vs `ovs-vsctl show`.
op-dbus's apply includes its verification. ovs-vsctl runs with `--no-wait` without vswitchd
(it would hang) and waits for vswitchd to realise the change otherwise, as it does by default.
Each row's figures come from the same run; creates are measured on an emptied database.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import median, ratio

from op_dbus.lab.private_ovs import PrivateOvs, private_ovs

OPDBUS = str(Path(sys.executable).with_name("op-dbus"))
SIZES = (10, 100, 1000)
RUNS = 3
PER_PORT_RUNS = 1  # 1000 separate ovs-vsctl processes take seconds: once is enough
BRIDGE = "bench0"
# The CLI framework alone (architecture.md prescribes typer): one command, doing nothing.
TYPER_FLOOR = """
import typer
app = typer.Typer()
@app.command()
def apply(file: str, dry_run: bool = False) -> None:
    pass
@app.command()
def query() -> None:
    pass
app()
"""
# op-dbus's own no-op without any CLI framework: load and validate the file, plan, exit.
ENGINE_NOOP = """
import asyncio, sys
from op_dbus.endpoints import Endpoints
from op_dbus.engine.plan import make_plan
from op_dbus.model import load_state
from op_dbus.plugins import make_plugin
async def main(path):
    desired = load_state(path).state.sections()
    plugins = {name: make_plugin(name, Endpoints.from_env()) for name in desired}
    plan = await make_plan(desired, plugins)
    for plugin in plugins.values():
        await plugin.close()
    return 3 if plan.pending else 0
sys.exit(asyncio.run(main(sys.argv[1])))
"""


def _run(argv: list[str], env: dict[str, str] | None = None) -> None:
    """One whole process, which must succeed."""
    result = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{argv[0]} {argv[1]} failed ({result.returncode}): {result.stderr}")


def _ports(n: int) -> list[str]:
    return [f"bp{i}" for i in range(n)]


def _state(ovs: PrivateOvs, n: int, work: Path) -> str:
    net = {
        "interfaces": [
            {"name": BRIDGE, "type": "ovs-bridge", "datapath": "netdev"},
            *({"name": p, "type": "ovs-internal", "bridge": BRIDGE} for p in _ports(n)),
        ]
    }
    path = work / f"state-{n}.json"
    path.write_text(json.dumps({"version": 1, "plugins": {"net": net}}))
    return str(path)


def _batched(ovs: PrivateOvs, n: int) -> list[str]:
    args = ["add-br", BRIDGE, "--", "set", "Bridge", BRIDGE, "datapath_type=netdev"]
    for port in _ports(n):
        args += ["--", "add-port", BRIDGE, port, "--", "set", "Interface", port, "type=internal"]
    return ovs.vsctl_argv(*args)


def _batched_may_exist(ovs: PrivateOvs, n: int) -> list[str]:
    """The no-op baseline exactly as the issue states it: may-exist adds, nothing else."""
    args = ["--may-exist", "add-br", BRIDGE]
    for port in _ports(n):
        args += ["--", "--may-exist", "add-port", BRIDGE, port]
    return ovs.vsctl_argv(*args)


def _per_port(ovs: PrivateOvs, n: int) -> None:
    _run(ovs.vsctl_argv("add-br", BRIDGE, "--", "set", "Bridge", BRIDGE, "datapath_type=netdev"))
    for port in _ports(n):
        _run(ovs.vsctl_argv("add-port", BRIDGE, port, "--", "set", "Interface", port,
                            "type=internal"))  # fmt: skip


def _row(
    case: str, ours: float, theirs: float, goal: tuple[str, float] | None = None
) -> dict[str, object]:
    """A result row; `goal` is (words, the largest ratio that meets it), set at N=1000 only."""
    row: dict[str, object] = {"case": case, "seconds": ours, "baseline": theirs}
    if goal is not None:
        row["goal"], row["met"] = goal[0], ours / theirs <= goal[1]
    return row


def _measure(ovs: PrivateOvs, n: int, work: Path) -> list[dict[str, object]]:
    where = "with vswitchd" if ovs.vswitchd is not None else "ovsdb-server alone"
    env = {**os.environ, "OPDBUS_OVSDB": ovs.target, "OPDBUS_DATA_DIR": str(work / "data")}
    state = _state(ovs, n, work)

    def empty() -> None:
        ovs.vsctl("--if-exists", "del-br", BRIDGE)

    apply = median(lambda: _run([OPDBUS, "apply", state], env), RUNS, before=empty)
    batched = median(lambda: _run(_batched(ovs, n)), RUNS, before=empty)
    per_port = median(lambda: _per_port(ovs, n), PER_PORT_RUNS, before=empty)
    empty()
    _run([OPDBUS, "apply", state], env)
    noop = median(lambda: _run([OPDBUS, "apply", state], env), RUNS)
    may_exist = median(lambda: _run(_batched_may_exist(ovs, n)), RUNS)
    query = median(lambda: _run([OPDBUS, "query", "--plugin", "net", "--json"], env), RUNS)
    show = median(lambda: _run(["ovs-vsctl", f"--db={ovs.target}", "show"]), RUNS)
    goals = n == 1000
    floor = _noop_floor(n, where, state, env, may_exist) if goals else []
    empty()
    rows = [
        _row(
            f"apply N={n}, {where} vs batched ovs-vsctl",
            apply,
            batched,
            ("within 1.5x", 1.5) if goals else None,
        ),
        _row(
            f"apply N={n}, {where} vs ovs-vsctl per port",
            apply,
            per_port,
            ("over 10x faster", 0.1) if goals else None,
        ),
        _row(
            f"no-op apply N={n}, {where} vs batched --may-exist",
            noop,
            may_exist,
            ("within 3x", 3.0) if goals else None,
        ),
        _row(f"query N={n}, {where} vs ovs-vsctl show", query, show),
    ]
    return rows + floor


def _noop_floor(
    n: int, where: str, state: str, env: dict[str, str], may_exist: float
) -> list[dict[str, object]]:
    """Where a whole-process no-op's time goes: the file alone, the engine alone, typer alone."""
    validate = median(lambda: _run([OPDBUS, "validate", state], env), RUNS)
    engine = median(lambda: _run([sys.executable, "-c", ENGINE_NOOP, state], env), RUNS)
    typer_app = median(lambda: _run([sys.executable, "-c", TYPER_FLOOR, "apply", state]), RUNS)
    return [
        _row(f"validate N={n} alone (no OVSDB), {where} vs batched --may-exist", validate,
             may_exist),
        _row(f"no-op plan without a CLI (engine alone), {where} vs batched --may-exist", engine,
             may_exist),
        _row(f"a do-nothing typer app, {where} vs batched --may-exist", typer_app, may_exist),
    ]  # fmt: skip


def run(sizes: tuple[int, ...] = SIZES) -> list[dict[str, object]]:
    """Rows of case, seconds (op-dbus), baseline (ovs-vsctl); all from this one run."""
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="opdbus-bench-work-") as name:
        for vswitchd in (False, True):
            with private_ovs(vswitchd=vswitchd) as ovs:
                for n in sizes:
                    rows += _measure(ovs, n, Path(name))
    return rows


if __name__ == "__main__":
    chosen = tuple(int(a) for a in sys.argv[1:]) or SIZES
    for row in run(chosen):
        print(f"{row['case']:70} {row['seconds']:8.3f} s {row['baseline']:8.3f} s "
              f"{ratio(row):6.2f}x")  # fmt: skip
