"""The lxc plugin end to end: `python -m op_dbus` in the lab netns against real LXC and OVS.

Results are cross-checked with the stock tools (`lxc-info`, `lxc-ls`, `ovs-vsctl`), and
traffic really flows between containers. Every test starts and ends with no container, no
bridge, no default route, and openvswitch.service off.
"""

from __future__ import annotations

import copy
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import pytest

from op_dbus.lab import Lab, run_in_lab

SEED = json.loads((Path(__file__).parents[2] / "examples" / "full-mode.json").read_text())
ADDRESSES = {"gateway": "10.0.0.2", "warp": "10.0.0.3", "xray-client": "10.0.0.4"}
OVS_SERVICE_OFF = {"units": {"openvswitch.service": {"enabled": False, "active_state": "inactive"}}}


def opdbus(lab: Lab, *args: str) -> CompletedProcess[str]:
    return run_in_lab(lab, sys.executable, "-m", "op_dbus", *args, check=False)


def sh(lab: Lab, *argv: str, check: bool = True) -> str:
    return run_in_lab(lab, *argv, check=check).stdout


def lxc(lab: Lab, tool: str, name: str, *args: str, check: bool = True) -> str:
    return sh(lab, tool, "-P", str(lab.lxc_path), "-n", name, *args, check=check)


def list_ports(lab: Lab, bridge: str) -> set[str]:
    return set(sh(lab, "ovs-vsctl", "--timeout=10", "list-ports", bridge).split())


def containers(lab: Lab) -> dict[str, str]:
    """name -> state, from `lxc-ls`."""
    out = sh(lab, "lxc-ls", "-P", str(lab.lxc_path), "-f", "-F", "NAME,STATE")
    return dict(line.split()[:2] for line in out.splitlines()[1:] if line.strip())


