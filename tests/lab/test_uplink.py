"""The seed's uplink for real: eth0 holds the host's address and default route, as on a real
host, and op-dbus moves them into ovsbr0 while an operator's TCP session (the lab's canary)
stays up. Every result is cross-checked with `ip -j` and `ovs-vsctl`.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import pytest

from op_dbus.lab import Lab, run_in_lab

SEED_NET: dict[str, Any] = json.loads(
    (Path(__file__).parents[2] / "examples" / "full-mode.json").read_text()
)["net"]
FOREIGN = ["10.9.0.0/16", "via", "192.168.1.1", "metric", "50"]


def ip_json(lab: Lab, *args: str) -> Any:
    return json.loads(run_in_lab(lab, "ip", "-j", *args).stdout or "[]")


def inet(lab: Lab, dev: str) -> list[tuple[str, int]]:
    (link,) = ip_json(lab, "-4", "addr", "show", "dev", dev) or [{"addr_info": []}]
    return [(a["local"], a["prefixlen"]) for a in link["addr_info"]]


def routes(lab: Lab, dev: str) -> list[dict[str, Any]]:
    """Every IPv4 route through `dev` in every table but `local`, as `ip -j` reports it."""
    found = ip_json(lab, "-4", "route", "show", "table", "all", "dev", dev)
    return [r for r in found if r.get("table") != "local"]


def without_dev(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k not in ("dev", "prefsrc")} for r in found]


def opdbus(lab: Lab, *args: str) -> CompletedProcess[str]:
    return run_in_lab(lab, sys.executable, "-m", "op_dbus", *args, check=False)


def state_file(tmp_path: Path, net: dict[str, Any]) -> str:
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"version": 1, "plugins": {"net": net}}))
    return str(path)


def reset(lab: Lab) -> None:
    bridges = run_in_lab(lab, "ovs-vsctl", "--timeout=10", "list-br").stdout.split()
    for bridge in bridges:
        run_in_lab(lab, "ovs-vsctl", "--timeout=10", "del-br", bridge)
    run_in_lab(lab, "ip", "route", "del", *FOREIGN[:1], check=False)
    run_in_lab(lab, "ip", "route", "flush", "exact", "0.0.0.0/0", check=False)
    lab.host_uplink()


@pytest.fixture
def host(lab: Lab) -> Iterator[Lab]:
    """The session lab with eth0 as a real host's uplink, and put back so afterwards."""
    reset(lab)
    try:
        yield lab
    finally:
        reset(lab)


def test_the_lab_starts_like_a_real_host(host: Lab) -> None:
    assert inet(host, "eth0") == [("192.168.1.10", 24)]
    (default,) = ip_json(host, "route", "show", "default")
    assert (default["gateway"], default["dev"]) == ("192.168.1.1", "eth0")
    with host.canary() as seen:
        pass
    assert seen.reset == "" and seen.exchanges >= 0


def test_the_seed_moves_eth0s_address_and_route_into_ovsbr0(host: Lab, tmp_path: Path) -> None:
    plan = opdbus(host, "diff", "--json", state_file(tmp_path, SEED_NET))
    moves = [a for a in json.loads(plan.stdout)["plugins"][0]["actions"]
             if a["resource"].startswith("address-move/")]  # fmt: skip
    assert [(a["kind"], a["resource"]) for a in moves] == [("modify", "address-move/eth0->ovsbr0")]
    assert moves[0]["after"]["address"] == [{"ip": "192.168.1.10", "prefix": 24}]
    assert "stays reachable" in moves[0]["after"]["reason"]

    with host.canary() as seen:
        result = opdbus(host, "apply", state_file(tmp_path, SEED_NET))
    assert result.returncode == 0, result.stdout + result.stderr
    assert seen.reset == "", seen.reset
    assert seen.exchanges > 0
    assert inet(host, "eth0") == []
    assert inet(host, "ovsbr0") == [("192.168.1.10", 24)]
    subnet = [r for r in ip_json(host, "-4", "route") if r["dst"] == "192.168.1.0/24"]
    assert [r["dev"] for r in subnet] == ["ovsbr0"]
    (default,) = ip_json(host, "route", "show", "default")
    assert (default["gateway"], default["dev"]) == ("192.168.1.1", "ovsbr0")
    run_in_lab(host, "ping", "-c", "1", "-W", "2", "192.168.1.1")
    assert run_in_lab(host, "ovs-vsctl", "port-to-br", "eth0").stdout.strip() == "ovsbr0"
    again = opdbus(host, "apply", state_file(tmp_path, SEED_NET))
    assert again.returncode == 0 and "nothing to do" in again.stdout, again.stdout


def test_a_foreign_route_on_eth0_moves_with_its_attributes(host: Lab, tmp_path: Path) -> None:
    run_in_lab(host, "ip", "route", "add", *FOREIGN, "dev", "eth0")
    before = routes(host, "eth0")
    assert any(r["dst"] == "10.9.0.0/16" for r in before)
    result = opdbus(host, "apply", state_file(tmp_path, SEED_NET))
    assert result.returncode == 0, result.stdout + result.stderr
    assert routes(host, "eth0") == []
    (moved,) = [r for r in routes(host, "ovsbr0") if r["dst"] == "10.9.0.0/16"]
    (was,) = [r for r in before if r["dst"] == "10.9.0.0/16"]
    assert without_dev([moved]) == without_dev([was])
    assert (moved["metric"], moved["gateway"]) == (50, "192.168.1.1")


