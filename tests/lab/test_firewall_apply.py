"""The firewall section and protected container ports, end to end in the lab netns.

What op-dbus did is read back with the stock tools (`nft -j list ruleset`, `ovs-vsctl`,
`sysctl`'s file), and traffic proves it: a container reaches the upstream gateway only through
the host's masquerade, and protected containers reach the gateway container but not each
other. Containers are named fw-* (cgroup names are host-wide; other runs use the seed's).
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_daemon_lab import Daemon, wait_for
from test_lxc_apply import lxc, opdbus, reset, sh, write

from op_dbus.lab import Lab, run_in_lab

OURS = {("inet", "op-dbus"), ("ip", "op-dbus-nat")}
UPSTREAM_GATEWAY = "192.168.1.1"
NET = {
    "interfaces": [
        {
            "name": "ovsbr0",
            "type": "ovs-bridge",
            "ports": ["eth0"],
            "ipv4": {
                "address": [{"ip": "192.168.1.10", "prefix": 24}],
                "gateway": UPSTREAM_GATEWAY,
            },
        },
        {
            "name": "mesh",
            "type": "ovs-bridge",
            "ports": [],
            "ipv4": {"address": [{"ip": "10.0.0.1", "prefix": 24}]},
        },
    ]
}
ADDRESSES = {"fw-gw": "10.0.0.50", "fw-a": "10.0.0.51", "fw-b": "10.0.0.52"}
MASQUERADE = [{"source": "10.0.0.0/24", "out_interface": "ovsbr0"}]
GATEWAY_FIREWALL = {
    "enable": True,
    "masquerade": MASQUERADE,
    "allow_tcp": [22, 9573],
    "allow_udp": [53],
    "trusted_interfaces": ["mesh"],
    "forward_ports": [
        {"proto": "tcp", "port": 8080, "to": "10.0.0.51:80", "in_interface": "ovsbr0"},
        {"proto": "udp", "port": 5353, "to": "10.0.0.50"},
    ],
}
NOTHING = {
    "enable": False,
    "masquerade": [],
    "allow_tcp": [],
    "allow_udp": [],
    "trusted_interfaces": [],
    "forward_ports": [],
}
FOREIGN = (
    "add table ip foreign-fw\n"
    "add chain ip foreign-fw input { type filter hook input priority 10; policy accept; }\n"
    'add rule ip foreign-fw input tcp dport 4242 accept comment "not op-dbus\'s"\n'
)


def container(name: str, protected: bool | None = None) -> dict[str, Any]:
    ct_id = str(150 + list(ADDRESSES).index(name))
    entry = {
        "id": ct_id,
        "name": name,
        "veth": f"vi{ct_id}",
        "bridge": "mesh",
        "running": True,
        "ipv4": {"address": [{"ip": ADDRESSES[name], "prefix": 24}], "gateway": "10.0.0.1"},
    }
    return entry | ({"protected": protected} if protected is not None else {})


def ruleset(lab: Lab) -> list[dict[str, Any]]:
    listing = json.loads(sh(lab, "nft", "-j", "list", "ruleset"))["nftables"]
    return [obj for obj in listing if "metainfo" not in obj]


def table_of(obj: dict[str, Any]) -> tuple[str, str]:
    ((kind, body),) = obj.items()
    return (body["family"], body["name"] if kind == "table" else body["table"])


def foreign(lab: Lab) -> list[dict[str, Any]]:
    """The test's own table as nft lists it, handles included (a re-created one differs)."""
    return [obj for obj in ruleset(lab) if table_of(obj) == ("ip", "foreign-fw")]


def ip_forward(lab: Lab) -> str:
    return sh(lab, "cat", "/proc/sys/net/ipv4/ip_forward").strip()


