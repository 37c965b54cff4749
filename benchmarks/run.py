"""Run the benchmarks and write their figures into docs/benchmarks.md.

Benchmarks are not part of `make test` (timings there would be flaky); `make bench` runs this.
Each benchmark module has `run() -> list[dict]` rows with `case`, `seconds`, `baseline`
(the same work done the way a user would otherwise do it, in the same run), and optionally
`goal` and `met`; the table adds the ratio seconds / baseline.
`python benchmarks/run.py NAME...` runs only the named modules.
"""

from __future__ import annotations

import importlib
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import ratio

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"

SUITES: dict[str, tuple[str, str]] = {
    "cli_startup": ("CLI start-up", "the peer tools' own `--help`"),
    "systemd_bench": ("systemd plugin", "one `busctl` call per unit"),
    "net_bench": ("net plugin", "the same work with batched `ovs-vsctl` and `ip` calls"),
    "uplink_bench": (
        "Uplink move (canary: longest TCP stall)",
        "the same move as one script of ovs-vsctl and ip commands",
    ),
    "lxc_bench": (
        "lxc plugin",
        "shell scripts doing the same lxc-*/ovs-vsctl steps, sequential and `xargs -P`",
    ),
    "ledger_bench": ("Ledger", "plain SQLite work of the same size"),
    "daemon_bench": (
        "Daemon",
        "an admin's repair by hand (`ovs-vsctl add-port`); reading the host directly",
    ),
    "mcp_bench": ("MCP", "reading the host directly; `op-dbus diff` of the same file"),
    "fleet_bench": ("Fleet", "`op-dbus apply` of the same file on each host, one after another"),
}


def fmt_seconds(value: object) -> str:
    if not isinstance(value, int | float):
        return "-"
    return f"{value * 1000:.1f} ms" if value < 10 else f"{value:.2f} s"


def fmt_ratio(value: object) -> str:
    return f"{value:.2f}x" if isinstance(value, int | float) else "-"


def table(rows: list[dict[str, object]]) -> list[str]:
    lines = ["| case | op-dbus | baseline | ratio | goal | met |", "|---|---|---|---|---|---|"]
    for row in rows:
        met = {True: "yes", False: "**no**"}.get(row.get("met"), "-")  # type: ignore[arg-type]
        lines.append(
            f"| {row['case']} | {fmt_seconds(row['seconds'])} | {fmt_seconds(row['baseline'])} "
            f"| {fmt_ratio(ratio(row))} | {row.get('goal', '-')} | {met} |"
        )
    return lines


def existing_sections() -> dict[str, str]:
    """The sections of the current document by heading, so one suite can be re-run alone."""
    if not DOC.exists():
        return {}
    parts = DOC.read_text().split("\n## ")[1:]
    return {part.split("\n", 1)[0]: "## " + part.rstrip("\n") for part in parts}


def main(names: list[str]) -> None:
    """Run `names` (all when empty); sections of suites not run are kept from the last run."""
    kept = existing_sections()
    sections: list[str] = []
    for name, (title, baseline) in SUITES.items():
        heading = f"{title} (baseline: {baseline})"
        if names and name not in names:
            if heading in kept:
                sections.append(kept[heading])
            continue
        print(f"running {name} ...", file=sys.stderr)
        rows = importlib.import_module(name).run()
        stamp = f"Run {time.strftime('%Y-%m-%d %H:%M')}."
        sections.append("\n".join([f"## {heading}", "", stamp, "", *table(rows)]))
    header = (
        "# Benchmarks\n\nWritten by `make bench` (benchmarks/run.py; `python benchmarks/run.py "
        "NAME` re-runs one suite): medians of repeated runs on the project's machine kind "
        f"(2 cores, {platform.machine()}, Python {platform.python_version()}). Ratio = op-dbus "
        "time / baseline time, both measured in the same run (below 1: op-dbus is faster)."
    )
    DOC.write_text("\n\n".join([header, *sections]) + "\n")
    print(DOC.read_text())


if __name__ == "__main__":
    main(sys.argv[1:])