def test_readdressing_ovsbr0_within_its_subnet_keeps_the_default_route(
    host: Lab, tmp_path: Path
) -> None:
    result = opdbus(host, "apply", state_file(tmp_path, SEED_NET))
    assert result.returncode == 0, result.stdout + result.stderr
    net = copy.deepcopy(SEED_NET)
    net["interfaces"][0]["ipv4"]["address"] = [{"ip": "192.168.1.20", "prefix": 24}]
    with host.canary():  # a file is partial: dropping .10 takes --prune, and consent (its
        # address carries the default route and the canary's session)
        result = opdbus(host, "apply", "--prune", "--yes", state_file(tmp_path, net))
    assert result.returncode == 0, result.stdout + result.stderr
    assert inet(host, "ovsbr0") == [("192.168.1.20", 24)]
    (default,) = ip_json(host, "route", "show", "default")
    assert (default["gateway"], default["dev"]) == ("192.168.1.1", "ovsbr0")
    run_in_lab(host, "ping", "-c", "1", "-W", "2", "192.168.1.1")


def test_a_secondary_survives_its_primary(host: Lab, tmp_path: Path) -> None:
    """.10 primary and .30 secondary on ovsbr0; dropping .10 keeps .30 (and the route)."""
    net = copy.deepcopy(SEED_NET)
    ovsbr0 = net["interfaces"][0]["ipv4"]
    ovsbr0["address"] = [{"ip": "192.168.1.10", "prefix": 24}, {"ip": "192.168.1.30", "prefix": 24}]
    assert opdbus(host, "apply", state_file(tmp_path, net)).returncode == 0
    ovsbr0["address"] = [{"ip": "192.168.1.30", "prefix": 24}]
    result = opdbus(host, "apply", "--prune", "--yes", state_file(tmp_path, net))
    assert result.returncode == 0, result.stdout + result.stderr
    assert inet(host, "ovsbr0") == [("192.168.1.30", 24)]
    (default,) = ip_json(host, "route", "show", "default")
    assert default["dev"] == "ovsbr0"
    promote = run_in_lab(host, "cat", "/proc/sys/net/ipv4/conf/ovsbr0/promote_secondaries")
    assert promote.stdout.strip() == "0", "the sysctl is set back after the change"


def test_a_failure_during_the_move_restores_eth0_exactly(host: Lab, tmp_path: Path) -> None:
    """The declared gateway .254 cannot be added: the default route via .1 that moved from
    eth0 (not op-dbus's, so never removed) holds the slot. The kernel refuses it after the
    move's steps ran; they are undone, the bridge goes, and eth0 is as before."""
    run_in_lab(host, "ip", "route", "add", *FOREIGN, "dev", "eth0")
    before = (inet(host, "eth0"), routes(host, "eth0"))
    net = copy.deepcopy(SEED_NET)
    net["interfaces"][0]["ipv4"]["gateway"] = "192.168.1.254"
    with host.canary() as seen:
        result = opdbus(host, "apply", state_file(tmp_path, net))
    assert result.returncode == 4, result.stdout + result.stderr
    assert "default route" in result.stdout + result.stderr
    assert (inet(host, "eth0"), routes(host, "eth0")) == before
    assert run_in_lab(host, "ovs-vsctl", "list-br").stdout.split() == []
    assert seen.reset == "", seen.reset
    run_in_lab(host, "ping", "-c", "1", "-W", "2", "192.168.1.1")


def test_lab_canary_reports_the_session_around_a_command(host: Lab) -> None:
    cli = [sys.executable, "-m", "op_dbus", "lab", "canary", "--name", host.name, "--"]
    result = subprocess.run([*cli, "sleep", "0.3"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "longest stall" in result.stdout and "no reset" in result.stdout
    failed = subprocess.run([*cli, "false"], capture_output=True, text=True, check=False)
    assert failed.returncode == 1


def test_a_failure_after_the_move_moves_everything_back(host: Lab, tmp_path: Path) -> None:
    """The move completes; then the lxc section fails for real (a template that does not
    exist). The engine's rollback moves eth0's address and routes back from the checkpoint."""
    run_in_lab(host, "ip", "route", "add", *FOREIGN, "dev", "eth0")
    before = (inet(host, "eth0"), routes(host, "eth0"))
    full = json.loads((Path(__file__).parents[2] / "examples" / "full-mode.json").read_text())
    container = {**full["lxc"]["containers"][0], "template": "no-such-template"}
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"net": SEED_NET, "lxc": {"containers": [container]}}))
    with host.canary() as seen:
        result = opdbus(host, "apply", str(path))
    assert result.returncode == 4, result.stdout + result.stderr
    assert "rolled back, the host is as before" in result.stdout
    assert (inet(host, "eth0"), routes(host, "eth0")) == before
    assert run_in_lab(host, "ovs-vsctl", "list-br").stdout.split() == []
    assert seen.reset == "", seen.reset
    run_in_lab(host, "ping", "-c", "1", "-W", "2", "192.168.1.1")
