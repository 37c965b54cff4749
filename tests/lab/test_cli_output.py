"""Output for people, against the lab's real OVS, LXC and systemd: `query` round-trips with
foreign bridges and containers present. Every test starts and ends with no container and no
bridge of its own."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import pytest
import yaml

from op_dbus.lab import Lab, run_in_lab
from op_dbus.lab.lxc import drop_empty_cgroups

OWNED: dict[str, Any] = {
    "net": {
        "interfaces": [
            {
                "name": "outbr0",
                "type": "ovs-bridge",
                "ipv4": {"enabled": True, "address": [{"ip": "10.9.0.1", "prefix": 24}]},
            },
            {"name": "outp1", "type": "ovs-internal", "bridge": "outbr0", "vlan": 12},
        ]
    },
    "lxc": {
        "containers": [
            {"id": "190", "name": "outct", "veth": "vi190", "bridge": "outbr0", "running": True}
        ]
    },
    "systemd": {"units": {"openvswitch.service": {"enabled": True, "active_state": "active"}}},
}
FOREIGN_BRIDGE, FOREIGN_PORT, FOREIGN_CT = "handbr", "handp1", "handct"


def opdbus(lab: Lab, *args: str) -> CompletedProcess[str]:
    return run_in_lab(lab, sys.executable, "-m", "op_dbus", *args, check=False)


def sh(lab: Lab, *argv: str, check: bool = True) -> str:
    return run_in_lab(lab, *argv, check=check).stdout


def vsctl(lab: Lab, *args: str, check: bool = True) -> str:
    return sh(lab, "ovs-vsctl", "--timeout=10", *args, check=check)


def lxc_names(lab: Lab) -> list[str]:
    return sh(lab, "lxc-ls", "-P", str(lab.lxc_path), "-1").split()


def clean(lab: Lab) -> None:
    for name in lxc_names(lab):
        sh(lab, "lxc-destroy", "-P", str(lab.lxc_path), "-n", name, "-f", check=False)
        drop_empty_cgroups(name)
    for bridge in vsctl(lab, "list-br").split():
        vsctl(lab, "del-br", bridge)


@pytest.fixture
def host(lab: Lab, tmp_path: Path) -> Iterator[Lab]:
    """The lab with an owned bridge, port and running container, and a bridge, port and
    container made by hand (foreign to op-dbus)."""
    clean(lab)
    state = tmp_path / "owned.json"
    state.write_text(json.dumps(OWNED))
    applied = opdbus(lab, "apply", str(state))
    assert applied.returncode == 0, applied.stdout + applied.stderr
    vsctl(
        lab, "add-br", FOREIGN_BRIDGE, "--", "set", "bridge", FOREIGN_BRIDGE, "datapath_type=netdev"
    )
    vsctl(lab, "add-port", FOREIGN_BRIDGE, FOREIGN_PORT, "tag=7", "--", "set", "interface",
          FOREIGN_PORT, "type=internal")  # fmt: skip
    sh(lab, "lxc-create", "-P", str(lab.lxc_path), "-t", "busybox", "-n", FOREIGN_CT)
    try:
        yield lab
    finally:
        clean(lab)


def test_query_round_trips_with_foreign_bridges_and_containers(host: Lab, tmp_path: Path) -> None:
    declared = tmp_path / "declared.json"
    declared.write_text(json.dumps({"systemd": OWNED["systemd"]}))
    for form, name in (("yaml", "host.yaml"), ("json", "host.json")):
        result = opdbus(host, "query", "--file", str(declared), "--format", form)
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
        document = yaml.safe_load(result.stdout) if form == "yaml" else json.loads(result.stdout)
        plugins = document["plugins"]
        assert set(plugins["systemd"]["units"]) == {"openvswitch.service"}, "declared units only"
        names = {i["name"] for i in plugins["net"]["interfaces"]}
        assert {"outbr0", "outp1", FOREIGN_BRIDGE, FOREIGN_PORT} <= names
        assert "vi190" not in names, "a container's port is its lxc entry's"
        assert [c["name"] for c in plugins["lxc"]["containers"]] == ["outct"]
        assert f"container {FOREIGN_CT}" in result.stderr, "the left-out container is named"
        assert not any(key in result.stdout for key in ("ofport", "owned", "pid:", '"pid"'))
        path = tmp_path / name
        path.write_text(result.stdout)
        valid = opdbus(host, "validate", str(path))
        assert valid.returncode == 0, valid.stdout + valid.stderr
        plan = opdbus(host, "diff", str(path), "--json")
        assert plan.returncode == 0, plan.stdout + plan.stderr
        assert json.loads(plan.stdout)["pending"] is False

    every = opdbus(host, "query", "--all")
    assert every.returncode == 0 and "openvswitch.service" in every.stdout
    default = opdbus(host, "query")
    assert "units:" not in default.stdout and "--all" in default.stderr

    introspected = tmp_path / "init.yaml"
    made = opdbus(host, "init", "--introspect", "--plugin", "net", "-o", str(introspected))
    assert made.returncode == 0, made.stderr
    assert list(yaml.safe_load(introspected.read_text())["plugins"]) == ["net"]
    assert json.loads(opdbus(host, "diff", str(introspected), "--json").stdout)["pending"] is False

    facts = opdbus(host, "query", "--facts", "--container", "out*")
    assert facts.returncode == 0
    only = yaml.safe_load(facts.stdout)["plugins"]
    assert list(only) == ["lxc"] and only["lxc"]["containers"][0]["pid"] > 0


def in_pty(lab: Lab, *args: str) -> tuple[int, str]:
    """Run op-dbus with a pseudo-terminal as its stdin, stdout and stderr, as a person would."""
    import os
    import pty
    import subprocess

    parent, child = pty.openpty()
    argv = lab.exec_argv([sys.executable, "-m", "op_dbus", *args])
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "120"}
    env.pop("NO_COLOR", None)
    process = subprocess.Popen(argv, stdin=child, stdout=child, stderr=child, env=env)
    os.close(child)
    chunks = []
    while True:
        try:
            data = os.read(parent, 65536)
        except OSError:  # EIO: every writer of the terminal has gone
            break
        if not data:
            break
        chunks.append(data)
    os.close(parent)
    return process.wait(timeout=120), b"".join(chunks).decode(errors="replace")


def test_a_slow_apply_on_a_terminal_shows_progress_frames_and_what_was_done(
    host: Lab, tmp_path: Path
) -> None:
    """Stopping a container takes liblxc a couple of seconds: long enough for the display."""
    stop = tmp_path / "stop.json"
    stop.write_text(
        json.dumps({"lxc": {"containers": [{"id": "190", "name": "outct", "running": False}]}})
    )
    code, output = in_pty(host, "apply", str(stop))
    assert code == 0, output
    assert "\x1b[" in output, "colours on a terminal"
    frames = [part for part in output.split("\r") if "lxc: applying 1 action" in part]
    assert len(frames) >= 2, f"the progress display redraws while the action runs: {output!r}"
    summary = output.rsplit("Done:", 1)[1]
    assert "container/outct" in summary and " s" in summary
    assert "applied 1 action(s), verified" in summary
    plain = opdbus(host, "apply", str(stop))
    assert "\x1b[" not in plain.stdout + plain.stderr, "no colour and no frames in a pipe"


def test_show_draws_every_bridge_and_container_as_svg_dot_json_and_a_tree(
    host: Lab, tmp_path: Path
) -> None:
    import shutil
    import xml.etree.ElementTree as ET

    if shutil.which("dot") is None:
        pytest.skip("Graphviz's dot is not installed (scripts/install-deps installs it)")
    bridges = set(vsctl(host, "list-br").split())
    names = set(lxc_names(host))
    assert bridges >= {"outbr0", FOREIGN_BRIDGE} and names == {"outct", FOREIGN_CT}
    svg = opdbus(host, "show", "--format", "svg")
    assert svg.returncode == 0, svg.stderr
    texts = " ".join(
        t.text or "" for t in ET.fromstring(svg.stdout).iter("{http://www.w3.org/2000/svg}text")
    )
    for name in bridges | names:
        assert name in texts, f"{name} missing from the SVG"
    picture = json.loads(opdbus(host, "show", "--json").stdout)
    assert {b["name"] for b in picture["bridges"]} == bridges
    assert {c["name"] for c in picture["containers"]} == names
    assert "digraph" in opdbus(host, "show", "--format", "dot").stdout

    drift = tmp_path / "drift.json"
    drift.write_text(
        json.dumps({"lxc": {"containers": [{"id": "190", "name": "outct", "running": False}]}})
    )
    tree = opdbus(host, "show", "--file", str(drift))
    assert tree.returncode == 0, tree.stderr
    assert "~ outct (190) running" in tree.stdout, "the drift mark of the file's plan"
    assert f"{FOREIGN_BRIDGE} bridge (foreign)" in tree.stdout
    assert "outp1 internal vlan 12 ofport" in tree.stdout


def test_a_failed_start_reports_the_hooks_own_message(host: Lab, tmp_path: Path) -> None:
    """liblxc says only "The container failed to start"; the hook's ovs-vsctl says why. The
    hook is pointed at a bridge that is gone, as when one is deleted behind op-dbus's back
    between the plan and the start."""
    stop = tmp_path / "stop.json"
    stop.write_text(
        json.dumps({"lxc": {"containers": [{"id": "190", "name": "outct", "running": False}]}})
    )
    assert opdbus(host, "apply", str(stop)).returncode == 0
    hook = host.lxc_path / "outct" / "op-dbus-net-up"
    hook.write_text(hook.read_text().replace("add-port outbr0", "add-port gonebr0"))
    start = tmp_path / "start.json"
    start.write_text(
        json.dumps({"lxc": {"containers": [{"id": "190", "name": "outct", "running": True}]}})
    )
    result = opdbus(host, "apply", str(start))
    assert result.returncode == 4, result.stdout + result.stderr
    said = result.stdout + result.stderr
    assert "its hook failed: ovs-vsctl: no bridge named gonebr0" in said
    assert "failed to start" not in said and "Error" not in said