def query_firewall(lab: Lab) -> dict[str, Any]:
    result = opdbus(lab, "query", "--plugin", "firewall", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["state"]["plugins"]["firewall"]


def read_by_nft(lab: Lab) -> dict[str, Any]:
    """The section as this test reads our tables from `nft -j`: by the rules' expressions,
    not by op-dbus's comments or code."""
    found: dict[str, Any] = {key: [] for key in NOTHING if key != "enable"}
    found["enable"] = False
    for obj in ruleset(lab):
        if table_of(obj) not in OURS:
            continue
        if "chain" in obj and obj["chain"].get("hook") == "input":
            found["enable"] = obj["chain"]["policy"] == "drop"
        if "rule" not in obj:
            continue
        matches = {
            json.dumps(m["match"]["left"], sort_keys=True): m["match"]["right"]
            for m in obj["rule"]["expr"]
            if "match" in m
        }

        def right(matches: dict[str, Any] = matches, **left: Any) -> Any:
            return matches.get(json.dumps(left, sort_keys=True))

        iif, oif = right(meta={"key": "iifname"}), right(meta={"key": "oifname"})
        tcp = right(payload={"protocol": "tcp", "field": "dport"})
        udp = right(payload={"protocol": "udp", "field": "dport"})
        saddr = right(payload={"protocol": "ip", "field": "saddr"})
        dnat = next((e["dnat"] for e in obj["rule"]["expr"] if "dnat" in e), None)
        if dnat is not None:
            to = dnat["addr"] + (f":{dnat['port']}" if "port" in dnat else "")
            entry = {"proto": "tcp" if tcp else "udp", "port": tcp or udp, "to": to}
            found["forward_ports"].append(entry | ({"in_interface": iif} if iif else {}))
        elif any("masquerade" in e for e in obj["rule"]["expr"]):
            prefix = saddr["prefix"] if isinstance(saddr, dict) else {"addr": saddr, "len": 32}
            source = f"{prefix['addr']}/{prefix['len']}"
            found["masquerade"].append({"source": source} | ({"out_interface": oif} if oif else {}))
        elif tcp:
            found["allow_tcp"].append(tcp)
        elif udp:
            found["allow_udp"].append(udp)
        elif iif and iif != "lo":
            found["trusted_interfaces"].append(iif)
    return found


def ping(lab: Lab, name: str, address: str) -> bool:
    result = run_in_lab(
        lab, "lxc-attach", "-P", str(lab.lxc_path), "-n", name, "--",
        "ping", "-c1", "-W2", address, check=False,
    )  # fmt: skip
    return result.returncode == 0


def drop_firewall(lab: Lab) -> None:
    for family, name in (*OURS, ("ip", "foreign-fw")):
        run_in_lab(lab, "nft", "delete", "table", family, name, check=False)
    sh(lab, "sh", "-c", "echo 0 > /proc/sys/net/ipv4/ip_forward")


@pytest.fixture
def clean(lab: Lab, tmp_path: Path) -> Iterator[Lab]:
    reset(lab, tmp_path)
    drop_firewall(lab)
    try:
        yield lab
    finally:
        drop_firewall(lab)
        reset(lab, tmp_path)


def nft_add(lab: Lab, text: str) -> None:
    subprocess.run(lab.exec_argv(["nft", "-f", "-"]), input=text, text=True, check=True)


def test_nft_agrees_with_query_and_a_foreign_table_survives_every_apply(
    clean: Lab, tmp_path: Path
) -> None:
    nft_add(clean, FOREIGN)
    theirs = foreign(clean)
    steps = [
        GATEWAY_FIREWALL,
        GATEWAY_FIREWALL | {"allow_tcp": [22], "masquerade": [{"source": "10.0.0.7/32"}]},
        {"forward_ports": []},  # a partial file: everything else stays
        NOTHING,
    ]
    expected: dict[str, Any] = dict(NOTHING)
    for i, step in enumerate(steps):
        result = opdbus(clean, "apply", write(tmp_path, {"firewall": step}, f"fw{i}.json"))
        assert result.returncode == 0, result.stdout + result.stderr
        expected |= step
        by_nft = read_by_nft(clean)
        assert by_nft == expected, f"step {i}"
        queried = query_firewall(clean)
        assert {k: queried[k] for k in by_nft} == by_nft, f"step {i}: query and nft disagree"
        assert queried["unrecognised"] == []
        assert foreign(clean) == theirs, f"step {i}: the foreign table was touched"
    assert {table_of(o) for o in ruleset(clean)} == {("ip", "foreign-fw")}, "ours are gone"


def test_a_rule_added_by_hand_to_our_table_is_drift_and_apply_removes_it(
    clean: Lab, tmp_path: Path
) -> None:
    path = write(tmp_path, {"firewall": {"enable": True, "allow_tcp": [22]}})
    assert opdbus(clean, "apply", path).returncode == 0
    sh(clean, "nft", "add", "rule", "inet", "op-dbus", "input", "tcp", "dport", "23", "accept")
    diff = opdbus(clean, "diff", path)
    assert diff.returncode == 3 and "unrecognised" in diff.stdout, diff.stdout + diff.stderr
    verify = opdbus(clean, "verify", path)
    assert verify.returncode == 3, verify.stdout + verify.stderr
    assert opdbus(clean, "apply", path).returncode == 0
    assert read_by_nft(clean)["allow_tcp"] == [22]
    assert opdbus(clean, "diff", path).returncode == 0


def test_a_container_reaches_upstream_only_through_the_masquerade(
    clean: Lab, tmp_path: Path
) -> None:
    routes = json.loads(sh(clean, "ip", "-n", clean.upstream_netns, "-j", "route"))
    assert all(r["dst"] != "default" and not r["dst"].startswith("10.") for r in routes), routes
    forwarding = {"net": NET, "lxc": {"containers": [container("fw-a")]}}
    forwarding["firewall"] = {"forward": True}
    result = opdbus(clean, "apply", write(tmp_path, forwarding))
    assert result.returncode == 0, result.stdout + result.stderr
    assert ip_forward(clean) == "1"
    assert ping(clean, "fw-a", "10.0.0.1"), "the container reaches its bridge"
    assert not ping(clean, "fw-a", UPSTREAM_GATEWAY), "upstream cannot answer 10.0.0.51"

    masquerading = copy.deepcopy(forwarding)
    masquerading["firewall"]["masquerade"] = MASQUERADE
    result = opdbus(clean, "apply", write(tmp_path, masquerading, "nat.json"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert ping(clean, "fw-a", UPSTREAM_GATEWAY), "masqueraded as 192.168.1.10, it is answered"

    off = copy.deepcopy(masquerading)
    off["firewall"]["forward"] = False
    assert opdbus(clean, "apply", write(tmp_path, off, "off.json")).returncode == 0
    assert ip_forward(clean) == "0"
    assert not ping(clean, "fw-a", UPSTREAM_GATEWAY), "no forwarding, no way out"


def test_protected_containers_reach_the_gateway_container_but_not_each_other(
    clean: Lab, tmp_path: Path
) -> None:
    names = ("fw-gw", "fw-a", "fw-b")
    state = {"net": NET, "lxc": {"containers": [container(n) for n in names]}}
    assert opdbus(clean, "apply", write(tmp_path, state)).returncode == 0
    assert ping(clean, "fw-a", ADDRESSES["fw-b"]), "unprotected, they talk"

    protected = {"lxc": {"containers": [container("fw-gw", False)]}}
    protected["lxc"]["containers"] += [container(n, True) for n in ("fw-a", "fw-b")]
    path = write(tmp_path, protected, "protected.json")
    pids = {n: lxc(clean, "lxc-info", n, "-pH").strip() for n in names}
    result = opdbus(clean, "apply", path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert {n: lxc(clean, "lxc-info", n, "-pH").strip() for n in names} == pids, "no restart"

    def port_protected(veth: str) -> str:
        return sh(clean, "ovs-vsctl", "--timeout=10", "get", "Port", veth, "protected").strip()

    assert [port_protected(v) for v in ("vi150", "vi151", "vi152")] == ["false", "true", "true"]
    assert not ping(clean, "fw-a", ADDRESSES["fw-b"])
    assert not ping(clean, "fw-b", ADDRESSES["fw-a"])
    assert ping(clean, "fw-a", ADDRESSES["fw-gw"]) and ping(clean, "fw-b", ADDRESSES["fw-gw"])
    assert opdbus(clean, "verify", path).returncode == 0

    lxc(clean, "lxc-stop", "fw-a")
    lxc(clean, "lxc-start", "fw-a", "-d")
    sh(clean, "ovs-vsctl", "--timeout=10", "wait-until", "Port", "vi151", "protected=true")
    assert opdbus(clean, "diff", path).returncode == 0, "the start hook protects it again"


def test_a_failed_apply_rolls_the_rule_set_back_and_leaves_foreign_tables(
    clean: Lab, tmp_path: Path
) -> None:
    """The fault is real: the ip_forward sysctl is read-only in op-dbus's mount namespace,
    so the rule set lands first and the sysctl write then fails."""
    nft_add(clean, FOREIGN)
    theirs = foreign(clean)
    before = opdbus(
        clean, "apply", write(tmp_path, {"firewall": {"enable": True, "allow_tcp": [22]}})
    )
    assert before.returncode == 0, before.stdout + before.stderr
    checkpoint = read_by_nft(clean)
    sysctl = "/proc/sys/net/ipv4/ip_forward"
    path = write(
        tmp_path,
        {"firewall": {"forward": True, "masquerade": MASQUERADE, "allow_tcp": [80]}},
        "f.json",
    )
    script = (
        f"mount --bind {sysctl} {sysctl} && mount -o remount,bind,ro {sysctl}"
        f' && exec "$0" -m op_dbus apply {path}'
    )
    failed = run_in_lab(clean, "unshare", "-m", "sh", "-c", script, sys.executable, check=False)
    assert failed.returncode == 4, failed.stdout + failed.stderr
    assert "ip_forward" in failed.stdout + failed.stderr
    assert read_by_nft(clean) == checkpoint, "the rule set is the checkpoint's again"
    assert query_firewall(clean)["unrecognised"] == []
    assert ip_forward(clean) == "0"
    assert foreign(clean) == theirs


WATCH = """
import asyncio, subprocess
from op_dbus.plugins.firewall.watcher import nftables_session

async def main():
    heard, connected = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(nftables_session(lambda why: heard.set())(connected.set))
    await connected.wait()
    subprocess.run(["nft", "add", "table", "ip", "foreign-fw"], check=True)
    await asyncio.wait_for(heard.wait(), 30)
    task.cancel()
    print("heard")

asyncio.run(main())
"""


def test_the_watcher_hears_a_change_to_any_table(clean: Lab) -> None:
    result = run_in_lab(clean, sys.executable, "-c", WATCH, check=False)
    assert result.returncode == 0 and result.stdout.strip() == "heard", result.stderr


def test_the_gateway_host_example_isolates_and_masquerades(clean: Lab, tmp_path: Path) -> None:
    """examples/gateway-host.yaml as written, bar the container names (fw-*: cgroup names are
    host-wide) and its addresses, which follow."""
    example = Path(__file__).parents[2] / "examples" / "gateway-host.yaml"
    state = yaml.safe_load(example.read_text())
    renamed = dict(zip(("gateway", "warp", "xray-client"), ADDRESSES, strict=True))
    for ct in state["lxc"]["containers"]:
        ct["name"] = renamed[ct["name"]]
        ct["ipv4"]["address"][0]["ip"] = ADDRESSES[ct["name"]]
    path = write(tmp_path, state)
    result = opdbus(clean, "apply", path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert opdbus(clean, "verify", path).returncode == 0
    assert read_by_nft(clean) == {k: state["firewall"].get(k, v) for k, v in NOTHING.items()}
    assert ip_forward(clean) == "1"
    assert ping(clean, "fw-a", ADDRESSES["fw-gw"]) and ping(clean, "fw-b", ADDRESSES["fw-gw"])
    assert not ping(clean, "fw-a", ADDRESSES["fw-b"])
    assert ping(clean, "fw-a", UPSTREAM_GATEWAY) and ping(clean, "fw-gw", UPSTREAM_GATEWAY)


def test_the_daemon_hears_our_table_deleted_by_hand_and_puts_it_back(
    clean: Lab, tmp_path: Path
) -> None:
    """Well within the daemon's 5-minute safety poll: nftables' own events set it off."""
    runtime = Path(clean.data_dir) / "runtime.json"
    runtime.unlink(missing_ok=True)
    path = Path(write(tmp_path, {"firewall": {"enable": True, "allow_tcp": [22]}}))
    daemon = Daemon(clean, path)
    try:
        daemon.wait_message("READY=1")
        assert read_by_nft(clean)["allow_tcp"] == [22], "the boot-time apply"
        sh(clean, "nft", "delete", "table", "inet", "op-dbus")
        wait_for(lambda: read_by_nft(clean)["allow_tcp"] == [22], 60, "the filter to come back")
        assert "nftables" in daemon.output()
    finally:
        daemon.close()
        runtime.unlink(missing_ok=True)
