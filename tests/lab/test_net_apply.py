"""The net plugin end to end: `python -m op_dbus` inside the lab netns against real OVS.

Every result is cross-checked with the stock tools (`ovs-vsctl`, `ip -j`), never only with
op-dbus's own report. Each test starts and ends with no bridges and no default route.
"""

from __future__ import annotations

import copy
import json
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


def state_file(tmp_path: Path, net: dict[str, Any], name: str = "state.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps({"version": 1, "plugins": {"net": net}}))
    return str(path)


def opdbus(lab: Lab, *args: str) -> CompletedProcess[str]:
    return run_in_lab(lab, sys.executable, "-m", "op_dbus", *args, check=False)


def sh(lab: Lab, *argv: str) -> str:
    return run_in_lab(lab, *argv).stdout


def vsctl(lab: Lab, *args: str) -> str:
    return sh(lab, "ovs-vsctl", "--timeout=10", *args).strip().strip('"')


def addresses(lab: Lab) -> dict[str, set[str]]:
    links = json.loads(sh(lab, "ip", "-j", "-4", "addr"))
    return {
        link["ifname"]: {f"{a['local']}/{a['prefixlen']}" for a in link["addr_info"]}
        for link in links
    }


def default_routes(lab: Lab) -> list[dict[str, Any]]:
    return json.loads(sh(lab, "ip", "-j", "route", "show", "default"))


def reset(lab: Lab) -> None:
    for bridge in vsctl(lab, "list-br").split():
        vsctl(lab, "del-br", bridge)
    run_in_lab(lab, "ip", "route", "flush", "exact", "0.0.0.0/0", check=False)


@pytest.fixture
def net_lab(lab: Lab) -> Iterator[Lab]:
    reset(lab)
    try:
        yield lab
    finally:
        reset(lab)


def apply_ok(lab: Lab, path: str, *options: str) -> CompletedProcess[str]:
    result = opdbus(lab, "apply", *options, path)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_seed_net_section_applies_and_reaches_the_gateway(net_lab: Lab, tmp_path: Path) -> None:
    path = state_file(tmp_path, SEED_NET)
    apply_ok(net_lab, path)

    assert sorted(vsctl(net_lab, "list-br").split()) == ["mesh", "ovsbr0"]
    assert vsctl(net_lab, "list-ports", "ovsbr0").split() == ["eth0"]
    assert vsctl(net_lab, "list-ports", "mesh") == ""
    for bridge in ("ovsbr0", "mesh"):
        assert vsctl(net_lab, "get", "Bridge", bridge, "datapath_type") == "netdev"
        assert vsctl(net_lab, "get", "Bridge", bridge, "external_ids:op-dbus-owner") == "op-dbus"
    assert vsctl(net_lab, "get", "Port", "eth0", "external_ids:op-dbus-owner") == "op-dbus"
    found = addresses(net_lab)
    assert found["ovsbr0"] == {"192.168.1.10/24"}
    assert found["mesh"] == {"10.0.0.1/24"}
    (route,) = default_routes(net_lab)
    assert (route["gateway"], route["dev"]) == ("192.168.1.1", "ovsbr0")
    run_in_lab(net_lab, "ping", "-c", "1", "-W", "3", "192.168.1.1")

    query = opdbus(net_lab, "query", "--plugin", "net", "--json")
    assert query.returncode == 0, query.stderr
    entries = {
        e["name"]: e for e in json.loads(query.stdout)["state"]["plugins"]["net"]["interfaces"]
    }
    assert set(entries) == {"ovsbr0", "mesh", "eth0"}
    assert entries["ovsbr0"]["ports"] == ["eth0"]
    assert entries["eth0"]["bridge"] == "ovsbr0"
    for name in ("ovsbr0", "mesh"):
        listed = {f"{a['ip']}/{a['prefix']}" for a in entries[name]["ipv4"]["address"]}
        assert listed == found[name]
        assert entries[name]["owned"] is True
        assert entries[name]["ofport"] == 65534  # vswitchd realised it: LOCAL port
    assert entries["ovsbr0"]["ipv4"]["gateway"] == "192.168.1.1"
    assert opdbus(net_lab, "verify", path).returncode == 0


def test_reapply_changes_nothing_in_ovsdb_or_netlink(net_lab: Lab, tmp_path: Path) -> None:
    path = state_file(tmp_path, SEED_NET)
    apply_ok(net_lab, path)
    conf_db = net_lab.ovs_dir / "conf.db"  # every committed transaction appends to it
    size = conf_db.stat().st_size
    before = (addresses(net_lab), default_routes(net_lab), sh(net_lab, "ip", "-j", "link"))

    result = apply_ok(net_lab, path)

    assert "nothing to do" in result.stdout
    assert conf_db.stat().st_size == size
    assert (addresses(net_lab), default_routes(net_lab), sh(net_lab, "ip", "-j", "link")) == before


DRIFTS = {
    "port deleted": (["ovs-vsctl", "del-port", "ovsbr0", "eth0"], "+ port/eth0"),
    "bridge deleted": (["ovs-vsctl", "del-br", "mesh"], "+ bridge/mesh"),
    "external_ids changed": (
        ["ovs-vsctl", "set", "Bridge", "mesh", "external_ids:role=other"],
        "~ bridge/mesh",
    ),
    "address removed": (["ip", "addr", "del", "192.168.1.10/24", "dev", "ovsbr0"], "~ ipv4/ovsbr0"),
}


@pytest.mark.parametrize("drift", list(DRIFTS))
def test_drift_shows_in_diff_and_apply_repairs_it(net_lab: Lab, tmp_path: Path, drift: str) -> None:
    net = copy.deepcopy(SEED_NET)
    net["interfaces"][1]["external_ids"] = {"role": "mesh"}
    path = state_file(tmp_path, net)
    apply_ok(net_lab, path)
    command, shown = DRIFTS[drift]
    run_in_lab(net_lab, *command)

    diff = opdbus(net_lab, "diff", path)
    assert diff.returncode == 3, diff.stdout + diff.stderr
    assert shown in diff.stdout
    apply_ok(net_lab, path)

    assert opdbus(net_lab, "diff", path).returncode == 0
    assert vsctl(net_lab, "list-ports", "ovsbr0").split() == ["eth0"]
    assert vsctl(net_lab, "get", "Bridge", "mesh", "external_ids:role") == "mesh"
    assert addresses(net_lab)["ovsbr0"] == {"192.168.1.10/24"}
    assert addresses(net_lab)["mesh"] == {"10.0.0.1/24"}
    run_in_lab(net_lab, "ping", "-c", "1", "-W", "3", "192.168.1.1")


def test_a_file_naming_one_bridge_deletes_nothing_else(net_lab: Lab, tmp_path: Path) -> None:
    """The issue's case: a partial file once deleted the uplink ovsbr0 (and the host's
    address and default route with it) and mesh. What a file does not name stays."""
    apply_ok(net_lab, state_file(tmp_path, SEED_NET))
    before = (
        sorted(vsctl(net_lab, "list-br").split()),
        addresses(net_lab),
        default_routes(net_lab),
    )
    router = {"interfaces": [{"name": "vlan10", "type": "ovs-bridge", "datapath": "netdev"}]}
    path = state_file(tmp_path, router, "router.json")

    plan = json.loads(opdbus(net_lab, "diff", "--json", path).stdout)
    assert plan["summary"]["delete"] == 0, plan
    apply_ok(net_lab, path)

    assert sorted(vsctl(net_lab, "list-br").split()) == ["mesh", "ovsbr0", "vlan10"]
    assert vsctl(net_lab, "list-ports", "ovsbr0").split() == ["eth0"]
    found = addresses(net_lab)
    assert (found["ovsbr0"], found["mesh"]) == (before[1]["ovsbr0"], before[1]["mesh"])
    assert default_routes(net_lab) == before[2]
    run_in_lab(net_lab, "ping", "-c", "1", "-W", "3", "192.168.1.1")


def test_prune_deletes_only_owned_resources_the_file_does_not_list(
    net_lab: Lab, tmp_path: Path
) -> None:
    vsctl(net_lab, "add-br", "foreign0", "--", "set", "Bridge", "foreign0", "datapath_type=netdev")
    apply_ok(net_lab, state_file(tmp_path, SEED_NET))
    uplink_only = {"interfaces": [SEED_NET["interfaces"][0]]}
    path = state_file(tmp_path, uplink_only, "uplink.json")

    preview = opdbus(net_lab, "diff", "--prune", "--json", path)
    assert preview.returncode == 3, preview.stderr
    actions = [a for p in json.loads(preview.stdout)["plugins"] for a in p["actions"]]
    assert [(a["kind"], a["resource"]) for a in actions] == [("delete", "bridge/mesh")]
    assert sorted(vsctl(net_lab, "list-br").split()) == ["foreign0", "mesh", "ovsbr0"]

    apply_ok(net_lab, path, "--prune")

    assert sorted(vsctl(net_lab, "list-br").split()) == ["foreign0", "ovsbr0"]
    assert "mesh" not in addresses(net_lab)
    query = json.loads(opdbus(net_lab, "query", "--plugin", "net", "--json").stdout)
    owned = {e["name"]: e["owned"] for e in query["state"]["plugins"]["net"]["interfaces"]}
    assert owned == {"foreign0": False, "ovsbr0": True, "eth0": True}


def test_netlink_failure_mid_apply_rolls_back_ovsdb_too(net_lab: Lab, tmp_path: Path) -> None:
    # A default route op-dbus did not create: adding the seed's gateway fails (EEXIST), after
    # the OVSDB transaction has committed, and op-dbus must not remove the foreign route.
    run_in_lab(net_lab, "ip", "route", "add", "default", "dev", "eth0")
    result = opdbus(net_lab, "apply", state_file(tmp_path, SEED_NET))

    assert result.returncode == 4, result.stdout + result.stderr
    assert "did not create" in result.stdout + result.stderr
    assert vsctl(net_lab, "list-br") == ""
    assert not {"ovsbr0", "mesh"} & set(addresses(net_lab))
    (route,) = default_routes(net_lab)
    assert route["dev"] == "eth0"


def test_dhcp_true_is_refused_before_anything_changes(net_lab: Lab, tmp_path: Path) -> None:
    net = copy.deepcopy(SEED_NET)
    net["interfaces"][1]["ipv4"]["dhcp"] = True
    result = opdbus(net_lab, "apply", state_file(tmp_path, net))
    assert result.returncode == 2, "refused as invalid input, before the host is read"
    assert "net.interfaces[1].ipv4.dhcp" in result.stdout + result.stderr
    assert vsctl(net_lab, "list-br") == ""


def test_port_vswitchd_cannot_realise_fails_verify_and_rolls_back(
    net_lab: Lab, tmp_path: Path
) -> None:
    net = {"interfaces": [{"name": "brx", "type": "ovs-bridge", "ports": ["nosuch0"]}]}
    result = opdbus(net_lab, "apply", state_file(tmp_path, net))

    assert result.returncode == 4, result.stdout + result.stderr
    assert "could not open network device nosuch0" in result.stdout + result.stderr
    assert vsctl(net_lab, "list-br") == ""


NETLINK_PROBE = """
import sys
from op_dbus.cli.main import run
sys.argv = ["op-dbus", "apply", sys.argv[1]]
try:
    run()
except SystemExit as exit:
    print(exit.code, "pyroute2" in sys.modules)
"""


def test_a_file_without_ipv4_applies_without_loading_netlink(net_lab: Lab, tmp_path: Path) -> None:
    """No entry declares ipv4, so no address is op-dbus's to touch: create, verify and the
    no-op re-apply all skip netlink and pyroute2's ~60 ms import."""
    net = {
        "interfaces": [
            {"name": "nonl0", "type": "ovs-bridge", "datapath": "netdev"},
            {"name": "nonlp0", "type": "ovs-internal", "bridge": "nonl0"},
        ]
    }
    path = state_file(tmp_path, net)
    for _ in ("create", "no-op"):
        probe = run_in_lab(net_lab, sys.executable, "-c", NETLINK_PROBE, path, check=False)
        assert probe.stdout.split()[-2:] == ["0", "False"], probe.stdout + probe.stderr
    assert vsctl(net_lab, "list-ports", "nonl0") == "nonlp0"


def test_a_port_moves_between_bridges_and_stays_with_a_renamed_bridge(
    net_lab: Lab, tmp_path: Path
) -> None:
    """Each step deletes port mvp0 and inserts it again under the same name, in one OVSDB
    transaction (the old row goes at commit, so the name index never sees both)."""

    def net(*bridges: str, port_on: str) -> dict[str, Any]:
        entries = [{"name": b, "type": "ovs-bridge", "datapath": "netdev"} for b in bridges]
        return {
            "interfaces": [*entries, {"name": "mvp0", "type": "ovs-internal", "bridge": port_on}]
        }

    apply_ok(net_lab, state_file(tmp_path, net("mva", "mvb", port_on="mva"), "a.json"))
    assert vsctl(net_lab, "list-ports", "mva") == "mvp0"

    moved = state_file(tmp_path, net("mva", "mvb", port_on="mvb"), "b.json")
    apply_ok(net_lab, moved)
    assert vsctl(net_lab, "list-ports", "mva") == ""
    assert vsctl(net_lab, "list-ports", "mvb") == "mvp0"
    assert vsctl(net_lab, "get", "Port", "mvp0", "external_ids:op-dbus-owner") == "op-dbus"
    assert opdbus(net_lab, "verify", moved).returncode == 0  # vswitchd realised it there

    renamed = state_file(tmp_path, net("mva", "mvc", port_on="mvc"), "c.json")
    apply_ok(net_lab, renamed, "--prune")  # mvb, no longer listed, goes
    assert sorted(vsctl(net_lab, "list-br").split()) == ["mva", "mvc"]
    assert vsctl(net_lab, "list-ports", "mvc") == "mvp0"
    assert opdbus(net_lab, "verify", renamed).returncode == 0


def test_rollback_of_a_file_without_ipv4_restores_a_dropped_bridges_addresses(
    net_lab: Lab, tmp_path: Path
) -> None:
    """The second file names no ipv4 but prunes bridge keep0, whose device and address go with
    it; its failed apply must bring back both, so the checkpoint has to include addresses."""
    keep = {
        "name": "keep0",
        "type": "ovs-bridge",
        "ipv4": {"enabled": True, "address": [{"ip": "10.77.0.1", "prefix": 24}]},
    }
    apply_ok(net_lab, state_file(tmp_path, {"interfaces": [keep]}, "keep.json"))
    assert addresses(net_lab)["keep0"] == {"10.77.0.1/24"}

    failing = {"interfaces": [{"name": "brx", "type": "ovs-bridge", "ports": ["nosuch0"]}]}
    result = opdbus(net_lab, "apply", "--prune", state_file(tmp_path, failing, "failing.json"))

    assert result.returncode == 4, result.stdout + result.stderr
    assert vsctl(net_lab, "list-br") == "keep0"
    assert addresses(net_lab).get("keep0") == {"10.77.0.1/24"}