def write(tmp_path: Path, sections: dict[str, Any], name: str = "state.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(sections))
    return str(path)


def with_addresses(seed: dict[str, Any]) -> dict[str, Any]:
    """The seed with a static address per container on mesh (10.0.0.0/24)."""
    state = copy.deepcopy(seed)
    for ct in state["lxc"]["containers"]:
        ct["ipv4"] = {"address": [{"ip": ADDRESSES[ct["name"]], "prefix": 24}]}
    return state


def query_lxc(lab: Lab) -> dict[str, dict[str, Any]]:
    result = opdbus(lab, "query", "--plugin", "lxc", "--json")
    assert result.returncode == 0, result.stderr
    section = json.loads(result.stdout)["state"]["plugins"]["lxc"]
    return {c["name"]: c for c in section["containers"]}


def reset(lab: Lab, tmp_path: Path) -> None:
    for name in containers(lab) if lab.lxc_path.is_dir() else {}:
        lxc(lab, "lxc-destroy", name, "-f", check=False)
    for bridge in sh(lab, "ovs-vsctl", "--timeout=10", "list-br").split():
        sh(lab, "ovs-vsctl", "--timeout=10", "del-br", bridge)
    run_in_lab(lab, "ip", "route", "flush", "exact", "0.0.0.0/0", check=False)
    opdbus(lab, "apply", write(tmp_path, {"systemd": OVS_SERVICE_OFF}, "reset.json"))


@pytest.fixture
def clean(lab: Lab, tmp_path: Path) -> Iterator[Lab]:
    reset(lab, tmp_path)
    try:
        yield lab
    finally:
        reset(lab, tmp_path)
        assert containers(lab) == {}


def test_seed_full_mode_applies_verifies_and_reapplies_with_nothing_to_do(
    clean: Lab, tmp_path: Path
) -> None:
    path = write(tmp_path, SEED)
    first = opdbus(clean, "apply", path)
    assert first.returncode == 0, first.stdout + first.stderr
    assert containers(clean) == {n: "RUNNING" for n in ("gateway", "warp", "xray-client")}
    assert list_ports(clean, "mesh") == {"vi100", "vi101", "vi102"}

    verify = opdbus(clean, "verify", path)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert opdbus(clean, "diff", path).returncode == 0
    again = opdbus(clean, "apply", path)
    assert again.returncode == 0, again.stderr
    assert "nothing to do" in again.stdout + again.stderr

    found = query_lxc(clean)
    for ct in SEED["lxc"]["containers"]:
        entry = found[ct["name"]]
        pid = lxc(clean, "lxc-info", ct["name"], "-pH").strip()
        assert (entry["running"], entry["pid"]) == (True, int(pid))
        assert (entry["veth"], entry["bridge"], entry["owned"]) == (ct["veth"], "mesh", True)
        assert entry["hwaddr"] == f"02:00:00:00:00:{int(ct['id']):02x}"
        inside = lxc(clean, "lxc-attach", ct["name"], "--", "cat", "/sys/class/net/eth0/address")
        assert inside.strip() == entry["hwaddr"]


def test_containers_talk_across_mesh(clean: Lab, tmp_path: Path) -> None:
    result = opdbus(clean, "apply", write(tmp_path, with_addresses(SEED)))
    assert result.returncode == 0, result.stdout + result.stderr
    ping = run_in_lab(
        clean, "lxc-attach", "-P", str(clean.lxc_path), "-n", "gateway", "--",
        "ping", "-c1", "-W2", ADDRESSES["warp"], check=False,
    )  # fmt: skip
    assert ping.returncode == 0, ping.stdout + ping.stderr
    # TCP needs TX checksum offload off in the containers (userspace datapath): the hook did it.
    lxc(clean, "lxc-attach", "warp", "--", "sh", "-c", "mkdir -p /www && echo hello-mesh > /www/x")
    lxc(clean, "lxc-attach", "warp", "--", "httpd", "-p", "8080", "-h", "/www")
    request = f'printf "GET /x HTTP/1.0\\r\\n\\r\\n" | nc -w 5 {ADDRESSES["warp"]} 8080'
    reply = lxc(clean, "lxc-attach", "xray-client", "--", "sh", "-c", request)
    assert reply.startswith("HTTP/1.") and reply.rstrip().endswith("hello-mesh"), reply


def test_drift_shows_in_diff_and_apply_repairs_it(clean: Lab, tmp_path: Path) -> None:
    path = write(tmp_path, SEED)
    assert opdbus(clean, "apply", path).returncode == 0
    lxc(clean, "lxc-stop", "gateway", "-k")
    sh(clean, "ovs-vsctl", "--timeout=10", "del-port", "vi101")

    diff = opdbus(clean, "diff", path)
    assert diff.returncode == 3, diff.stdout + diff.stderr
    assert "gateway" in diff.stdout and "warp" in diff.stdout
    repaired = opdbus(clean, "apply", path)
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert containers(clean)["gateway"] == "RUNNING"
    assert list_ports(clean, "mesh") == {"vi100", "vi101", "vi102"}
    assert opdbus(clean, "diff", path).returncode == 0


def test_stale_port_does_not_block_the_next_start(clean: Lab, tmp_path: Path) -> None:
    state = copy.deepcopy(SEED)
    state["lxc"]["containers"] = state["lxc"]["containers"][:1]
    state["lxc"]["containers"][0]["running"] = False
    assert opdbus(clean, "apply", write(tmp_path, state)).returncode == 0
    # What a container killed without its stop hook leaves: its port, marked, without a veth.
    sh(
        clean, "ovs-vsctl", "--timeout=10", "add-port", "mesh", "vi100", "--",
        "set", "Port", "vi100", "external_ids:op-dbus-container=gateway",
    )  # fmt: skip
    stopped = query_lxc(clean)
    assert stopped["gateway"]["running"] is False
    assert opdbus(clean, "diff", write(tmp_path, state)).returncode == 3  # the stale port

    state["lxc"]["containers"][0]["running"] = True
    started = opdbus(clean, "apply", write(tmp_path, state))
    assert started.returncode == 0, started.stdout + started.stderr
    assert list_ports(clean, "mesh") == {"vi100"}
    assert containers(clean)["gateway"] == "RUNNING"
    # and a restart right after a stop (the host veth lingers a moment) works too
    state["lxc"]["containers"][0]["running"] = False
    assert opdbus(clean, "apply", write(tmp_path, state)).returncode == 0
    state["lxc"]["containers"][0]["running"] = True
    again = opdbus(clean, "apply", write(tmp_path, state))
    assert again.returncode == 0, again.stdout + again.stderr
    assert list_ports(clean, "mesh") == {"vi100"}


def test_failure_creating_the_third_container_rolls_back_the_first_two(
    clean: Lab, tmp_path: Path
) -> None:
    state = copy.deepcopy(SEED)
    state["lxc"]["containers"][2]["template"] = "no-such-template"
    result = opdbus(clean, "apply", write(tmp_path, state))
    assert result.returncode == 4, result.stdout + result.stderr
    assert "xray-client" in result.stdout + result.stderr
    assert containers(clean) == {}
    assert not (clean.lxc_path / "gateway").exists()
    assert sh(clean, "ovs-vsctl", "--timeout=10", "list-br").split() == []


def test_foreign_container_survives_and_absent_destroys_only_owned(
    clean: Lab, tmp_path: Path
) -> None:
    sh(clean, "lxc-create", "-P", str(clean.lxc_path), "-t", "busybox", "-n", "byhand")
    path = write(tmp_path, SEED)
    assert opdbus(clean, "apply", path).returncode == 0
    assert containers(clean)["byhand"] == "STOPPED"
    assert query_lxc(clean)["byhand"]["owned"] is False

    refused = copy.deepcopy(SEED)
    refused["lxc"]["containers"].append({"id": "150", "name": "byhand", "state": "absent"})
    result = opdbus(clean, "apply", write(tmp_path, refused, "refused.json"))
    assert result.returncode != 0
    assert "did not create it" in result.stdout + result.stderr
    assert "byhand" in containers(clean)

    gone = copy.deepcopy(SEED)
    gone["lxc"]["containers"][2] = {"id": "102", "name": "xray-client", "state": "absent"}
    result = opdbus(clean, "apply", write(tmp_path, gone, "gone.json"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert set(containers(clean)) == {"gateway", "warp", "byhand"}
    deadline = time.monotonic() + 5
    while "vi102" in list_ports(clean, "mesh") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert list_ports(clean, "mesh") == {"vi100", "vi101"}
